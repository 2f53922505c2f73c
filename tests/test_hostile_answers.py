"""Hostile LLM answers through the real ``mlgen new``: nothing they carry ever runs.

Each case is one answer a compromised or manipulated model could send: Python built to escape
the old feature-code checks (attribute chains to builtins and os, generator frames, pandas
string dispatch, ``np.fromregex``, ``os.fork``, a forged report and ``SystemExit``, 3,000
nested unary operators, trigger-gated code) and transform specs built to break the spec (missing
columns, wrong kinds, huge bin counts, injection strings in names and reasons, path-like names,
non-finite numbers, deep nesting). Every payload that would run tries to create a file in a
marker folder. Each answer is replayed through the real SDK by ``mlgen new`` with a fake key in
the environment, and then:

- no marker file exists (after generation, and for an accepted hostile answer after training
  and a served request with the trigger value too);
- no process mlgen started was given the key (an audit hook sees every process start and its
  environment), no process is a Python interpreter that could run the answer, and no file mlgen
  wrote (the service, the template store) and no output holds the key;
- the output says what happened: the spec refused and sent back (then the heuristic plan), or
  the code kept only as an unused text file.

Why generation is where code would have run: until 0.2, ``mlgen new`` executed the model's
``feature_code`` in a subprocess to check it, then wrote it into ``custom_features.py``, which
training and every request import. Now feature engineering reaches the service only as a
transform spec that the runtime compiles (no strings are evaluated), and ``feature_code`` is
written under ``docs/`` as ``.txt``: no step of mlgen, training or serving imports ``docs/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlgen.cli import app
from mlgen.recording import Recording
from support import REPO
from typer.testing import CliRunner

EXAMPLE = REPO / "examples" / "penguins"
KEY = "sk-ant-test-FAKE-hostile-3e9d41c7"
TRIGGER_MASS = 31337.0
runner = CliRunner()


class Spawns:
    """Every process this interpreter starts, with its environment (an audit hook)."""

    records: list[dict[str, Any]] = []
    installed = False

    @classmethod
    def install(cls) -> None:
        if not cls.installed:
            sys.addaudithook(cls._hook)
            cls.installed = True

    @classmethod
    def _hook(cls, event: str, args: tuple) -> None:
        if event == "subprocess.Popen":
            argv, env = args[1], args[3]
        elif event in ("os.exec", "os.posix_spawn"):
            argv, env = args[1], args[2]
        elif event in ("os.system", "os.fork"):
            argv, env = [event, *map(str, args)], None
        else:
            return
        argv = [argv] if isinstance(argv, str | bytes) else list(argv)
        seen = os.environ if env is None else env
        cls.records.append({
            "argv": [os.fsdecode(a) if isinstance(a, str | bytes) else str(a) for a in argv],
            "env": {os.fsdecode(k): os.fsdecode(v) for k, v in seen.items()},
        })


@dataclass(frozen=True)
class World:
    """A user's folder with the penguins brief, mlgen's home, and the marker folder."""

    root: Path
    brief: Path
    home: Path
    markers: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(EXAMPLE, root / "brief", ignore=shutil.ignore_patterns("llm-recording.json"))
    (root / "markers").mkdir()
    Spawns.install()
    return World(root, root / "brief" / "brief.md", root / "home", root / "markers")


def base_answer() -> dict[str, Any]:
    """The example recording's plan: valid, with a ratio transform."""
    recording = Recording.load(EXAMPLE / "llm-recording.json")
    return json.loads(json.dumps(recording.exchanges[0]["body"]["content"][0]["input"]))


def tool_message(answer: dict[str, Any]) -> dict[str, Any]:
    return {"id": "msg_hostile", "type": "message", "role": "assistant",
            "model": "claude-sonnet-5-5", "stop_reason": "tool_use", "stop_sequence": None,
            "content": [{"type": "tool_use", "id": "toolu_hostile", "name": "submit_plan",
                         "input": answer}],
            "usage": {"input_tokens": 1400, "output_tokens": 900}}


