"""configs/config.yaml merged with configs/local.yaml and overrides, and where paths resolve."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlgen_runtime.config import load_config
from mlgen_runtime.errors import ConfigError
from service_fixture import SERVICE_ROOT


@pytest.fixture
def service(tmp_path) -> Path:
    """A copy of the service's config in a fresh folder, with an empty local.yaml."""
    (tmp_path / "configs").mkdir()
    shutil.copy(SERVICE_ROOT / "configs" / "config.yaml", tmp_path / "configs" / "config.yaml")
    (tmp_path / "configs" / "local.yaml").write_text("{}\n")
    return tmp_path


def test_local_yaml_changes_only_the_keys_it_names(service):
    shipped = load_config(service)
    (service / "configs" / "local.yaml").write_text("tuning:\n  trials: 7\nseed: 3\n")
    config = load_config(service)
    assert config.tuning.trials == 7
    assert config.seed == 3
    assert config.tuning.cv_folds == shipped.tuning.cv_folds
    assert config.data == shipped.data


def test_overrides_win_over_local_yaml(service):
    (service / "configs" / "local.yaml").write_text("tuning:\n  trials: 7\n")
    config = load_config(service, overrides={"tuning": {"trials": 2}})
    assert config.tuning.trials == 2


def test_a_misspelt_key_is_named_in_the_error(service):
    (service / "configs" / "local.yaml").write_text("tuning:\n  trails: 7\n")
    with pytest.raises(ConfigError, match="tuning.trails"):
        load_config(service)


def test_invalid_yaml_is_reported_with_the_file(service):
    (service / "configs" / "local.yaml").write_text("tuning: [unclosed\n")
    with pytest.raises(ConfigError, match="local.yaml is not valid YAML"):
        load_config(service)


def test_relative_paths_resolve_against_the_service_root_not_the_cwd(service, monkeypatch):
    monkeypatch.chdir(service.parent)
    config = load_config(service, overrides={"tracking": {"uri": "sqlite:///mlflow.db"}})
    assert config.tracking_uri == f"sqlite:///{service.resolve() / 'mlflow.db'}"
    assert config.artifact_location == (service.resolve() / "mlartifacts").as_uri()
    assert config.resolve("data/x.csv") == service.resolve() / "data" / "x.csv"
    assert config.resolve("/abs/x.csv") == Path("/abs/x.csv")


def test_tracking_uri_from_the_environment_wins(service, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    config = load_config(service)
    assert config.tracking_uri == "http://mlflow.internal:5000"
    # A tracking server keeps artifacts where it is configured to, not in a local folder.
    assert config.artifact_location is None


def test_root_is_found_from_a_subfolder_or_the_environment(service, monkeypatch):
    (service / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(service / "src" / "deep")
    assert load_config().root == service.resolve()
    monkeypatch.chdir(service.parent)
    monkeypatch.setenv("MLSERVICE_ROOT", str(service))
    assert load_config().root == service.resolve()


def test_no_config_anywhere_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="No configs/config.yaml found"):
        load_config()


@pytest.mark.parametrize(
    "local, key",
    [
        ("serving:\n  feedback_windw: 10\n", "serving.feedback_windw"),
        ("drift:\n  windows: 10\n", "drift.windows"),
        ("serving:\n  rollout:\n    mod: shadow\n", "serving.rollout.mod"),
        ("serving:\n  timeouts:\n    header_read: 1\n", "serving.timeouts.header_read"),
        ("tunning:\n  trials: 3\n", "tunning"),
    ],
)
def test_a_misspelt_key_in_any_section_is_an_error_that_names_it(service, local, key):
    (service / "configs" / "local.yaml").write_text(local)
    with pytest.raises(ConfigError, match=rf"{key}: Extra inputs are not permitted"):
        load_config(service)


def test_the_feedback_and_rollout_settings_are_typed(service):
    (service / "configs" / "local.yaml").write_text(
        "serving:\n  feedback_window: 250\n  rollout:\n    mode: shadow\n"
    )
    config = load_config(service)
    assert config.serving.feedback_window == 250
    assert config.serving.rollout.mode == "shadow"
    (service / "configs" / "local.yaml").write_text("serving:\n  feedback_window: 0\n")
    with pytest.raises(ConfigError, match="serving.feedback_window"):
        load_config(service)


def test_the_connection_settings_are_typed_and_the_model_routes_never_public(service):
    (service / "configs" / "local.yaml").write_text(
        "serving:\n  timeouts:\n    body_read_s: 5\n  public_paths: [/health, /metrics]\n"
    )
    config = load_config(service)
    assert config.serving.timeouts.body_read_s == 5
    assert config.serving.timeouts.header_read_s == 10
    assert config.serving.public_paths == ["/health", "/metrics"]
    for local, key in [
        ("serving:\n  timeouts:\n    header_read_s: 0\n", "serving.timeouts.header_read_s"),
        ("serving:\n  public_paths: [/predict]\n", "serving.public_paths"),
    ]:
        (service / "configs" / "local.yaml").write_text(local)
        with pytest.raises(ConfigError, match=key):
            load_config(service)


def test_the_access_log_is_off_unless_asked_for_and_reaches_uvicorn(service):
    import logging

    import uvicorn
    from mlgen_runtime.serving.connections import uvicorn_options

    access = logging.getLogger("uvicorn.access")
    kept = access.handlers[:], access.propagate
    try:
        for local, logged in [("{}\n", False), ("serving:\n  access_log: true\n", True)]:
            (service / "configs" / "local.yaml").write_text(local)
            serving = load_config(service).serving
            assert serving.access_log is logged
            # uvicorn configures its access logger when its Config is built.
            uvicorn.Config("app:app", **uvicorn_options(serving))
            assert bool(access.handlers) is logged
    finally:
        access.handlers, access.propagate = kept


def test_a_tabular_config_without_its_target_or_model_names_what_is_missing(service):
    text = (service / "configs" / "config.yaml").read_text()
    (service / "configs" / "local.yaml").write_text("data:\n  target: ''\n")
    with pytest.raises(ConfigError, match="data.target"):
        load_config(service)
    import yaml

    raw = yaml.safe_load(text)
    del raw["model"]
    (service / "configs" / "config.yaml").write_text(yaml.safe_dump(raw))
    (service / "configs" / "local.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="needs model"):
        load_config(service)


def test_a_recommendation_config_needs_its_section_and_no_target(service):
    import yaml

    raw = yaml.safe_load((service / "configs" / "config.yaml").read_text())
    for tabular_only in ("model", "split", "metric", "features", "transforms"):
        raw.pop(tabular_only, None)
    raw.update(kind="recommendation", task="recommendation")
    raw["data"] = {"path": "data/ratings.csv"}
    (service / "configs" / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="needs a `recommendation` section"):
        load_config(service)
    raw["recommendation"] = {"user_column": "userId", "item_column": "movieId"}
    (service / "configs" / "config.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(service)
    assert config.recommendation is not None and config.recommendation.k == 10
    assert not config.is_classification
