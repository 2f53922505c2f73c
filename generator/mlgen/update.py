"""Updating a service: bring a newer template version into it without losing the user's work.

``update_service`` wraps ``copier.run_update`` with what Copier leaves to its caller:

1. it refuses a service whose git work tree is dirty (untracked files count), because the
   update is reviewed and undone with git;
2. for a service made by ``mlgen new`` (its ``_src_path`` is the template store) it first adds
   the installed mlgen's template to the store (offline, see :mod:`mlgen.store`);
3. it runs Copier with inline conflicts, then keeps every user-owned slot (``_skip_if_exists``)
   the user had deleted deleted: Copier recreates them;
4. it runs mlgen's own migration steps (:mod:`mlgen.migrations`), e.g. renames;
5. it finds every conflict, since Copier exits 0 even when some remain: unmerged index entries,
   files with conflict markers and ``*.rej`` files, and reports them with next steps;
6. with ``verify``, it runs the service's tests after a clean update.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlgen.environment import child_env
from mlgen.errors import UpdateError, VerifyError
from mlgen.jinja_cache import compiled_once
from mlgen.migrations import MIGRATIONS, Rename, keep_retired, parse_template_version, rendered
from mlgen.store import default_store_path, ensure_store
from mlgen.verify import reinstall

ANSWERS_FILE = ".copier-answers.yml"
UNMERGED_CODES = frozenset({"DD", "AU", "UD", "UA", "DU", "AA", "UU"})
CONFLICT_MARKERS = (b"<<<<<<< ", b">>>>>>> ")


@dataclass(frozen=True)
class Conflict:
    """A file the update could not merge on its own."""

    path: str
    reason: str


@dataclass(frozen=True)
class UpdateReport:
    """What an update did, and what is left for the user to do."""

    service: Path
    from_ref: str
    to_ref: str
    changed: tuple[str, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    kept_deleted: tuple[str, ...] = ()
    migrations: tuple[str, ...] = ()
    tests_passed: bool | None = None
    test_output: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return not self.conflicts and self.tests_passed is not False

    def summary(self) -> str:
        """The report a person reads after ``mlgen update``."""
        lines = [f"Updated {self.service} from template {self.from_ref} to {self.to_ref}."]
        if not self.changed:
            lines.append("Nothing changed: the service already had this template version.")
        lines += [f"  migration: {step}" for step in self.migrations]
        lines += [f"  kept deleted (you had removed it): {path}" for path in self.kept_deleted]
        if self.conflicts:
            lines.append(f"{len(self.conflicts)} file(s) need your decision:")
            lines += [f"  {c.path}: {c.reason}" for c in self.conflicts]
            lines += [
                "Next steps:",
                "  1. In each file, keep what you want between `<<<<<<< before updating` (yours)",
                "     and `>>>>>>> after updating` (the template's) and delete the markers;",
                "     for a .rej file, apply its hunks by hand, then delete the .rej file.",
                "  2. Review with `git diff`, run your tests, then commit:",
                f'     git add -A && git commit -m "Update to mlgen template {self.to_ref}"',
                "  To abandon the update instead: git reset --hard && git clean -fd",
            ]
        elif self.tests_passed is False:
            lines.append("The service's tests FAILED after the update:")
            lines.append(self.test_output[-3000:])
            lines.append(
                "Fix them (compare with `git diff`), or abandon the update: "
                "git reset --hard && git clean -fd"
            )
        elif self.changed:
            if self.tests_passed:
                lines.append("The service's tests pass.")
            lines.append(
                "Review with `git diff`, then commit: "
                f'git add -A && git commit -m "Update to mlgen template {self.to_ref}"'
            )
        return "\n".join(lines)


def parse_answers(pairs: Iterable[str]) -> dict[str, str]:
    """``QUESTION=VALUE`` strings (as given to ``--data``) as answers; Copier casts the types."""
    answers = {}
    for pair in pairs:
        question, sep, value = pair.partition("=")
        if not sep or not question.strip():
            raise UpdateError(
                f"--data {pair!r} is not QUESTION=VALUE: write e.g. --data model_family=lightgbm "
                "(the questions are listed in .copier-answers.yml)."
            )
        answers[question.strip()] = value
    return answers


def git(service: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(service), *args], capture_output=True, text=True, env=child_env()
    )


def status_lines(service: Path, *extra: str) -> list[str]:
    """``git status --porcelain`` for the service folder, one entry per line."""
    proc = git(service, "status", "--porcelain", "--untracked-files=all", *extra, "--", ".")
    if proc.returncode != 0:
        raise UpdateError(
            f"{service} is not inside a git repository ({proc.stderr.strip()}). Copier updates "
            "by comparing against git: run `git init && git add -A && git commit -m "
            '"Generated by mlgen"` there first.'
        )
    return [line for line in proc.stdout.splitlines() if line]


def read_answers(service: Path) -> dict[str, Any]:
    path = service / ANSWERS_FILE
    if not path.is_file():
        raise UpdateError(
            f"{service} has no {ANSWERS_FILE}, so it was not made by mlgen or Copier (or the "
            "file was deleted): restore it from git, or pass the folder of the service."
        )
    answers = yaml.safe_load(path.read_text()) or {}
    missing = [key for key in ("_src_path", "_commit") if not answers.get(key)]
    if missing:
        raise UpdateError(
            f"{path} lacks {', '.join(missing)}: the service was rendered from a template that "
            "was not a git repository, so there is no old version to compare with. Re-create "
            "it with `mlgen new` (or `copier copy <git template>`) and copy your changes over."
        )
    return answers


def ensure_clean(service: Path) -> None:
    dirty = status_lines(service)
    if dirty:
        shown = "\n".join(f"  {line}" for line in dirty[:20])
        more = f"\n  ... and {len(dirty) - 20} more" if len(dirty) > 20 else ""
        raise UpdateError(
            f"{service} has uncommitted changes:\n{shown}{more}\nAn update must start from a "
            "clean git work tree so you can review it with `git diff` and undo it. Commit "
            "(`git add -A && git commit -m wip`) or stash (`git stash -u`) them, then retry."
        )


def render_previous(answers: Mapping[str, Any], into: Path) -> Path:
    """Render the service's current template version with its answers: the merge base."""
    import copier  # not at import time: see mlgen.environment

    user_answers = {k: v for k, v in answers.items() if not k.startswith("_")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            answers["_src_path"],
            str(into),
            data=user_answers,
            vcs_ref=answers["_commit"],
            defaults=True,
            unsafe=False,
            quiet=True,
            overwrite=True,
        )
    return into


