"""The service *config*: configs/config.yaml deep-merged with configs/local.yaml, typed.

The service root is the folder holding ``configs/config.yaml``. Every relative path in the
config (data, artifacts, reports, the sqlite tracking store) resolves against that root, so
commands behave the same from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

CONFIG_FILE = Path("configs") / "config.yaml"
LOCAL_FILE = Path("configs") / "local.yaml"
ROOT_ENV = "MLSERVICE_ROOT"
TRACKING_ENV = "MLFLOW_TRACKING_URI"

Task = Literal["binary_classification", "multiclass_classification", "regression"]
FeatureType = Literal["numeric", "categorical", "boolean", "datetime", "text"]
Encoding = Literal["auto", "scale", "passthrough", "onehot", "ordinal", "target"]
Family = Literal["linear", "random_forest", "hist_gradient_boosting", "lightgbm"]


class ConfigError(Exception):
    """The service configuration is missing or invalid."""


class _Section(BaseModel):
    # A typo in configs/local.yaml should fail loudly rather than be ignored.
    model_config = ConfigDict(extra="forbid")


class ProjectConfig(_Section):
    name: str
    package: str
    description: str = ""


class DataConfig(_Section):
    path: str
    sample_path: str | None = None
    target: str
    id_column: str | None = None
    time_column: str | None = None
    group_column: str | None = None
    exclude_columns: list[str] = []


class FeatureSpec(_Section):
    name: str
    type: FeatureType = "numeric"
    encoding: Encoding = "auto"


class SplitConfig(_Section):
    strategy: Literal["stratified", "random", "time", "group"]
    test_size: float
    validation_size: float


class ModelConfig(_Section):
    family: Family
    class_weight: Literal["none", "balanced"] = "none"
    params: dict[str, Any] = {}


class TuningConfig(_Section):
    trials: int = 0
    cv_folds: int = 3
    timeout_seconds: float = 600


class MetricConfig(_Section):
    primary: str
    bootstrap_samples: int = 200


class PathsConfig(_Section):
    artifacts: str = "artifacts"
    reports: str = "reports"
    model_card: str = "MODEL_CARD.md"


class TrackingConfig(_Section):
    uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str
    registered_model: str


class _OpenSection(BaseModel):
    # Serving and drift settings are read by other modules that may add keys of their own.
    model_config = ConfigDict(extra="allow")


class ServingConfig(_OpenSection):
    max_batch_size: int = 1000
    max_body_bytes: int = 1_048_576
    latency_budget_ms: int = 0
    auth_enabled: bool = False
    api_key_env: str = "MLSERVICE_API_KEY"


class DriftConfig(_OpenSection):
    numeric_threshold: float = 0.1
    categorical_threshold: float = 0.1
    psi_threshold: float = 0.2
    window: int = 1000
    min_rows: int = 50


class Config(_Section):
    root: Path
    project: ProjectConfig
    task: Task
    seed: int
    data: DataConfig
    features: list[FeatureSpec] = []
    split: SplitConfig
    model: ModelConfig
    tuning: TuningConfig = TuningConfig()
    metric: MetricConfig
    paths: PathsConfig = PathsConfig()
    tracking: TrackingConfig
    serving: ServingConfig = ServingConfig()
    drift: DriftConfig = DriftConfig()

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    def resolve(self, path: str | Path) -> Path:
        """An absolute path for ``path``, relative paths taken from the service root."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the environment wins, relative sqlite files live in root."""
        uri = os.environ.get(TRACKING_ENV) or self.tracking.uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
            return prefix + str(self.resolve(uri[len(prefix) :]))
        return uri

    @property
    def artifact_location(self) -> str | None:
        """Where new experiments store artifacts: a URI, or a folder under the service root.

        A bare folder only makes sense for a local store; a tracking server chooses its own.
        """
        location = self.tracking.artifact_location
        if "://" in location:
            return location
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            return None
        return self.resolve(location).as_uri()


def find_root(root: str | Path | None = None) -> Path:
    """The service root: ``root``, else ``$MLSERVICE_ROOT``, else the nearest parent of cwd."""
    explicit = root or os.environ.get(ROOT_ENV)
    if explicit:
        candidate = Path(explicit).expanduser().resolve()
        if not (candidate / CONFIG_FILE).is_file():
            raise ConfigError(
                f"No {CONFIG_FILE} in {candidate}. Point --root or ${ROOT_ENV} at the service "
                "folder (the one containing configs/config.yaml)."
            )
        return candidate
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"No {CONFIG_FILE} found in {here} or any parent folder. Run the command inside the "
        f"service folder or set ${ROOT_ENV}."
    )


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` merged into ``base``; nested dicts merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(content).__name__}.")
    return content


def load_config(root: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read config.yaml, merge configs/local.yaml and then ``overrides`` over it, and validate."""
    service_root = find_root(root)
    raw = _read_yaml(service_root / CONFIG_FILE)
    raw = deep_merge(raw, _read_yaml(service_root / LOCAL_FILE))
    raw = deep_merge(raw, overrides or {})
    # MLflow reports usage to a remote endpoint unless told not to; a service should not.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Progress bars for local artifact copies only clutter logs and CI output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Config(root=service_root, **raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(
            f"Invalid configuration in {service_root / 'configs'}: {problems}. "
            "Fix configs/local.yaml (or config.yaml)."
        ) from exc
