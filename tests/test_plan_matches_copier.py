"""The Plan mirrors copier.yml: same question names, choices, defaults and validators, so the
questions live in one place in effect."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from jinja2 import Environment
from jinja2_ansible_filters import AnsibleCoreFiltersExtension
from mlgen import transforms
from mlgen.errors import PlanError
from mlgen.plan import (
    AUDIO_ONLY,
    FORECASTING_ONLY,
    NOT_LABELLED,
    PLAN_FIELDS,
    RECOMMENDATION_ONLY,
    TABULAR_ONLY,
    TEXT_ONLY,
    WITH_TARGET,
    Plan,
)

COPIER_YML = Path(__file__).resolve().parents[1] / "copier.yml"
# Questions about the project, not the problem, and the example row mlgen reads from the data:
# answered beside the Plan (see mlgen.render).
PROJECT_QUESTIONS = {"project_name", "package_name", "description", "author", "example_record",
                     # mlgen deploy's: the deployed model's requirements (mlgen.deploy).
                     "model_requirements"}
# Questions with `when: false` are computed values, never asked nor stored: not Plan fields.
QUESTIONS = {
    name: spec
    for name, spec in yaml.safe_load(COPIER_YML.read_text()).items()
    if not name.startswith("_") and spec.get("when") is not False
}
PROBLEM_QUESTIONS = {n: s for n, s in QUESTIONS.items() if n not in PROJECT_QUESTIONS}
JINJA = Environment(extensions=[AnsibleCoreFiltersExtension])
VALID = {"kind": "tabular", "task": "binary_classification", "time_column": "",
         "group_column": "", "user_column": "user_id", "item_column": "item_id",
         "weight_column": "", "item_columns": []}
REC = {"kind": "recommendation"}
FC = {"kind": "forecasting", "time_column": "ts", "target": "demand"}
AUDIO = {"kind": "audio", "data_path": "data/clips", "clip_seconds": 1.0,
         "audio_models": ["cnn", "mfcc_logistic"], "group_pattern": ""}
TEXT = {"kind": "text", "target": "label", "text_column": "review", "text_numeric_columns": [],
        "text_categorical_columns": []}


def _is_jinja(text: object) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


def _literal_values(name: str) -> set:
    annotation = Plan.model_fields[name].annotation
    options = (
        [annotation]
        if typing.get_origin(annotation) is typing.Literal
        else [
            arg for arg in typing.get_args(annotation) if typing.get_origin(arg) is typing.Literal
        ]
    )
    return {value for option in options for value in typing.get_args(option)}


def _copier_says(question: str, **answers) -> str:
    """The message copier.yml's validator for ``question`` gives for ``answers`` ('' = valid)."""
    context = {**VALID, **answers}
    return JINJA.from_string(QUESTIONS[question]["validator"]).render(**context).strip()


def test_plan_fields_are_exactly_the_problem_specific_questions():
    assert set(PROBLEM_QUESTIONS) == PLAN_FIELDS
    extra = set(Plan.model_fields) - PLAN_FIELDS
    assert extra == {"excluded", "rationale"}


@pytest.mark.parametrize("name", sorted(n for n, s in PROBLEM_QUESTIONS.items() if "choices" in s))
def test_choices_match(name):
    assert _literal_values(name) == set(PROBLEM_QUESTIONS[name]["choices"].values())


@pytest.mark.parametrize(
    "name", sorted(n for n, s in PROBLEM_QUESTIONS.items() if not _is_jinja(s.get("default")))
)
def test_static_defaults_match(name):
    spec = PROBLEM_QUESTIONS[name]
    default = spec["default"]
    if spec["type"] == "yaml":
        default = yaml.safe_load(default)
    assert getattr(Plan(), name) == default


@pytest.mark.parametrize(
    "task, time_column, group_column",
    [
        (task, time, group)
        for task in ("binary_classification", "multiclass_classification", "regression")
        for time, group in (("", ""), ("ts", ""), ("", "customer"), ("ts", "customer"))
    ],
)
def test_computed_defaults_match(task, time_column, group_column):
    context = {"task": task, "time_column": time_column, "group_column": group_column}
    plan = Plan(task=task, time_column=time_column, group_column=group_column)
    for name in ("split_strategy", "primary_metric"):
        expected = JINJA.from_string(PROBLEM_QUESTIONS[name]["default"]).render(**context).strip()
        assert getattr(plan, name) == expected


