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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .targets import TargetRule
from .transforms import TransformSpec

CONFIG_FILE = Path("configs") / "config.yaml"
LOCAL_FILE = Path("configs") / "local.yaml"
ROOT_ENV = "MLSERVICE_ROOT"
TRACKING_ENV = "MLFLOW_TRACKING_URI"

Task = Literal[
    "binary_classification",
    "multiclass_classification",
    "regression",
    "recommendation",
    "forecasting",
    "audio_classification",
    "text_classification",
]
FeatureType = Literal["numeric", "categorical", "boolean", "datetime", "text"]
Encoding = Literal["auto", "scale", "passthrough", "onehot", "ordinal", "target"]
Family = Literal["linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm"]
# model.family: a family, or auto (cross-validated choice among model.candidates).
FamilyChoice = Literal[
    "linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm", "auto"
]
RolloutMode = Literal["off", "shadow", "split"]
# The families ``model.family: auto`` chooses among, cheapest to fit first (a time budget
# that runs out skips the last ones). Measured per default fold on ISLR Default and Caravan
# (docs/benchmarks.md): the single-threaded forests cost 2-5x the linear model, the
# multithreaded boosters 6-29x (their threads wait on each other on a loaded machine).
CANDIDATES: list[Family] = [
    "linear",
    "extra_trees",
    "random_forest",
    "hist_gradient_boosting",
    "lightgbm",
]
# The registry aliases of the served model and of the model under test.
CHAMPION = "champion"
CHALLENGER = "challenger"


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
    # The column to predict (the tabular kind); a recommendation service has none.
    target: str = ""
    id_column: str | None = None
    time_column: str | None = None
    group_column: str | None = None
    exclude_columns: list[str] = []
    # A yes/no target asked of a numeric column: "> 0" makes the target "yes" where the
    # target column is above 0 and "no" elsewhere, wherever labelled rows are read (targets.py).
    positive_when: str | None = None
    # A folder of Parquet partitions larger than this trains on a seeded random sample of this
    # many rows, read one partition at a time (data.py); null: every row.
    max_rows: int | None = Field(default=None, ge=1)


    @field_validator("positive_when")
    @classmethod
    def _rule(cls, value: str | None) -> str | None:
        if value is None or not str(value).strip():
            return None
        return str(TargetRule.parse(value))


class FeatureSpec(_Section):
    name: str
    type: FeatureType = "numeric"
    encoding: Encoding = "auto"


class SplitConfig(_Section):
    strategy: Literal["stratified", "random", "time", "group"]
    test_size: float
    validation_size: float


class ModelConfig(_Section):
    """``model``: one family, or ``auto``: each of ``candidates`` cross-validated with its
    defaults on the training split, the best on the primary metric tuned and trained."""

    family: FamilyChoice
    candidates: list[Family] = Field(default_factory=lambda: list(CANDIDATES), min_length=1)
    class_weight: Literal["none", "balanced"] = "none"
    params: dict[str, Any] = {}


class TuningConfig(_Section):
    """``tuning``: ``trials`` Optuna trials of cross-validation (0: the family's defaults).

    ``time_budget_seconds`` bounds the whole ``train`` command, from the start of its process
    (see budget.py): selection and tuning schedule a fold or a trial only if its measured
    estimate ends in time for the steps after them; a candidate family not reached in time is
    skipped, and with ``trials: 0`` the search runs until the budget is spent. A run that the
    budget cut short depends on the machine's speed; a run that finishes its candidates and
    trials inside it is reproducible bit for bit.
    """

    trials: int = 0
    cv_folds: int = 3
    timeout_seconds: float = 600
    time_budget_seconds: float | None = Field(None, gt=0)
    # Shared tuning: an Optuna RDB storage URL (postgresql+psycopg2://...;
    # $MLSERVICE_OPTUNA_STORAGE wins) where several processes or machines join one study,
    # named `study` (default: the registered model and the family). The dask engine needs it.
    storage: str = ""
    study: str = ""


class MetricConfig(_Section):
    primary: str
    bootstrap_samples: int = 200


