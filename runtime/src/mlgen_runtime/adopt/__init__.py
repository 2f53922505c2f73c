"""*Adopting* a model: the service serves a model it did not train (``mlgen deploy``).

The model comes as a scikit-learn estimator (skops; joblib/pickle only when the user trusts
it, since loading a pickle runs code), an ONNX graph (onnx_graph.py), a TorchScript module
(torchscript.py) or an MLflow model, a folder or a ``models:/`` URI (mlflow_model.py). It
becomes what training would have produced: an estimator with
``predict``/``predict_proba``/``classes_`` (the model itself, or a picklable adapter of this
package), measured on the labelled sample, registered as the first ``champion`` with its bundle
and Dummy-baseline fallback, so serving, drift, the registry, later ``train`` runs and the
model card work unchanged. Adopted models are served as given (no ONNX or compiled fast path):
:func:`parity` proves the serving path's answers equal to the model's own on every sample row.

Refused, each with what to do: an unknown format, a pickle without ``trust_pickle``, skops
types outside scikit-learn/numpy/scipy without it, a model saved with another scikit-learn
(InconsistentVersionWarning), an MLflow model whose requirements are missing or pinned to
another version of a library that computes its predictions, a custom pyfunc whose code does
not load, a TorchScript module of another signature than one float tensor in, and sample
columns that do not match the model's inputs.
"""

from __future__ import annotations

import json
import tempfile
import warnings
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Config
from .adopted import Adopted, AdoptionError, installed_versions
from .mlflow_model import MLFLOW, MlflowAdapter, load_mlflow
from .onnx_graph import ONNX, OnnxAdapter
from .torchscript import SUFFIXES as TORCHSCRIPT_SUFFIXES
from .torchscript import TORCHSCRIPT, TorchScriptAdapter, load_torchscript

__all__ = ["Adopted", "AdoptionError", "MlflowAdapter", "OnnxAdapter", "TorchScriptAdapter",
           "adopt", "detect_format", "fit_to_sample", "load_model", "model_output", "parity"]

SKOPS, PICKLE = "skops", "pickle"
FORMATS = (SKOPS, PICKLE, ONNX, TORCHSCRIPT, MLFLOW)
_SUFFIXES = {".skops": SKOPS, ".joblib": PICKLE, ".pkl": PICKLE, ".pickle": PICKLE,
             ".onnx": ONNX, **dict.fromkeys(TORCHSCRIPT_SUFFIXES, TORCHSCRIPT)}
# Types a skops file may hold without --trust-pickle beyond skops' own trusted ones:
# scikit-learn's (e.g. HistGradientBoosting's TreePredictor) and numpy's dtype.
_SAFE_PREFIX = "sklearn."
_SAFE_TYPES = {"numpy.dtype"}


def detect_format(source: str) -> str:
    """The format of ``source`` by its form: a ``models:/`` URI or a folder with ``MLmodel``
    is MLflow; a file by its suffix, or a TorchScript archive by its contents."""
    if source.startswith(("models:/", "runs:/")):
        return MLFLOW
    path = Path(source)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return MLFLOW
        raise AdoptionError(
            f"{source} is a folder without an MLmodel file: give an MLflow model folder, or "
            "the model file itself (.skops, .joblib, .pkl, .onnx, .pt)."
        )
    if not path.is_file():
        raise AdoptionError(f"Model {source} does not exist: give the path of the model file.")
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None and _is_torchscript(path):
        fmt = TORCHSCRIPT
    if fmt is None:
        raise AdoptionError(
            f"Unknown model format {path.suffix or '(no suffix)'!r} of {path.name}: deploy a "
            f"scikit-learn model (.skops, or .joblib/.pkl with --trust-pickle), an ONNX graph "
            "(.onnx), a TorchScript module (.pt), or an MLflow model (folder or models:/ URI)."
        )
    return fmt


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def load_model(source: str, trust_pickle: bool = False, tracking_uri: str | None = None) -> Adopted:
    """Load the model at ``source`` (see :func:`detect_format`), refusing what would change
    its predictions or run untrusted code."""
    fmt = detect_format(source)
    if fmt == PICKLE:
        if not trust_pickle:
            raise AdoptionError(
                f"{Path(source).name} is a pickle: loading it runs any code it holds. Pass "
                "--trust-pickle if you made it or trust who did, or save the model with skops "
                "(skops.io.dump) and deploy the .skops file."
            )
        import joblib

        model = _sklearn_load(lambda: joblib.load(source), source)
        return _sklearn(model, fmt, source)
    if fmt == SKOPS:
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=source)
        unknown = [name for name in untrusted
                   if not name.startswith(_SAFE_PREFIX) and name not in _SAFE_TYPES]
        if unknown and not trust_pickle:
            raise AdoptionError(
                f"{Path(source).name} holds types from outside scikit-learn: "
                f"{', '.join(unknown[:10])}. Loading them runs their code: pass --trust-pickle "
                "if you trust them (their modules must be importable by the service)."
            )
        model = _sklearn_load(lambda: skops.io.load(source, trusted=untrusted), source)
        return _sklearn(model, fmt, source)
    if fmt == ONNX:
        adapter = OnnxAdapter(Path(source).read_bytes())
        return Adopted(adapter, fmt, source, adapter.input_names,
                       installed_versions(["onnxruntime"]), [])
    if fmt == TORCHSCRIPT:
        return load_torchscript(source)
    return load_mlflow(source, tracking_uri)


