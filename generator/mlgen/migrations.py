"""Migrations: steps that carry a service's own edits across template changes Copier cannot follow.

Copier replays a user's edits file by file, so when a template version renames a file the edits
made to the old file are dropped with it (Copier deletes files the new version no longer has).
Copier's own ``_migrations`` could run scripts, but they make the template unsafe (every
``copier copy`` would then need ``--trust``). mlgen instead keeps its migration steps here, as
plain data run by ``mlgen update`` after Copier: a :class:`Rename` three-way merges the user's
edits of the old file into the new one, the same way Copier merges everything else.

To rename a template file in a release: rename it in ``template/``, add a ``Rename`` to
:data:`MIGRATIONS` with the release's version, and mention it in CHANGELOG.md.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from mlgen.environment import child_env
from mlgen.errors import MlgenError


def parse_template_version(ref: str) -> Version | None:
    """The version a template ref names (``v0.2.0``, ``v0.1.0+dev.1.ab12cd34``); None if none.

    ``git describe`` refs such as ``v0.1.0-3-gdeadbee`` (a commit after a tag) name their tag.
    """
    for candidate in (ref, ref.split("-")[0]):
        try:
            return Version(candidate.removeprefix("v"))
        except InvalidVersion:
            continue
    return None


@dataclass(frozen=True)
class Rename:
    """Template ``version`` moved ``old`` to ``new`` (service paths; ``{package_name}`` works)."""

    version: str
    old: str
    new: str

    def applies(self, from_version: Version | None, to_version: Version | None) -> bool:
        """True when an update from ``from_version`` to ``to_version`` crosses this rename."""
        if from_version is None or to_version is None:
            return False
        return from_version < Version(self.version) <= to_version

    def apply(self, service: Path, old_render: Path, before: str, answers: dict) -> str | None:
        """Merge the user's edits of ``old`` (as committed at ``before``) into ``new``.

        ``old_render`` is the previous template version rendered with the service's answers:
        the common ancestor of the user's file and the new template's file. Returns what was
        done, or None when the service had no ``old`` file.
        """
        old = self.old.format(**answers)
        new = self.new.format(**answers)
        committed = subprocess.run(
            ["git", "-C", str(service), "show", f"{before}:./{old}"],
            capture_output=True,
            env=child_env(),
        )
        if committed.returncode != 0:
            return None
        theirs = committed.stdout
        base_path = old_render / old
        base = base_path.read_bytes() if base_path.is_file() else b""
        target = service / new
        for leftover in (service / old, service / f"{old}.rej"):
            leftover.unlink(missing_ok=True)
        if theirs == base:
            return f"{old} -> {new}: renamed (you had not edited it)"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(theirs)
            return f"{old} -> {new}: your file moved to the new name"
        with tempfile.TemporaryDirectory(prefix="mlgen-rename-") as tmp:
            inputs = {"yours": theirs, "base": base, "template": target.read_bytes()}
            for name, content in inputs.items():
                Path(tmp, name).write_bytes(content)
            # Same labels and sides as Copier's inline conflicts: one set of instructions
            # (keep what you want between the markers) covers both.
            merged = subprocess.run(
                [
                    "git",
                    "merge-file",
                    "-p",
                    "-L",
                    "before updating",
                    "-L",
                    "last update",
                    "-L",
                    "after updating",
                    "yours",
                    "base",
                    "template",
                ],
                cwd=tmp,
                capture_output=True,
                env=child_env(),
            )
        if merged.returncode < 0 or merged.returncode > 127:
            raise MlgenError(
                f"git merge-file failed while moving {old} to {new}: "
                f"{merged.stderr.decode(errors='replace')}"
            )
        target.write_bytes(merged.stdout)
        return f"{old} -> {new}: your edits were merged into the new file"


# Every rename between released template versions, oldest first.
MIGRATIONS: tuple[Rename, ...] = ()

# Where an update keeps the user's edited copy of a file the template no longer has.
KEPT_DIR = Path(".mlgen") / "kept"


def keep_retired(
    service: Path,
    old_render: Path,
    new_render: Path,
    before: str,
    from_ref: str,
    skip: set[str] = frozenset(),
) -> list[str]:
    """Keep the user's edits of template files the new version retired; return what was done.

    A file of the old template that the new one no longer has (0.2.0 moved the engine out of
    ``src/<package>/`` into the runtime) is deleted by Copier when the user had not edited it.
    An edited one would come back as a conflict or a ``.rej`` that cannot be resolved, because
    its code now lives in the runtime. Its edited version is moved to
    ``.mlgen/kept/<from_ref>/<path>`` (outside the package and the tests, so nothing imports or
    collects it) for the user to carry over by hand, and the update report names it. ``skip``:
    the old names of renamed files, which a :class:`Rename` carries over instead.
    """
    done = []
    retired = sorted(rendered(old_render) - rendered(new_render) - set(skip))
    for rel in retired:
        committed = subprocess.run(
            ["git", "-C", str(service), "show", f"{before}:./{rel}"],
            capture_output=True,
            env=child_env(),
        )
        for leftover in (service / rel, service / f"{rel}.rej"):
            if leftover.is_file():
                leftover.unlink()
        if committed.returncode != 0:
            continue  # the user had deleted it already
        if committed.stdout == (old_render / rel).read_bytes():
            continue  # not edited: the template's copy goes, nothing is lost
        kept = service / KEPT_DIR / from_ref / rel
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(committed.stdout)
        done.append(
            f"{rel}: the template no longer has this file and you had edited it; your version "
            f"is kept in {kept.relative_to(service)} (see CHANGELOG.md for where its code went)"
        )
    for rel in retired:
        parent = (service / rel).parent
        while parent != service and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return done


def rendered(root: Path) -> set[str]:
    """The files of a render, relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