class PromotionConfig(_Section):
    """``promotion``: what a new model must show to replace the champion at training (and
    retraining). Its primary metric on the test split must beat the champion's, re-measured
    on the same rows, by at least both minimum changes (in the metric's units, and as a share
    of the champion's value), and the paired test of the two models on those rows (compare.py)
    must give a p-value below ``alpha``: a better point estimate alone may be noise. As
    MLflow's model validation thresholds, ``min_absolute_change`` / ``min_relative_change``.
    """

    min_absolute_change: float = Field(0.0, ge=0.0)
    min_relative_change: float = Field(0.0, ge=0.0)
    # 1 asks for no significance: any improvement meeting the minimum changes is promoted.
    alpha: float = Field(0.05, gt=0.0, le=1.0)
    # Resamples of the bootstrap tests (compare.py says which metrics they test); the live
    # comparison of a rollout uses them too.
    bootstrap_samples: int = Field(1000, ge=100)


RecommenderFamily = Literal[
    "popularity", "recent_popularity", "item_knn", "ease", "als", "bpr", "content"
]
RECOMMENDERS: list[RecommenderFamily] = [
    "popularity",
    "recent_popularity",
    "item_knn",
    "ease",
    "als",
    "bpr",
    "content",
]


class RecommendationConfig(_Section):
    """``recommendation``: a service of the recommendation kind (kinds/recommendation/).

    Interactions are rows of (user, item[, time][, weight]); item metadata comes from columns of
    the same file (``item_columns``, first value per item) or from a file of its own
    (``items_path``, keyed by ``item_column``).
    """

    user_column: str
    item_column: str
    # When the interaction happened (the time split needs it).
    time_column: str | None = None
    # Strength of an interaction (rating, count, duration); none: every row counts 1.
    weight_column: str | None = None
    # Interactions weighing less are not positives (e.g. ratings below 4 on a 1-5 scale).
    min_weight: float | None = None
    item_columns: list[str] = []
    items_path: str | None = None
    # Recommendations per request by default, and the most a request may ask for.
    k: int = Field(10, ge=1)
    max_k: int = Field(100, ge=1)
    # time: a global time cut; user_last: each user's latest interactions; random: a seeded
    # share of the interactions.
    split: Literal["time", "user_last", "random"] = "time"
    test_size: float = Field(0.2, gt=0.0, lt=0.5)
    # As large as the test part: the model is chosen on the horizon it is tested on (on
    # MovieLens user_last, a 10% validation part chose a short-horizon blend that lost on the
    # test part; see docs/benchmarks.md). copier's default was 0.2 already.
    validation_size: float = Field(0.2, gt=0.0, lt=0.5)
    candidates: list[RecommenderFamily] = Field(
        default_factory=lambda: list(RECOMMENDERS), min_length=1
    )
    primary_metric: Literal["ndcg", "recall", "map", "precision"] = "ndcg"
    # Seeded search per tunable family, and the budget of selection and tuning together.
    trials: int = Field(8, ge=0)
    time_budget_seconds: float = Field(60, gt=0)
    bootstrap_samples: int = Field(200, ge=10)


Forecaster = Literal["seasonal_naive", "ets", "lightgbm"]
FORECASTERS: list[Forecaster] = ["seasonal_naive", "ets", "lightgbm"]


class CovariateSpec(_Section):
    """A column that helps to forecast the target. ``known_future``: its values for the
    forecast period are known when forecasting (a calendar flag, a weather forecast, a planned
    price); otherwise only its past is used (values at least ``horizon`` steps old)."""

    name: str
    known_future: bool = False


