"""The heuristic planner: the decisions a careful ML engineer makes from a brief and a profile.

Offline and deterministic. Every decision records one sentence of rationale; anything the
brief's front matter states wins over the heuristics.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from mlgen import transforms
from mlgen.brief import IMBALANCE_WORDS, REGRESSION_WORDS, TIME_WORDS, Brief
from mlgen.errors import PlanError
from mlgen.leaks import named_leaks, stated_leaks
from mlgen.plan import POSITIVE_WHEN, RECOMMENDATION_ONLY, Plan, holds
from mlgen.planners.audio import hears, plan_audio
from mlgen.planners.forecasting import forecasts, plan_forecasting
from mlgen.planners.recommendation import plan_recommendation
from mlgen.planners.text import plan_text, reads
from mlgen.profile import ID_NAME, ColumnProfile, Profile, TargetProfile

# "predict whether ...", "estimate if ...": the brief asks a yes/no question.
YES_NO_QUESTION = re.compile(
    r"\b(?:predict|predicting|estimate|estimating|classify|flag|detect|tell)\s+(?:whether|if)\b"
    # "flag suburbs where the crime rate (crim) is above 1", "spot stays that last ..."
    r"|\b(?:flag|flags|flagging|detect|detecting|identify|spot|mark)\b[^.\n]{0,60}?"
    r"\b(?:where|when|whose|that|which|if|whether)\b",
    re.I,
)

RARE_POSITIVES = 0.10
LOW_LATENCY_MS = 5
SMALL_DATA = 2_000
LARGE_DATA = 100_000
# A non-negative amount this skewed spreads over orders of magnitude: a linear model fits its
# long tail to a few rows unless it sees the log. Trees split on ranks and need no log.
LOG_SKEW = 2.0
MIN_LOG_VALUES = 10
# Training time budgets (seconds) by row count: (rows below, budget).
TIME_BUDGETS = ((SMALL_DATA, 30), (20_000, 60), (LARGE_DATA, 120), (float("inf"), 300))
TIME_NAME = re.compile(r"date|time|timestamp|^(year|month|week|day|period|quarter)$", re.I)
GROUP_PHRASE = re.compile(r"\b(?:per|grouped by|group by|for each)\s+[`\"']?([\w .-]{1,64})", re.I)
DEFAULT_REASONS = {
    "id_column": "no column has a different value on every row",
    "time_column": "no date column, and the brief does not ask for a forecast",
    "group_column": "no repeated entity id, so rows are independent",
    "latency_budget_ms": "no latency stated in the brief",
    "max_batch_size": "the template's default",
    "feature_transforms": "no date features, and no heavy-tailed amounts a linear model would "
    "need on a log scale",
}


class HeuristicPlanner:
    """Rules of thumb over the profile, overridden by whatever the brief states."""

    name = "heuristic"

    def plan(self, brief: Brief, profile: Profile) -> Plan:
        if recommends(brief):
            return plan_recommendation(brief, profile)
        if forecasts(brief, profile):
            return plan_forecasting(brief, profile)
        if hears(brief, profile):
            return plan_audio(brief, profile)
        if reads(brief, profile):
            return plan_text(brief, profile)
        target = brief.find_target(profile.column_names, profile.labels)
        draft = _Draft(brief, profile, target)
        draft.decide()
        plan = Plan.build(draft.values | {"rationale": draft.why})
        plan.check_columns(profile.column_names)
        return plan


class _Draft:
    """Decisions in progress: ``values`` (Plan fields) and ``why`` (one sentence per field)."""

    def __init__(self, brief: Brief, profile: Profile, target: str) -> None:
        self.brief, self.profile, self.target = brief, profile, target
        self.target_profile: TargetProfile = profile.target(target)
        self.values: dict[str, Any] = {"target": target, "data_path": str(profile.source)}
        self.why: dict[str, str] = {}
        self.excluded: dict[str, str] = {}
        # Columns the brief says are only known after the prediction: never a role or feature.
        self.stated = stated_leaks(brief.prose, profile.column_names, target)

    def set(self, field: str, value: Any, why: str) -> None:
        self.values[field] = value
        self.why[field] = why

    def decide(self) -> None:
        self.why["target"] = (
            "named in the brief"
            if "target" in self.brief.front
            else "what the brief says to predict"
        )
        self.why["data_path"] = "the brief's data file, read in place (absolute path)"
        self._task()
        self._roles()
        self._exclusions()
        self._family()
        self._features()
        self._split()
        self._metric()
        self._tuning()
        self._serving_and_drift()
        self._apply_brief()
        self._transforms()
        for field, why in DEFAULT_REASONS.items():
            self.why.setdefault(field, why)
        self.values["excluded"] = [{"column": c, "reason": r} for c, r in self.excluded.items()]
        if self.excluded:
            why = "ids, constants, empty columns and leakage suspects"
            stated = [c for c in self.excluded if c in self.stated]
            late = [c for c in stated if self.stated[c].startswith("not known")]
            left_out = [c for c in stated if c not in late]
            if late:
                why += "; the brief says " + ", ".join(late) + " are not known at prediction time"
            if left_out:
                why += "; the brief says to leave out " + ", ".join(left_out)
            self.why["exclude_columns"] = why

    def _task(self) -> None:
        if self._yes_no_of_a_number():
            return
        kind = self.target_profile.kind
        stated = self.brief.task
        counts = self.target_profile.class_counts
        by_kind = {
            "binary": "binary_classification",
            "multiclass": "multiclass_classification",
            "regression": "regression",
        }
        if stated == "classification":
            if kind == "regression":
                raise PlanError(
                    f'The brief asks for classification but "{self.target}" is a continuous '
                    "number. Use `task: regression`, or choose a column holding classes."
                )
            self.set(
                "task",
                by_kind[kind],
                f"classification stated; the target has {len(counts)} classes",
            )
        elif stated:
            if stated != "regression" and kind == "regression":
                raise PlanError(
                    f'The brief says {stated} but "{self.target}" is a continuous number. '
                    "Use `task: regression`, or choose a column holding classes."
                )
            if stated == "regression" and not self._numeric(self.target):
                raise PlanError(
                    f'The brief says regression but "{self.target}" is not numeric. '
                    "Use `task: classification`."
                )
            if stated == "binary_classification" and len(counts) > 2:
                raise PlanError(
                    f'The brief says binary but "{self.target}" has {len(counts)} classes. '
                    "Use `task: multiclass`."
                )
            self.set("task", stated, "stated in the brief")
        elif (
            kind != "binary"
            and self._numeric(self.target)
            and YES_NO_QUESTION.search(self.brief.prose)
        ):
            # "Predict whether a person had affairs" over a count, with no comparison that
            # says where yes starts (_yes_no_of_a_number found none): neither a regression
            # nor a class per count is what was asked. Say how to ask it rather than plan
            # the wrong question.
            values = list(counts)
            what = (
                f"a number with {len(values)} values ({', '.join(map(str, values[:6]))}"
                + (" ..." if len(values) > 6 else "") + ")"
                if values else "a number"
            )
            raise PlanError(
                f'The brief asks whether something happens (a yes/no question), but '
                f'"{self.target}" is {what}, and the brief does not say which of its values '
                f'mean yes. Say it in the brief, e.g. "({self.target} > 0)", or add the '
                f'front-matter line `positive_when: "> 0"`; or state `task: regression` to '
                "predict the number."
            )
        elif (
            kind == "multiclass"
            and self._numeric(self.target)
            and self.brief.says(REGRESSION_WORDS)
        ):
            word = self.brief.says(REGRESSION_WORDS)
            self.set("task", "regression", f'a small-integer target and the brief says "{word}"')
        elif kind == "regression":
            self.set("task", "regression", f'"{self.target}" is a continuous number')
        else:
            self.set("task", by_kind[kind], f'"{self.target}" takes {len(counts)} values')

    def _yes_no_of_a_number(self) -> bool:
        """A yes/no question asked of a numeric target ("predict whether affairs > 0"): the
        task is binary, ``positive_when`` the comparison, and the class counts the derived
        ones (the metric and the class weights follow them). False when not asked."""
        front = self.brief.front
        stated = front.get("positive_when")
        if stated is not None and not str(stated).strip():
            return False
        numeric = self._numeric(self.target) and self.target_profile.kind != "binary"
        if stated is None:
            if (
                not numeric
                or self.brief.task not in (None, "classification", "binary_classification")
                or not YES_NO_QUESTION.search(self.brief.prose)
            ):
                return False
            rule = self.brief.asked_comparison(self.target)
            if rule is None:
                return False
            why = f'the brief asks whether {self.target} {rule}'
        else:
            rule, why = str(stated).strip(), "stated in the brief"
        match = POSITIVE_WHEN.match(rule)
        if match is None:
            raise PlanError(
                f'positive_when "{rule}" is not a comparison with a number: write an operator '
                '(>, >=, <, <=, == or !=) and a number, e.g. "> 0" (quoted in front matter: '
                'YAML reads an unquoted > as the start of a folded block).'
            )
        if not self._numeric(self.target):
            raise PlanError(
                f'positive_when "{rule}" compares "{self.target}" with a number, but the '
                "column is not numeric. Name a numeric column as the target, or remove "
                "positive_when."
            )
        counts = derived_classes(self.profile, self.target, rule)
        yes, rows = counts["yes"], counts["yes"] + counts["no"]
        if not yes or yes == rows:
            raise PlanError(one_answer(self.target, rule, counts))
        self.target_profile = TargetProfile(
            self.target, "binary", counts, self.target_profile.missing
        )
        self.set("task", "binary_classification", f"{why}: a yes/no question")
        self.set(
            "positive_when",
            f"{match.group(1)} {match.group(2)}",
            f"{why}; yes for {yes:,} of {rows:,} rows",
        )
        return True

    def _numeric(self, name: str) -> bool:
        return self.profile.column(name).kind in ("numeric", "boolean")

    def _candidates(self) -> list[ColumnProfile]:
        return [c for c in self.profile.columns if c.name != self.target]

    def _role_candidates(self) -> list[ColumnProfile]:
        return [c for c in self._candidates() if c.name not in self.stated]

    def _roles(self) -> None:
        front = self.brief.front
        ids = [c for c in self._role_candidates() if c.id_like]
        if "id_column" not in front and ids:
            chosen = next((c for c in ids if ID_NAME.search(c.name)), ids[0])
            self.set("id_column", chosen.name, "a different value on every row: the row id")
        for col in ids:
            if col.name != self.values.get("id_column"):
                self.excluded[col.name] = "a different value on every row: an identifier"
        if "time_column" not in front:
            self._time_column()
        if "group_column" not in front and not self.values.get("time_column"):
            self._group_column()

    def _time_column(self) -> None:
        usable = [c for c in self._role_candidates() if not c.constant and not c.mostly_missing]
        dates = [c for c in usable if c.kind == "datetime"]
        if dates:
            chosen = next((c for c in dates if TIME_NAME.search(c.name)), dates[0])
            self.set(
                "time_column",
                chosen.name,
                "holds dates: training on the past and "
                "testing on the future is how the model will be used",
            )
            return
        word = self.brief.says(TIME_WORDS)
        periods = [
            c for c in usable if c.kind == "numeric" and c.integer and TIME_NAME.search(c.name)
        ]
        if word and periods:
            self.set(
                "time_column",
                periods[0].name,
                f'the brief says "{word}" and this column orders the rows in time',
            )

    def _group_column(self) -> None:
        names = [c.name for c in self._role_candidates()]
        for match in GROUP_PHRASE.finditer(self.brief.prose):
            words = match.group(1).split()
            found = next(
                (
                    c
                    for size in range(len(words), 0, -1)
                    for c in [_find(" ".join(words[:size]), names)]
                    if c
                ),
                None,
            )
            # A group repeats: a column unique on every row ("one row per player") groups
            # nothing, and a group split over it would be a random split under another name.
            column = self.profile.column(found) if found else None
            if column and 1 < column.n_unique < self.profile.n_sampled and not column.id_like:
                self.set(
                    "group_column",
                    found,
                    "the brief predicts per group: rows of one group stay in one split",
                )
                return
        rows = self.profile.n_sampled
        for col in self._role_candidates():
            if ID_NAME.search(col.name) and not col.id_like and 10 <= col.n_unique <= rows / 2:
                self.set(
                    "group_column",
                    col.name,
                    "an id repeated across rows (an entity): "
                    "its rows stay in one split so the test set has unseen entities",
                )
                return

    def _exclusions(self) -> None:
        roles = {self.values.get(k) for k in ("id_column", "time_column", "group_column")}
        leaks = self.profile.leakage_suspects(
            self.target, self.values.get("time_column", ""), self.values.get("positive_when", "")
        )
        named = named_leaks(self.profile.column_names, self.target)
        rows = self.profile.n_sampled
        for col in self._candidates():
            if col.name in roles or col.name in self.excluded:
                continue
            if col.name in self.stated:
                self.excluded[col.name] = self.stated[col.name]
            elif col.mostly_missing:
                self.excluded[col.name] = f"{col.missing_rate:.0%} of values missing"
            elif col.constant:
                self.excluded[col.name] = "the same value on every row"
            elif col.name in leaks:
                self.excluded[col.name] = f"leakage suspect: {leaks[col.name]}"
            elif col.name in named:
                self.excluded[col.name] = f"leakage suspect: {named[col.name]}"
            elif col.kind == "categorical" and col.n_unique > max(50, 0.5 * rows):
                self.excluded[col.name] = f"{col.n_unique} distinct labels: nearly one per row"
            elif col.kind == "text":
                self.excluded[col.name] = "free text: the service's pipeline does not use it"
            elif col.notes:
                # The service reads the file with plain pandas, which leaves these as strings.
                self.excluded[col.name] = f"{col.notes[0]}: clean the file to use it as a number"

    def _feature_columns(self) -> list[ColumnProfile]:
        roles = {self.values.get(k) for k in ("id_column", "time_column", "group_column")}
        return [
            c for c in self._candidates() if c.name not in roles and c.name not in self.excluded
        ]

    def _family(self) -> None:
        named = self.brief.front.get("model_family")
        if named is not None:
            # Set now, not only by _apply_brief: the feature encodings and tuning follow it.
            self.set("model_family", named, "stated in the brief")
            return
        rows = self.profile.n_rows
        width = len(self._feature_columns())
        latency = int(self.brief.front.get("latency_budget_ms") or 0)
        if latency and latency <= LOW_LATENCY_MS:
            self.set(
                "model_family",
                "linear",
                f"a {latency} ms latency budget: the linear model is the cheapest to serve",
            )
        elif rows >= LARGE_DATA:
            self.set(
                "model_family", "lightgbm", f"{rows:,} rows: LightGBM trains fastest at this size"
            )
        else:
            self.set(
                "model_family",
                "auto",
                f"{rows:,} rows x {width} columns: which family wins (linear, boosted trees, "
                "forests) depends on the data, so cross-validation chooses",
            )

    def _features(self) -> None:
        linear = self.values["model_family"] == "linear"
        features = []
        for col in self._feature_columns():
            kind = col.kind  # profile kinds are the Plan's feature types
            if kind == "numeric":
                # auto: the runtime scales numbers for the linear candidate only.
                auto = self.values["model_family"] == "auto"
                encoding = "scale" if linear else "auto" if auto else "passthrough"
            elif kind == "categorical":
                encoding = "onehot" if col.cardinality == "low" else "target"
            else:
                encoding = "auto"
            features.append({"name": col.name, "type": kind, "encoding": encoding})
        numbers = "numbers scaled for the linear model" if linear else "numbers as-is for trees"
        why = f"{len(features)} columns: {numbers}, one-hot for few categories, target encoding"
        self.set("features", features, why + " for many")

    def _split(self) -> None:
        if self.values.get("time_column"):
            self.set("split_strategy", "time", f'ordered by "{self.values["time_column"]}"')
        elif self.values.get("group_column"):
            self.set("split_strategy", "group", f'grouped by "{self.values["group_column"]}"')
        elif self.values["task"] == "regression":
            self.set("split_strategy", "random", "regression without time order or groups")
        else:
            self.set("split_strategy", "stratified", "keeps class shares equal across splits")
        rows = self.profile.n_rows
        size, why = (0.1, f"{rows:,} rows: 10% is plenty") if rows > 200_000 else (0.2, "20%")
        self.set("test_size", size, why)
        self.set("validation_size", size, why)

    def _metric(self) -> None:
        task, target = self.values["task"], self.target_profile
        if task == "binary_classification":
            share = target.minority_share
            word = self.brief.says(IMBALANCE_WORDS)
            if share < RARE_POSITIVES or (word and share < 2 * RARE_POSITIVES):
                self.set(
                    "primary_metric",
                    "pr_auc",
                    f"rare positives ({share:.1%}): PR-AUC measures what ROC-AUC hides",
                )
                self.set(
                    "class_weight",
                    "none",
                    "PR-AUC ranks rows by probability: reweighting the "
                    f"{share:.1%} positives distorts the probabilities without ranking better",
                )
            else:
                self.set("primary_metric", "roc_auc", f"balanced enough ({share:.0%} minority)")
                self.set("class_weight", "none", f"the minority class is {share:.0%} of rows")
        elif task == "multiclass_classification":
            share, k = target.minority_share, len(target.class_counts)
            self.set("primary_metric", "f1_macro", f"{k} classes, each counted equally")
            if share < 0.5 / k:
                self.set("class_weight", "balanced", f"the rarest class is {share:.1%} of rows")
            else:
                self.set("class_weight", "none", f"the rarest class is {share:.0%} of rows")
        elif abs(target.skew) > 2:
            self.set(
                "primary_metric",
                "mae",
                f"a heavy-tailed target (skew {target.skew:.1f}): "
                "MAE is not dominated by a few large values",
            )
        else:
            self.set("primary_metric", "rmse", "in the target's units, penalising large errors")

    def _tuning(self) -> None:
        rows = self.profile.n_rows
        if self.values["model_family"] == "linear":
            self.set("tuning_trials", 10, "a linear model has one regularisation strength to tune")
        elif rows <= 50_000:
            self.set("tuning_trials", 20, f"{rows:,} rows: 20 cross-validated trials are cheap")
        else:
            self.set("tuning_trials", 10, f"{rows:,} rows: 10 trials keep training time bounded")
        seconds = next(budget for limit, budget in TIME_BUDGETS if rows < limit)
        self.set(
            "tuning_time_budget_seconds",
            seconds,
            f"{rows:,} rows: {seconds} s for selection, tuning and the final fit; a search "
            "that finishes its trials sooner stops there (and repeats bit for bit)",
        )

    def _serving_and_drift(self) -> None:
        rows = self.profile.n_rows
        window = 1000 if rows >= 10_000 else max(100, (rows // 10) // 50 * 50)
        self.set("drift_window", window, "recent requests compared with the training data")
        # These are floors: the drift reference also stores the noise level of each distance at
        # each window size, and an alert needs both. A category share moving 20% -> 27% scores
        # a Jensen-Shannon distance of ~0.068, so the categorical floor sits below that.
        why = "a floor above negligible shifts; small windows are guarded by the noise limit"
        self.set("drift_numeric_threshold", 0.1, why)
        self.set("drift_categorical_threshold", 0.05, why)
        self.set("seed", 42, "one seed for splits, models and tuning")

    def _apply_brief(self) -> None:
        for field, value in self.brief.plan_overrides.items():
            if field == "exclude_columns":
                for column in value:
                    self.excluded[str(column)] = "excluded in the brief"
                features = [f for f in self.values["features"] if f["name"] not in value]
                self.values["features"] = features
                continue
            self.set(field, value, "stated in the brief")
        roles = {self.values.get(k) for k in ("id_column", "time_column", "group_column")} - {""}
        # A role named in the brief is never also a feature or an excluded column.
        self.values["features"] = [
            f
            for f in self.values["features"]
            if (f["name"] if isinstance(f, dict) else f) not in roles
        ]
        for role in roles:
            self.excluded.pop(role, None)
        front = self.brief.front
        if {"time_column", "group_column"} & set(front) and "split_strategy" not in front:
            self._split()
        if self.values["task"] == "regression":
            self.values.pop("class_weight", None)
            self.why.pop("class_weight", None)


    def _transforms(self) -> None:
        """Cyclical month (and hour) of date features; log1p of skewed amounts for a linear
        model. Each is kept only if it validates against the spec and the plan."""
        if "feature_transforms" in self.brief.front:
            return
        types = {f["name"]: f["type"] for f in self.values["features"]}
        linear = self.values["model_family"] == "linear"
        kept: list[dict[str, Any]] = []
        for name, kind in types.items():
            values = self.profile.frame[name]
            if kind == "datetime":
                candidates = _date_transforms(name, values)
            elif kind == "numeric" and linear:
                candidates = _log_transform(name, values)
            else:
                candidates = []
            for step in candidates:
                trial = [*kept, step]
                names = [n for n in transforms.outputs(step) if n in self.profile.column_names]
                if not (transforms.schema_problems(trial) or names
                        or transforms.plan_problems(trial, types)):
                    kept.append(step)
        if kept:
            kinds = sorted({step["kind"] for step in kept})
            self.set("feature_transforms", kept,
                     f"{len(kept)} derived columns ({', '.join(kinds)}), each with its reason")


def recommends(brief: Brief) -> bool:
    """Whether the brief asks for the recommendation kind: stated (``kind``), else its front
    matter names no target and either sets a recommendation setting (``user_column``, ...) or
    its prose asks for recommendations."""
    if brief.kind:
        return brief.kind == "recommendation"
    if "target" in brief.front:
        return False
    return brief.recommends is not None or bool(RECOMMENDATION_ONLY & set(brief.front))


def _column_slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:36].rstrip("_")
    return slug if slug[:1].isalpha() else f"f_{slug}".rstrip("_")


def _date_transforms(name: str, values: pd.Series) -> list[dict[str, Any]]:
    stamps = pd.to_datetime(values, errors="coerce", utc=True, format="mixed").dropna()
    if stamps.empty:
        return []
    slug = _column_slug(name)
    steps = [{"kind": "cyclical", "name": f"{slug}_month", "column": name, "part": "month",
              "reason": "the season as a circle: December sits next to January"}]
    if bool(((stamps.dt.hour != 0) | (stamps.dt.minute != 0)).any()):
        steps.append({"kind": "cyclical", "name": f"{slug}_hour", "column": name, "part": "hour",
                      "reason": "the time of day as a circle: 23:00 sits next to midnight"})
    return steps


def _log_transform(name: str, values: pd.Series) -> list[dict[str, Any]]:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.nunique() < MIN_LOG_VALUES or numbers.min() < 0:
        return []
    skew = float(numbers.skew())
    if skew <= LOG_SKEW:
        return []
    return [{"kind": "log1p", "name": f"{_column_slug(name)}_log", "column": name,
             "reason": f"a non-negative amount with skew {skew:.1f}: on a log scale the linear "
             "model is not fitted to a few large values"}]


def derived_classes(profile: Profile, target: str, rule: str) -> dict[str, int]:
    """How many of the profiled rows ``positive_when: rule`` makes yes and no."""
    values = pd.to_numeric(profile.raw[target], errors="coerce").dropna().to_numpy()
    yes = int(np.sum(holds(values, rule)))
    return {"no": len(values) - yes, "yes": yes}


def one_answer(target: str, rule: str, counts: dict[str, int]) -> str:
    """Why a comparison that every row answers the same way cannot be the target."""
    answer = "no" if not counts["yes"] else "yes"
    return (
        f"Whether {target} {rule}: the answer is {answer} for every row of the data, so there "
        "is nothing to learn. Fix the comparison in the brief."
    )


def _find(name: str, columns: list[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return lowered.get(name.strip().lower())