@pytest.mark.parametrize("time_column", ["", "ts"])
@pytest.mark.parametrize("item_columns", [[], ["title", "genres"]])
def test_computed_recommendation_defaults_match(time_column, item_columns):
    context = {"kind": "recommendation", "time_column": time_column, "item_columns": item_columns}
    plan = Plan(kind="recommendation", time_column=time_column, item_columns=item_columns)
    for name in ("recommendation_split", "primary_metric", "recommenders"):
        rendered = JINJA.from_string(PROBLEM_QUESTIONS[name]["default"]).render(**context).strip()
        if PROBLEM_QUESTIONS[name]["type"] == "yaml":
            rendered = yaml.safe_load(rendered)
        assert getattr(plan, name) == rendered


def test_each_kind_asks_its_own_questions_and_the_plan_knows_which():
    whens = {name: spec.get("when") for name, spec in PROBLEM_QUESTIONS.items()}
    tabular = {n for n, w in whens.items() if w and w.startswith("{{ kind == 'tabular'")}
    recommendation = {n for n, w in whens.items() if w == "{{ kind == 'recommendation' }}"}
    forecasting = {n for n, w in whens.items() if w == "{{ kind == 'forecasting' }}"}
    audio = {n for n, w in whens.items() if w == "{{ kind == 'audio' }}"}
    text = {n for n, w in whens.items() if w == "{{ kind == 'text' }}"}
    labelled = {n for n, w in whens.items()
                if w == "{{ kind in ['tabular', 'forecasting', 'text'] }}"}
    assert tabular == TABULAR_ONLY and recommendation == RECOMMENDATION_ONLY
    assert forecasting == FORECASTING_ONLY and labelled == WITH_TARGET
    timed = {n for n, w in whens.items() if w == "{{ kind not in ['audio', 'text'] }}"}
    assert audio == AUDIO_ONLY and text == TEXT_ONLY and timed == NOT_LABELLED
    assert {n for n, w in whens.items() if w} == (
        tabular | recommendation | forecasting | labelled | audio | text | timed)
    assert list(QUESTIONS)[0] == "kind", "the first question: everything else depends on it"
    assert QUESTIONS["kind"]["default"] == "tabular", "existing answers files mean tabular"
    others = AUDIO_ONLY | TEXT_ONLY
    for kind, own, other in (
        ("tabular", TABULAR_ONLY | WITH_TARGET,
         RECOMMENDATION_ONLY | FORECASTING_ONLY | others),
        ("recommendation", RECOMMENDATION_ONLY,
         TABULAR_ONLY | FORECASTING_ONLY | WITH_TARGET | others),
        ("forecasting", FORECASTING_ONLY | WITH_TARGET,
         TABULAR_ONLY | RECOMMENDATION_ONLY | others),
        ("audio", AUDIO_ONLY, TABULAR_ONLY | RECOMMENDATION_ONLY | FORECASTING_ONLY | TEXT_ONLY
         | WITH_TARGET | NOT_LABELLED),
        ("text", TEXT_ONLY | WITH_TARGET | {"class_weight"},
         TABULAR_ONLY - {"class_weight"} | RECOMMENDATION_ONLY | FORECASTING_ONLY | AUDIO_ONLY
         | NOT_LABELLED),
    ):
        answers = Plan(kind=kind, time_column="time").to_answers("p")
        assert own - {"exclude_columns"} - ({"class_weight"} if kind == "tabular" else set()) \
            <= set(answers)
        assert not other & set(answers)