class ForecastingConfig(_Section):
    """``forecasting``: a service of the forecasting kind (kinds/forecasting/).

    Rows are (time[, series], target[, covariates]); the target is ``data.target``. Each series
    must be regular at ``frequency`` (a pandas offset alias such as ``30min``, ``h``, ``D``,
    ``MS``; empty: inferred from the data).
    """

    time_column: str
    # Several series in one file, told apart by this column; none: a single series.
    series_column: str | None = None
    covariates: list[CovariateSpec] = []
    frequency: str | None = None
    # Steps ahead a forecast covers by default, and the most a request may ask for.
    horizon: int = Field(ge=1)
    max_horizon: int | None = Field(None, ge=1)
    # Steps per seasonal cycle (48 for half-hourly data and a daily cycle); empty: from the
    # frequency.
    season_length: int | None = Field(None, ge=1)
    # Missing timestamps inside a series: an error naming them, or filled (target by linear
    # interpolation, covariates by the last value). Repeated timestamps: an error, or merged.
    gaps: Literal["error", "fill"] = "error"
    duplicates: Literal["error", "mean", "sum", "last"] = "error"
    candidates: list[Forecaster] = Field(default_factory=lambda: list(FORECASTERS), min_length=1)
    # lightgbm: recursive (one model, its own forecasts fed back as lags) or direct (one model
    # with the step ahead as a feature, no feedback of its errors).
    strategy: Literal["recursive", "direct"] = "direct"
    # Expanding-window backtests that choose the model, and the final test windows (each
    # ``horizon`` steps, the latest data).
    backtest_windows: int = Field(3, ge=1)
    test_windows: int = Field(2, ge=1)
    primary_metric: Literal["mase", "smape", "rmse"] = "mase"
    # Coverage the conformal prediction intervals aim at.
    interval_level: float = Field(0.9, gt=0.0, lt=1.0)


AudioFamily = Literal["cnn", "mfcc_logistic"]
AUDIO_FAMILIES: list[AudioFamily] = ["cnn", "mfcc_logistic"]


class AudioConfig(_Section):
    """``audio``: a service of the audio classification kind (kinds/audio/).

    ``data.path`` is a folder of clips per class (``<label>/*.wav``) or a manifest CSV
    (``path,label[,group]``, paths relative to the CSV). Clips (WAV, FLAC, anything soundfile
    reads) are mixed to mono and resampled to ``sample_rate``; a clip outside the limits is
    skipped at training (and listed) and refused by the API with a 4xx naming the limit.
    """

    sample_rate: int = Field(16_000, ge=4_000, le=96_000)
    # Every clip is cropped around its centre or padded to this length before its features.
    clip_seconds: float = Field(1.0, gt=0, le=30)
    max_seconds: float = Field(10.0, gt=0)
    max_file_bytes: int = Field(10_000_000, ge=1)
    min_sample_rate: int = Field(8_000, ge=1)
    max_sample_rate: int = Field(96_000, ge=1)
    max_channels: int = Field(2, ge=1)
    n_mels: int = Field(40, ge=8, le=256)
    n_fft: int = Field(512, ge=64)
    # 20 ms at 16 kHz: a 1 s clip is 47 frames of 40 mels.
    hop_length: int = Field(320, ge=16)
    n_mfcc: int = Field(20, ge=4, le=64)
    # Folder layout: a regex whose group `group` names the speaker/voice in a file's name
    # (e.g. "^(?P<group>[^_]+)_"); a manifest's `group` column wins.
    group_pattern: str = ""
    label_column: str = "label"
    path_column: str = "path"
    group_column: str = "group"
    candidates: list[AudioFamily] = Field(
        default_factory=lambda: list(AUDIO_FAMILIES), min_length=1
    )
    primary_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    test_size: float = Field(0.2, gt=0.0, lt=0.5)
    validation_size: float = Field(0.15, gt=0.0, lt=0.5)
    # The CNN's training (defaults chosen on validation voices: docs/benchmarks.md).
    epochs: int = Field(40, ge=1)
    patience: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    # AdamW's decoupled weight decay.
    weight_decay: float = Field(1e-2, ge=0)
    # The learning rate over the epochs cap, stepped per batch: constant, cosine decay, or
    # one-cycle (warm-up for 30% of the steps, then cosine down).
    schedule: Literal["constant", "cosine", "onecycle"] = "onecycle"
    # The CNN's channels: width, 2 x width, 4 x width over its three conv blocks.
    width: int = Field(24, ge=4, le=128)
    # Seeded noise, gain, time shift and SpecAugment masks (``masks`` mel bands and as many
    # time spans) on the training clips only.
    augment: bool = True
    masks: int = Field(2, ge=0, le=8)
    # Mixup's Beta(mixup, mixup) blend of clip pairs (0: off), and label smoothing of the loss.
    mixup: float = Field(0.2, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    # Torch threads at training: same seed, data and threads give the same model bit for bit.
    threads: int = Field(1, ge=1)
    # Static int8 QDQ quantisation, served when it is faster and within this accuracy of fp32.
    quantize: bool = True
    quantize_tolerance: float = Field(0.01, ge=0.0, le=1.0)
    bootstrap_samples: int = Field(200, ge=10)


class TextConfig(_Section):
    """``text``: a service of the text classification kind (kinds/text/): a text column, the
    label (``data.target``) and optional tabular columns, in one CSV or Parquet file."""

    text_column: str
    # Numeric columns beside the text (scaled), and categorical ones (one-hot).
    numeric_columns: list[str] = []
    categorical_columns: list[str] = []
    # TF-IDF of word 1..word_ngrams-grams and char_ngrams[0]..[1] char-grams (within words).
    word_ngrams: int = Field(2, ge=1, le=3)
    char_ngrams: tuple[int, int] = (2, 5)
    max_features: int = Field(50_000, ge=100)
    min_df: int = Field(2, ge=1)
    # Inverse regularisation strengths tried on the validation split (logistic regression).
    c_values: list[float] = Field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0], min_length=1)
    # Balanced: on the fine-food reviews (35% of one class) it raised validation accuracy from
    # 0.788 to 0.815 (docs/benchmarks.md, issue 16).
    class_weight: Literal["none", "balanced"] = "balanced"
    # Serve the chosen settings refitted on every labelled row (train + validation + test),
    # after the evaluated model (train + validation) has been judged on the test rows; the
    # bundle keeps both, and the gate compares evaluated models only (kinds/text/train.py).
    refit_on_all_rows: bool = True
    max_chars: int = Field(20_000, ge=1)
    primary_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    test_size: float = Field(0.2, gt=0.0, lt=0.5)
    validation_size: float = Field(0.15, gt=0.0, lt=0.5)
    bootstrap_samples: int = Field(200, ge=10)