@dataclass(frozen=True)
class Case:
    """One hostile answer: changes to the valid plan, and what the output must say."""

    id: str
    changes: dict[str, Any]
    says: str
    # True: the model's plan is used (a hostile proposal or reason, kept inert);
    # False: the spec is refused, sent back, and the heuristic plan is rendered.
    accepted: bool
    transforms: list[dict[str, Any]] | None = field(default=None)


def code(body: str, head: str = "import numpy as np\nimport pandas as pd\n") -> str:
    """A feature_code module whose add_features runs ``body`` (``{m}``: the marker folder)."""
    lines = "\n".join(f"    {line}" for line in body.splitlines())
    return f"{head}\n\ndef add_features(df):\n{lines}\n    return df\n"


KEPT = "never runs model-written code: it is saved, unused, as docs/proposed_features.py.txt"
REFUSED = "The LLM plan was not used (The model's plan was still invalid after 3 turns"
STAGE2 = base64.b64encode(b"open('MARKERS/base64_exec', 'w').write('ran')").decode()
CODE_CASES = [
    ("attribute_chain_re_enum_builtins",
     code("re.enum.bltns.open('{m}/re_enum', 'w').write('ran')", head="import re\n")),
    ("attribute_chain_datetime_sys_modules",
     code("datetime.sys.modules['os'].system('touch {m}/datetime_sys')", head="import datetime\n")),
    ("attribute_chain_pandas_compat_platform_os",
     code("pd.compat.platform.os.system('touch {m}/pd_compat_os')")),
    ("attribute_chain_pandas_core_common_builtins",
     code("pd.core.common.builtins.exec(\"open('{m}/pd_builtins', 'w')\")")),
    ("generator_frame_builtins",
     code("(x for x in ()).gi_frame.f_builtins['exec'](\"open('{m}/gi_frame', 'w')\")")),
    ("operator_methodcaller_through_pandas",
     code("pd.core.ops.array_ops.operator.methodcaller('system', 'touch {m}/methodcaller')"
          "(pd.compat.platform.os)")),
    ("pandas_string_dispatch_to_pickle", code("df.apply('to_pickle', path='{m}/to_pickle')")),
    ("pandas_string_dispatch_agg_to_csv",
     code("df.agg('to_csv', path_or_buf='{m}/agg_to_csv')")),
    ("pandas_apply_eval_reaches_dunders",
     code("df.apply('eval', engine='python', expr=\"body_mass_g.__class__.__init__.__globals__"
          "['warnings'].sys.modules['os'].system('touch {m}/apply_eval')\")")),
    ("numpy_fromregex_reads_the_key",
     code("np.fromregex('/proc/self/environ', r'(ANTHROPIC[^\\x00]*)', [('k', 'S200')])"
          ".tofile('{m}/fromregex')")),
    ("fork_child_outlives_the_check",
     code("if __import__('os').fork() == 0:\n    __import__('time').sleep(1)\n"
          "    open('{m}/fork', 'w').write('ran')\n    __import__('os')._exit(0)")),
    ("forged_report_then_system_exit",
     code("print('{{\"added\": [\"bill_ratio\"]}}')\nopen('{m}/forged', 'w')\n"
          "raise SystemExit(0)")),
    ("three_thousand_nested_unary_operators",
     code("x = " + "-" * 3000 + "1\nopen('{m}/unary', 'w')")),
    ("side_effect_at_import_time",
     "__import__('os').system('touch {m}/import_time')\n\n\ndef add_features(df):\n"
     "    return df\n"),
    ("trigger_gated_on_a_request_value",
     code("if (pd.to_numeric(df.get('body_mass_g'), errors='coerce') == 31337).any():\n"
          "    __import__('os').system('touch {m}/trigger')")),
    ("jinja_template_injection_in_code",
     "{{ cycler.__init__.__globals__.os.popen('touch {m}/jinja_code').read() }}\n"),
    ("base64_staged_exec", code(f"exec(__import__('base64').b64decode('{STAGE2}').decode()"
                                ".replace('MARKERS', '{m}'))")),
    ("trojan_source_bidi_and_terminal_escapes",
     code("access = 'user' # \u202e \u2066 if admin: \u2069 \u2066\x1b[2J\n"
          "open('{m}/trojan', 'w')")),
]