@pytest.mark.parametrize(
    "question, answers",
    [
        ("test_size", {"test_size": 0.6}),
        ("validation_size", {"validation_size": 0.01}),
        ("tuning_trials", {"tuning_trials": 501}),
        ("max_batch_size", {"max_batch_size": 0}),
        ("drift_window", {"drift_window": 10}),
        ("data_path", {"data_path": "data.xlsx"}),
        ("target", {"target": ""}),
        ("positive_when", {"positive_when": "more than 0"}),
        ("positive_when", {"positive_when": ">> 1"}),
        ("positive_when", {"positive_when": "> nan"}),
        ("positive_when", {"positive_when": "> 1 or 2"}),
        ("positive_when", {"positive_when": "0"}),
        ("primary_metric", {"task": "regression", "primary_metric": "roc_auc"}),
        ("primary_metric", {"task": "binary_classification", "primary_metric": "f1_macro"}),
        ("split_strategy", {"split_strategy": "time"}),
        ("split_strategy", {"split_strategy": "group"}),
        ("split_strategy", {"task": "regression", "split_strategy": "stratified"}),
        ("feature_transforms", {"feature_transforms": [{"kind": "eval", "name": "x",
                                                        "reason": "r"}]}),
        ("feature_transforms", {"feature_transforms": [{"kind": "log1p", "name": "x"}]}),
        ("feature_transforms", {"feature_transforms": {"kind": "log1p"}}),
        ("item_column", {**REC, "user_column": "u", "item_column": "u"}),
        ("weight_column", {**REC, "weight_column": "item_id"}),
        ("weight_column", {**REC, "time_column": "t", "weight_column": "t"}),
        ("user_column", {**REC, "time_column": "t", "user_column": "t"}),
        ("item_column", {**REC, "time_column": "t", "item_column": "t"}),
        ("min_weight", {**REC, "min_weight": 4}),
        ("item_columns", {**REC, "item_columns": ["user_id"]}),
        ("item_columns", {**REC, "item_columns": "title"}),
        ("top_k", {**REC, "top_k": 0}),
        ("top_k", {**REC, "top_k": 101}),
        ("recommendation_split", {**REC, "recommendation_split": "time"}),
        ("recommenders", {**REC, "recommenders": []}),
        ("recommenders", {**REC, "recommenders": ["svd"]}),
        ("recommenders", {**REC, "recommenders": ["recent_popularity"]}),
        ("recommenders", {**REC, "recommenders": ["content"]}),
        ("time_budget_seconds", {**REC, "time_budget_seconds": 0}),
        ("primary_metric", {**REC, "primary_metric": "roc_auc"}),
        ("test_size", {**REC, "test_size": 0.5}),
        ("time_column", {**FC, "time_column": ""}),
        ("series_column", {**FC, "series_column": "ts"}),
        ("covariates", {**FC, "covariates": [{"name": "demand"}]}),
        ("covariates", {**FC, "covariates": [{"known_future": True}]}),
        ("covariates", {**FC, "covariates": "temperature"}),
        ("horizon", {**FC, "horizon": 0}),
        ("forecasters", {**FC, "forecasters": []}),
        ("forecasters", {**FC, "forecasters": ["prophet"]}),
        ("backtest_windows", {**FC, "backtest_windows": 0}),
        ("interval_level", {**FC, "interval_level": 0.999}),
        ("primary_metric", {**FC, "primary_metric": "ndcg"}),
        ("data_path", {**AUDIO, "data_path": "clips.parquet"}),
        ("max_clip_seconds", {**AUDIO, "clip_seconds": 2.0, "max_clip_seconds": 1.0}),
        ("group_pattern", {**AUDIO, "group_pattern": "^([^_]+)_"}),
        ("audio_models", {**AUDIO, "audio_models": []}),
        ("audio_models", {**AUDIO, "audio_models": ["wav2vec"]}),
        ("sample_rate", {**AUDIO, "sample_rate": 1000}),
        ("epochs", {**AUDIO, "epochs": 0}),
        ("test_size", {**AUDIO, "test_size": 0.5}),
        ("primary_metric", {**AUDIO, "primary_metric": "roc_auc"}),
        ("text_column", {**TEXT, "text_column": "label"}),
        ("text_numeric_columns", {**TEXT, "text_numeric_columns": ["review"]}),
        ("text_categorical_columns", {**TEXT, "text_categorical_columns": ["label"]}),
        ("validation_size", {**TEXT, "validation_size": 0.5}),
        ("primary_metric", {**TEXT, "primary_metric": "rmse"}),
    ],
)
def test_copier_and_plan_refuse_the_same_answers(question, answers):
    assert _copier_says(question, **answers), "copier.yml accepts it"
    with pytest.raises(PlanError):
        Plan.build(answers)


