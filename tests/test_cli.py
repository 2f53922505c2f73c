"""The command line surface: version, help, `plan --json`, exit codes, errors without tracebacks,
and the verification step's reporting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlgen import __version__
from mlgen.cli import app
from mlgen.console import show_verification
from mlgen.errors import VerifyError
from mlgen.plan import Plan
from mlgen.verify import read_verification, run_step
from typer.testing import CliRunner

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mlgen {__version__}"


def test_help_lists_commands_and_every_option():
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    assert "new" in top.output and "plan" in top.output
    # A wide terminal keeps each help sentence on one line of the box.
    new = " ".join(runner.invoke(app, ["new", "--help"], env={"COLUMNS": "240"}).output.split())
    options = ("--brief", "--out", "--data", "--name", "--verify", "--venv", "--force", "--json")
    for option in options:
        assert option in new
    assert "reuse this virtualenv" in new


@pytest.mark.parametrize("example", ["penguins", "breast-cancer", "diabetes"])
def test_plan_json_is_a_valid_plan_on_stdout(example: str):
    result = runner.invoke(app, ["plan", "--brief", str(EXAMPLES / example / "brief.md"), "--json"])
    assert result.exit_code == 0, result.output
    plan = Plan.model_validate(json.loads(result.stdout))
    expected = {
        "penguins": ("species", "multiclass_classification"),
        "breast-cancer": ("diagnosis", "binary_classification"),
        "diabetes": ("progression", "regression"),
    }[example]
    assert (plan.target, plan.task) == expected
    assert "Plan (heuristic planner)" in result.stderr


def test_plan_with_data_override(tmp_path: Path):
    brief = tmp_path / "brief.md"
    brief.write_text("Predict species.")
    data = EXAMPLES / "penguins" / "penguins.csv"
    result = runner.invoke(app, ["plan", "--brief", str(brief), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data_path"] == str(data)


def test_errors_from_the_real_entry_point_are_one_message_without_traceback(tmp_path: Path):
    brief = tmp_path / "brief.md"
    brief.write_text("---\ndata: nowhere.csv\ntarget: y\n---\n")
    done = subprocess.run(
        [sys.executable, "-m", "mlgen", "plan", "--brief", str(brief)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "error:" in done.stderr and "nowhere.csv does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_failing_verification_step_reports_its_output_tail(tmp_path: Path):
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)"
    with pytest.raises(VerifyError) as caught:
        run_step("tests", [sys.executable, "-c", script], tmp_path, tmp_path / "venv")
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "Step 'tests' failed (exit 3)" in message
    assert "line 99" in message and "line 59" not in message


def test_verification_reads_the_champion_metric_and_the_baseline(tmp_path: Path):
    metadata = {
        "primary_metric": "rmse",
        "metrics": {"rmse": 52.1, "rmse_ci_low": 48.0, "rmse_ci_high": 57.0, "mae": 42.0},
        "baseline_metrics": {"rmse": 77.9, "mae": 66.3},
        "higher_is_better": False,
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    result = read_verification(tmp_path / "metadata.json")
    assert (result.metric, result.baseline) == (52.1, 77.9)
    assert result.beats_baseline  # lower is better for rmse
    metadata["higher_is_better"] = True
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    assert not read_verification(tmp_path / "metadata.json").beats_baseline
    with pytest.raises(VerifyError, match="could not be read"):
        read_verification(tmp_path / "missing.json")


def test_verification_says_when_seasonal_naive_serves_instead_of_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # A short series: ETS was not significantly better, so seasonal naive is the champion.
    # The console says so, instead of a red "does NOT beat" that reads like a failure.
    metadata = {
        "primary_metric": "mase", "model_family": "seasonal_naive",
        "metrics": {"mase": 2.39}, "baseline_metrics": {"mase": 2.39},
        "higher_is_better": False,
        "served_instead_of": {"version": "1", "family": "ets",
                              "reason": "mase 2.0060 vs seasonal naive's 2.3920: p=0.098 [b]"},
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    result = read_verification(tmp_path / "metadata.json")
    assert result.baseline_serves.startswith("seasonal_naive serves as the first champion")
    show_verification(result)
    shown = " ".join(capsys.readouterr().err.split())
    assert "trained ets (v1) is kept as a challenger" in shown and "p=0.098 [b]" in shown
    assert "does NOT beat" not in shown
