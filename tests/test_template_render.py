"""The template renders cleanly over its option matrix, validates answers, and lints."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlgen.plan import Plan
from support import REPO, render

TASKS = ["binary_classification", "multiclass_classification", "regression"]
FAMILIES = ["linear", "random_forest", "hist_gradient_boosting", "lightgbm"]
QUESTIONS = [k for k in yaml.safe_load((REPO / "copier.yml").read_text()) if not k.startswith("_")]
# Jinja that should have been rendered: a block tag, or an expression naming one of our answers.
# Grafana legends and Prometheus annotations legitimately keep `{{ $labels.x }}` / `{{feature}}`,
# and Python f-strings such as `{share:.1%}` contain `%}`.
# The runtime every service carries (copied from runtime/, never rendered).
VENDORED = Path("vendor") / "mlgen-runtime"
LEFTOVER = re.compile(
    r"\{%-?\s*(if|elif|else|endif|for|endfor|set|raw|endraw|macro|include|import)\b"
    r"|\{\{-?\s*(_copier\w*|" + "|".join(map(re.escape, QUESTIONS)) + r")\b"
)

OPTION_SETS = {
    "time_split": {"time_column": "event_time", "id_column": "row_id"},
    "group_split": {"group_column": "customer_id", "split_strategy": "group"},
    "balanced_tuned": {"class_weight": "balanced", "tuning_trials": 5, "primary_metric": "pr_auc",
                       "positive_when": ">= 2"},
    "explicit_features": {
        "features": [
            {"name": "age", "type": "numeric", "encoding": "scale"},
            {"name": "plan", "type": "categorical", "encoding": "onehot"},
            {"name": "city code", "type": "categorical", "encoding": "target"},
            {"name": "is_active", "type": "boolean"},
            {"name": "signup_date", "type": "datetime"},
        ],
        "exclude_columns": ["email"],
        "latency_budget_ms": 20,
        "max_batch_size": 50,
    },
}


def _matrix() -> list[tuple[str, dict]]:
    cases = [
        (f"{task}-{family}", {"task": task, "model_family": family})
        for task, family in itertools.product(TASKS, FAMILIES)
    ]
    cases += [
        (name, {"task": "binary_classification", **opts}) for name, opts in OPTION_SETS.items()
    ]
    return cases


# The recommendation kind: the questionnaire's defaults (the bundled interaction sample), and
# every recommendation question answered.
REC_CASES = [
    ("rec-defaults", {"kind": "recommendation"}),
    ("rec-full", {"kind": "recommendation", "time_column": "created_at",
                  "weight_column": "quantity", "min_weight": 2,
                  "item_columns": ["category", "brand"], "top_k": 20,
                  "recommendation_split": "user_last", "primary_metric": "recall",
                  "recommenders": ["popularity", "ease", "content"], "tuning_trials": 3,
                  "time_budget_seconds": 30, "test_size": 0.25,
                  "example_record": {"user_id": "PS-0289", "items": ["Audix D6", "O'Brien DI"],
                                     "filters": {"category": ["microphone"]}}}),
]

# The forecasting kind: the defaults (the bundled AirPassengers sample) and every forecasting
# question answered.
FC_CASES = [
    ("fc-defaults", {"kind": "forecasting"}),
    ("fc-full", {"kind": "forecasting", "target": "demand", "time_column": "ts",
                 "series_column": "store",
                 "covariates": [{"name": "temperature", "known_future": True},
                                {"name": "footfall", "known_future": False}],
                 "frequency": "30min", "horizon": 48, "season_length": 48, "gaps": "fill",
                 "duplicates": "mean", "forecasters": ["lightgbm"],
                 "forecast_strategy": "recursive", "backtest_windows": 2, "test_windows": 4,
                 "primary_metric": "smape", "interval_level": 0.8}),
]

# The audio and text kinds: the defaults (the bundled clips and reviews) and every question
# answered.
LABELLED_CASES = [
    ("audio-defaults", {"kind": "audio"}),
    ("audio-full", {"kind": "audio", "data_path": "/srv/clips", "sample_rate": 8000,
                    "clip_seconds": 2.5, "max_clip_seconds": 30.0,
                    "group_pattern": "^(?P<group>[^_]+)_", "audio_models": ["mfcc_logistic"],
                    "epochs": 5, "primary_metric": "f1_macro", "test_size": 0.3}),
    ("text-defaults", {"kind": "text"}),
    ("text-full", {"kind": "text", "data_path": "/srv/tickets.parquet", "target": "team",
                   "text_column": "body", "text_numeric_columns": ["length"],
                   "text_categorical_columns": ["channel"], "class_weight": "balanced",
                   "primary_metric": "f1_macro",
                   "example_record": {"body": "It's broken since the update"}}),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("matrix")
    out = {}
    for name, answers in _matrix() + REC_CASES + FC_CASES + LABELLED_CASES:
        # Long names on purpose (40 characters is the most the questions allow): imports of the
        # package must still fit ruff's line length.
        pkg = ("svc_" + re.sub(r"\W", "_", name) + "_pkg" * 10)[:40].rstrip("_")
        project = pkg.replace("_", "-")
        out[name] = render(root / name, {"project_name": project, "package_name": pkg, **answers})
    return out


def _text_files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in {".png", ".parquet", ".db"}:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


@pytest.mark.parametrize("case", [name for name, _ in
                                  _matrix() + REC_CASES + FC_CASES + LABELLED_CASES])
def test_render_leaves_no_jinja_behind(rendered: dict[str, Path], case: str) -> None:
    root = rendered[case]
    problems = []
    for path, text in _text_files(root):
        rel = path.relative_to(root)
        if rel.parts[:2] == VENDORED.parts:
            continue  # copied verbatim, never rendered: see the test below
        if "{{" in str(rel) or "{%" in str(rel) or path.suffix == ".jinja":
            problems.append(f"{rel}: unrendered path")
        for lineno, line in enumerate(text.splitlines(), 1):
            if LEFTOVER.search(line):
                problems.append(f"{rel}:{lineno}: {line.strip()}")
    assert not problems, "Jinja left behind:\n" + "\n".join(problems)


def test_the_service_carries_this_checkouts_runtime_file_for_file(
    rendered: dict[str, Path],
) -> None:
    runtime = REPO / "runtime"
    expected = {
        path.relative_to(runtime).as_posix(): path.read_bytes()
        for path in runtime.rglob("*")
        if path.is_file() and not {"tests", "__pycache__"} & set(path.relative_to(runtime).parts)
        and path.suffix != ".pyc"
    }
    for root in rendered.values():
        vendored = root / VENDORED
        found = {
            path.relative_to(vendored).as_posix(): path.read_bytes()
            for path in vendored.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert found == expected


@pytest.mark.parametrize("case", [name for name, _ in _matrix()])
def test_rendered_config_carries_the_answers(rendered: dict[str, Path], case: str) -> None:
    answers = dict(_matrix())[case]
    config = yaml.safe_load((rendered[case] / "configs" / "config.yaml").read_text())
    stored = yaml.safe_load((rendered[case] / ".copier-answers.yml").read_text())
    assert config["task"] == answers["task"] == stored["task"]
    assert config["model"]["family"] == answers.get("model_family", "hist_gradient_boosting")
    assert stored["_src_path"] and stored["_commit"], "an answers file that can be updated"
    for key in ("time_column", "group_column", "id_column"):
        if key in answers:
            assert config["data"][key] == answers[key]
    assert config["data"]["positive_when"] == answers.get("positive_when")
    if "features" in answers:
        assert config["features"] == answers["features"]
        assert config["data"]["exclude_columns"] == answers["exclude_columns"]
    if answers["task"] == "regression":
        assert config["metric"]["primary"] == "rmse"
        assert config["model"]["class_weight"] == "none"


def test_every_rendered_project_passes_ruff(rendered: dict[str, Path]) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the dev extra"
    proc = subprocess.run([ruff, "check", *map(str, rendered.values())],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]


def test_default_render_ships_a_working_sample(rendered: dict[str, Path], tmp_path: Path) -> None:
    default = render(tmp_path / "default")
    assert (default / "data" / "sample.csv").exists()
    # A service pointed at its own data gets no bundled sample that could mislead its tests.
    custom = rendered["time_split"]
    assert not (custom / "data" / "sample.csv").exists() or (
        yaml.safe_load((custom / "configs" / "config.yaml").read_text())["data"]["path"]
        == "data/sample.csv"
    )


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"package_name": "2fast"}, "not a valid package name"),
        ({"package_name": "trailing_"}, "not ending with"),
        ({"task": "regression", "primary_metric": "roc_auc"}, "does not fit regression"),
        ({"data_path": "data/train.xlsx"}, ".csv, .parquet or .pq"),
        ({"split_strategy": "time"}, "needs time_column"),
        ({"features": [{"name": "x", "type": "vector"}]}, 'unknown type "vector"'),
        ({"test_size": 0.9}, "between 0.05 and 0.5"),
        ({"positive_when": "more than 2"}, "positive_when must be an operator"),
    ],
)
def test_invalid_answers_are_refused_with_a_reason(tmp_path: Path, answers: dict,
                                                   message: str) -> None:
    with pytest.raises(Exception) as excinfo:
        render(tmp_path / "bad", answers)
    assert message in str(excinfo.value)
    assert not (tmp_path / "bad" / "configs").exists(), "a refused render writes nothing"


def test_copier_cli_copies_without_trust(tmp_path: Path) -> None:
    copier = Path(sys.executable).parent / "copier"
    data = tmp_path / "penguins.csv"
    data.write_text("species,island,bill_length_mm\nAdelie,Torgersen,39.1\n")
    proc = subprocess.run(
        [str(copier), "copy", "--defaults", "--vcs-ref", "HEAD",
         "--data", "project_name=penguin-api", "--data", "task=multiclass_classification",
         "--data", f"data_path={data}", "--data", "target=species",
         str(REPO), str(tmp_path / "penguin-api")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    config = yaml.safe_load((tmp_path / "penguin-api" / "configs" / "config.yaml").read_text())
    assert config["data"]["target"] == "species"
    assert config["metric"]["primary"] == "f1_macro"
    assert (tmp_path / "penguin-api" / "src" / "penguin_api" / "app.py").exists()
    assert (tmp_path / "penguin-api" / VENDORED / "src" / "mlgen_runtime" / "train.py").exists()


def _choices(question: str) -> set[str]:
    return set(yaml.safe_load((REPO / "copier.yml").read_text())[question]["choices"].values())


def test_the_questions_choices_are_exactly_what_the_runtime_config_accepts() -> None:
    """copier.yml defines the questions; the runtime's typed config must take every answer."""
    from typing import get_args

    from mlgen_runtime import config

    fields = config.Config.model_fields
    from mlgen_runtime.kinds import KINDS

    assert _choices("kind") == set(KINDS)
    # The recommendation and forecasting kinds' tasks are not asked: each is its kind's one task.
    assert _choices("task") | {"recommendation", "forecasting"} | {
        "audio_classification", "text_classification"} == set(get_args(fields["task"].annotation))
    rec = config.RecommendationConfig.model_fields
    assert _choices("recommendation_split") == set(get_args(rec["split"].annotation))
    assert set(get_args(config.RecommenderFamily)) == set(Plan().recommenders or []) | {
        "recent_popularity", "content"}
    assert ["ndcg", "recall", "map", "precision"] == list(get_args(rec["primary_metric"]
                                                                   .annotation))
    assert _choices("model_family") == set(get_args(config.ModelConfig.model_fields["family"]
                                                    .annotation))
    assert _choices("split_strategy") == set(
        get_args(config.SplitConfig.model_fields["strategy"].annotation))
    assert _choices("class_weight") == set(
        get_args(config.ModelConfig.model_fields["class_weight"].annotation))
    forecasting = config.ForecastingConfig.model_fields
    for question, field in (("gaps", "gaps"), ("duplicates", "duplicates"),
                            ("forecast_strategy", "strategy")):
        assert _choices(question) == set(get_args(forecasting[field].annotation))
    assert set(get_args(config.Forecaster)) == set(
        Plan(kind="forecasting", time_column="time").forecasters)
    assert list(get_args(config.AudioFamily)) == Plan(kind="audio").audio_models
    for section in (config.AudioConfig, config.TextConfig):
        assert list(get_args(section.model_fields["primary_metric"].annotation)) == [
            "accuracy", "f1_macro"]


