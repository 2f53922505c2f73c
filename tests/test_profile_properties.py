"""Properties: the profiler never crashes on arbitrary frames, and planning either succeeds or
raises mlgen's own clear error."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlgen.brief import Brief
from mlgen.errors import MlgenError
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file, profile_frame

names = st.one_of(
    st.sampled_from(["id", "target", "y", "date", "a", "a", "état", "x 1", "", "1"]),
    st.text(min_size=0, max_size=8),
)
cells = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["1,234", "2024-01-31", "yes", "no", "", " ", "NaN", "12.5"]),
)


@st.composite
def frames(draw) -> pd.DataFrame:
    """Frames of mixed-type object columns, duplicate and empty names included."""
    rows = draw(st.integers(0, 60))
    columns = [
        pd.Series(
            draw(st.lists(cells, min_size=rows, max_size=rows)), name=draw(names), dtype=object
        )
        for _ in range(draw(st.integers(1, 6)))
    ]
    return pd.concat(columns, axis=1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_profiler_never_crashes_on_arbitrary_frames(frame: pd.DataFrame):
    try:
        profile = profile_frame(frame)
    except MlgenError:
        return
    assert len(profile.columns) == frame.shape[1]
    assert len(set(profile.column_names)) == len(profile.column_names)
    for col in profile.columns:
        assert 0.0 <= col.missing_rate <= 1.0
        assert col.kind in ("numeric", "categorical", "boolean", "datetime", "text")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.data())
def test_planning_either_plans_or_raises_mlgens_error(frame: pd.DataFrame, data):
    try:
        profile = profile_frame(frame)
    except MlgenError:
        return
    target = data.draw(st.sampled_from(profile.column_names))
    brief = Brief.parse(f"---\ntarget: {target!r}\n---\n")
    try:
        plan = get_planner().plan(brief, profile)
    except MlgenError as exc:
        assert str(exc)
        return
    assert isinstance(plan, Plan)
    assert plan.target == target
    used = {f.name for f in plan.features}
    assert target not in used and not used & set(plan.exclude_columns)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frames())
def test_any_frame_written_as_csv_reads_back_or_fails_clearly(tmp_path: Path, frame: pd.DataFrame):
    path = tmp_path / "data.csv"
    # Quoted, so text holding line breaks stays one field, as a careful writer would save it.
    frame.to_csv(path, index=False, quoting=csv.QUOTE_ALL)
    try:
        profile = profile_file(path)
    except MlgenError:
        return
    assert profile.n_sampled == len(frame)