class PathsConfig(_Section):
    artifacts: str = "artifacts"
    reports: str = "reports"
    model_card: str = "MODEL_CARD.md"


class TrackingConfig(_Section):
    uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str
    registered_model: str


class RolloutSettings(_Section):
    """``serving.rollout``: champion/challenger (see serving/rollout.py)."""

    mode: RolloutMode = "off"
    # A registry alias, a registered version number, or a bundle folder (relative to the root).
    challenger: str = CHALLENGER
    split_share: float = Field(0.1, ge=0.0, le=1.0)
    # "header:<name>" or "feature:<name>"; empty: the request id (then nothing is sticky).
    sticky_key: str = ""
    max_failures: int = Field(5, ge=1)
    # Shadow mode: requests waiting for the challenger; more are not shadow-scored.
    shadow_queue: int = Field(1000, ge=1)
    # A SQLite file (relative to the root) or a PostgreSQL URL that several pods share
    # ($MLSERVICE_ROLLOUT_LOG wins).
    log_path: str = "rollout/predictions.sqlite"
    # What `compare` needs before it calls a difference significant.
    min_samples: int = Field(200, ge=1)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)

    @field_validator("mode", mode="before")
    @classmethod
    def _unquoted_off(cls, value: Any) -> Any:
        # YAML reads a bare `off` as False.
        return "off" if value is False else value

    @field_validator("sticky_key")
    @classmethod
    def _known_key_kind(cls, value: str) -> str:
        kind, _, name = value.partition(":")
        if value and (kind not in ("header", "feature") or not name):
            raise ValueError(f"{value!r} must be 'header:<name>' or 'feature:<name>' (or empty)")
        return value

    @classmethod
    def of(cls, config: Config) -> RolloutSettings:
        return config.serving.rollout


