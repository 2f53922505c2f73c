"""An *MLflow model* adopted: a folder or a ``models:/``/``runs:/`` URI, its declared
requirements checked against this environment, and the pyfunc as the service's estimator."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as distributions
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .adopted import Adopted, AdoptionError, installed_versions

MLFLOW = "mlflow"
TRACKING_ENV, REGISTRY_ENV = "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"

# Libraries whose version changes a fitted model's output: another version is refused. Others
# in an MLflow model's requirements (mlflow, cloudpickle, pandas, ...) are recorded only.
_PREDICTIVE = ("scikit-learn", "lightgbm", "xgboost", "catboost", "torch", "onnxruntime",
               "statsmodels")


def load_mlflow(source: str, tracking_uri: str | None) -> Adopted:
    import mlflow
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with _registry(tracking_uri):
                folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source,
                                                                  dst_path=tmp))
        except Exception as exc:
            raise AdoptionError(
                f"Cannot read the MLflow model {source}: {str(exc).splitlines()[0][:300]}. "
                "For a models:/ URI pass --tracking-uri of the registry that holds it."
            ) from exc
        requirements = _requirements(folder)
        _check_requirements(requirements, source)
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
                 if p.is_file()}
    adapter = MlflowAdapter(files)
    signature = adapter.pyfunc.metadata.get_input_schema()
    inputs = None
    if signature is not None and signature.has_input_names():
        inputs = [str(name) for name in signature.input_names()]
    names = [requirement.name for requirement in _parsed(requirements)]
    return Adopted(adapter.estimator(), MLFLOW, source, inputs, installed_versions(names),
                   requirements)


@contextmanager
def _registry(uri: str | None) -> Iterator[None]:
    """MLflow pointed at the user's registry ``uri`` for the block only. MLflow 3.17 reads
    parts of a ``models:/`` download (the registered model, an alias) from its global
    registry whatever ``registry_uri`` it is given; and set_tracking_uri exports
    MLFLOW_TRACKING_URI, which left behind would make the user's registry the service's own
    store (the adopted champion would be registered there)."""
    if not uri:
        yield
        return
    import mlflow

    saved = {name: os.environ.get(name) for name in (TRACKING_ENV, REGISTRY_ENV)}
    tracking = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        # None (typed str, but MLflow 3.17 takes it) unsets it: the tracking store's registry.
        mlflow.set_registry_uri(saved[REGISTRY_ENV])  # type: ignore[arg-type]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _requirements(folder: Path) -> list[str]:
    path = folder / "requirements.txt"
    if not path.is_file():
        return []
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def _parsed(requirements: list[str]) -> list[Any]:
    """The requirements pip would understand (a URL or an option line is left to pip)."""
    from packaging.requirements import InvalidRequirement, Requirement

    parsed = []
    for line in requirements:
        try:
            parsed.append(Requirement(line))
        except InvalidRequirement:
            continue
    return parsed


def _check_requirements(requirements: list[str], source: str) -> None:
    """Every requirement installed; a library that computes predictions at the version pinned."""
    for requirement in _parsed(requirements):
        line = str(requirement)
        try:
            installed = distributions.version(requirement.name)
        except distributions.PackageNotFoundError:
            raise AdoptionError(
                f"The model {source} needs {line}, which is not installed. Install the service "
                "again (mlgen deploy puts the model's requirements in its pyproject.toml), or "
                f"`pip install '{line}'` in its environment."
            ) from None
        name = requirement.name.lower().replace("_", "-")
        if name in _PREDICTIVE and not requirement.specifier.contains(installed, prereleases=True):
            raise AdoptionError(
                f"The model {source} was saved with {line}; this environment has "
                f"{requirement.name} {installed}, whose predictions may differ. Install "
                f"`{line}` in the service's environment, or save the model again with "
                f"{requirement.name} {installed}."
            )


class MlflowAdapter:
    """An MLflow model as the service's estimator: its folder's files travel inside (so the
    registered bundle is self-contained), and the model is loaded from them on first use.

    A model with the sklearn flavour is served as the estimator itself (:meth:`estimator`);
    any other pyfunc answers ``predict`` (values), and a classifier's labels become one-hot
    probabilities over the classes :meth:`with_classes` fixes.
    """

    def __init__(self, files: dict[str, bytes], classes: list[Any] | None = None) -> None:
        self.files = files
        self.classes = classes
        self._pyfunc: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "classes": self.classes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.files, self.classes, self._pyfunc = state["files"], state["classes"], None

    def _folder(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="mlgen-adopted-"))
        for name, data in self.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder

    @property
    def pyfunc(self) -> Any:
        if self._pyfunc is None:
            import mlflow.pyfunc

            try:
                self._pyfunc = mlflow.pyfunc.load_model(str(self._folder()))
            except (ImportError, AttributeError) as exc:
                raise AdoptionError(
                    f"The MLflow model's code does not load here: {exc}. A custom pyfunc must "
                    "ship its code: save it with code_paths=[<your module files>] (or "
                    "infer_code_paths=True), and list its libraries in pip_requirements."
                ) from exc
        return self._pyfunc

    def estimator(self) -> Any:
        """The scikit-learn estimator for a sklearn-flavoured model, else this adapter."""
        if "sklearn" in self.pyfunc.metadata.flavors:
            import mlflow.sklearn

            return mlflow.sklearn.load_model(str(self._folder()))
        return self

    def with_classes(self, classes: list[Any]) -> MlflowAdapter:
        return MlflowAdapter(self.files, sorted(classes, key=str))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        output = self.pyfunc.predict(frame)
        if isinstance(output, pd.DataFrame):
            output = output.iloc[:, 0]
        return np.ravel(np.asarray(output))

    @property
    def predict_proba(self) -> Any:
        # Absent (hasattr False) for a regressor, as scikit-learn's available_if does.
        if self.classes is None:
            raise AttributeError("predict_proba: the model answers values, not classes")
        return self._one_hot

    def _one_hot(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.classes is not None
        labels = self.predict(frame)
        index = {str(label): i for i, label in enumerate(self.classes)}
        unknown = sorted({str(label) for label in labels} - set(index))
        if unknown:
            raise ValueError(
                f"the model predicted {', '.join(unknown)}, not among the classes it was "
                f"deployed with ({', '.join(map(str, self.classes))})"
            )
        proba = np.zeros((len(labels), len(self.classes)))
        proba[np.arange(len(labels)), [index[str(label)] for label in labels]] = 1.0
        return proba

    @property
    def classes_(self) -> np.ndarray:
        if self.classes is None:
            raise AttributeError("classes_")
        return np.asarray(self.classes, dtype=object)