@pytest.mark.parametrize("case", [name for name, _ in LABELLED_CASES])
def test_an_audio_or_text_service_renders_its_own_config_files_and_tests(
    rendered: dict[str, Path], case: str
) -> None:
    from mlgen_runtime.config import AudioConfig, load_config

    answers = dict(LABELLED_CASES)[case]
    root = rendered[case]
    config = load_config(root)
    kind = answers["kind"]
    assert config.kind == kind and config.task == f"{kind}_classification"
    stored = yaml.safe_load((root / ".copier-answers.yml").read_text())
    assert not {"task", "features", "time_column", "user_column", "horizon"} & set(stored)
    own = {"audio": "test_audio_service.py", "text": "test_text_service.py"}
    assert sorted(p.name for p in (root / "tests").iterdir()) == [own[kind]]
    readme = (root / "README.md").read_text()
    makefile = (root / "Makefile").read_text()
    assert "drift:" not in makefile and "retrain:" not in makefile and "promote:" in makefile
    if kind == "audio":
        audio = config.audio
        assert audio is not None
        for name, field in (("sample_rate", "sample_rate"), ("clip_seconds", "clip_seconds"),
                            ("max_clip_seconds", "max_seconds"),
                            ("group_pattern", "group_pattern"), ("audio_models", "candidates"),
                            ("epochs", "epochs"), ("primary_metric", "primary_metric"),
                            ("test_size", "test_size")):
            if name in answers:
                assert getattr(audio, field) == answers[name]
        # The template writes the runtime's CNN training defaults out, so a user sees and can
        # change them; they must not drift apart.
        defaults = AudioConfig()
        for field in ("patience", "batch_size", "learning_rate", "weight_decay", "schedule",
                      "width", "augment", "masks", "mixup", "label_smoothing"):
            assert getattr(audio, field) == getattr(defaults, field), field
        assert "mlgen-runtime[audio] @" in (root / "pyproject.toml").read_text()
        assert "-F file=@" in readme and "audio_base64" in readme
        if case == "audio-defaults":
            manifest = pd.read_csv(root / "data" / "sample" / "manifest.csv")
            assert len(manifest) == 48 and manifest["label"].nunique() == 3
            assert all((root / "data" / "sample" / path).is_file() for path in manifest["path"])
            assert "-F file=@data/sample/yes/en-029-m2_0.flac" in readme
        else:
            assert not (root / "data" / "sample").exists() and "-F file=@clip.wav" in readme
    else:
        text = config.text
        assert text is not None
        assert config.data.target == answers.get("target", "label")
        assert text.text_column == answers.get("text_column", "text")
        assert text.numeric_columns == answers.get("text_numeric_columns", [])
        assert text.categorical_columns == answers.get("text_categorical_columns", [])
        assert text.class_weight == answers.get("class_weight", "none")
        assert "mlgen-runtime @" in (root / "pyproject.toml").read_text()
        if case == "text-defaults":
            sample = pd.read_csv(root / "data" / "sample.csv")
            assert list(sample.columns) == ["text", "label"] and len(sample) == 400
        else:
            # The README's request is the example record, quoted safely for the shell.
            assert """-d '{"body": "It\\u0027s broken since the update"}'""" in readme


