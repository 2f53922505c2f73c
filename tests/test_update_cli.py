"""`mlgen update` on the command line: the commands of README "Keeping a service up to date"."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlgen.cli import app
from mlgen.store import ensure_store
from test_update import (
    ANSWERS,
    SLOT,
    USER_FEATURES,
    answers_of,
    commit_all,
    copy_template,
    edit_like_a_user,
    release_next_version,
    render_service,
)
from typer.testing import CliRunner


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A service made from the store at v0.1.0 (this checkout); v0.2.0 is in the store too."""
    monkeypatch.setenv("MLGEN_HOME", str(tmp_path / "mlgen-home"))
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    store, tag = ensure_store(copy_template(tmp_path / "v1"), "0.1.0")
    ensure_store(release_next_version(copy_template(tmp_path / "v2")), "0.2.0")
    return render_service(store, tag, tmp_path / ANSWERS["project_name"])


def mlgen(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_mlgen_update_to_a_version_reports_what_to_commit(service: Path) -> None:
    (service / SLOT).write_text(USER_FEATURES)
    commit_all(service, "Our features")

    code, out = mlgen("update", str(service), "--to", "v0.2.0")

    assert code == 0, out
    assert "from template v0.1.0 to v0.2.0" in out
    assert 'git add -A && git commit -m "Update to mlgen template v0.2.0"' in out
    assert (service / SLOT).read_text() == USER_FEATURES


def test_mlgen_update_exits_1_and_lists_conflicts_with_next_steps(service: Path) -> None:
    edit_like_a_user(service)

    code, out = mlgen("update", str(service), "--to", "v0.2.0")

    assert code == 1
    assert "configs/config.yaml" in out
    assert "<<<<<<< before updating" in out and "git reset --hard" in out


def test_mlgen_update_data_changes_an_answer(service: Path) -> None:
    code, out = mlgen("update", str(service), "--to", "v0.1.0", "--data", "model_family=lightgbm",
                      "--data", "tuning_trials=5")

    assert code == 0, out
    config = yaml.safe_load((service / "configs" / "config.yaml").read_text())
    assert config["model"]["family"] == "lightgbm"
    assert config["tuning"]["trials"] == 5
    assert answers_of(service)["tuning_trials"] == 5


def test_mlgen_update_defaults_to_the_installed_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service made from this checkout's template, which is also the installed one.
    monkeypatch.setenv("MLGEN_HOME", str(tmp_path / "mlgen-home"))
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    store, tag = ensure_store()
    service = render_service(store, tag, tmp_path / "svc")

    code, out = mlgen("update", str(service))

    assert code == 0, out
    assert f"from template {tag} to {tag}" in out


def test_mlgen_update_refuses_a_dirty_service_with_exit_2(service: Path) -> None:
    (service / "scratch.py").write_text("x = 1\n")

    code, out = mlgen("update", str(service), "--to", "v0.2.0")

    assert code == 2
    assert "uncommitted changes" in out and "scratch.py" in out
    assert answers_of(service)["_commit"] == "v0.1.0"


def test_a_malformed_data_option_is_explained(service: Path) -> None:
    code, out = mlgen("update", str(service), "--data", "model_family")

    assert code == 2
    assert "QUESTION=VALUE" in out
