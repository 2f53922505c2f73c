"""``mlgen deploy``'s pieces: what mlgen refuses before rendering, what the rendered service
depends on, and the runtime's adoption of each model format (mlgen_runtime/adopt/: skops,
pickle, ONNX, TorchScript, an MLflow folder, a registered ``models:/`` version or alias) on the
penguins fixture service, in process with a throwaway MLflow store.

The two complaints users make about other model servers are covered here: the model's
requirements missing at run time (they become the service's dependencies, and a missing one
stops the deploy with the requirement to install), and custom pyfuncs that fail to load (one
shipped with its code is served; one without gets an error that says to ship it).
"""

from __future__ import annotations

import pickle
import sys
import tomllib
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io
import torch
from mlflow import MlflowClient
from mlgen.brief import Brief
from mlgen.cli import app
from mlgen.deploy import check_source, deployment_plan, model_requirements
from mlgen.profile import profile_file
from mlgen.render import project_answers
from mlgen_runtime.adopt import AdoptionError, adopt, fit_to_sample, load_model
from mlgen_runtime.bundle import load_bundle_dir
from mlgen_runtime.registry import champion_dir, champion_version
from mlgen_runtime.testing import isolated_config
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from support import render
from typer.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "runtime" / "tests" / "fixture_service"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
RULES = '''import mlflow.pyfunc
import mlflow.sklearn
import numpy as np


def log_size(values):
    return np.log1p(values)


class PenguinRules(mlflow.pyfunc.PythonModel):
    """A hand-written classifier: the user's own code, not a library's."""

    def predict(self, context, model_input, params=None):
        flipper = model_input["flipper_length_mm"].to_numpy(dtype=float)
        bill = model_input["bill_length_mm"].to_numpy(dtype=float)
        return np.where(flipper > 206, "Gentoo", np.where(bill > 44, "Chinstrap", "Adelie"))


class YearTyped(mlflow.pyfunc.PythonModel):
    """A model that answers by a column's dtype: integer years one way, others another."""

    def predict(self, context, model_input, params=None):
        label = "Adelie" if model_input["year"].dtype.kind == "i" else "Gentoo"
        return np.full(len(model_input), label)
'''


@pytest.fixture(autouse=True)
def _own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return pd.read_csv(FIXTURE / "data" / "sample.csv")


def numeric_sample(penguins: pd.DataFrame, folder: Path) -> Path:
    path = folder / "numeric.csv"
    penguins[[*NUMERIC, "species"]].dropna().to_csv(path, index=False)
    return path


def numeric_config(folder: Path):
    features = [{"name": name, "type": "numeric", "encoding": "scale"} for name in NUMERIC]
    return isolated_config(FIXTURE, folder, {"features": features})


def fitted(penguins: pd.DataFrame):
    rows = penguins[[*NUMERIC, "species"]].dropna()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        rows[NUMERIC], rows["species"])


def run_mlgen(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


# --- what mlgen refuses before it renders anything ------------------------------------------

def test_a_pickle_without_trust_pickle_is_refused_and_nothing_is_written(tmp_path, penguins):
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(fitted(penguins)))
    sample = numeric_sample(penguins, tmp_path)
    done = run_mlgen("deploy", "--model", str(model), "--sample", str(sample), "--target",
                     "species", "--out", str(tmp_path / "svc"))
    assert done.exit_code == 2
    assert "--trust-pickle" in done.output
    assert not (tmp_path / "svc").exists()


def test_an_unknown_model_format_is_refused_with_the_formats_there_are(tmp_path, penguins):
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF")
    done = run_mlgen("deploy", "--model", str(model), "--sample",
                     str(numeric_sample(penguins, tmp_path)), "--target", "species",
                     "--out", str(tmp_path / "svc"))
    output = " ".join(done.output.split())
    assert done.exit_code == 2
    assert "Unknown model format '.h5'" in output and ".skops" in output and ".onnx" in output
    assert not (tmp_path / "svc").exists()


def test_a_deployed_models_requirements_become_the_services_dependencies(tmp_path, penguins):
    # Complaint 1: the model's requirements missing at run time.
    model = tmp_path / "rules"
    mlflow.pyfunc.save_model(str(model), python_model=_rules_class(tmp_path, "rules_a")(),
                             pip_requirements=["mlflow==3.17.2", "statsmodels>=0.14",
                                               f"scikit-learn=={sklearn.__version__}"])
    assert model_requirements(str(model)) == ["statsmodels>=0.14",
                                              f"scikit-learn=={sklearn.__version__}"]
    sample = numeric_sample(penguins, tmp_path)
    brief = Brief.parse("---\ntarget: species\n---\n# Penguin rules\n")
    plan = deployment_plan(brief, profile_file(sample))
    assert [feature.name for feature in plan.features] == NUMERIC
    answers = {**project_answers(plan, brief), "model_requirements": model_requirements(
        str(model))}
    service = render(tmp_path / "svc", answers)
    dependencies = tomllib.loads((service / "pyproject.toml").read_text())["project"][
        "dependencies"]
    assert "statsmodels>=0.14" in dependencies
    assert f"scikit-learn=={sklearn.__version__}" in dependencies