@pytest.mark.parametrize("case", [name for name, _ in _matrix()])
def test_every_rendered_config_loads_in_the_runtime(rendered: dict[str, Path], case: str) -> None:
    from mlgen_runtime.config import load_config
    from mlgen_runtime.kinds import kind_of

    config = load_config(rendered[case])
    assert kind_of(config).name == "tabular"
    assert config.task == dict(_matrix())[case]["task"]


@pytest.mark.parametrize("case", [name for name, _ in FC_CASES])
def test_a_forecasting_service_renders_its_own_config_files_and_tests(
    rendered: dict[str, Path], case: str
) -> None:
    from mlgen_runtime.config import load_config

    answers = dict(FC_CASES)[case]
    root = rendered[case]
    config = load_config(root)
    assert config.kind == config.task == "forecasting"
    fc = config.forecasting
    assert config.data.target == answers.get("target", "target")
    assert fc.time_column == answers.get("time_column", "time")
    assert fc.series_column == (answers.get("series_column") or None)
    assert [c.model_dump() for c in fc.covariates] == answers.get("covariates", [])
    assert fc.frequency == (answers.get("frequency") or None)
    assert fc.season_length == (answers.get("season_length") or None)
    for name, field in (("horizon", "horizon"), ("gaps", "gaps"), ("duplicates", "duplicates"),
                        ("forecasters", "candidates"), ("forecast_strategy", "strategy"),
                        ("backtest_windows", "backtest_windows"),
                        ("test_windows", "test_windows"), ("primary_metric", "primary_metric"),
                        ("interval_level", "interval_level")):
        if name in answers:
            assert getattr(fc, field) == answers[name]
    stored = yaml.safe_load((root / ".copier-answers.yml").read_text())
    assert stored["kind"] == "forecasting" and "target" in stored
    assert not {"task", "features", "model_family", "user_column", "top_k"} & set(stored)
    assert not (root / "tests" / "test_data_contract.py").exists()
    assert not (root / "tests" / "test_recommendations.py").exists()
    assert (root / "tests" / "test_forecasts.py").exists()
    assert "mlgen-runtime[forecasting] @" in (root / "pyproject.toml").read_text()
    assert "forecast-all:" in (root / "Makefile").read_text()
    readme = (root / "README.md").read_text()
    assert "/forecast" in readme and "/feedback" in readme
    if case == "fc-defaults":
        sample = pd.read_csv(root / "data" / "sample.csv")
        assert list(sample.columns) == ["time", "target"] and len(sample) == 144
    else:
        assert '"temperature": [<48 values>]' in readme


