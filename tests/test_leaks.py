"""Columns that leak the target, on real data sets that load offline: the ones a brief says are
only known afterwards, the parts of a target that is a sum or a difference, a transform of the
target, and a later stage of what the target measures. Legitimate features stay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlgen.leaks import named_leaks, parts_of_target, stated_leaks
from mlgen.plan import Plan
from realdata import credit_card, rdataset
from test_planner_datasets import features, plan_for, with_front

# nycflights13 flights, as rdataset() loads it.
FLIGHT_COLUMNS = [
    *("year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time"),
    *("sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest"),
    *("air_time", "distance", "hour", "minute", "time_hour"),
]


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """5,000 of the 336,776 flights that left New York in 2013, cancelled ones included."""
    return rdataset("nycflights13", "flights", rows=5_000)


def reasons(plan: Plan) -> dict[str, str]:
    return {item.column: item.reason for item in plan.excluded}


def test_flights_nothing_after_take_off_excludes_air_time_and_arrival_time(flights, tmp_path):
    words = "nothing measured after take-off (air time, actual arrival time) is available"
    prose = (
        "Predict the arrival delay as the plane leaves the gate. "
        f"The departure delay is known by then, but {words}."
    )
    plan = plan_for(flights, with_front("arr_delay", prose), tmp_path)
    why = reasons(plan)
    assert {"air_time", "arr_time"} <= set(why)
    assert words in why["air_time"] and words in why["arr_time"]
    assert {"dep_delay", "dep_time", "sched_arr_time", "distance", "carrier"} <= features(plan)
    assert words in plan.to_markdown()
    assert (
        "the brief says arr_time, air_time are not known at prediction time"
        in plan.rationale["exclude_columns"]
    )


def test_flights_at_booking_exclude_the_day_of_the_flight_and_the_arrival_delay(flights, tmp_path):
    prose = (
        "Predict dep_delay when the ticket is sold. Nothing measured on the day of the flight "
        "(actual departure and arrival times, air time) is available at booking."
    )
    plan = plan_for(flights, with_front("dep_delay", prose), tmp_path)
    why = reasons(plan)
    assert {"dep_time", "arr_time", "air_time"} <= set(why)
    assert "on the day of the flight" in why["dep_time"]
    # Nothing in the brief names the arrival delay: its name says it comes after departure.
    assert "later stage" in why["arr_delay"] and '"delay"' in why["arr_delay"]
    kept = {"sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance", "flight"}
    assert kept <= features(plan)


def test_a_brief_without_a_leak_statement_excludes_nothing_extra(flights, tmp_path):
    silent = plan_for(flights, with_front("arr_delay"), tmp_path)
    known = plan_for(
        flights,
        with_front("arr_delay", "The schedule and the departure delay are known when we predict."),
        tmp_path,
    )
    assert known.excluded == silent.excluded
    assert not any("brief says" in item.reason for item in known.excluded)
    # Without the brief's words these leaks stay: nothing in the data alone gives them away.
    assert {"air_time", "arr_time", "dep_delay"} <= features(known)


def test_hotel_room_actually_assigned_and_booking_changes_come_after_the_quote(tmp_path):
    prose = (
        "We quote the nightly price (avg_price_per_room) when the booking is made. The room "
        "type actually assigned is only known at check-in, and booking changes are recorded "
        "afterwards."
    )
    plan = plan_for(
        rdataset("modeldata", "hotel_rates"), with_front("avg_price_per_room", prose), tmp_path
    )
    why = reasons(plan)
    assert {"assigned_room_type", "booking_changes"} <= set(why)
    assert "actually assigned is only known at check-in" in why["assigned_room_type"]
    assert {"reserved_room_type", "lead_time", "adults", "market_segment"} <= features(plan)


def test_loan_repayments_are_only_known_after_issue(tmp_path):
    prose = (
        "Predict paid_total for each loan when it is issued. Repayments so far (balance, "
        "principal and interest paid, late fees) and the loan status are only known after "
        "the loan is issued."
    )
    plan = plan_for(
        rdataset("openintro", "loans_full_schema"), with_front("paid_total", prose), tmp_path
    )
    stated = {c for c, reason in reasons(plan).items() if "Repayments so far" in reason}
    assert stated == {"balance", "paid_principal", "paid_interest", "paid_late_fees", "loan_status"}
    assert {"loan_amount", "interest_rate", "term", "annual_income", "grade"} <= features(plan)


def test_credit_card_spending_is_known_once_the_card_exists_but_income_is_not(tmp_path):
    prose = (
        "Decide card applications. Expenditure and the share of income spent on the card are "
        "only known once the card is issued."
    )
    plan = plan_for(credit_card(), with_front("card", prose), tmp_path)
    why = reasons(plan)
    assert "the brief says" in why["expenditure"] and "the brief says" in why["share"]
    # "share of income" names the share: income is what it is measured against, a feature.
    assert {"income", "age", "reports", "active"} <= features(plan)


def test_citations_total_is_self_citations_plus_other_citations(tmp_path):
    # AER EquationCitations: cites = selfcites + othercites on every one of the 649 papers.
    frame = rdataset("AER", "EquationCitations")
    plan = plan_for(frame, with_front("cites", "How often is a paper cited?"), tmp_path)
    why = reasons(plan)
    formula = '"cites" = "selfcites" + "othercites" on 100% of rows'
    assert formula in why["selfcites"] and formula in why["othercites"]
    assert {"pages", "equations", "mainequations", "appequations", "journal"} <= features(plan)


def test_savings_are_income_minus_consumption(tmp_path):
    # wooldridge saving: sav = inc - cons for all 100 households.
    plan = plan_for(rdataset("wooldridge", "saving"), with_front("sav"), tmp_path)
    why = reasons(plan)
    assert '"sav" = "inc" - "cons"' in why["inc"] and '"sav" = "inc" - "cons"' in why["cons"]
    assert features(plan) == {"size", "educ", "age", "black"}


def test_a_test_score_averaged_from_two_parts_and_a_unique_code_are_left_out(tmp_path):
    # Ecdat Caschool: testscr = (readscr + mathscr) / 2 for all 420 districts (float32 sums);
    # distcod is a district code, unique per row (not consecutive, so not a row number).
    brief = with_front("testscr", "Predict each district's average test score.")
    plan = plan_for(rdataset("Ecdat", "Caschool"), brief, tmp_path)
    why = reasons(plan)
    formula = '"testscr" = ("readscr" + "mathscr") / 2'
    assert formula in why["readscr"] and formula in why["mathscr"]
    assert plan.id_column == "distcod" and "distcod" not in features(plan)
    assert {"mealpct", "avginc", "str", "elpct", "county"} <= features(plan)


def test_log_wage_is_a_transform_of_wage(tmp_path):
    # ISLR Wage: logwage = log(wage); Pearson correlation 0.95, ranks identical.
    plan = plan_for(rdataset("ISLR", "Wage"), with_front("wage"), tmp_path)
    assert "monotonic transform" in reasons(plan)["logwage"]
    assert {"age", "education", "jobclass", "health"} <= features(plan)


@pytest.mark.parametrize(
    ("prose", "target", "leaks"),
    [
        ("We don't know the arrival delay when we predict.", "dep_delay", {"arr_delay"}),
        (
            "We know the departure delay when we predict, but not the arrival delay.",
            "air_time",
            {"arr_delay"},
        ),
        ("The `air_time` column is filled in after landing.", "arr_delay", {"air_time"}),
        ("Only known afterwards: the actual departure time.", "arr_delay", {"dep_time"}),
        # The target itself is never excluded.
        ("We don't know the arrival delay when we predict: that is the point.", "arr_delay", set()),
        # Missing values, not leaks: no time in the sentence.
        ("The air time is not available for cancelled flights.", "arr_delay", set()),
        ("Everything in the file is known at prediction time.", "arr_delay", set()),
        # All the words of a name, and of no longer name: not sched_arr_time, nor time_hour.
        ("The actual arrival time is only known after landing.", "arr_delay", {"arr_time"}),
        # Told to leave columns out, whatever the reason.
        ("The air time must not be used.", "arr_delay", {"air_time"}),
        ("Do not use the arrival delay; the distance is fine.", "dep_delay", {"arr_delay"}),
        ("Ignore `tailnum` and `flight`, they are labels.", "arr_delay", {"tailnum", "flight"}),
        ("Please exclude the scheduled arrival time.", "arr_delay", {"sched_arr_time"}),
        # ... but not when the words are about rows or values.
        ("Ignore rows with a missing arrival delay.", "dep_delay", set()),
        ("Drop the outliers of the air time before training.", "arr_delay", set()),
    ],
)
def test_statements_name_only_the_columns_they_are_about(prose, target, leaks):
    assert set(stated_leaks(prose, FLIGHT_COLUMNS, target)) == leaks


def test_parts_are_found_among_many_columns_and_trivial_parts_are_not():
    rng = np.random.default_rng(0)
    numbers = pd.DataFrame(rng.normal(size=(5_000, 200)), columns=[f"x{i}" for i in range(200)])
    numbers["refunds"] = np.where(rng.random(5_000) < 0.01, 5.0, 0.0)
    total = numbers["x17"] + numbers["x160"]
    assert set(parts_of_target(numbers, total)) == {"x17", "x160"}
    # A column that is zero on 99% of rows is not a part: x17 is simply (nearly) the target.
    assert parts_of_target(numbers, numbers["x17"] + numbers["refunds"]) == {}


def test_later_stage_names_need_a_word_shared_with_the_target():
    columns = ["dep_delay", "arr_delay", "arr_time", "final_grade", "post_code", "actual_cost"]
    assert set(named_leaks(columns, "dep_delay")) == {"arr_delay"}
    assert set(named_leaks(columns, "arr_delay")) == set()
    assert set(named_leaks(columns, "cost")) == {"actual_cost"}