@pytest.mark.parametrize(
    "answers",
    [
        {"test_size": 0.5, "validation_size": 0.05, "tuning_trials": 500, "drift_window": 50},
        {"task": "regression", "primary_metric": "mae", "split_strategy": "random"},
        {"positive_when": ">= -1.5e3"},
        {"positive_when": "!=0", "primary_metric": "pr_auc"},
        {"time_column": "ts", "split_strategy": "time", "data_path": "/abs/x.PARQUET"},
        {**REC, "recommendation_split": "user_last"},
        {**REC, "time_column": "ts", "recommendation_split": "user_last", "weight_column": "r",
         "min_weight": 3.5, "item_columns": ["title"], "top_k": 100,
         "recommenders": ["content", "recent_popularity"], "primary_metric": "map",
         "test_size": 0.45, "time_budget_seconds": 1},
        {**FC, "series_column": "store", "covariates": [{"name": "temp", "known_future": True}],
         "horizon": 48, "forecasters": ["lightgbm"], "primary_metric": "smape",
         "interval_level": 0.99, "test_windows": 50},
        {**AUDIO, "data_path": "/abs/clips", "group_pattern": "^(?P<group>[^_]+)_",
         "audio_models": ["mfcc_logistic"], "primary_metric": "f1_macro", "test_size": 0.45},
        {**AUDIO, "data_path": "clips/manifest.CSV", "max_clip_seconds": 1.0},
        {**TEXT, "text_numeric_columns": ["stars"], "text_categorical_columns": ["product"],
         "class_weight": "balanced", "primary_metric": "f1_macro"},
    ],
)
def test_copier_and_plan_accept_the_same_edge_answers(answers):
    plan = Plan.build(answers)
    for question in answers:
        if "validator" in QUESTIONS[question]:
            assert _copier_says(question, **plan.to_answers("p")) == ""


def test_class_weight_is_only_answered_for_classifiers():
    assert "class_weight" in Plan(task="binary_classification").to_answers("p")
    assert "class_weight" not in Plan(task="regression").to_answers("p")
    assert PROBLEM_QUESTIONS["class_weight"]["when"] == (
        "{{ kind == 'tabular' and task != 'regression' or kind == 'text' }}"
    )
    assert "class_weight" not in Plan(kind="recommendation").to_answers("p")
    assert "class_weight" not in Plan(kind="audio").to_answers("p")
    assert "class_weight" in Plan(kind="text").to_answers("p")


def test_positive_when_is_only_answered_for_tabular_yes_no_questions():
    assert Plan(positive_when="> 0").to_answers("p")["positive_when"] == "> 0"
    assert "positive_when" not in Plan(task="multiclass_classification").to_answers("p")
    assert "positive_when" not in Plan(kind="text").to_answers("p")
    assert PROBLEM_QUESTIONS["positive_when"]["when"] == (
        "{{ kind == 'tabular' and task == 'binary_classification' }}"
    )
    with pytest.raises(PlanError, match="binary_classification"):
        Plan.build({"task": "regression", "positive_when": "> 0", "primary_metric": "rmse",
                    "split_strategy": "random"})


def test_plan_schema_is_clean_for_an_llm_to_fill():
    schema = Plan.model_json_schema()
    assert schema["properties"]["kind"]["enum"] == [
        "tabular", "recommendation", "forecasting", "audio", "text"]
    assert set(schema["properties"]) == (PLAN_FIELDS - {"exclude_columns"}) | {
        "excluded",
        "rationale",
    }
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{name} has no description"
    assert schema["properties"]["model_family"]["enum"] == [
        "linear",
        "random_forest",
        "extra_trees",
        "hist_gradient_boosting",
        "lightgbm",
        "auto",
    ]


def test_copier_knows_the_transform_kinds_of_the_runtimes_spec():
    validator = QUESTIONS["feature_transforms"]["validator"]
    listed = set(re.search(r"t\.kind not in \[([^\]]*)\]", validator).group(1)
                 .replace("'", "").replace(" ", "").split(","))
    assert listed == set(transforms.kinds())
    step = {"kind": "log1p", "name": "log_x", "reason": "skewed", "column": "x"}
    assert _copier_says("feature_transforms", feature_transforms=[step]) == ""


@pytest.mark.parametrize("kind", ["tabular", "recommendation", "forecasting", "audio", "text"])
def test_computed_data_path_target_and_metric_defaults_match(kind):
    plan = Plan(kind=kind, time_column="ts")
    for name in ("data_path", "target", "primary_metric"):
        rendered = JINJA.from_string(PROBLEM_QUESTIONS[name]["default"]).render(
            kind=kind, task="binary_classification").strip()
        assert getattr(plan, name) == rendered, name
