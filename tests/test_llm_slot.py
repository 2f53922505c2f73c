"""The custom-features slot: model-written code is kept only if it is safe and works.

The static checks are exercised with the escapes such code would try; the sandbox runs code on
the real penguins data in a separate interpreter. The end-to-end test renders a service with a
model-written slot, trains it in the shared service virtualenv, and finds the new feature in
the trained model's metadata.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import REPO
from fake_anthropic import FakeMessagesAPI, tool_reply
from mlgen.brief import Brief
from mlgen.errors import SlotError
from mlgen.planning import PlanOptions, plan_brief
from mlgen.profile import profile_file
from mlgen.render import project_answers, render_service
from mlgen.slot import check_slot, check_source, run_in_sandbox
from test_llm import FAST, KEY, SAFE_SLOT, model_answer

EXAMPLE = REPO / "examples" / "penguins"


def slot(body: str, head: str = "import pandas as pd\n") -> str:
    lines = "\n".join(f"    {line}" for line in body.splitlines())
    return f"{head}\n\ndef add_features(df):\n{lines}\n    return df\n"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE / "penguins.csv").drop(columns=["species"])


@pytest.mark.parametrize("code, reason", [
    (slot("pass", head="import os"), "importing `os`"),
    (slot("pass", head="import subprocess"), "importing `subprocess`"),
    (slot("pass", head="from pandas import read_csv"), "`read_csv`"),
    (slot("pass", head="import numpy.ctypeslib"), "importing `numpy.ctypeslib`"),
    (slot("open('/etc/passwd').read()"), "`open`"),
    (slot("eval('1 + 1')"), "`eval`"),
    (slot("__import__('os')"), "`__import__`"),
    (slot("getattr(df, 'to_csv')('x.csv')"), "`getattr`"),
    (slot("df.__class__"), "`__class__`"),
    (slot("'{0.__class__}'.format(df)"), "`format`"),
    (slot("df.to_csv('/tmp/stolen.csv')"), "`to_csv`"),
    (slot("pd.read_parquet('/data/other.parquet')"), "`read_parquet`"),
    (slot("df.query('a > 1')"), "`query`"),
    (slot("pd.io.common"), "`io`"),
    (slot("with df:\n    pass"), "With"),
    ("import pandas as pd\nprint('at import time')\n\ndef add_features(df):\n    return df\n",
     "only imports, constants and functions"),
    ("import pandas as pd\n\n\ndef add(df):\n    return df\n", "exactly one top-level"),
    ("def add_features(df):\n    return df +\n", "does not parse"),
])
def test_unsafe_or_malformed_code_is_rejected(code, reason):
    with pytest.raises(SlotError, match=reason.replace("(", r"\(")):
        check_source(code)


def test_safe_code_runs_on_the_sample_and_reports_new_columns(sample):
    checked = check_slot(SAFE_SLOT, sample)
    assert checked.added_columns == ("bill_ratio",)


def test_lint_fixes_what_ruff_can_fix():
    messy = "import pandas as pd\nimport math\nimport numpy as np\n\ndef add_features(df):\n" \
            "    return pd.DataFrame(df)\n"
    checked = check_slot(messy, pd.DataFrame({"a": [1.0, 2.0]}))
    assert checked.code.startswith("import pandas as pd\n\n\ndef add_features")


@pytest.mark.parametrize("body, reason", [
    ("df = df.head(3)", "returned 3 rows"),
    ("df = df.values", "not a DataFrame"),
    ("df = df[['island']]", "dropped input columns"),
    ("df['mass_kg'] = df['body_mass_g'] / 1000.0\nx = int(df['body_mass_g'].iloc[0])",
     "on the empty row failed"),
    ("df['double'] = df['bill_length_mm'] * 2", "on the frame without its columns failed"),
])
def test_code_that_breaks_the_contract_is_rejected(sample, body, reason):
    with pytest.raises(SlotError, match=reason):
        run_in_sandbox(slot(body), sample)


def test_code_that_never_finishes_is_stopped(sample):
    with pytest.raises(SlotError, match="took over 5 s"):
        run_in_sandbox(slot("while True:\n    pass"), sample, timeout=5)


def test_code_stopped_by_the_cpu_limit_is_reported_as_too_slow(sample):
    # On a busy machine the CPU limit's SIGXCPU can beat the wall clock; the verdict is the same.
    code = slot("import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)", head="import pandas")
    with pytest.raises(SlotError, match="took over 5 s"):
        run_in_sandbox(code, sample, timeout=5)


def test_the_sandbox_gets_no_api_key(sample, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    # Run past the allowlist on purpose: even code that reads os.environ finds no key.
    code = slot("import os\nassert 'ANTHROPIC_API_KEY' not in os.environ", head="import pandas")
    assert run_in_sandbox(code, sample) == []


def test_unsafe_slot_from_the_model_is_dropped_with_a_warning():
    brief = Brief.load(EXAMPLE / "brief.md")
    profile = profile_file(brief.data_path().resolve())
    leaky = slot("df.to_csv('/tmp/exfiltrated.csv')")
    api = FakeMessagesAPI([tool_reply(model_answer(brief, profile, feature_code=leaky))])
    outcome = plan_brief(brief, profile, PlanOptions(transport=api.transport(), settings=FAST,
                                                      api_key=KEY))
    assert outcome.slot_code is None
    assert outcome.manifest["planner"] == "llm" and outcome.manifest["slot"]["written"] is False
    assert "custom feature code was dropped" in outcome.warnings[0]
    assert "to_csv" in outcome.warnings[0]


@pytest.mark.e2e
def test_safe_slot_is_written_and_used_by_the_trained_pipeline(tmp_path, monkeypatch, service_venv):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    brief = Brief.load(EXAMPLE / "brief.md")
    profile = profile_file(brief.data_path().resolve())
    answer = model_answer(brief, profile, feature_code=SAFE_SLOT, tuning_trials=0,
                          model_family="linear")
    api = FakeMessagesAPI([tool_reply(answer)])
    outcome = plan_brief(brief, profile, PlanOptions(transport=api.transport(), settings=FAST,
                                                      api_key=KEY))
    answers = project_answers(outcome.plan, brief, "penguin-llm")
    service = render_service(outcome.plan, profile, brief, tmp_path / "svc", answers)
    outcome.write(service)
    package = answers.get("package_name") or "penguin_llm"
    written = (service / "src" / package / "custom_features.py").read_text()
    assert "bill_ratio" in written
    service_venv.train_service(service, package)
    metadata = json.loads((service / "artifacts" / "champion" / "metadata.json").read_text())
    assert "bill_ratio" in [feature["name"] for feature in metadata["derived_features"]]
    manifest = json.loads((service / ".mlgen" / "manifest.json").read_text())
    assert manifest["slot"]["added_columns"] == ["bill_ratio"]
    leaked = [path for path in service.rglob("*") if path.is_file()
              and KEY.encode() in path.read_bytes()]
    assert leaked == []