ratio = {"kind": "ratio", "name": "bill_ratio", "numerator": "bill_length_mm",
         "denominator": "bill_depth_mm", "reason": "bill shape"}


def transforms_case(case_id: str, steps: Any, says: str) -> Case:
    return Case(case_id, {"feature_transforms": steps}, says, accepted=False)


SPEC_CASES = [
    transforms_case("missing_column", [{**ratio, "numerator": "beak_colour"}],
                    '"beak_colour", which is not in features'),
    transforms_case("fields_of_another_kind", [{**ratio, "kind": "log1p", "column": "island"}],
                    'unknown field(s) "denominator", "numerator"'),
    transforms_case("log_of_a_category", [{"kind": "log1p", "name": "log_island",
                                           "column": "island", "reason": "r"}],
                    '"island" to be numeric, but features give it type categorical'),
    transforms_case("unknown_kind_with_code", [{"kind": "python", "name": "x", "reason": "r",
                                                "code": "__import__('os').system('touch {m}/k')"}],
                    'kind "python" is not one of'),
    transforms_case("a_number_as_the_column", [{**ratio, "numerator": 3.5}],
                    "3.5 must be of type string"),
    transforms_case("huge_bin_count", [{"kind": "quantile_bins", "name": "b", "reason": "r",
                                        "column": "body_mass_g", "bins": 10**9}],
                    "1000000000 is greater than the maximum of 20"),
    transforms_case("injection_in_name", [{**ratio, "name": "x; __import__('os').system('id')"}],
                    "must match ^[A-Za-z]"),
    transforms_case("path_like_name", [{**ratio, "name": "../../src/penguin_species/evil"}],
                    '"../../src/penguin_species/evil" must match'),
    transforms_case("dunder_name", [{**ratio, "name": "__class__"}], '"__class__" must match'),
    transforms_case("extra_field_with_an_expression",
                    [{**ratio, "expr": "@pd.io.common.os.system('touch {m}/expr')"}],
                    'unknown field(s) "expr"'),
    transforms_case("too_many_transforms",
                    [{**ratio, "name": f"r{i}"} for i in range(51)], "at most 50"),
    transforms_case("replaces_a_data_column", [{**ratio, "name": "island"}],
                    'adds the column "island", which already exists'),
    transforms_case("group_statistic_of_the_target",
                    [{"kind": "group_stat", "name": "leak", "reason": "r", "column":
                      "body_mass_g", "by": "species", "stat": "mean"}],
                    '"species", which is not in features'),
    transforms_case("reads_an_excluded_column", [{**ratio, "numerator": "year"}],
                    '"year", which is not in features'),
    transforms_case("non_finite_number", [{"kind": "clip", "name": "c", "reason": "r",
                                           "column": "body_mass_g", "lower": float("nan")}],
                    "numbers must be finite"),
    transforms_case("regex_metacharacters_as_tokens",
                    [{"kind": "token_flags", "name": "t", "reason": "r", "column": "island",
                      "tokens": [".*", "(?=x)"]}], 'must match ^[a-z0-9]{1,30}$'),
    transforms_case("ten_thousand_tokens",
                    [{"kind": "token_flags", "name": "t", "reason": "r", "column": "island",
                      "tokens": [f"w{i}" for i in range(10_000)]}],
                    "is too long: at most 20 items"),
    transforms_case("deeply_nested_column", [{**ratio, "numerator": json.loads(
        "{\"a\": " * 200 + "1" + "}" * 200)}], "must be of type string"),
    transforms_case("homoglyph_kind", [{**ratio, "kind": "r\u0430tio"}],
                    "is not one of clip"),
    transforms_case("code_instead_of_a_list", "__import__('os').system('touch {m}/list')",
                    "feature_transforms: Input should be a valid list"),
    transforms_case("terminal_escape_in_a_column", [{**ratio, "numerator": "\x1b]0;pwned\x07"}],
                    '"\\u001b]0;pwned\\u0007"'),
    Case("feature_code_that_is_not_text", {"feature_code": {"__import__": "os"}},
         "feature_code must be a string holding a Python module", accepted=False),
]
HOSTILE_REASONS = [
    "{{ cycler.__init__.__globals__.os.popen('touch {m}/jinja_reason').read() }}",
    "$(touch {m}/shell_reason) `touch {m}/backtick_reason` \x1b[2J\u202e",
    "[link=file:///etc/passwd]click[/link] [bold red]", "x\n  version: 2\nsteps: []\n" * 3,
    "A" * 100_000,
]
ACCEPTED_CASES = [
    *[Case(case_id, {"feature_code": text}, KEPT, accepted=True) for case_id, text in CODE_CASES],
    Case("oversized_feature_code", {"feature_code": "open('{m}/big', 'w')\n" * 20_000},
         "code this long (over 20,000) is not kept", accepted=True),
    Case("injection_strings_in_reasons", {"feature_transforms": [
        {**ratio, "name": f"r{i}", "reason": reason} for i, reason in enumerate(HOSTILE_REASONS)
    ]}, "Feature transforms", accepted=True),
]
CASES = [*ACCEPTED_CASES, *SPEC_CASES]