def remove_recreated(service: Path, deleted: Iterable[str]) -> tuple[str, ...]:
    """Delete files the user had deleted and Copier brought back (``_skip_if_exists`` slots)."""
    removed = []
    for rel in sorted(deleted):
        path = service / rel
        if path.exists():
            path.unlink()
            removed.append(rel)
            parent = path.parent
            while parent != service and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return tuple(removed)


def find_conflicts(service: Path) -> tuple[Conflict, ...]:
    """Every file the update left unresolved: Copier itself reports none of them."""
    found: dict[str, str] = {}
    for line in status_lines(service, "--ignored"):
        code, rel = line[:2], line[3:].strip('"')
        if code in UNMERGED_CODES:
            found[rel] = "changed on both sides: resolve the conflict markers"
        elif rel.endswith(".rej"):
            found[rel] = f"hunks that did not apply to {rel[:-4]}: apply them by hand"
        elif code != "!!" and "D" not in code and has_conflict_markers(service / rel):
            found.setdefault(rel, "contains conflict markers: resolve them")
    return tuple(Conflict(path, reason) for path, reason in sorted(found.items()))


def has_conflict_markers(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        starts = {line[:8] for line in handle if line.startswith(CONFLICT_MARKERS)}
    return set(CONFLICT_MARKERS) <= starts


def service_python(service: Path) -> str:
    """The interpreter for the service's tests: its own ``.venv``, else ``python`` on PATH."""
    local_venv = service / ".venv" / "bin" / "python"
    if local_venv.exists():
        return str(local_venv)
    found = shutil.which("python") or shutil.which("python3")
    if not found:
        raise UpdateError("No `python` on PATH to run the service's tests: activate its venv.")
    return found


def run_tests(service: Path, python: str | None) -> tuple[bool, str]:
    """Reinstall the updated service (its runtime may have changed), then run its tests."""
    python = python or service_python(service)
    try:
        reinstall(Path(python), service)
    except VerifyError as error:
        return False, str(error)
    proc = subprocess.run(
        [python, "-m", "pytest", "-q"],
        cwd=service,
        capture_output=True,
        text=True,
        env=child_env({"MLFLOW_DISABLE_TELEMETRY": "true"}),
    )
    return proc.returncode == 0, proc.stdout + proc.stderr


def update_service(
    service: Path | str,
    *,
    to: str | None = None,
    data: Mapping[str, Any] | None = None,
    verify: bool = False,
    python: str | None = None,
    migrations: Iterable[Rename] = MIGRATIONS,
) -> UpdateReport:
    """Update the service in ``service`` to template ref ``to`` (default: the newest version).

    ``data`` changes answers (e.g. ``{"model_family": "lightgbm"}``): what depends on them is
    re-rendered. ``python`` runs the tests when ``verify`` is set (default: the service's
    ``.venv``, else ``python`` on PATH).
    """
    import copier
    from copier.errors import CopierError

    root = Path(service).resolve()
    answers = read_answers(root)
    ensure_clean(root)
    before = git(root, "rev-parse", "HEAD").stdout.strip()
    from_ref = str(answers["_commit"])
    if to is None and Path(answers["_src_path"]).resolve() == default_store_path():
        _, to = ensure_store()
    # Three renders of one template: Jinja compiles each source once (jinja_cache).
    with tempfile.TemporaryDirectory(prefix="mlgen-update-") as tmp, compiled_once():
        previous = render_previous(answers, Path(tmp) / "previous")
        deleted = {rel for rel in rendered(previous) if not (root / rel).exists()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                copier.run_update(
                    str(root),
                    data=dict(data or {}),
                    defaults=True,
                    overwrite=True,
                    conflict="inline",
                    unsafe=False,
                    quiet=True,
                    vcs_ref=to,
                )
        except CopierError as error:
            raise UpdateError(
                f"Copier could not update {root}: {error}\nNothing was committed; "
                "`git status` shows any partial changes (undo: git reset --hard && git clean -fd)."
            ) from error
        kept_deleted = remove_recreated(root, deleted)
        new_answers = read_answers(root)
        to_ref = str(new_answers["_commit"])
        upcoming = render_previous(new_answers, Path(tmp) / "upcoming")
        crossing = [
            m
            for m in migrations
            if m.applies(parse_template_version(from_ref), parse_template_version(to_ref))
        ]
        renamed = {m.old.format(**answers) for m in crossing}
        retired = keep_retired(root, previous, upcoming, before, from_ref, skip=renamed)
        done = [*retired, *(m.apply(root, previous, before, answers) for m in crossing)]
    conflicts = find_conflicts(root)
    passed, output = (None, "")
    if verify and not conflicts:
        passed, output = run_tests(root, python)
    return UpdateReport(
        service=root,
        from_ref=from_ref,
        to_ref=to_ref,
        changed=tuple(status_lines(root)),
        conflicts=conflicts,
        kept_deleted=kept_deleted,
        migrations=tuple(step for step in done if step),
        tests_passed=passed,
        test_output=output,
    )