def _sklearn_load(load: Any, source: str) -> Any:
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        model = load()
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            found = warning.message
            raise AdoptionError(
                f"{Path(source).name} was saved with scikit-learn "
                f"{found.original_sklearn_version}; this service has "
                f"{found.current_sklearn_version}, whose predictions may differ. Install "
                f"scikit-learn=={found.original_sklearn_version} in the service's environment, "
                f"or refit and save the model with scikit-learn {found.current_sklearn_version}."
            )
    return model


def _sklearn(model: Any, fmt: str, source: str) -> Adopted:
    if not hasattr(model, "predict"):
        raise AdoptionError(
            f"{Path(source).name} holds a {type(model).__name__}, not a fitted estimator with "
            "predict(): save the whole fitted Pipeline."
        )
    names = getattr(model, "feature_names_in_", None)
    inputs = None if names is None else [str(name) for name in names]
    return Adopted(model, fmt, source, inputs, installed_versions(["scikit-learn", "numpy"]), [])


def fit_to_sample(adopted: Adopted, sample: pd.DataFrame, target: str, task: str) -> Adopted:
    """The model with what the sample decides: its input columns checked against the model's,
    a classifier's classes (pyfunc, TorchScript), tensor column order (ONNX, TorchScript);
    the task checked."""
    columns = [str(c) for c in sample.columns if c != target]
    if target not in sample.columns:
        raise AdoptionError(
            f"The sample has no column {target!r} (the target): the service measures the model "
            "on the sample's true values. Add the column, or name the target with --target."
        )
    if adopted.inputs is not None:
        missing = [name for name in adopted.inputs if name not in columns]
        extra = [name for name in columns if name not in adopted.inputs]
        if missing or extra:
            raise AdoptionError(
                "The sample's columns do not match the model's inputs: "
                + "; ".join(part for part in (
                    missing and f"missing {', '.join(missing)}",
                    extra and f"not taken by the model {', '.join(extra)}",
                ) if part)
                + f". The model takes {', '.join(adopted.inputs)} (plus the target {target!r})."
            )
    model = adopted.model
    if isinstance(model, OnnxAdapter):
        model = model.with_columns(columns)
    if isinstance(model, MlflowAdapter) and task != "regression":
        model = model.with_classes(sample[target].dropna().unique().tolist())
    if isinstance(model, TorchScriptAdapter):
        model = model.fitted(sample, target, task)
    classifier = hasattr(model, "predict_proba")
    if classifier != (task != "regression"):
        what = "a classifier" if classifier else "a regressor"
        raise AdoptionError(
            f"The model is {what} but the service was planned for {task} of {target!r}: "
            "set `task:` in the brief to match the model."
        )
    return Adopted(model, adopted.format, adopted.source, adopted.inputs, adopted.libraries,
                   adopted.requirements)


def model_output(model: Any, frame: pd.DataFrame, task: str) -> np.ndarray:
    """The model's own answer on ``frame``: class probabilities, or values."""
    if task == "regression":
        return np.asarray(model.predict(frame), dtype=np.float64)
    return np.asarray(model.predict_proba(frame), dtype=np.float64)


def parity(expected: np.ndarray, served: np.ndarray) -> list[int]:
    """Positions of the rows whose served output differs from the model's own, at all."""
    expected, served = np.atleast_2d(expected.T).T, np.atleast_2d(served.T).T
    same = (expected == served) | (np.isnan(expected) & np.isnan(served))
    return np.flatnonzero(~same.all(axis=1)).tolist()