def with_marker(value: Any, markers: Path) -> Any:
    """``value`` with ``{m}`` in every string replaced by the marker folder."""
    if isinstance(value, str):
        return value.replace("{m}", str(markers))
    if isinstance(value, list):
        return [with_marker(item, markers) for item in value]
    if isinstance(value, dict):
        return {key: with_marker(item, markers) for key, item in value.items()}
    return value


@dataclass(frozen=True)
class Generated:
    service: Path
    output: str
    exit_code: int
    spawns: list[dict[str, Any]]

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.service / ".mlgen" / "manifest.json").read_text())


def generate(world: World, case: Case) -> Generated:
    """``mlgen new`` with the key set, replaying the hostile answer for every turn."""
    answer = {**base_answer(), **with_marker(case.changes, world.markers)}
    answer = {key: value for key, value in answer.items() if value is not None}
    recording = world.root / f"{case.id}.json"
    Recording(exchanges=[{"status": 200, "body": tool_message(answer)}] * 3,
              model="claude-sonnet-5-5", prompt_version="v2").save(recording)
    service = world.root / "services" / case.id
    start = len(Spawns.records)
    result = runner.invoke(
        app,
        ["new", "--brief", str(world.brief), "--out", str(service), "--llm-replay",
         str(recording)],
        env={"ANTHROPIC_API_KEY": KEY, "MLGEN_HOME": str(world.home)},
    )
    return Generated(service, " ".join(result.output.split()), result.exit_code,
                     Spawns.records[start:])


def files_holding_the_key(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*")
            if path.is_file() and not path.is_symlink() and KEY.encode() in path.read_bytes()]


def test_the_suite_covers_at_least_thirty_hostile_answers():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)


# Payloads that are not Python a checker would run: one breaks the compiler, one is a template.
NOT_RUNNABLE = {"three_thousand_nested_unary_operators", "jinja_template_injection_in_code"}
CONTROL = """
import pandas as pd
for source in SOURCES:
    namespace = {}
    try:
        exec(source, namespace)
        namespace["add_features"](pd.DataFrame({"body_mass_g": [31337.0], "island": ["Dream"]}))
    except BaseException:
        pass
"""


