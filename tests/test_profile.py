"""The profiler: column kinds, target kinds, leakage suspects, and messy real-world files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlgen.errors import DataError
from mlgen.profile import profile_file, profile_frame, read_frame
from realdata import rdataset


def _frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "order_id": np.arange(1000, 1000 + rows),
            "amount": rng.normal(50, 10, rows).round(2),
            "country": rng.choice(["fr", "de", "es"], rows),
            "city": [f"city_{i % 80}" for i in range(rows)],
            "is_member": rng.choice(["yes", "no"], rows),
            "signup": pd.date_range("2024-01-01", periods=rows, freq="D").astype(str),
            "comment": [f"the parcel came late and box {i} was torn" for i in range(rows)],
            "channel": "web",
            "referrer": [None] * (rows - 5) + ["ads"] * 5,
            "returned": rng.choice(["yes", "no"], rows, p=[0.3, 0.7]),
        }
    )


def test_column_kinds_and_flags():
    profile = profile_frame(_frame())
    col = {c.name: c for c in profile.columns}
    assert col["order_id"].id_like and col["order_id"].kind == "numeric"
    assert col["amount"].kind == "numeric" and not col["amount"].id_like
    assert col["country"].kind == "categorical" and col["country"].cardinality == "low"
    assert col["city"].kind == "categorical" and col["city"].cardinality == "high"
    assert col["is_member"].kind == "boolean"
    assert col["signup"].kind == "datetime"
    assert col["comment"].kind == "text"
    assert col["channel"].constant
    assert col["referrer"].mostly_missing


def test_target_kinds_and_balance():
    profile = profile_frame(_frame())
    returned = profile.target("returned")
    assert returned.kind == "binary"
    assert 0.2 < returned.minority_share < 0.4
    assert profile.target("country").kind == "multiclass"
    assert profile.target("amount").kind == "regression"


def test_integer_codes_are_classes_but_counts_are_quantities():
    frame = pd.DataFrame({"grade": [0, 1, 2] * 20, "visits": [0, 1, 2, 3, 7, 12] * 10})
    profile = profile_frame(frame)
    assert profile.target("grade").kind == "multiclass"
    assert profile.target("visits").kind == "regression"


def test_constant_target_is_refused():
    with pytest.raises(DataError, match="nothing to predict"):
        profile_frame(_frame()).target("channel")


def test_class_too_rare_to_split_is_refused():
    frame = pd.DataFrame({"x": range(60), "y": ["a"] * 30 + ["b"] * 27 + ["c"] * 3})
    with pytest.raises(DataError, match='Class "c".*only 3 rows'):
        profile_frame(frame).target("y")


def test_leakage_suspects_copy_and_determining_columns():
    frame = _frame()
    frame["returned_flag"] = frame["returned"].map({"yes": 1, "no": 0})
    frame["refund_amount"] = np.where(frame["returned"] == "yes", frame["amount"] + 5, 0.0)
    suspects = profile_frame(frame).leakage_suspects("returned")
    assert set(suspects) == {"returned_flag", "refund_amount"}
    assert "almost perfectly" in suspects["refund_amount"]


def test_trending_series_are_not_leaks_when_time_ordered():
    t = np.arange(300)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "day": t,
            "gdp": t * 3 + rng.normal(0, 5, 300),
            "population": t * 2 + rng.normal(0, 5, 300),
        }
    )
    profile = profile_frame(frame)
    assert "population" in profile.leakage_suspects("gdp")
    assert profile.leakage_suspects("gdp", time_column="day") == {}


def test_messy_csv_thousands_empty_strings_unicode_and_duplicate_names(tmp_path: Path):
    path = tmp_path / "messy.csv"
    path.write_text(
        'prix €,état,état,note\n"1,200",neuf,a,\n"3,400",usé,b,2\n"12",,c,3\n"5,600",neuf,d, \n',
        encoding="utf-8",
    )
    profile = profile_file(path)
    assert profile.column_names == ["prix €", "état", "état.1", "note"]
    col = {c.name: c for c in profile.columns}
    assert col["prix €"].kind == "numeric"
    assert "thousands separators" in col["prix €"].notes[0]
    assert profile.frame["prix €"].tolist() == [1200, 3400, 12, 5600]
    assert col["état"].missing_rate == 0.25
    assert col["note"].kind == "numeric" and col["note"].missing_rate == 0.5
    assert any('"état" is read as "état.1"' in note for note in profile.notes)


def test_mixed_types_stay_categorical_like_the_service_reads_them(tmp_path: Path):
    path = tmp_path / "mixed.csv"
    values = [str(i) for i in range(50)] + ["unknown"]
    pd.DataFrame({"code": values, "y": [0, 1] * 25 + [0]}).to_csv(path, index=False)
    assert profile_file(path).column("code").kind == "categorical"


def test_large_csv_is_profiled_on_a_bounded_sample(tmp_path: Path):
    path = tmp_path / "big.csv"
    frame = pd.DataFrame({"x": np.arange(5000), "y": np.arange(5000) % 2})
    frame.to_csv(path, index=False)
    profile = profile_file(path, max_rows=1000)
    assert profile.n_sampled == 1000
    assert profile.n_rows == 5000
    assert profile.sampled


def test_parquet_is_read_with_a_bounded_sample(tmp_path: Path):
    path = tmp_path / "data.parquet"
    frame = pd.DataFrame({"x": np.arange(3000, dtype=float), "y": ["a", "b", "c"] * 1000})
    frame.to_parquet(path, row_group_size=500)
    profile = profile_file(path, max_rows=1000)
    assert (profile.n_rows, profile.n_sampled) == (3000, 1000)
    assert profile.target("y").kind == "multiclass"


def test_header_only_empty_missing_and_unreadable_files(tmp_path: Path):
    (tmp_path / "header.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="header but no rows"):
        read_frame(tmp_path / "header.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_frame(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="does not exist"):
        read_frame(tmp_path / "missing.csv")
    (tmp_path / "broken.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="Cannot read data file"):
        read_frame(tmp_path / "broken.parquet")
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="not .csv, .parquet or .pq"):
        read_frame(tmp_path / "data.xlsx")


def test_the_null_of_mysql_dumps_is_missing_as_the_service_reads_it(tmp_path):
    """Ecdat's HHSCyberSecurityBreaches: ``\\N`` (892 of 1,151 descriptions) is missing, so
    the column is judged on the descriptions it has, as the runtime's loader reads them."""
    frame = rdataset("Ecdat", "HHSCyberSecurityBreaches")
    path = tmp_path / "breaches.csv"
    frame.to_csv(path, index=False)
    column = profile_file(path).column("Web.Description")
    missing = frame["Web.Description"].isna() | (frame["Web.Description"] == "\\N")
    assert missing.sum() == 942  # 892 marked, 50 empty
    assert column.missing_rate == pytest.approx(942 / 1151, abs=1e-4)