@pytest.mark.parametrize("case", [name for name, _ in REC_CASES])
def test_a_recommendation_service_renders_its_own_config_files_and_tests(
    rendered: dict[str, Path], case: str
) -> None:
    from mlgen_runtime.config import load_config

    answers = dict(REC_CASES)[case]
    root = rendered[case]
    config = load_config(root)
    assert config.kind == config.task == "recommendation"
    rec = config.recommendation
    assert (rec.user_column, rec.item_column) == ("user_id", "item_id")
    assert rec.time_column == (answers.get("time_column") or None)
    assert rec.weight_column == (answers.get("weight_column") or None)
    assert rec.min_weight == answers.get("min_weight")
    assert rec.item_columns == answers.get("item_columns", [])
    assert rec.k == answers.get("top_k", 10)
    assert rec.split == answers.get("recommendation_split", "random")
    assert rec.primary_metric == answers.get("primary_metric", "ndcg")
    assert rec.candidates == answers.get("recommenders", ["popularity", "item_knn", "ease",
                                                          "als", "bpr"])
    assert rec.trials == answers.get("tuning_trials", 0)
    assert rec.test_size == answers.get("test_size", 0.2)
    stored = yaml.safe_load((root / ".copier-answers.yml").read_text())
    assert stored["kind"] == "recommendation"
    assert not {"task", "target", "features", "model_family", "split_strategy"} & set(stored)
    # The tabular kind's files stay out; the kind's own tests, sample and runtime extra come in.
    pkg = stored["package_name"]
    assert not (root / "src" / pkg / "custom_features.py").exists()
    assert not (root / "tests" / "test_data_contract.py").exists()
    assert (root / "tests" / "test_recommendations.py").exists()
    assert "mlgen-runtime[recommendation] @" in (root / "pyproject.toml").read_text()
    sample = pd.read_csv(root / "data" / "sample.csv")
    assert {"user_id", "item_id", "created_at", "category", "quantity"} <= set(sample.columns)
    assert "recommend-all:" in (root / "Makefile").read_text()
    readme = (root / "README.md").read_text()
    assert "/recommend/similar" in readme and "someone-new" in readme
    if "example_record" in answers:
        # A quote in an id survives the shell: the -d body is valid JSON holding it.
        body = re.search(r"/recommend/similar \\\n.*?-d '((?:[^']|'\\'')*)'", readme,
                         re.S).group(1)
        assert json.loads(body.replace("'\\''", "'"))["items"] == ["Audix D6", "O'Brien DI"]
        assert '"filters": {"category": ["microphone"]}' in readme


