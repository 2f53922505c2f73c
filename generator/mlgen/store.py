"""The *template store*: a local git repository holding every installed version of the template.

Copier can only update a service from a git template in which the service's recorded `_commit`
is still reachable: not from a plain folder (the template inside site-packages), not from a
subfolder of a git repo, not from a dirty checkout rendered at HEAD. So `mlgen new` never renders
from the packaged template directly. It first copies that template (``copier.yml``, ``template/``
and ``prompts/``, laid out as in the repo so ``_subdirectory`` keeps working) into the store,
as one commit tagged ``v<mlgen version>`` on top of the versions already there, then renders
from the store by absolute path at that tag. ``.copier-answers.yml`` then records a
``_src_path`` and ``_commit`` that stay valid: after ``pip install -U mlgen``, the next
``mlgen update`` adds the new version on top, offline, and the old commit is still there.

The store lives in ``platformdirs.user_data_dir("mlgen")/template-store``; the environment
variable ``MLGEN_HOME`` replaces ``user_data_dir("mlgen")`` (tests, shared machines).

Commits use a fixed author and date, so the same template content on the same parent always
gives the same commit. A development checkout that changes the template without bumping the
version cannot reuse the release tag: it gets a local tag such as ``v0.1.0+dev.2.1a2b3c4d``
(a PEP 440 local version: the counter orders dev builds, the suffix is the content's tree
hash), so history is never rewritten and every service's ``_commit`` stays reachable.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

from mlgen.environment import child_env
from mlgen.errors import TemplateStoreError
from mlgen.template import template_root as packaged_template_root

HOME_ENV = "MLGEN_HOME"
# The template renders vendor/mlgen-runtime from the runtime/ folder (a symlink inside template/),
# so each stored version carries the runtime its services pin.
TEMPLATE_PARTS = ("copier.yml", "template", "prompts", "runtime")
# Build and editor leftovers that must never become part of a template version.
IGNORED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".DS_Store", ".git"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
# The runtime's own tests (and their fixture data) never reach a service: renders exclude them
# (copier.yml), so the store leaves them out and every render clones less.
IGNORED_FOLDERS = frozenset({"runtime/tests"})
BRANCH = "main"
# A fixed identity and date: same content on the same parent -> same commit id everywhere.
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "mlgen",
    "GIT_AUTHOR_EMAIL": "mlgen@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "mlgen",
    "GIT_COMMITTER_EMAIL": "mlgen@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


def default_store_path() -> Path:
    """Where the store lives: ``$MLGEN_HOME/template-store`` or the user's data directory."""
    home = os.environ.get(HOME_ENV) or user_data_dir("mlgen", appauthor=False)
    return Path(home).expanduser().resolve() / "template-store"


def release_tag(version: str) -> str:
    """The tag of an mlgen release: ``v`` + its version, which Copier orders by PEP 440."""
    return f"v{version}"


def template_files(template_root: Path) -> list[str]:
    """The template's files, relative to ``template_root``, without build leftovers."""
    missing = [part for part in TEMPLATE_PARTS[:2] if not (template_root / part).exists()]
    if missing:
        raise TemplateStoreError(
            f"{template_root} is not an mlgen template root: {', '.join(missing)} missing. "
            "Reinstall mlgen, or point to the folder holding copier.yml and template/."
        )
    files = []
    for part in TEMPLATE_PARTS:
        top = template_root / part
        if top.is_file() or top.is_symlink():
            files.append(part)
            continue
        for folder, dirs, names in os.walk(top):
            here = Path(folder)
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in IGNORED_NAMES
                and (here / d).relative_to(template_root).as_posix() not in IGNORED_FOLDERS
            )
            # A symlink (the runtime link in template/vendor) is stored as a link, not followed.
            links = [d for d in dirs if (here / d).is_symlink()]
            dirs[:] = [d for d in dirs if d not in links]
            for name in sorted([*names, *links]):
                if name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
                    continue
                files.append((here / name).relative_to(template_root).as_posix())
    return sorted(files)


