"""`mlgen new` without --verify: the rendered service carries the plan, the brief and a sample
of the user's data; generation is atomic and bad input leaves nothing behind."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlgen import render
from mlgen.brief import Brief
from mlgen.cli import app
from mlgen.plan import Plan
from mlgen.planners import get_planner
from mlgen.profile import profile_file
from mlgen.render import write_sample
from typer.testing import CliRunner

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, [str(arg) for arg in args])


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def penguins_brief(tmp_path: Path) -> Path:
    folder = tmp_path / "brief"
    shutil.copytree(EXAMPLES / "penguins", folder)
    return folder / "brief.md"


def test_new_renders_the_plan_into_the_service(penguins_brief: Path, tmp_path: Path):
    out = tmp_path / "svc"
    result = run_cli("new", "--brief", penguins_brief, "--out", out)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "configs" / "config.yaml").read_text())
    assert config["task"] == "multiclass_classification"
    assert config["data"]["target"] == "species"
    assert config["data"]["path"] == str(penguins_brief.parent / "penguins.csv")
    assert config["metric"]["primary"] == "f1_macro"
    assert {f["name"] for f in config["features"]} == {
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    }
    answers = yaml.safe_load((out / ".copier-answers.yml").read_text())
    assert answers["target"] == "species" and answers["project_name"] == "penguin-species"
    # The README's example request is the first complete row of the data.
    original = pd.read_csv(penguins_brief.parent / "penguins.csv")
    example = answers["example_record"]
    assert set(example) == {f["name"] for f in config["features"]}
    first = original.dropna(subset=list(example)).iloc[0]
    assert example == {name: first[name] for name in example}
    (body,) = re.findall(r"/predict \\\n.*?-d '([^']*)'", (out / "README.md").read_text(), re.S)
    assert json.loads(body) == example
    assert (out / "docs" / "BRIEF.md").read_text() == penguins_brief.read_text()
    plan_md = (out / "docs" / "PLAN.md").read_text()
    assert "| primary_metric | f1_macro | 3 classes, each counted equally |" in plan_md
    sample = pd.read_csv(out / "data" / "sample.csv")
    assert list(sample.columns) == list(original.columns)
    assert len(sample) == len(original)  # 344 rows: small enough to keep whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sample_is_bounded_stratified_seeded_and_keeps_rare_classes(tmp_path: Path):
    rows = 5000
    frame = pd.DataFrame(
        {
            "x": range(rows),
            "label": ["common"] * 4000 + ["medium"] * 970 + ["rare"] * 30,
        }
    ).sample(frac=1, random_state=1)
    frame.to_csv(tmp_path / "d.csv", index=False)
    profile = profile_file(tmp_path / "d.csv")
    plan = Plan(task="multiclass_classification", target="label", data_path="d.csv")
    first = write_sample(profile, plan, tmp_path / "a.csv")
    second = write_sample(profile, plan, tmp_path / "b.csv")
    assert first.read_bytes() == second.read_bytes()
    sample = pd.read_csv(first)
    assert len(sample) == 1000
    counts = sample["label"].value_counts()
    assert counts["rare"] >= 20
    assert 750 <= counts["common"] <= 800


def test_existing_folder_is_refused_unless_forced(penguins_brief: Path, tmp_path: Path):
    out = tmp_path / "svc"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    refused = run_cli("new", "--brief", penguins_brief, "--out", out)
    assert refused.exit_code == 2
    assert "--force" in refused.output
    assert tree(out) == {"mine.txt"}
    forced = run_cli("new", "--brief", penguins_brief, "--out", out, "--force")
    assert forced.exit_code == 0, forced.output
    assert not (out / "mine.txt").exists()
    assert (out / "configs" / "config.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brief", "svc"]


def test_a_failure_after_rendering_leaves_nothing_behind(
    penguins_brief: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def broken_sample(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(render, "write_sample", broken_sample)
    brief = Brief.load(penguins_brief)
    profile = profile_file(brief.data_path())
    plan = get_planner().plan(brief, profile)
    out = tmp_path / "new" / "deeper" / "svc"
    with pytest.raises(OSError, match="disk full"):
        render.render_service(plan, profile, brief, out, plan.to_answers("p"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brief"]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "brief, files, message",
    [
        (None, {}, "does not exist"),
        ("", {}, "is empty"),
        ("---\ntarget: y\n---\nNo data named.", {}, "data: path/to/your_data.csv"),
        ("---\ndata: d.csv\ntarget: y\n---\n", {}, "d.csv does not exist"),
        ("---\ndata: d.csv\ntarget: y\n---\n", {"d.csv": "x,y\n"}, "header but no rows"),
        ("---\ndata: d.parquet\ntarget: y\n---\n", {"d.parquet": "not parquet"}, "Cannot read"),
        (
            "---\ndata: d.csv\ntarget: why\n---\n",
            {"d.csv": "x,y\n" + "1,2\n" * 40},
            "Did you mean: y",
        ),
        (
            "---\ndata: d.csv\ntarget: y\n---\n",
            {"d.csv": "x,y\n" + "1,2\n" * 40},
            "nothing to predict",
        ),
        (
            "---\ndata: d.csv\n---\nSomething.",
            {"d.csv": "x,y\n" + "1,2\n" * 40},
            "target: <one of: x, y>",
        ),
    ],
    ids=[
        "missing-brief",
        "empty-brief",
        "no-data",
        "missing-data",
        "header-only",
        "unreadable",
        "target-not-found",
        "constant-target",
        "no-target",
    ],
)
def test_bad_input_exits_2_with_one_clear_message_and_no_files(
    tmp_path: Path, brief: str | None, files: dict[str, str], message: str
):
    for name, text in files.items():
        _write(tmp_path, name, text)
    brief_path = tmp_path / "brief.md" if brief is None else _write(tmp_path, "brief.md", brief)
    before = tree(tmp_path)
    result = run_cli("new", "--brief", brief_path, "--out", tmp_path / "svc")
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert tree(tmp_path) == before