def test_a_tabular_render_is_untouched_by_the_recommendation_kind(
    rendered: dict[str, Path],
) -> None:
    root = rendered["binary_classification-linear"]
    assert not (root / "tests" / "test_recommendations.py").exists()
    assert (root / "tests" / "test_data_contract.py").exists()
    assert "recommend" not in (root / "Makefile").read_text()
    assert "[recommendation]" not in (root / "pyproject.toml").read_text()
    assert "/recommend" not in (root / "README.md").read_text()


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"user_column": "item_id"}, "cannot also be the user column"),
        ({"min_weight": 4}, "min_weight needs weight_column"),
        ({"min_weight": "high", "weight_column": "w"}, "min_weight must be a number"),
        ({"recommendation_split": "time"}, "A time split needs time_column"),
        ({"time_column": "t", "user_column": "t"}, "cannot also be the time column"),
        ({"recommenders": ["svd"]}, 'Unknown recommender "svd"'),
        ({"recommenders": ["content"]}, "content needs item_columns"),
        ({"item_columns": ["user_id"]}, "cannot also be item metadata"),
        ({"top_k": 0}, "top_k must be between 1 and 100"),
        ({"primary_metric": "roc_auc"}, "does not fit recommendation"),
    ],
)
def test_invalid_recommendation_answers_are_refused_with_a_reason(
    tmp_path: Path, answers: dict, message: str
) -> None:
    with pytest.raises(Exception) as excinfo:
        render(tmp_path / "bad", {"kind": "recommendation", **answers})
    assert message in str(excinfo.value)
    assert not (tmp_path / "bad" / "configs").exists(), "a refused render writes nothing"


