"""A *plan* is every problem-specific answer to the template's questions, with the reasons.

`Plan` mirrors the problem-specific questions of ``copier.yml`` field by field (names, choices,
defaults and validators; ``tests/test_plan_matches_copier.py`` keeps them in step). Planners fill
it, the CLI shows it, :meth:`Plan.to_answers` hands it to Copier, and its JSON schema is the
contract an LLM planner must satisfy.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator

from mlgen import transforms
from mlgen.errors import PlanError, quoted

Kind = Literal["tabular", "recommendation", "forecasting", "audio", "text"]
Task = Literal["binary_classification", "multiclass_classification", "regression"]
FeatureType = Literal["numeric", "categorical", "boolean", "datetime", "text"]
Encoding = Literal["auto", "scale", "passthrough", "onehot", "ordinal", "target"]
SplitStrategy = Literal["stratified", "random", "time", "group"]
ModelFamily = Literal[
    "linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm", "auto"
]
ClassWeight = Literal["none", "balanced"]
RecommendationSplit = Literal["time", "user_last", "random"]
# The runtime's recommender families (mlgen_runtime.config.RECOMMENDERS), in its order.
Recommender = Literal[
    "popularity", "recent_popularity", "item_knn", "ease", "als", "bpr", "content"
]
RECOMMENDERS: tuple[str, ...] = typing.get_args(Recommender)
# The runtime's forecasting families (mlgen_runtime.config.FORECASTERS), in its order.
Forecaster = Literal["seasonal_naive", "ets", "lightgbm"]
FORECASTERS: tuple[str, ...] = typing.get_args(Forecaster)
# The runtime's audio families (mlgen_runtime.config.AUDIO_FAMILIES), in its order.
AudioModel = Literal["cnn", "mfcc_logistic"]
AUDIO_MODELS: tuple[str, ...] = typing.get_args(AudioModel)

METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary_classification": (
        "roc_auc",
        "pr_auc",
        "f1",
        "log_loss",
        "accuracy",
        "balanced_accuracy",
    ),
    "multiclass_classification": (
        "f1_macro",
        "accuracy",
        "balanced_accuracy",
        "log_loss",
        "roc_auc_ovr",
    ),
    "regression": ("rmse", "mae", "r2"),
    # The recommendation kind has no task question: its metrics are ranking metrics at top_k.
    "recommendation": ("ndcg", "recall", "map", "precision"),
    # Forecasting: point-forecast errors on the test windows (lower is better).
    "forecasting": ("mase", "smape", "rmse"),
    # Audio and text classification: on the test split, against their baselines.
    "audio": ("accuracy", "f1_macro"),
    "text": ("accuracy", "f1_macro"),
}
# Every metric of every task, in order: the one list the plan's field accepts.
Metric = Literal[tuple(dict.fromkeys(m for ms in METRICS_BY_TASK.values() for m in ms))]
DATA_SUFFIXES = (".csv", ".parquet", ".pq")
# Audio data: a folder of clips per class (no suffix) or a manifest CSV.
AUDIO_SAMPLE = "data/sample/manifest.csv"


class Feature(BaseModel):
    """One input column of the model and how it is encoded."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Column name, exactly as in the data header")
    type: FeatureType = Field(default="numeric", description="Semantic type of the column")
    encoding: Encoding = Field(
        default="auto",
        description="auto lets the service choose (scale numerics, one-hot small categoricals)",
    )


class Covariate(BaseModel):
    """A column that helps to forecast, and whether its future values are known."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Column name, exactly as in the data header")
    known_future: bool = Field(
        default=False,
        description="True when its values for the forecast period are known at forecast time "
        "(a calendar flag, a weather forecast, a planned price)",
    )


class ExcludedColumn(BaseModel):
    """A column deliberately kept out of the features, and why."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1, description="Column name")
    reason: str = Field(min_length=1, description="Why it must not be a feature (one sentence)")