class TimeoutsConfig(_Section):
    """``serving.timeouts``: how long a client may take, in seconds, before it is closed.

    A slow or silent client holds a connection (and its buffered body) for no one else;
    ``serve`` closes it after these times (see serving/connections.py and serving/guards.py).
    """

    # An idle connection between two requests.
    keep_alive_s: float = Field(5, gt=0)
    # From a connection's opening, or a new request's first byte, to the end of its headers.
    header_read_s: float = Field(10, gt=0)
    # From the end of the headers to the end of the body; then 408.
    body_read_s: float = Field(30, gt=0)


# Paths that may answer without the API key when auth is enabled (never /predict, /metadata or
# /feedback): the probes by default; /metrics for a Prometheus without the key; the
# documentation, which shows every feature's categories and training range, like /metadata.
PublicPath = Literal["/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json"]


class ServingConfig(_Section):
    max_batch_size: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1)
    latency_budget_ms: int = Field(0, ge=0)
    auth_enabled: bool = False
    api_key_env: str = "MLSERVICE_API_KEY"
    public_paths: list[PublicPath] = ["/health", "/ready"]
    timeouts: TimeoutsConfig = TimeoutsConfig()
    # Open connections per worker process: beyond it requests are answered 503. Buffered
    # bodies take up to max_connections x max_body_bytes of memory.
    max_connections: int = Field(256, ge=1)
    # Connections the operating system queues before the server accepts them.
    backlog: int = Field(2048, ge=1)
    # uvicorn's line per request on stderr. Off by default: formatting and writing it cost
    # ~12 us of a ~150 us request (benchmarks/recommendation_serving.py), and /metrics already
    # counts and times every request by route and status, each answer carrying its
    # X-Request-ID; errors are logged either way.
    access_log: bool = False
    # POST /feedback: predictions (records) kept for joining, the live performance window and
    # the outcomes needed before model_live_performance is exported.
    feedback_log_size: int = Field(100_000, ge=1)
    feedback_window: int = Field(1000, ge=1)
    feedback_min_rows: int = Field(30, ge=1)
    # The SQLite file of the feedback store (predictions with their inputs and time, and the
    # outcomes fed back), which `investigate --since` reads, or a PostgreSQL URL that several
    # pods share; empty: one process keeps it in memory ($MLSERVICE_FEEDBACK_DB wins, so a
    # password need not be written here; `serve --workers N` makes a temporary file).
    feedback_db: str = ""
    rollout: RolloutSettings = RolloutSettings()


class DriftConfig(_Section):
    numeric_threshold: float = Field(0.1, gt=0)
    categorical_threshold: float = Field(0.1, gt=0)
    psi_threshold: float = Field(0.2, gt=0)
    window: int = Field(1000, ge=1)
    min_rows: int = Field(50, ge=1)


class InvestigateConfig(_Section):
    """``investigate``: how ``python -m <package> investigate`` explains a degraded model
    (monitoring/investigation.py).

    Every alarm of the report is a statistical test; all of them together raise a false
    alarm with probability at most ``alpha`` (Bonferroni across the report's sections, Holm
    within each), and an alarm also needs an effect at least the size of its floor.
    """

    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    # Time windows of the timelines (fewer when the data has too few rows for them).
    windows: int = Field(10, ge=2, le=100)
    min_window_rows: int = Field(200, ge=20)
    # A window's primary metric must be worse than the test split's by this share of it.
    min_relative_drop: float = Field(0.02, ge=0.0)
    # A slice's (or the data's) mean per-row loss must rise by this much (log loss in nats
    # for classifiers, absolute error as a share of the test split's for regression).
    min_loss_increase: float = Field(0.05, ge=0.0)
    # Data quality: a share of unseen categories, out-of-range values or newly missing values
    # must rise by this much (absolute).
    min_quality_share: float = Field(0.01, ge=0.0)