def adopt(
    config: Config,
    source: str,
    sample_path: Path,
    trust_pickle: bool = False,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Load, check, measure and register the model as the first champion; write the model's
    in-process output on the sample (``<reports>/deploy/expected.json``) for served checks.

    Returns the champion's metadata. Raises :class:`AdoptionError` (nothing registered) when
    the model cannot be served as it is or the served answers differ from its own.
    """
    from ..bundle import Bundle
    from ..compare import compare_predictions
    from ..data import file_hash, load_data
    from ..fallback import export_baseline
    from ..features import resolve_features
    from ..model import build_baseline
    from ..monitoring.drift import build_reference
    from ..registry import CHAMPION, apply_promotion, champion_version, git_commit, log_candidate
    from ..registry import setup as setup_registry
    from ..scoring import METRICS, predict, score
    from ..serving.fastpath import request_records
    from ..serving.predictor import Predictor
    from ..serving.schemas import request_example

    if config.kind != "tabular":
        raise AdoptionError(
            f"`adopt` serves a tabular model (rows of columns in, a label or value out); this "
            f"service is of the {config.kind} kind."
        )
    target, task = config.data.target, config.task
    sample = load_data(sample_path)
    adopted = fit_to_sample(load_model(source, trust_pickle, tracking_uri), sample, target, task)
    setup_registry(config)
    if champion_version(config) is not None:
        raise AdoptionError(
            f"The service already has a {CHAMPION}: deploy into a new service, or train and "
            "promote models through the service's own commands."
        )
    features = resolve_features(sample, config)
    names = [feature["name"] for feature in features]
    dropped = [c for c in sample.columns if c != target and c not in names]
    if dropped:
        raise AdoptionError(
            f"Column(s) {', '.join(map(str, dropped))} of the sample are not features of the "
            "service (constant, id-like or text): the model would get them missing. Drop them "
            "from the sample if the model does not use them."
        )
    labelled = sample[sample[target].notna()]
    x, y = labelled[names], labelled[target]
    model = adopted.model
    expected = model_output(model, sample[names], task)
    metadata: dict[str, Any] = {
        "model_name": config.tracking.registered_model,
        "task": task,
        "target": target,
        "classes": None,
        "features": features,
        # The sample's target: a request may carry it, as a row of the sample does.
        "ignored_columns": [str(target)],
        "example": request_example(sample, features),
        "derived_features": [],
        "transforms": config.transforms.model_dump(mode="json"),
        "model_family": f"adopted ({adopted.format})",
        "params": {},
        "seed": config.seed,
        "data_path": str(sample_path),
        "data_hash": file_hash(sample_path),
        "rows": {"train": 0, "validation": 0, "test": len(labelled)},
        "git_commit": git_commit(config.root),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # Served as given: the fast paths rebuild a scikit-learn pipeline, which this is not.
        "serving": {"path": "sklearn", "rows": len(sample),
                    "onnx": {"ok": False, "reason": "adopted model: served as given"},
                    "compiled": {"ok": False, "reason": "adopted model: served as given"}},
        "adopted": {"format": adopted.format, "source": str(source),
                    "libraries": adopted.libraries, "requirements": adopted.requirements},
    }
    if task != "regression":
        metadata["classes"] = [_plain(c) for c in model.classes_]
    # Served answers: the serving predictor on the sample's rows as JSON carries them.
    records = json.loads(json.dumps(request_records(sample, features), default=_plain))
    served = Predictor(Bundle(model, metadata, {})).model_output(records)
    differing = parity(expected, served)
    if differing:
        shown = sample.iloc[differing[:10]]
        raise AdoptionError(
            f"{len(differing)} of {len(sample)} sample rows are served differently from the "
            f"model's own output (rows {differing[:10]}):\n{shown.to_string()}\n"
            "Check that the sample's column types are those the model was trained on."
        )
    samples, seed, primary = config.metric.bootstrap_samples, config.seed, config.metric.primary
    prediction = predict(model, x, y, task)
    baseline = build_baseline(task).fit(x, y)
    baseline_prediction = predict(baseline, x, y, task)
    against = compare_predictions(primary, baseline_prediction, prediction, paired=True,
                                  alpha=config.promotion.alpha, versions=("baseline", "adopted"),
                                  samples=config.promotion.bootstrap_samples, seed=seed)
    metadata.update({
        "metrics": score(prediction, task, samples, seed),
        # A Dummy fitted on the sample it is scored on: if anything, flattered.
        "baseline_metrics": score(baseline_prediction, task, samples, seed),
        "baseline_test": {"test": against.test, "p_value": against.p_value},
        "primary_metric": primary,
        "higher_is_better": METRICS[primary].higher_is_better,
    })
    reference = build_reference(x, features, seed=seed)
    logged = {**{f"test_{k}": v for k, v in metadata["metrics"].items()},
              **{f"baseline_{k}": v for k, v in metadata["baseline_metrics"].items()},
              "baseline_test_p_value": against.p_value}
    params = {"family": metadata["model_family"], "source": str(source), "seed": seed,
              **{f"library.{k}": v for k, v in adopted.libraries.items()}}
    with tempfile.TemporaryDirectory() as plots:
        metadata = log_candidate(config, model, x.head(5), metadata, reference, params, logged,
                                 Path(plots))
    value = metadata["metrics"][primary]
    reason = (f"adopted with mlgen deploy from {source}; {primary} {value:.4f}"
              f" vs the Dummy baseline's {metadata['baseline_metrics'][primary]:.4f} on "
              f"{len(labelled)} sample rows ({against.test}, p={against.p_value:.3g})")
    apply_promotion(config, metadata["model_version"], reason)
    export_baseline(config, baseline, metadata, reference)
    out = config.resolve(config.paths.reports) / "deploy"
    out.mkdir(parents=True, exist_ok=True)
    (out / "expected.json").write_text(json.dumps({
        "task": task, "classes": metadata["classes"], "records": records,
        "output": expected.tolist(),
    }))
    return {**metadata, "promotion_reason": reason}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)