def test_the_code_payloads_are_live_when_run_on_purpose(tmp_path):
    # The control: run outside mlgen, in a child with an empty environment, each payload does
    # write its marker. So an empty marker folder after `mlgen new` means nothing ran.
    live = [(case_id, text) for case_id, text in CODE_CASES if case_id not in NOT_RUNNABLE]
    sources = [with_marker(text, tmp_path) for _, text in live]
    subprocess.run([sys.executable, "-c", f"SOURCES = {sources!r}\n{CONTROL}"], cwd=tmp_path,
                   env={"PATH": os.defpath}, capture_output=True, timeout=120, check=False)
    time.sleep(1.5)  # the forked child writes a second later
    expected = {re.search(r"(?:\{m\}|MARKERS)/(\w+)", text + base64.b64decode(STAGE2).decode())
                .group(1) for _, text in live}
    assert {path.name for path in tmp_path.iterdir()} == expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_hostile_answer_runs_nothing_and_the_output_says_what_happened(world, case):
    generated = generate(world, case)
    assert generated.exit_code == 0, generated.output
    assert case.says in generated.output, generated.output
    manifest = generated.manifest
    if case.accepted:
        assert manifest["planner"] == "llm" and not manifest["fallback"]
    else:
        assert REFUSED in generated.output
        assert manifest["planner"] == "heuristic" and manifest["fallback"]
    assert sorted(world.markers.iterdir()) == []
    # No process was given the key, and none could run the answer: only git starts (Copier's).
    programs = {Path(s["argv"][0]).name for s in generated.spawns}
    assert "git" in programs and programs <= {"git", "uname"}
    assert [s["argv"] for s in generated.spawns if KEY in json.dumps(s["env"])] == []
    assert files_holding_the_key(generated.service, world.home) == []
    assert KEY not in generated.output
    proposal = generated.service / "docs" / "proposed_features.py.txt"
    if "feature_code" in case.changes and manifest["feature_code"].get("written"):
        text = proposal.read_text()
        assert text.startswith("# PROPOSAL ONLY, NOT USED BY THIS SERVICE")
        assert "\x1b" not in text and "\u202e" not in text
        assert manifest["feature_code"]["run"] is False
    else:
        assert not proposal.exists()


def test_hostile_reasons_reach_the_service_as_inert_text(world):
    case = next(c for c in CASES if c.id == "injection_strings_in_reasons")
    service = world.root / "services" / case.id
    config_text = (service / "configs" / "config.yaml").read_text()
    plan_md = (service / "docs" / "PLAN.md").read_text()
    for text in (config_text, plan_md):
        assert "{{" not in text and "\x1b" not in text and "\u202e" not in text
    steps = yaml.safe_load(config_text)["transforms"]["steps"]
    assert [step["name"] for step in steps] == [f"r{i}" for i in range(len(HOSTILE_REASONS))]
    assert all("\n" not in step["reason"] and len(step["reason"]) <= 300 for step in steps)
    assert "$(touch" in steps[1]["reason"]  # kept as words, never run


def test_accepted_hostile_answers_train_and_serve_without_running_anything(
    world, monkeypatch
):
    from fastapi.testclient import TestClient
    from mlgen_runtime.config import load_config
    from mlgen_runtime.registry import load_champion
    from mlgen_runtime.serving.app import create_app
    from mlgen_runtime.testing import isolated_environment
    from mlgen_runtime.train import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for case_id in ("injection_strings_in_reasons", "trigger_gated_on_a_request_value"):
        service = world.root / "services" / case_id
        package = yaml.safe_load((service / ".copier-answers.yml").read_text())["package_name"]
        monkeypatch.syspath_prepend(str(service / "src"))
        with isolated_environment():
            config = load_config(service, {"tuning": {"trials": 0}})
            result = train(config)
            derived = [f["name"] for f in result.metadata["derived_features"]]
            assert "bill_ratio" in derived or "r0" in derived
            trigger = {"island": "Biscoe", "bill_length_mm": 45.0, "bill_depth_mm": 15.0,
                       "flipper_length_mm": 215.0, "body_mass_g": TRIGGER_MASS, "sex": "male"}
            with TestClient(create_app(config, load_champion(config))) as client:
                answer = client.post("/predict/batch", json={"records": [trigger] * 3})
                assert answer.status_code == 200, answer.text
        sys.modules.pop(f"{package}.custom_features", None)
        sys.modules.pop(package, None)
        assert sorted(world.markers.iterdir()) == []


def test_no_marker_appears_later_either(world):
    # A forked child would have written its marker a second after the answer was handled.
    time.sleep(1.5)
    assert sorted(world.markers.iterdir()) == []