class Plan(BaseModel):
    """The problem-specific answers to the template's questions, plus a reason for each."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    kind: Kind = Field(
        default="tabular",
        description="tabular: predict one column of a table (task, target, features, ...); "
        "recommendation: rank items for users from interactions (user_column, item_column, "
        "...); forecasting: the next values of time series (target, time_column, horizon, ...); "
        "audio: classify sound clips (data_path a folder of <label>/*.wav or a manifest CSV "
        "path,label[,group]; sample_rate, clip_seconds, ...); text: classify a text column "
        "(target the label, text_column, ...). Each kind answers only its own questions; the "
        "other kinds' fields are ignored",
    )
    task: Task = Field(
        default="binary_classification", description="What kind of prediction (tabular)"
    )
    data_path: str = Field(
        default="data/sample.csv",
        min_length=1,
        description="Training data (CSV or Parquet), absolute or relative to the service folder",
    )
    target: str = Field(
        default="target", min_length=1,
        description="Column to predict (text: the label column; its default is then label)",
    )
    positive_when: str = Field(
        default="",
        description="Tabular binary only: a yes/no question asked of a numeric target column, "
        "an operator and a number (\"> 0\": yes where the target is above 0, no elsewhere), "
        "e.g. for 'predict whether a person had an affair' over a count of affairs; '' when "
        "the target column already holds the two classes",
    )
    id_column: str = Field(default="", description="Row-id column, never a feature ('' for none)")
    time_column: str = Field(
        default="", description="Timestamp column; set it for a time-ordered split ('' for none)"
    )
    group_column: str = Field(
        default="", description="Group column whose rows must stay in one split ('' for none)"
    )
    features: list[Feature] = Field(
        default_factory=list,
        description="Model inputs with type and encoding; empty means infer at training time",
    )
    feature_transforms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Derived columns computed from the features inside the model pipeline "
        "(the runtime's feature-transform spec: kind, name, reason and the kind's fields); "
        "every column a transform reads must be listed in features",
    )
    user_column: str = Field(
        default="user_id",
        min_length=1,
        description="Recommendation: who interacted (a user, a session, one basket such as a "
        "patch sheet or an order); items are recommended for its values",
    )
    item_column: str = Field(
        default="item_id", min_length=1, description="Recommendation: the item interacted with"
    )
    weight_column: str = Field(
        default="",
        description="Recommendation: strength of an interaction (rating, count, duration); "
        "'' means every row counts 1",
    )
    min_weight: float | None = Field(
        default=None,
        description="Recommendation: interactions weighing less are not positives (needs "
        "weight_column); null means every interaction counts",
    )
    item_columns: list[str] = Field(
        default_factory=list,
        description="Recommendation: item metadata columns (title, tags, category; one value per "
        "item) for filters and for content similarity of items no one has used yet",
    )
    top_k: int = Field(
        default=10, ge=1, le=100, description="Recommendation: items per request and metric k"
    )
    recommendation_split: RecommendationSplit | None = Field(
        default=None,
        description="Recommendation: time (a global time cut; needs time_column), user_last "
        "(each user's latest interactions, by time_column else file order; for baskets made at "
        "one time it holds out some items of each), random; null picks user_last when there is a "
        "time_column, else random",
    )
    recommenders: list[Recommender] | None = Field(
        default=None,
        description="Recommendation: candidate model families, the best on validation wins; "
        "recent_popularity needs time_column, content needs item_columns; null picks every "
        "family the data allows",
    )
    time_budget_seconds: int = Field(
        default=60,
        ge=1,
        le=86400,
        description="Recommendation: seconds model selection and tuning may take together",
    )
    series_column: str = Field(
        default="",
        description="Forecasting: the column telling several series apart; '' for one series",
    )
    covariates: list[Covariate] = Field(
        default_factory=list,
        description="Forecasting: columns that help to forecast, each with known_future",
    )
    frequency: str = Field(
        default="",
        description="Forecasting: pandas frequency alias (30min, h, D, W, MS, QS); '' infers it",
    )
    horizon: int = Field(
        default=12, ge=1, le=10000, description="Forecasting: steps ahead a forecast covers"
    )
    season_length: int = Field(
        default=0, ge=0,
        description="Forecasting: steps per seasonal cycle; 0 derives it from the frequency",
    )
    gaps: Literal["error", "fill"] = Field(
        default="error", description="Forecasting: missing timestamps are an error, or filled"
    )
    duplicates: Literal["error", "mean", "sum", "last"] = Field(
        default="error", description="Forecasting: repeated timestamps are an error, or merged"
    )
    forecasters: list[Forecaster] = Field(
        default_factory=lambda: list(FORECASTERS),
        description="Forecasting: candidate families; the best in the backtests wins",
    )
    forecast_strategy: Literal["direct", "recursive"] = Field(
        default="direct", description="Forecasting: how LightGBM forecasts several steps"
    )
    backtest_windows: int = Field(
        default=3, ge=1, le=50, description="Forecasting: expanding-window backtests"
    )
    test_windows: int = Field(
        default=2, ge=1, le=50, description="Forecasting: test windows at the end of each series"
    )
    interval_level: float = Field(
        default=0.9, ge=0.5, le=0.99, description="Forecasting: nominal interval coverage"
    )
    sample_rate: int = Field(
        default=16000, ge=4000, le=96000,
        description="Audio: samples per second every clip is resampled to (16000 for speech)",
    )
    clip_seconds: float = Field(
        default=1.0, gt=0, le=30,
        description="Audio: seconds the model hears per clip (cropped around the centre or "
        "padded)",
    )
    max_clip_seconds: float = Field(
        default=10.0, le=600,
        description="Audio: longest clip accepted (skipped at training, 413 at the API); at "
        "least clip_seconds",
    )
    group_pattern: str = Field(
        default="",
        description="Audio, folder layout: a regular expression with a named group (?P<group>"
        "...) capturing the speaker in a file name, so a speaker stays in one split; '' for none",
    )
    audio_models: list[AudioModel] = Field(
        default_factory=lambda: list(AUDIO_MODELS),
        description="Audio: candidate families (cnn: small CNN on log-mel; mfcc_logistic: the "
        "baseline family); the best on validation wins",
    )
    epochs: int = Field(
        default=40, ge=1, le=1000,
        description="Audio: most CNN epochs (early stopping on validation usually ends sooner)",
    )
    text_column: str = Field(
        default="text", min_length=1, description="Text: the column holding the text to classify"
    )
    text_numeric_columns: list[str] = Field(
        default_factory=list, description="Text: numeric columns used beside the text"
    )
    text_categorical_columns: list[str] = Field(
        default_factory=list, description="Text: categorical columns used beside the text"
    )
    split_strategy: SplitStrategy | None = Field(
        default=None,
        description="time needs time_column, group needs group_column, stratified needs a "
        "classification task; null picks the template's default for the task",
    )
    test_size: float = Field(default=0.2, ge=0.05, le=0.5, description="Share held out for test")
    validation_size: float = Field(
        default=0.2, ge=0.05, le=0.5, description="Share of the rest used for validation"
    )
    model_family: ModelFamily = Field(
        default="hist_gradient_boosting",
        description="linear means logistic regression (classification) or ridge (regression); "
        "auto cross-validates each family on the training split and keeps the best",
    )
    primary_metric: Metric | None = Field(
        default=None,
        description="Selects and promotes models; must fit the task (see METRICS_BY_TASK), for "
        "the recommendation kind one of ndcg, recall, map, precision; null picks the "
        "template's default",
    )
    class_weight: ClassWeight = Field(
        default="none", description="balanced reweights rare classes (classification only)"
    )
    seed: int = Field(default=42, description="The one seed for splits, models and tuning")
    tuning_trials: int = Field(
        default=0,
        ge=0,
        le=500,
        description="Optuna trials (tabular) or seeded search trials per recommender family "
        "(0 = the family's sensible defaults)",
    )
    tuning_time_budget_seconds: int = Field(
        default=0,
        ge=0,
        le=86400,
        description="Seconds for model selection, tuning and the final fit together "
        "(0 = no budget: the trials alone bound tuning)",
    )
    latency_budget_ms: int = Field(
        default=0, ge=0, description="Target p50 latency of /predict in ms (0 = none)"
    )
    max_batch_size: int = Field(
        default=1000, ge=1, le=100000, description="Largest batch /predict/batch accepts"
    )
    drift_numeric_threshold: float = Field(
        default=0.1, gt=0, description="Alert above this normalised Wasserstein distance"
    )
    drift_categorical_threshold: float = Field(
        default=0.05, gt=0, description="Alert above this Jensen-Shannon distance"
    )
    drift_window: int = Field(default=1000, ge=50, description="Requests kept for online drift")
    excluded: list[ExcludedColumn] = Field(
        default_factory=list, description="Columns kept out of the features, each with a reason"
    )
    rationale: dict[str, str] = Field(
        default_factory=dict, description="Plan field name -> one sentence saying why"
    )

    @computed_field(description="Names of the excluded columns (the Copier answer)")
    @property
    def exclude_columns(self) -> list[str]:
        return [item.column for item in self.excluded]

    @model_validator(mode="before")
    @classmethod
    def _accept_exclude_columns(cls, data: Any) -> Any:
        # Answers files and dumped plans carry the plain list: fold it into `excluded` so a
        # dumped plan validates again and Copier answers read back into a Plan.
        if isinstance(data, dict) and "exclude_columns" in data:
            data = dict(data)
            names = data.pop("exclude_columns") or []
            excluded = list(data.get("excluded") or [])
            known = {item["column"] if isinstance(item, dict) else item.column for item in excluded}
            excluded += [
                {"column": str(name), "reason": "listed in exclude_columns"}
                for name in names
                if str(name) not in known
            ]
            data["excluded"] = excluded
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        # Fill the defaults Copier computes from other answers, the same way copier.yml does.
        if self.kind == "audio" and "data_path" not in self.model_fields_set:
            self.data_path = AUDIO_SAMPLE
        if self.kind == "text" and "target" not in self.model_fields_set:
            self.target = "label"
        if self.split_strategy is None:
            self.split_strategy = _default_split(self)
        if self.primary_metric is None:
            self.primary_metric = METRICS_BY_TASK[self.problem][0]
        if self.recommendation_split is None:
            # Each user's latest: a global cut tests only users active on both sides of it
            # (23 of MovieLens' 671), too few to tell a model from popularity.
            self.recommendation_split = "user_last" if self.time_column else "random"
        if self.recommenders is None:
            self.recommenders = [
                family
                for family in typing.get_args(Recommender)
                if (family != "recent_popularity" or self.time_column)
                and (family != "content" or self.item_columns)
            ]
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def problem(self) -> str:
        """The key of METRICS_BY_TASK: the task, or the kind when it is not tabular."""
        return self.task if self.kind == "tabular" else self.kind

    def asks(self, name: str) -> bool:
        """Whether copier.yml asks question ``name`` for this plan (its ``when``)."""
        if name in NOT_LABELLED:
            return self.kind not in ("audio", "text")
        if name in WITH_TARGET:
            return self.kind in ("tabular", "forecasting", "text")
        if name == "positive_when":
            return self.kind == "tabular" and self.task == "binary_classification"
        if name == "class_weight":
            return self.kind == "text" or (self.kind == "tabular" and self.task != "regression")
        if name in TABULAR_ONLY:
            return self.kind == "tabular"
        if name in RECOMMENDATION_ONLY:
            return self.kind == "recommendation"
        if name in FORECASTING_ONLY:
            return self.kind == "forecasting"
        if name in AUDIO_ONLY:
            return self.kind == "audio"
        if name in TEXT_ONLY:
            return self.kind == "text"
        return True

    @classmethod
    def build(cls, data: dict[str, Any]) -> Plan:
        """Validate ``data`` into a Plan, turning pydantic's report into a :class:`PlanError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                # Field names may come from a model: an unknown one is quoted, escaped.
                where = ".".join(
                    str(part) if str(part) in cls.model_fields or not isinstance(part, str)
                    else quoted(part)
                    for part in err["loc"]
                ) or "plan"
                lines.append(f"  {where}: {err['msg'].removeprefix('Value error, ')}")
            raise PlanError("The plan is not valid:\n" + "\n".join(lines)) from exc

    def check_columns(self, columns: Sequence[str]) -> None:
        """Refuse a plan naming columns the data does not have (e.g. from an LLM or a typo),
        or adding transform columns the data already has."""
        if self.kind == "recommendation":
            named = [self.user_column, self.item_column, self.time_column, self.weight_column]
            named += self.item_columns
        elif self.kind == "forecasting":
            named = [self.target, self.time_column, self.series_column]
            named += [c.name for c in self.covariates]
        elif self.kind == "audio":
            # A folder of clips has no columns; a manifest's are read by the runtime.
            return
        elif self.kind == "text":
            named = [self.target, self.text_column, *self.text_numeric_columns,
                     *self.text_categorical_columns]
        else:
            named = [self.target, self.id_column, self.time_column, self.group_column]
            named += [f.name for f in self.features] + self.exclude_columns
            named += [column for step in self.feature_transforms
                      for column, _ in transforms.inputs(step)]
        unknown = [name for name in dict.fromkeys(named) if name and name not in columns]
        problems = []
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, list(columns), n=2, cutoff=0.6)
                hints.append(
                    quoted(name)
                    + (f" (did you mean {' or '.join(close)}?)" if close else "")
                )
            problems.append(f"The plan names columns the data does not have: {', '.join(hints)}.")
        existing = [name for step in self.feature_transforms
                    for name in transforms.outputs(step) if name in columns]
        if existing:
            problems.append(
                "Feature transforms would add columns the data already has: "
                + ", ".join(map(quoted, existing)) + ". Rename them."
            )
        if problems:
            raise PlanError(" ".join(problems))

    def to_answers(
        self,
        project_name: str,
        package_name: str | None = None,
        description: str | None = None,
        author: str | None = None,
    ) -> dict[str, Any]:
        """The answers Copier needs (``run_copy(data=...)``) to render this plan."""
        answers: dict[str, Any] = {"project_name": project_name}
        optional = {"package_name": package_name, "description": description, "author": author}
        answers.update({key: value for key, value in optional.items() if value})
        dumped = self.model_dump(mode="json", exclude={"rationale", "excluded"})
        # Only the questions Copier asks for this plan (class_weight for classifiers, each
        # kind's own): it does not store the others, and it validates whatever it is given.
        answers.update({name: value for name, value in dumped.items() if self.asks(name)})
        return answers

    def rows(self) -> list[tuple[str, str, str]]:
        """(field, value, why) for every decision, in question order, for tables."""
        rows = []
        for name in [*_ANSWER_FIELDS, "exclude_columns"]:
            if not self.asks(name):
                continue
            value = getattr(self, name)
            rows.append((name, _show(value), self.rationale.get(name, "")))
        return rows

    def to_markdown(self) -> str:
        """The plan as Markdown: decisions with reasons, then feature transforms and excluded
        columns."""
        lines = ["| setting | value | why |", "| --- | --- | --- |"]
        lines += [f"| {f} | {_md(v)} | {_md(why)} |" for f, v, why in self.rows()]
        if self.feature_transforms:
            lines += [
                "",
                "### Feature transforms",
                "",
                "Columns computed from the features inside the model pipeline, fitted on the "
                "training split (`transforms` in configs/config.yaml).",
                "",
                "| adds | kind | from | why |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| {_md(', '.join(transforms.outputs(step)))} | {_md(step['kind'])} | "
                f"{_md(transforms.describe(step))} | {_md(step['reason'])} |"
                for step in self.feature_transforms
            ]
        if self.excluded:
            lines += ["", "### Excluded columns", "", "| column | reason |", "| --- | --- |"]
            lines += [f"| {_md(item.column)} | {_md(item.reason)} |" for item in self.excluded]
        return "\n".join(lines) + "\n"