class FairnessConfig(_Section):
    """``fairness``: sensitive attributes (data columns, model features or not) whose groups
    get per-group metrics with intervals, and demographic-parity and equalised-odds
    differences, in ``train``'s evaluation, the model card and ``investigate``."""

    sensitive_attributes: list[str] = []


class EngineConfig(_Section):
    """Where batch scoring (``score``, batch.py) and tuning trials (tuning.py) run."""

    # local: in this process; dask: on a Dask cluster (scheduler below, else a local one).
    name: Literal["local", "dask"] = "local"
    # tcp://host:8786 of a running scheduler; $MLSERVICE_DASK_SCHEDULER wins.
    scheduler: str = ""
    # Worker processes of the local cluster started when no scheduler is named.
    workers: int = Field(2, ge=1)


class Config(_Section):
    root: Path
    project: ProjectConfig
    # The problem kind (a plug-in of the runtime, see kinds/), checked against the kinds there
    # are when the service's kind is looked up.
    kind: str = "tabular"
    task: Task
    seed: int
    data: DataConfig
    features: list[FeatureSpec] = []
    # Derived columns computed from the features inside the pipeline (see transforms.py).
    transforms: TransformSpec = TransformSpec()
    # split, model and metric are the tabular kind's and required there (see _kind_sections);
    # the defaults only stand in for a kind that has sections of its own.
    split: SplitConfig = SplitConfig(strategy="random", test_size=0.2, validation_size=0.2)
    model: ModelConfig = ModelConfig(family="auto")
    tuning: TuningConfig = TuningConfig()
    metric: MetricConfig = MetricConfig(primary="")
    recommendation: RecommendationConfig | None = None
    forecasting: ForecastingConfig | None = None
    audio: AudioConfig | None = None
    text: TextConfig | None = None
    promotion: PromotionConfig = PromotionConfig()
    paths: PathsConfig = PathsConfig()
    tracking: TrackingConfig
    serving: ServingConfig = ServingConfig()
    drift: DriftConfig = DriftConfig()
    investigate: InvestigateConfig = InvestigateConfig()
    fairness: FairnessConfig = FairnessConfig()
    engine: EngineConfig = EngineConfig()

    @model_validator(mode="after")
    def _kind_sections(self) -> Config:
        own = {
            "recommendation": ("recommendation", "user_column, item_column, ..."),
            "audio": ("audio", "sample_rate, clip_seconds, ..."),
            "text": ("text", "text_column, ..."),
        }
        if self.kind in own:
            section, example = own[self.kind]
            if getattr(self, section) is None:
                raise ValueError(f"a {self.kind} service needs a `{section}` section ({example})")
            if self.kind == "text" and not self.data.target:
                raise ValueError("the text kind needs data.target (the label column)")
        elif self.task == "recommendation":
            if self.recommendation is None:
                raise ValueError(
                    "a recommendation service needs a `recommendation` section "
                    "(user_column, item_column, ...)"
                )
        elif self.kind == "forecasting" or self.task == "forecasting":
            if self.forecasting is None or not self.data.target:
                raise ValueError(
                    "a forecasting service needs data.target and a `forecasting` section "
                    "(time_column, horizon, ...)"
                )
        else:
            missing = [
                name for name in ("split", "model", "metric") if name not in self.model_fields_set
            ]
            if not self.data.target:
                missing.append("data.target")
            if missing:
                raise ValueError(f"the {self.kind} kind needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _derived_target(self) -> Config:
        if self.data.positive_when and not (
            self.task == "binary_classification" or self.kind == "text"
        ):
            raise ValueError(
                f"data.positive_when ({self.data.positive_when!r}) makes a yes/no target: set "
                "task: binary_classification, or remove positive_when to predict the column as "
                "it is"
            )
        return self

    @property
    def is_classification(self) -> bool:
        return self.task not in ("regression", "recommendation", "forecasting")

    def with_family(self, family: str) -> Config:
        """This config with ``model.family`` set (the choice of ``family: auto``)."""
        return self.model_copy(update={"model": self.model.model_copy(update={"family": family})})

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
