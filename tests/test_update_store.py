"""The template store keeps every installed template version, and plain `copier update` works.

The store is what makes services made by `mlgen new` updatable at all: see mlgen/store.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlgen.errors import TemplateStoreError
from mlgen.store import default_store_path, ensure_store
from mlgen.update import update_service
from test_update import (
    SLOT,
    USER_FEATURES,
    answers_of,
    commit_all,
    copy_template,
    git,
    release_next_version,
    render_service,
)

COPIER = str(Path(sys.executable).parent / "copier")


def store_log(store: Path) -> list[str]:
    return git(store, "log", "--format=%H %D", "main").splitlines()


@pytest.fixture
def v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLGEN_HOME", str(tmp_path / "mlgen-home"))
    # Only local transports: everything below must work with no network.
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    return copy_template(tmp_path / "v1")


def test_the_store_lives_under_mlgen_home(v1: Path, tmp_path: Path) -> None:
    store, tag = ensure_store(v1, "0.1.0")
    assert store == default_store_path() == (tmp_path / "mlgen-home" / "template-store").resolve()
    assert tag == "v0.1.0"
    # The work tree shows the newest version, laid out like the repo (no _subdirectory trouble).
    assert (store / "copier.yml").read_bytes() == (v1 / "copier.yml").read_bytes()
    assert (store / "template" / "configs" / "config.yaml.jinja").is_file()


def test_installing_the_same_version_twice_changes_nothing(v1: Path) -> None:
    store, first = ensure_store(v1, "0.1.0")
    log = store_log(store)
    _, again = ensure_store(v1, "0.1.0")
    assert again == first
    assert store_log(store) == log and len(log) == 1


def test_the_same_content_gives_the_same_commit_on_any_machine(v1: Path, tmp_path: Path) -> None:
    ours, _ = ensure_store(v1, "0.1.0")
    theirs, _ = ensure_store(v1, "0.1.0", store_path=tmp_path / "elsewhere")
    assert git(ours, "rev-parse", "v0.1.0") == git(theirs, "rev-parse", "v0.1.0")


def test_a_new_version_is_added_on_top_of_the_old_one(v1: Path, tmp_path: Path) -> None:
    store, _ = ensure_store(v1, "0.1.0")
    _, tag = ensure_store(release_next_version(copy_template(tmp_path / "v2")), "0.2.0")
    assert tag == "v0.2.0"
    assert git(store, "rev-parse", "v0.2.0^").strip() == git(store, "rev-parse", "v0.1.0").strip()
    assert (store / "template" / "RELEASE_NOTES.md.jinja").is_file()


def test_changed_content_under_the_same_version_gets_a_dev_tag_not_a_rewrite(
    v1: Path, tmp_path: Path
) -> None:
    store, _ = ensure_store(v1, "0.1.0")
    release = git(store, "rev-parse", "v0.1.0")
    changed = release_next_version(copy_template(tmp_path / "changed"))
    _, dev = ensure_store(changed, "0.1.0")
    assert dev.startswith("v0.1.0+dev.1.") and len(dev) == len("v0.1.0+dev.1.") + 8
    assert git(store, "rev-parse", "v0.1.0") == release
    assert ensure_store(changed, "0.1.0")[1] == dev
    (changed / "template" / "RELEASE_NOTES.md.jinja").write_text("# again\n")
    assert ensure_store(changed, "0.1.0")[1].startswith("v0.1.0+dev.2.")
    # Going back to the released content finds the release again.
    assert ensure_store(v1, "0.1.0")[1] == "v0.1.0"


def test_build_leftovers_stay_out_and_template_gitignore_hides_nothing(v1: Path) -> None:
    template = v1 / "template"
    (template / ".gitignore").write_text(".env\n*.csv\n")
    (template / ".env").write_text("# secrets go here, never committed\n")
    (template / "data").mkdir(exist_ok=True)
    (template / "data" / "sample.csv").write_text("a,b\n1,2\n")
    (template / "__pycache__").mkdir()
    (template / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    store, tag = ensure_store(v1, "0.1.0")
    stored = git(store, "ls-tree", "-r", "--name-only", tag).splitlines()
    assert {"template/.env", "template/.gitignore", "template/data/sample.csv"} <= set(stored)
    assert not [path for path in stored if "__pycache__" in path]


def test_a_folder_without_a_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateStoreError, match="is not an mlgen template root"):
        ensure_store(tmp_path, "0.1.0", store_path=tmp_path / "store")


def copier_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Copier's own command line, exactly as a user types it (never with --trust)."""
    proc = subprocess.run([COPIER, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COPIER_CACHE_DIR": str(cwd / ".copier-cache")})
    assert proc.returncode == 0, f"copier {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
    return proc


def test_plain_copier_update_works_for_a_service_made_from_the_store(
    v1: Path, tmp_path: Path
) -> None:
    store, tag = ensure_store(v1, "0.1.0")
    service = render_service(store, tag, tmp_path / "svc")
    (service / SLOT).write_text(USER_FEATURES)
    commit_all(service, "Our features")
    ensure_store(release_next_version(copy_template(tmp_path / "v2")), "0.2.0")

    copier_cli("update", "--defaults", "--conflict", "inline", cwd=service)

    assert answers_of(service)["_src_path"] == str(store)
    assert answers_of(service)["_commit"] == "v0.2.0"
    assert (service / "RELEASE_NOTES.md").is_file()
    assert (service / SLOT).read_text() == USER_FEATURES


def template_repo(v1: Path, path: Path) -> Path:
    """The template published as its own git repository (what `copier copy <repo>` uses)."""
    shutil.copytree(v1, path)
    commit_all(path, "mlgen 0.1.0")
    git(path, "tag", "v0.1.0")
    return path


def test_a_service_made_by_copier_copy_updates_with_copier_and_with_mlgen(
    v1: Path, tmp_path: Path
) -> None:
    repo = template_repo(v1, tmp_path / "mlgen-repo")
    copier_cli("copy", "--defaults", "--data", "project_name=churn-svc",
               "--data", "package_name=churn_svc", str(repo), "by-copier", cwd=tmp_path)
    service = tmp_path / "by-copier"
    commit_all(service, "Generated by copier")
    (service / "configs" / "local.yaml").write_text("tuning:\n  trials: 7\n")
    commit_all(service, "Our local settings")
    # Release 0.2.0 in the template repo.
    shutil.rmtree(repo / "template")
    v2 = release_next_version(copy_template(tmp_path / "v2"))
    shutil.copytree(v2 / "template", repo / "template")
    commit_all(repo, "mlgen 0.2.0")
    git(repo, "tag", "v0.2.0")
    twin = tmp_path / "twin"
    shutil.copytree(service, twin)

    copier_cli("update", "--defaults", "--conflict", "inline", cwd=service)
    report = update_service(twin)

    for updated in (service, twin):
        assert answers_of(updated)["_commit"] == "v0.2.0"
        assert (updated / "RELEASE_NOTES.md").is_file()
        assert yaml.safe_load((updated / "configs" / "local.yaml").read_text()) == {
            "tuning": {"trials": 7}
        }
    assert report.ok and report.to_ref == "v0.2.0"