@dataclass(frozen=True)
class TemplateStore:
    """A git repository whose tags are the template versions mlgen has installed."""

    path: Path

    def git(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        """Run git in the store; a failure names the command and git's own message."""
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=child_env(env),
        )
        if proc.returncode != 0:
            raise TemplateStoreError(
                f"`git {' '.join(args)}` failed in the template store {self.path}:\n"
                f"{proc.stderr.strip()}\nIf the store is damaged, delete that folder: mlgen "
                "rebuilds it, but services made from it can then only update with --to <ref> "
                "after their old version is added again."
            )
        return proc.stdout.strip()

    def tags(self) -> list[str]:
        return self.git("tag", "--list").splitlines()

    def tree_of(self, ref: str) -> str:
        return self.git("rev-parse", f"{ref}^{{tree}}")

    def head(self) -> str | None:
        """The newest commit on the store's branch, or None for an empty store."""
        refs = self.git("for-each-ref", "--format=%(objectname)", f"refs/heads/{BRANCH}")
        return refs or None

    def init(self) -> None:
        """Create the repository if it does not exist yet."""
        if (self.path / ".git").is_dir():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={BRANCH}")

    def snapshot(self, template_root: Path) -> str:
        """Write ``template_root``'s template into the store's objects; return its tree id.

        A private index keeps the store's own work tree untouched. Files are added by explicit
        path with ``--force`` because the template ships a ``.gitignore`` for the services it
        renders, which must not hide template files such as ``.env`` from the store.
        """
        index = self.path / ".git" / "mlgen-snapshot.index"
        index.unlink(missing_ok=True)
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self.git(
                "-c",
                "core.autocrlf=false",
                f"--work-tree={template_root}",
                "add",
                "--force",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                env=env,
                stdin="\0".join(template_files(template_root)),
            )
            return self.git("write-tree", env=env)
        finally:
            index.unlink(missing_ok=True)

    def commit(self, tree: str, tag: str) -> None:
        """Commit ``tree`` on top of the branch, tag it, and check it out for people to read."""
        parent = self.head()
        parents = ["-p", parent] if parent else []
        commit = self.git(
            "commit-tree",
            "--no-gpg-sign",
            tree,
            *parents,
            "-m",
            f"mlgen template {tag}",
            env=COMMIT_ENV,
        )
        self.git("update-ref", f"refs/heads/{BRANCH}", commit)
        self.git("update-ref", f"refs/tags/{tag}", commit)
        self.git("reset", "--quiet", "--hard", commit)

    def dev_tag(self, version: str, tree: str) -> str:
        """The local-version tag for template content that differs from release ``version``."""
        base = release_tag(version)
        sep = "." if "+" in base else "+"
        prefix = f"{base}{sep}dev."
        existing = [tag for tag in self.tags() if tag.startswith(prefix)]
        for tag in existing:
            if tag.endswith(f".{tree[:8]}"):
                return tag
        return f"{prefix}{len(existing) + 1}.{tree[:8]}"

    def add_version(self, template_root: Path, version: str) -> str:
        """Make sure the template at ``template_root`` is a tagged version; return its tag."""
        self.init()
        tree = self.snapshot(template_root)
        tag = release_tag(version)
        tags = set(self.tags())
        if tag in tags and self.tree_of(tag) != tree:
            tag = self.dev_tag(version, tree)
        if tag not in tags:
            self.commit(tree, tag)
        return tag

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise writers: two `mlgen` processes may install the same version at once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / "template-store.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_store(
    template_root: Path | None = None,
    version: str | None = None,
    store_path: Path | None = None,
) -> tuple[Path, str]:
    """Make sure the store holds the installed template; return ``(store path, tag)``.

    Idempotent and offline. The defaults are the template shipped with this mlgen, its version
    and :func:`default_store_path`; render with ``copier.run_copy(str(path), ..., vcs_ref=tag)``.
    """
    if template_root is None:
        template_root = packaged_template_root()
    if version is None:
        from mlgen import __version__ as version
    store = TemplateStore((store_path or default_store_path()).resolve())
    with store.locked():
        return store.path, store.add_version(Path(template_root).resolve(), version)