# --- the runtime's adoption ---------------------------------------------------------------

def test_a_missing_requirement_stops_the_deploy_naming_what_to_install(tmp_path):
    model = tmp_path / "rules"
    mlflow.pyfunc.save_model(str(model), python_model=_rules_class(tmp_path, "rules_b")(),
                             pip_requirements=["penguin-calipers==2.1"])
    with pytest.raises(AdoptionError, match=r"needs penguin-calipers==2\.1, which is not "):
        load_model(str(model))


def test_a_model_saved_with_another_scikit_learn_is_refused_naming_the_version(
        tmp_path, penguins):
    data = pickle.dumps(fitted(penguins))
    current = sklearn.__version__.encode()
    older = b"1.5.2"[: len(current)].ljust(len(current), b"0")
    model = tmp_path / "old.joblib"
    model.write_bytes(data.replace(current, older))
    with pytest.raises(AdoptionError, match=f"saved with scikit-learn {older.decode()}.*"
                       f"Install scikit-learn=={older.decode()}"):
        load_model(str(model), trust_pickle=True)


def test_skops_types_beyond_scikit_learn_need_trust(tmp_path, penguins):
    rows = penguins[[*NUMERIC, "species"]].dropna()
    _rules_class(tmp_path, "rules_e")
    import rules_e

    pipeline = make_pipeline(FunctionTransformer(rules_e.log_size),
                             LogisticRegression(max_iter=500))
    model = tmp_path / "model.skops"
    skops.io.dump(pipeline.fit(rows[NUMERIC], rows["species"]), model)
    refused = r"outside scikit-learn: rules_e\.log_size.*--trust-pickle"
    with pytest.raises(AdoptionError, match=refused):
        load_model(str(model))
    assert load_model(str(model), trust_pickle=True).inputs == NUMERIC


def test_sample_columns_that_do_not_match_the_model_are_refused(tmp_path, penguins):
    model = tmp_path / "model.skops"
    skops.io.dump(fitted(penguins), model)
    sample = tmp_path / "renamed.csv"
    penguins[[*NUMERIC, "species"]].rename(columns={"body_mass_g": "mass"}).to_csv(sample,
                                                                                   index=False)
    config = numeric_config(tmp_path / "svc")
    with pytest.raises(AdoptionError, match="missing body_mass_g; not taken by the model mass"):
        adopt(config, str(model), sample)
    assert champion_version(config) is None


def test_an_onnx_classifier_is_served_as_its_session_answers(tmp_path, penguins):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    pipeline = fitted(penguins)
    graph = to_onnx(pipeline, initial_types=[("X", FloatTensorType([None, len(NUMERIC)]))],
                    options={id(pipeline[-1]): {"zipmap": False}})
    model = tmp_path / "penguins.onnx"
    model.write_bytes(graph.SerializeToString())
    config = numeric_config(tmp_path / "svc")
    metadata = adopt(config, str(model), numeric_sample(penguins, tmp_path))
    assert metadata["model_family"] == "adopted (onnx)"
    assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert str(champion_version(config).version) == "1"
    assert metadata["metrics"]["accuracy"] > 0.95
    assert (config.resolve(config.paths.artifacts) / "champion" / "metadata.json").exists()


def test_an_onnx_regressor_answers_values_and_has_no_probabilities(tmp_path, penguins):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType
    from sklearn.linear_model import Ridge

    inputs, target = NUMERIC[:3], "body_mass_g"
    rows = penguins[[*inputs, target]].dropna()
    ridge = Ridge().fit(rows[inputs], rows[target])
    model = tmp_path / "mass.onnx"
    model.write_bytes(to_onnx(ridge, initial_types=[("X", DoubleTensorType([None, 3]))])
                      .SerializeToString())
    adopted = fit_to_sample(load_model(str(model)), rows, target, "regression")
    assert not hasattr(adopted.model, "predict_proba")
    assert adopted.model.predict(rows[inputs]) == pytest.approx(ridge.predict(rows[inputs]))
    with pytest.raises(AdoptionError, match="is a regressor but the service was planned for "
                       "multiclass_classification"):
        fit_to_sample(load_model(str(model)), rows, target, "multiclass_classification")