def test_compiling_each_template_source_once_renders_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mlgen's renders (and this test session) compile each Jinja source once
    # (mlgen.jinja_cache). A service rendered with Jinja's own compile and one rendered from
    # the cache must be the same files, byte for byte.
    import jinja2
    from mlgen import jinja_cache

    answers = {"project_name": "cache-check", "package_name": "cache_check",
               "kind": "forecasting"}
    with jinja_cache.compiled_once():
        warm = render(tmp_path / "warm", answers)
        assert jinja_cache._cache, "the renders compile through the cache"
        monkeypatch.setattr(jinja2.Environment, "compile", jinja_cache._original)
        cold = render(tmp_path / "cold", answers)
        monkeypatch.undo()
        again = render(tmp_path / "again", answers)

    def files(root: Path) -> dict[str, bytes]:
        # Copier commits a dirty checkout before rendering it: only that commit id differs.
        return {str(p.relative_to(root)): re.sub(rb"(?m)^_commit: .*$", b"", p.read_bytes())
                for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}

    assert files(warm) == files(cold) == files(again)
    # Syntax settings are part of the key: one source under other delimiters is compiled anew.
    with jinja_cache.compiled_once():
        plain = jinja2.Environment().from_string("{{ x }} [[ x ]]").render(x=1)
        square = jinja2.Environment(variable_start_string="[[", variable_end_string="]]")
        assert (plain, square.from_string("{{ x }} [[ x ]]").render(x=1)) == ("1 [[ x ]]",
                                                                               "{{ x }} 1")