_ANSWER_FIELDS = [name for name in Plan.model_fields if name not in ("excluded", "rationale")]
PLAN_FIELDS = frozenset([*_ANSWER_FIELDS, "exclude_columns"])
# A derived yes/no target: an operator and a number (the runtime's targets.RULE; the generator
# does not import the runtime).
POSITIVE_WHEN = re.compile(
    r"^\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def holds(values: Any, rule: str) -> Any:
    """Where ``values`` (numbers; NaN: False) answer ``positive_when: rule`` yes, elementwise
    (the runtime's targets.TargetRule.holds); ``rule`` must match POSITIVE_WHEN."""
    import numpy as np

    match = POSITIVE_WHEN.match(rule)
    if match is None:
        raise PlanError(f'positive_when "{rule}" is not a comparison with a number')
    numbers, limit = np.asarray(values, dtype=float), float(match.group(2))
    return {
        ">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
        "==": np.equal, "!=": np.not_equal,
    }[match.group(1)](numbers, limit)


# Questions of one kind only (copier.yml's `when`); every other question is asked for both.
TABULAR_ONLY = frozenset({
    "task", "positive_when", "id_column", "group_column", "features", "feature_transforms",
    "exclude_columns", "split_strategy", "model_family", "class_weight",
    "drift_numeric_threshold",
})
RECOMMENDATION_ONLY = frozenset({
    "user_column", "item_column", "weight_column", "min_weight", "item_columns", "top_k",
    "recommendation_split", "recommenders", "time_budget_seconds",
})
FORECASTING_ONLY = frozenset({
    "series_column", "covariates", "frequency", "horizon", "season_length", "gaps",
    "duplicates", "forecasters", "forecast_strategy", "backtest_windows", "test_windows",
    "interval_level",
})
AUDIO_ONLY = frozenset({
    "sample_rate", "clip_seconds", "max_clip_seconds", "group_pattern", "audio_models", "epochs",
})
TEXT_ONLY = frozenset({"text_column", "text_numeric_columns", "text_categorical_columns"})
# Questions of the kinds with a table of rows over time (none of audio's and text's).
NOT_LABELLED = frozenset({"time_column"})
# The column to predict: the tabular kind's target, the forecasting kind's, the text kind's label.
WITH_TARGET = frozenset({"target"})


def _default_split(plan: Plan) -> str:
    if plan.time_column:
        return "time"
    if plan.group_column:
        return "group"
    return "random" if plan.task == "regression" else "stratified"


def _problems(plan: Plan) -> list[str]:
    problems = []
    if plan.kind == "audio":
        suffix = PurePath(plan.data_path).suffix.lower()
        if suffix and suffix != ".csv":
            problems.append("audio data is a folder of clips per class or a manifest .csv "
                            f'(got "{plan.data_path}")')
    elif not plan.data_path.lower().endswith(DATA_SUFFIXES):
        problems.append(f'data_path must end in .csv, .parquet or .pq (got "{plan.data_path}")')
    if plan.primary_metric not in METRICS_BY_TASK[plan.problem]:
        allowed = ", ".join(METRICS_BY_TASK[plan.problem])
        problems.append(
            f'"{plan.primary_metric}" does not fit {plan.problem}: choose one of {allowed}'
        )
    unknown = sorted(set(plan.rationale) - PLAN_FIELDS)
    if unknown:
        problems.append(f"rationale for unknown fields: {', '.join(unknown)}")
    if plan.kind == "recommendation":
        return problems + _recommendation_problems(plan)
    if plan.kind == "forecasting":
        return problems + _forecasting_problems(plan)
    if plan.kind in ("audio", "text"):
        return problems + _labelled_problems(plan)
    if plan.split_strategy == "time" and not plan.time_column:
        problems.append("a time split needs time_column")
    if plan.split_strategy == "group" and not plan.group_column:
        problems.append("a grouped split needs group_column")
    if plan.split_strategy == "stratified" and plan.task == "regression":
        problems.append("a stratified split needs a classification task: use random")
    if plan.positive_when and not POSITIVE_WHEN.match(plan.positive_when):
        problems.append(
            f'positive_when "{plan.positive_when}" is not a comparison with a number: write an '
            'operator (>, >=, <, <=, == or !=) and a number, e.g. "> 0"'
        )
    if plan.positive_when and plan.task != "binary_classification":
        problems.append("positive_when makes a yes/no target: the task is binary_classification")
    if plan.class_weight == "balanced" and plan.task == "regression":
        problems.append("class_weight balanced only applies to classification: use none")
    names = [f.name for f in plan.features]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        problems.append(f"features listed twice: {', '.join(duplicated)}")
    roles = {
        "id_column": plan.id_column,
        "time_column": plan.time_column,
        "group_column": plan.group_column,
    }
    clashes = [role for role, column in roles.items() if column == plan.target]
    clashes += ["features"] if plan.target in names else []
    clashes += ["exclude_columns"] if plan.target in plan.exclude_columns else []
    if clashes:
        problems.append(f'the target "{plan.target}" cannot also be in {", ".join(clashes)}')
    in_both = sorted(set(names) & set(plan.exclude_columns))
    if in_both:
        problems.append(f"columns both used and excluded: {', '.join(in_both)}")
    role_features = [f"{role} {column}" for role, column in roles.items() if column in names]
    if role_features:
        problems.append(f"{', '.join(role_features)} cannot also be a feature")
    shape = transforms.schema_problems(plan.feature_transforms)
    problems += shape or transforms.plan_problems(
        plan.feature_transforms, {f.name: f.type for f in plan.features}
    )
    return problems


def _recommendation_problems(plan: Plan) -> list[str]:
    """copier.yml's validators of the recommendation questions, in the same words."""
    problems = []
    if plan.user_column == plan.time_column:
        problems.append(f'the user column "{plan.user_column}" cannot also be the time column')
    if plan.item_column in (plan.user_column, plan.time_column):
        problems.append(
            f'the item column "{plan.item_column}" cannot also be the user or time column'
        )
    if plan.weight_column and plan.weight_column in (
        plan.user_column, plan.item_column, plan.time_column
    ):
        problems.append(
            f'the weight column "{plan.weight_column}" cannot also be the user, item or time column'
        )
    if plan.min_weight is not None and not plan.weight_column:
        problems.append("min_weight needs weight_column: the weights it compares against")
    roles = [plan.user_column, plan.item_column, plan.weight_column, plan.time_column]
    clashes = [column for column in plan.item_columns if column in roles]
    if clashes:
        problems.append(
            f"{', '.join(clashes)}: the user, item, weight or time column cannot also be item "
            "metadata"
        )
    if plan.recommendation_split == "time" and not plan.time_column:
        problems.append("a time split needs time_column")
    families = plan.recommenders or []
    if not families:
        problems.append("recommenders must list at least one model family")
    if "recent_popularity" in families and not plan.time_column:
        problems.append("recent_popularity needs time_column")
    if "content" in families and not plan.item_columns:
        problems.append("content needs item_columns (the metadata it compares)")
    for name in ("test_size", "validation_size"):
        if getattr(plan, name) >= 0.5:
            problems.append(f"{name} must be below 0.5 for a recommendation service")
    return problems


def _forecasting_problems(plan: Plan) -> list[str]:
    """copier.yml's validators of the forecasting questions, in the same words."""
    problems = []
    if not plan.target.strip():
        problems.append("The target column name cannot be empty")
    if not plan.time_column.strip():
        problems.append("A forecasting service needs time_column: the time of each value")
    if plan.series_column and plan.series_column in (plan.target, plan.time_column):
        problems.append("The series column cannot also be the target or the time column")
    roles = [plan.target, plan.time_column, plan.series_column]
    clashes = [c.name for c in plan.covariates if c.name in roles]
    if clashes:
        problems.append(
            f"{', '.join(clashes)}: the target, time or series column cannot also be a covariate"
        )
    if not plan.forecasters:
        problems.append("forecasters must be a non-empty YAML list of model families")
    return problems


def _labelled_problems(plan: Plan) -> list[str]:
    """copier.yml's validators of the audio and text questions, in the same words."""
    problems = [f"{name} must be below 0.5 for a {plan.kind} service"
                for name in ("test_size", "validation_size") if getattr(plan, name) >= 0.5]
    if plan.kind == "audio":
        if plan.max_clip_seconds < plan.clip_seconds:
            problems.append(f"max_clip_seconds must be between clip_seconds ({plan.clip_seconds}) "
                            "and 600")
        if plan.group_pattern and "(?P<group>" not in plan.group_pattern:
            problems.append("group_pattern needs a named group (?P<group>...) that captures the "
                            "speaker")
        if not plan.audio_models:
            problems.append("audio_models must be a non-empty YAML list of model families")
        return problems
    if plan.text_column == plan.target:
        problems.append(f'The text column cannot also be the label column ("{plan.target}")')
    roles = [plan.target, plan.text_column]
    clashes = [c for c in plan.text_numeric_columns if c in roles]
    clashes += [c for c in plan.text_categorical_columns
                if c in roles + plan.text_numeric_columns]
    if clashes:
        problems.append(f"{', '.join(clashes)}: the label, the text or a numeric column cannot "
                        "also be another role")
    return problems


def _show(value: Any) -> str:
    if isinstance(value, list):
        if not value:
            return "[]"
        return ", ".join(_item(v) for v in value)
    if value == "":
        return "-"
    return str(value)


def _item(value: Any) -> str:
    if isinstance(value, Feature):
        return f"{value.name} ({value.type})"
    if isinstance(value, Covariate):
        return f"{value.name} ({'known future' if value.known_future else 'past only'})"
    if isinstance(value, dict) and {"kind", "name"} <= set(value):
        return f"{value['name']} ({value['kind']})"
    return str(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
