"""*Deploying* a model the user already has: a tabular service rendered around it.

``mlgen deploy --model PATH --sample DATA`` plans a tabular service whose features are the
sample's columns (all but the target), renders it with the model's requirements among its
dependencies, installs it into a virtualenv, and runs the service's ``adopt`` command there:
the runtime (mlgen_runtime/adopt/) loads and checks the model, measures it on the sample,
registers it as the first champion and proves its serving path equal to the model's own
answers. ``--verify`` then runs the service's tests and serves it on 127.0.0.1, where every
sample row sent over HTTP must get exactly the model's in-process answer.

Loading a model is the runtime's job (the generator never imports it); what mlgen checks itself
is what it needs before rendering: the model exists, a pickle comes with ``--trust-pickle``,
and the model's requirements (an MLflow model folder's ``requirements.txt``; torch for a
TorchScript module, which the service runs itself). Any failure removes the new service folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlgen.brief import Brief
from mlgen.errors import BriefError, DeployError, VerifyError
from mlgen.plan import Plan
from mlgen.planners.heuristic import HeuristicPlanner
from mlgen.profile import Profile, profile_file
from mlgen.render import project_answers, render_service
from mlgen.verify import Served, install_service, package_name, post_json, run_step

# Model files by suffix (the runtime's mlgen_runtime/adopt/ reads them; mlgen refuses others
# before rendering anything).
PICKLES = (".pkl", ".pickle", ".joblib")
TORCHSCRIPT = (".pt", ".pth", ".ts")
FILES = (".skops", ".onnx", *TORCHSCRIPT)
# What a TorchScript module needs: the torch with a CPU build here (the runtime's audio extra
# pins the same; any other version pulls a multi-GB CUDA build).
TORCH = "torch==2.13.0"
# Requirements the service's runtime already pins (an MLflow model lists them too).
RUNTIME_PINNED = {"mlflow", "mlflow-skinny"}
# Rows per /predict/batch request of the served check (within serving.max_batch_size).
BATCH_ROWS = 100


@dataclass(frozen=True)
class Deployment:
    """A deployed service and what its checks found."""

    service: Path
    adopted: str
    served_rows: int = 0


def model_requirements(source: str) -> list[str]:
    """The libraries the model needs at run time: an MLflow model folder's requirements.txt
    (MLflow itself is the runtime's); torch for a TorchScript file; none for other files,
    whose libraries the runtime has."""
    if Path(source).suffix.lower() in TORCHSCRIPT:
        return [TORCH]
    path = Path(source) / "requirements.txt"
    if not path.is_file():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        name = line.split(";")[0]
        for mark in "=<>!~[ ":
            name = name.split(mark)[0]
        if line and not line.startswith("-") and name.lower() not in RUNTIME_PINNED:
            found.append(line)
    return found


def check_source(model: str, trust_pickle: bool) -> str:
    """``model`` as the service's command gets it (an absolute path, or a URI as given)."""
    if model.startswith(("models:/", "runs:/")):
        return model
    path = Path(model).expanduser()
    if not path.exists():
        raise DeployError(f"Model {model} does not exist: give the path of the model file or "
                          "MLflow model folder, or a models:/ URI.")
    if path.is_dir() and not (path / "MLmodel").is_file():
        raise DeployError(f"{model} is a folder without an MLmodel file: give an MLflow model "
                          "folder, or the model file itself.")
    if path.is_file() and path.suffix.lower() not in (*PICKLES, *FILES):
        raise DeployError(
            f"Unknown model format {path.suffix or '(no suffix)'!r} of {path.name}: deploy a "
            "scikit-learn model (.skops, or .joblib/.pkl with --trust-pickle), an ONNX graph "
            "(.onnx), a TorchScript module (.pt, torch.jit.script(model).save(path)), or an "
            "MLflow model (folder or models:/ URI)."
        )
    if path.suffix.lower() in PICKLES and not trust_pickle:
        raise DeployError(
            f"{path.name} is a pickle: loading it runs any code it holds. Pass --trust-pickle if "
            "you made it or trust who did, or save the model with skops (skops.io.dump) and "
            "deploy the .skops file."
        )
    return str(path.resolve())


def deployment_plan(brief: Brief, profile: Profile) -> Plan:
    """The heuristic plan of the sample with the model's inputs as its features: every column
    but the target, as the sample has it (no roles, no transforms: the model does its own)."""
    plan = HeuristicPlanner().plan(brief, profile)
    if plan.kind != "tabular":
        raise DeployError(
            f"The brief plans a {plan.kind} service; mlgen deploy serves tabular models (rows of "
            "columns in, a label or value out). Remove `kind:` from the brief."
        )
    planned = {feature.name: feature for feature in plan.features}
    features = []
    for column in profile.columns:
        if column.name == plan.target:
            continue
        kept = planned.get(column.name)
        kind = "numeric" if column.kind == "numeric" else "categorical"
        features.append(kept.model_dump() if kept and kept.type == kind else
                         {"name": column.name, "type": kind, "encoding": "auto"})
    values = plan.model_dump()
    values.update(
        features=features, feature_transforms=[], id_column="", time_column="", group_column="",
        exclude_columns=[],
        split_strategy="random" if plan.task == "regression" else "stratified",
    )
    values["rationale"] = {
        **plan.rationale,
        "features": "the deployed model's inputs: every column of the sample but the target",
        "split_strategy": "for models trained later by the service; the deployed model is "
        "measured on the whole sample",
    }
    return Plan.build(values)


def deploy_model(
    model: str,
    sample: Path,
    out: Path | None = None,
    brief_path: Path | None = None,
    target: str | None = None,
    trust_pickle: bool = False,
    tracking_uri: str | None = None,
    venv: Path | None = None,
    verify: bool = False,
    force: bool = False,
    on_step: Callable[[str], None] = lambda step: None,
) -> Deployment:
    """Render, install and adopt (and with ``verify``, test and serve); see the module doc."""
    source = check_source(model, trust_pickle)
    brief = _brief(brief_path, target, source)
    sample = Path(sample).expanduser().resolve()
    on_step("profile the sample")
    profile = profile_file(sample)
    plan = deployment_plan(brief, profile)
    answers = {**project_answers(plan, brief), "model_requirements": model_requirements(source)}
    target_dir = Path(out or Path.cwd() / answers["project_name"]).absolute()
    # render_service refuses a non-empty folder unless forced: what it writes is all ours.
    was_empty_folder = target_dir.is_dir() and not force
    on_step("render the service")
    service = render_service(plan, profile, brief, target_dir, answers, force=force)
    try:
        package = package_name(service)
        python = install_service(service, venv, on_step)
        on_step("register the model as champion")
        command = [str(python), "-m", package, "adopt", "--model", source, "--sample",
                   str(sample)]
        if trust_pickle:
            command.append("--trust-pickle")
        if tracking_uri:
            command += ["--tracking-uri", tracking_uri]
        adopted = run_step("adopt", command, service, python.parent.parent, error=DeployError)
        served = 0
        if verify:
            on_step("run the service's tests")
            run_step("tests", [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                     service, python.parent.parent)
            on_step("serve and compare every sample row")
            served = check_served(service, package, python.parent.parent)
    except BaseException:
        shutil.rmtree(service, ignore_errors=True)
        if was_empty_folder:
            service.mkdir()
        raise
    return Deployment(service, adopted.strip(), served)


def _brief(path: Path | None, target: str | None, source: str) -> Brief:
    brief = Brief.load(path) if path else Brief.parse(f"# {Path(source).stem}\n")
    if target:
        brief = Brief(brief.text, {**brief.front, "target": target}, brief.prose, brief.folder,
                      brief.path)
    elif "target" not in brief.front and path is None:
        raise BriefError("Say which column of the sample the model predicts: --target COLUMN "
                         "(or `target:` in a --brief).")
    return brief


def check_served(service: Path, package: str, venv: Path) -> int:
    """Serve the service and send every sample row the adopt step recorded; each answer must
    equal the model's in-process output exactly (labels, probabilities or values). Returns the
    rows compared; raises :class:`VerifyError` naming the rows that differ."""
    expected = json.loads((service / "reports" / "deploy" / "expected.json").read_text())
    records, outputs = expected["records"], expected["output"]
    keys = [str(label) for label in expected["classes"] or []]
    differing: list[tuple[int, Any, Any]] = []
    with Served(service, package, venv) as url:
        for start in range(0, len(records), BATCH_ROWS):
            batch = records[start : start + BATCH_ROWS]
            status, body = post_json(f"{url}/predict/batch", {"records": batch})
            if status != 200:
                raise VerifyError(f"POST /predict/batch (rows {start}-{start + len(batch) - 1}) "
                                  f"answered {status}: {body}")
            for offset, answer in enumerate(body["predictions"]):
                row = start + offset
                want = outputs[row]
                got = ([answer["probabilities"][key] for key in keys] if keys
                       else answer["prediction"])
                if got != want:
                    differing.append((row, want, got))
    if differing:
        shown = "\n".join(f"  row {row}: model {want}, served {got}"
                          for row, want, got in differing[:10])
        raise VerifyError(f"{len(differing)} of {len(records)} sample rows were served "
                          f"differently from the model's own output:\n{shown}")
    return len(records)