def test_a_custom_pyfunc_shipped_with_its_code_is_served(tmp_path, penguins):
    # Complaint 2: custom pyfuncs that fail to load. The module is gone from the path before
    # adoption: only the code saved with the model can load it.
    model = tmp_path / "rules"
    rules = _rules_class(tmp_path, "rules_c")
    mlflow.pyfunc.save_model(str(model), python_model=rules(),
                             code_paths=[str(tmp_path / "rules_c.py")])
    _forget("rules_c", tmp_path)
    config = isolated_config(FIXTURE, tmp_path / "svc")
    metadata = adopt(config, str(model), FIXTURE / "data" / "sample.csv")
    assert metadata["model_family"] == "adopted (mlflow)"
    assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert metadata["metrics"]["accuracy"] > 0.8


def test_a_custom_pyfunc_without_its_code_gets_told_to_ship_it(tmp_path):
    model = tmp_path / "rules"
    mlflow.pyfunc.save_model(str(model), python_model=_rules_class(tmp_path, "rules_d")())
    _forget("rules_d", tmp_path)
    with pytest.raises(AdoptionError, match="No module named 'rules_d'.*code_paths"):
        load_model(str(model))


def test_a_registered_model_is_deployed_by_version_and_by_alias_from_its_registry(
        tmp_path, penguins, monkeypatch):
    # The team's registry (its own SQLite store and artifacts), not the service's.
    registry = f"sqlite:///{tmp_path / 'team.db'}"
    mlflow.set_tracking_uri(registry)
    experiment = mlflow.create_experiment("penguins", str(tmp_path / "team-artifacts"))
    rows = penguins[[*NUMERIC, "species"]].dropna()
    with mlflow.start_run(experiment_id=experiment):
        mlflow.sklearn.log_model(fitted(penguins), name="model",
                                 registered_model_name="penguin-species",
                                 input_example=rows[NUMERIC].head(3),
                                 pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
    MlflowClient().set_registered_model_alias("penguin-species", "production", "1")
    # set_tracking_uri exported it; the services below must use only their own stores.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sample = numeric_sample(penguins, tmp_path)
    for uri, folder in (("models:/penguin-species/1", "by-version"),
                        ("models:/penguin-species@production", "by-alias")):
        config = numeric_config(tmp_path / folder)
        metadata = adopt(config, uri, sample, tracking_uri=registry)
        assert metadata["adopted"]["source"] == uri
        assert f"scikit-learn=={sklearn.__version__}" in metadata["adopted"]["requirements"]
        assert metadata["model_family"] == "adopted (mlflow)"
        assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        assert metadata["metrics"]["accuracy"] > 0.95
        assert str(champion_version(config).version) == "1"
    # Without --tracking-uri the URI is looked up in the service's own (empty) registry.
    with pytest.raises(AdoptionError, match="Cannot read the MLflow model models:/penguin-"
                       "species/1.*pass --tracking-uri of the registry that holds it"):
        load_model("models:/penguin-species/1")


def test_a_model_served_differently_from_its_own_answers_fails_naming_the_rows(tmp_path):
    # Serving sends numbers as float64; this model answers integer years differently.
    model = tmp_path / "year"
    mlflow.pyfunc.save_model(str(model), python_model=_rules_class(tmp_path, "rules_f",
                                                                    "YearTyped")(),
                             code_paths=[str(tmp_path / "rules_f.py")])
    config = isolated_config(FIXTURE, tmp_path / "svc")
    with pytest.raises(AdoptionError, match=r"344 of 344 sample rows are served differently "
                       r"from the model's own output \(rows \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\)"):
        adopt(config, str(model), FIXTURE / "data" / "sample.csv")
    assert champion_version(config) is None


# --- TorchScript ---------------------------------------------------------------------------

class PenguinNet(torch.nn.Module):
    """The user's network: standardises its inputs itself and answers one logit per class."""

    def __init__(self, inputs: pd.DataFrame, outputs: int) -> None:
        super().__init__()
        values = torch.tensor(inputs.to_numpy(), dtype=torch.float32)
        self.register_buffer("mean", values.mean(dim=0))
        self.register_buffer("scale", values.std(dim=0))
        self.body = torch.nn.Sequential(torch.nn.Linear(inputs.shape[1], 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.scale)


class TwoInputs(torch.nn.Module):
    def forward(self, bills: torch.Tensor, flippers: torch.Tensor) -> torch.Tensor:
        return bills.sum(dim=1, keepdim=True) + flippers


def trained_net(inputs: pd.DataFrame, target: torch.Tensor, outputs: int, loss) -> PenguinNet:
    """A network trained by hand, seeded, full batch (penguins: a few hundred rows)."""
    torch.manual_seed(0)
    net = PenguinNet(inputs, outputs)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.tensor(inputs.to_numpy(), dtype=torch.float32)
    for _ in range(300):
        optimiser.zero_grad()
        loss(net(x), target).backward()
        optimiser.step()
    return net.eval()


def test_a_torchscript_classifier_is_served_as_the_modules_own_answers(tmp_path, penguins):
    rows = penguins[[*NUMERIC, "species"]].dropna()
    classes = sorted(rows["species"].unique())
    codes = torch.tensor([classes.index(label) for label in rows["species"]])
    net = trained_net(rows[NUMERIC], codes, len(classes), torch.nn.functional.cross_entropy)
    model = tmp_path / "penguins.pt"
    torch.jit.script(net).save(str(model))
    assert check_source(str(model), trust_pickle=False) == str(model)
    assert model_requirements(str(model)) == ["torch==2.13.0"]

    config = numeric_config(tmp_path / "svc")
    metadata = adopt(config, str(model), numeric_sample(penguins, tmp_path))
    assert metadata["model_family"] == "adopted (torchscript)"
    assert metadata["classes"] == classes
    assert metadata["adopted"]["requirements"] == ["torch==2.13.0"]
    assert metadata["adopted"]["libraries"]["torch"] == torch.__version__
    assert metadata["metrics"]["accuracy"] > 0.95
    # The registered champion, loaded back as serving loads it, answers the module's logits
    # through a softmax, row by row, bit for bit.
    served = load_bundle_dir(champion_dir(config)).pipeline
    with torch.no_grad():
        logits = [net(torch.tensor(row, dtype=torch.float32)[None]).to(torch.float64).numpy()
                  for row in rows[NUMERIC].to_numpy()]
    assert (served.predict_proba(rows[NUMERIC]) == softmax(np.concatenate(logits), axis=1)).all()


def test_a_torchscript_regressor_answers_values_and_refuses_class_tasks(tmp_path, penguins):
    inputs, target = NUMERIC[:3], "body_mass_g"
    rows = penguins[[*inputs, target]].dropna()
    grams = torch.tensor(rows[target].to_numpy(), dtype=torch.float32)[:, None]
    net = trained_net(rows[inputs], grams / 1000, 1, torch.nn.functional.mse_loss)
    model = tmp_path / "mass.pt"
    torch.jit.trace(net, torch.zeros(1, 3)).save(str(model))
    adopted = fit_to_sample(load_model(str(model)), rows, target, "regression")
    assert not hasattr(adopted.model, "predict_proba")
    with torch.no_grad():
        own = net(torch.tensor(rows[inputs].to_numpy(), dtype=torch.float32)).numpy().ravel()
    assert adopted.model.predict(rows[inputs]) == pytest.approx(own, rel=1e-6)
    with pytest.raises(AdoptionError, match=r"mass\.pt answers 1 number\(s\) per row, but the "
                       r"sample's 'body_mass_g' has \d+ classes"):
        fit_to_sample(load_model(str(model)), rows, target, "multiclass_classification")


def test_torchscript_of_another_signature_or_a_state_dict_is_refused_naming_it(tmp_path,
                                                                                  penguins):
    two = tmp_path / "two.pt"
    torch.jit.script(TwoInputs()).save(str(two))
    with pytest.raises(AdoptionError, match=r"forward takes \(bills: Tensor, flippers: Tensor\); "
                       "a deployed TorchScript model takes one float tensor"):
        load_model(str(two))
    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), weights)
    with pytest.raises(AdoptionError, match=r"weights\.pt is not a TorchScript archive.*"
                       r"torch\.jit\.script\(model\)\.save"):
        load_model(str(weights))
    rows = penguins[[*NUMERIC, "species"]].dropna()
    wide = tmp_path / "wide.pt"
    torch.jit.script(PenguinNet(rows[NUMERIC], 5)).save(str(wide))
    with pytest.raises(AdoptionError, match="answers 5 number.s. per row, but the sample's "
                       "'species' has 3 classes"):
        fit_to_sample(load_model(str(wide)), rows, "species", "multiclass_classification")
    with pytest.raises(AdoptionError, match=r"wide\.pt fails on a row of 3 columns "
                       r"\(bill_length_mm, bill_depth_mm, flipper_length_mm\): .*size of tensor a "
                       r"\(3\) must match"):
        fit_to_sample(load_model(str(wide)), rows.drop(columns="body_mass_g"), "species",
                      "multiclass_classification")
    islands = penguins[["island", *NUMERIC[:3], "species"]].dropna()
    with pytest.raises(AdoptionError, match="takes numbers; column.s. island hold text"):
        fit_to_sample(load_model(str(wide)), islands, "species", "multiclass_classification")


def _rules_class(folder: Path, module: str, name: str = "PenguinRules") -> type:
    """The user's pyfunc class, importable from its own module file (as a user's project has)."""
    (folder / f"{module}.py").write_text(RULES)
    sys.path.insert(0, str(folder))
    imported = __import__(module)
    return getattr(imported, name)


def _forget(module: str, folder: Path) -> None:
    sys.modules.pop(module, None)
    sys.path.remove(str(folder))
