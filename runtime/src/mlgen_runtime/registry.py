"""The model *registry*: MLflow set-up, the logged run, aliases, the promotion gate, loading.

Every trained model becomes a registered version with the alias ``challenger``. It becomes
``champion`` only through the gate (:func:`decide`): it must beat its own Dummy baseline and
the current champion on the primary metric of the test split, by the minimum changes of
``promotion`` and, at training, significantly (the paired test of both models on the same
test rows, see compare.py). The champion is also exported
as a bundle folder (``paths.artifacts``/champion) so serving survives a tracking-store outage.

The other kinds (forecasting, recommendation, audio, text) log their model as a bundle folder
artifact rather than an MLflow model: :func:`register_version`, :func:`read_version` and
:func:`export_champion` are their run, their registered versions and their promotion.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from .bundle import (
    METADATA_FILE,
    REFERENCE_FILE,
    Bundle,
    load_bundle_dir,
    pip_requirements,
    save_bundle,
)
from .config import TRACKING_ENV, Config, PromotionConfig
from .errors import RegistryError
from .fallback import CHAMPION_DIR, fallback_dir, keep_previous
from .model_card import write_model_card
from .scoring import higher_is_better

if TYPE_CHECKING:
    from .compare import Comparison

log = logging.getLogger(__name__)


# How often setting an alias is tried when another process sets it at the same moment.
ALIAS_ATTEMPTS = 5


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point ``alias`` of model ``name`` at ``version``, as the last writer wins.

    An MLflow server on PostgreSQL sets an alias by reading, then inserting or updating: two
    trainings registering at once can both read "no alias" and the second insert fails on
    the table's key (seen with eight trains sharing a server). Tried again, it finds the
    alias and updates it.
    """
    for attempt in range(ALIAS_ATTEMPTS):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException as exc:
            text = str(exc)
            racing = "UniqueViolation" in text or "duplicate key" in text or (
                "already exists" in text and "alias" in text
            )
            if not racing or attempt == ALIAS_ATTEMPTS - 1:
                raise
            log.info("Alias %s of %s was set by another process at once; setting it again",
                     alias, name)
            time.sleep(0.05 * (attempt + 1))

DEFAULT_PROMOTION = PromotionConfig()
CHAMPION = "champion"
CHALLENGER = "challenger"
PLOTS_DIR = "plots"
#: The artifact of a kind's run that holds its bundle folder.
BUNDLE_ARTIFACT = "bundle"

Loaded = TypeVar("Loaded")


@dataclass(frozen=True)
class Decision:
    """The promotion gate's verdict on one model version."""

    promote: bool
    reason: str
    # False when the model does not beat its Dummy baseline (train exits 1 on it); a model
    # refused because the champion is better still beats its baseline.
    beats_baseline: bool = True

    @property
    def verdict(self) -> str:
        """What became of the version, and why: the line a training summary ends with."""
        became = "promoted to champion" if self.promote else "kept as challenger"
        return f"{became}: {self.reason}"


class RegisteredRun:
    """What a kind's training result reads from the metadata of the version it registered."""

    metadata: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.metadata["metrics"]

    @property
    def baseline_metrics(self) -> dict[str, float]:
        return self.metadata["baseline_metrics"]

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @property
    def run_id(self) -> str:
        return self.metadata["run_id"]

    # When the gate refused the run's model against its baseline and the baseline serves
    # (serve_baseline: a forecaster's seasonal naive, a recommender's popularity; a Dummy
    # never serves): that version and what became of it.
    baseline_served: tuple[str, Decision] | None = None

    @property
    def baseline_serves(self) -> bool:
        return self.baseline_served is not None


def use_store(config: Config) -> str:
    """Point MLflow at the configured tracking store; returns its URI."""
    uri = config.tracking_uri
    before = os.environ.get(TRACKING_ENV)
    mlflow.set_tracking_uri(uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which the config reads as the user's
    # override: left there, the first store used would capture every later config.
    if before is None:
        os.environ.pop(TRACKING_ENV, None)
    else:
        os.environ[TRACKING_ENV] = before
    return uri


def setup(config: Config) -> str:
    """Point MLflow at the configured store; create the experiment if needed; its id."""
    use_store(config)
    name = config.tracking.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # An explicit location: MLflow's default is ./mlruns under whatever the cwd happens to be.
        try:
            experiment_id = mlflow.create_experiment(
                name, artifact_location=config.artifact_location
            )
        except MlflowException as exc:
            # Another training process on the same server created it first.
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
            log.info("Experiment %s was created meanwhile (%s).", name, exc.error_code)
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit(root: Path) -> str:
    """The service's current git commit, or "unknown" when it is not a git checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def log_candidate(
    config: Config,
    pipeline: Any,
    example: pd.DataFrame,
    metadata: dict[str, Any],
    reference: dict[str, Any],
    params: dict[str, Any],
    metrics: dict[str, float],
    plots_dir: Path,
) -> dict[str, Any]:
    """Log a trained pipeline as an MLflow run and a registered ``challenger`` version.

    Returns ``metadata`` completed with ``run_id`` and ``model_version``.
    """
    setup(config)
    name = config.tracking.registered_model
    # Any feature may be null in a request: declare integer columns as floats in the schema.
    integers = example.select_dtypes("integer").columns
    example = example.astype(dict.fromkeys(integers, "float64"))
    with mlflow.start_run() as run:
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "git_commit": metadata["git_commit"],
                "data_hash": metadata["data_hash"],
                "seed": str(config.seed),
                "task": config.task,
            }
        )
        mlflow.log_artifacts(str(plots_dir), artifact_path=PLOTS_DIR)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            # cloudpickle: the skops default refuses estimators it does not know (e.g. HGB).
            serialization_format="cloudpickle",
            # Listing requirements skips MLflow's ~3 s environment inference.
            pip_requirements=pip_requirements(),
            signature=infer_signature(example, _output_example(pipeline, example)),
            input_example=example,
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        _log_leaderboard(metadata.get("leaderboard") or [], metadata["primary_metric"])
        metadata = {**metadata, "run_id": run.info.run_id, "model_version": version}
        mlflow.log_dict(metadata, METADATA_FILE)
        mlflow.log_dict(reference, REFERENCE_FILE)
    set_alias(MlflowClient(), name, CHALLENGER, version)
    return metadata


def _log_leaderboard(board: list[dict[str, Any]], metric: str) -> None:
    """Each candidate family of model selection as a child run of the training run."""
    for row in board:
        with mlflow.start_run(run_name=f"candidate: {row['family']}", nested=True):
            mlflow.log_params({"family": row["family"], "chosen": row["chosen"]})
            if row["cv_mean"] is not None:
                mlflow.log_metrics(
                    {
                        f"cv_{metric}": row["cv_mean"],
                        f"cv_{metric}_sd": row["cv_sd"],
                        "fit_seconds": row["fit_seconds"],
                    }
                )
            else:
                mlflow.set_tag("skipped", "time budget spent")


def champion_version(config: Config) -> Any | None:
    """The registered version that holds the ``champion`` alias, or None if there is none."""
    client = MlflowClient()
    try:
        return client.get_model_version_by_alias(config.tracking.registered_model, CHAMPION)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def decide(
    metric: str,
    candidate: float,
    baseline: float,
    champion: float | None,
    champion_label: str,
    policy: PromotionConfig = DEFAULT_PROMOTION,
    evidence: Comparison | None = None,
    baseline_evidence: Comparison | None = None,
    higher: bool | None = None,
    baseline_label: str = "the Dummy baseline",
) -> Decision:
    """The promotion gate: beat the Dummy baseline, then beat the champion.

    Beating the baseline means a better ``metric`` and, when ``baseline_evidence`` (the paired
    test of the model against its baseline on the same test rows) is given, significantly so:
    a p-value below ``policy.alpha``. Beating the champion means improving ``metric`` by at
    least the ``policy``'s minimum changes and, when ``evidence`` (the paired test of both
    models on the same rows) is given, significantly.

    ``higher`` is the metric's direction (default: the tabular metrics' table, scoring.py);
    ``baseline_label`` names the baseline in the reasons (another kind's is not a Dummy).
    """
    higher = higher_is_better(metric) if higher is None else higher
    against_baseline = f"{metric} {candidate:.4f} vs {baseline_label}'s {baseline:.4f}"
    if not (candidate > baseline if higher else candidate < baseline):
        return Decision(
            False,
            f"{metric} {candidate:.4f} does not beat {baseline_label} ({baseline:.4f})",
            beats_baseline=False,
        )
    if baseline_evidence is not None:
        tested = (
            f"{baseline_evidence.test} on {baseline_evidence.n_challenger} paired test rows: "
            f"p={baseline_evidence.p_value:.3g}, alpha {policy.alpha}"
        )
        if not baseline_evidence.p_value < policy.alpha:
            return Decision(
                False,
                f"{against_baseline}: not significantly better than {baseline_label} ({tested})",
                beats_baseline=False,
            )
        against_baseline = f"{against_baseline}, significantly ({tested})"
    if champion is None:
        return Decision(True, f"first model; it beats {baseline_label}: {against_baseline}")
    versus = f"{metric} {candidate:.4f} vs champion {champion_label} ({champion:.4f})"
    gain = candidate - champion if higher else champion - candidate
    if gain <= 0:
        return Decision(
            False,
            f"{metric} {candidate:.4f} does not beat champion {champion_label} ({champion:.4f})",
        )
    relative = gain / abs(champion) if champion else math.inf
    for change, minimum, setting in (
        (gain, policy.min_absolute_change, "min_absolute_change"),
        (relative, policy.min_relative_change, "min_relative_change"),
    ):
        if change < minimum:
            return Decision(
                False,
                f"{versus}: improves by {change:.4g}, less than promotion.{setting} {minimum}",
            )
    if evidence is None:
        return Decision(True, f"{versus}: better on the logged test metrics (no paired test)")
    significance = (
        f"{evidence.test} on {evidence.n_challenger} paired rows: p={evidence.p_value:.3g}, "
        f"alpha {policy.alpha}"
    )
    if not evidence.p_value < policy.alpha:
        return Decision(False, f"{versus}: not significantly better ({significance})")
    return Decision(True, f"{versus}: significantly better ({significance})")


def serve_baseline(
    current: Any | None,
    decision: Decision,
    candidate: tuple[str, str],
    baseline: tuple[str, str],
    register: Callable[[], str],
    promote: Callable[[str, str], object],
) -> tuple[str, Decision] | None:
    """The baseline as the first champion, for a kind whose baseline is a real model (a
    forecaster's seasonal naive, a recommender's popularity), when ``decision`` refused the
    run's model against it.

    Promoting a model that is not significantly better than its baseline would be promoting on
    noise; leaving a new service without a champion fails a user whose service must answer.
    So the baseline serves until a model beats it by the paired test (a later `train` or
    `retrain` goes through the gate as usual). With no champion yet, it is registered
    (``register()``, its version; unless the run's model is the baseline itself, chosen on
    validation) and promoted with the reason; a champion of the baseline's family keeps
    serving; a champion of another family is left alone (None: the gate kept it, and the run
    is a failed training). ``candidate`` and ``baseline`` are (version, family) and (family,
    the name people read)."""
    version, family = candidate
    baseline_family, label = baseline
    if current is not None:
        if MlflowClient().get_run(current.run_id).data.params.get("family") != baseline_family:
            return None
        return str(current.version), Decision(
            False, f"{label} v{current.version} keeps serving: {decision.reason}",
            beats_baseline=False,
        )
    why = (
        f"first model: {label} serves until a model beats it significantly; v{version} "
        f"({family}): {decision.reason}"
    )
    served = version if family == baseline_family else register()
    promote(served, why)
    return served, Decision(True, why, beats_baseline=False)


def baseline_outcome(
    served: tuple[str, Decision] | None, label: str, otherwise: str
) -> tuple[list[str], str]:
    """A training summary's words on a refused model: the line saying what
    :func:`serve_baseline` did (none when it did nothing), and what happens until a model
    beats the baseline (``otherwise`` when the baseline does not serve)."""
    if served is None:
        return [], otherwise
    version, outcome = served
    return [outcome.verdict if outcome.promote else outcome.reason], (
        f"{label} (v{version}) serves, and `train` exits 0; a later `train` or `retrain` "
        "replaces it when a model beats it significantly"
    )


def served_instead(metadata: dict[str, Any], label: str) -> str:
    """The model card's sentence on a baseline serving as the first champion (serve_baseline
    wrote ``served_instead_of`` into its metadata); empty for any other version."""
    instead = metadata.get("served_instead_of")
    if not instead:
        return ""
    return (
        f"{label[:1].upper()}{label[1:]} serves as the first champion: the run's model, "
        f"v{instead['version']} ({instead['family']}), did not beat it significantly: "
        f"{instead['reason']}."
    )


def promote(
    config: Config,
    version: str | int,
    reason: str = "",
    force: bool = False,
    evidence: Comparison | None = None,
) -> Decision:
    """Make ``version`` the champion if the gate allows it (or ``force``); export its bundle.

    Without ``force`` the gate compares the primary metric of both versions by ``promotion``'s
    minimum changes and, given ``evidence`` (the paired test of the champion and ``version`` on
    the same rows: :func:`.train.holdout_comparison`, or a rollout's live comparison), by its
    significance, on the values it measured. Without evidence it compares the test metrics
    logged with each version's run, whose test splits may differ, and says so.
    """
    setup(config)
    client = MlflowClient()
    name = config.tracking.registered_model
    candidate = _model_version(client, name, str(version))

    def judge(current: Any | None) -> Decision:
        metric = config.metric.primary
        logged = client.get_run(candidate.run_id).data.metrics
        champion = None
        if current is not None:
            champion = client.get_run(current.run_id).data.metrics.get(f"test_{metric}")
        value = _logged(logged, f"test_{metric}", candidate.version)
        if evidence is not None and current is not None and evidence.metric == metric:
            champion, value = evidence.champion_value, evidence.challenger_value
        return decide(
            metric,
            value,
            _logged(logged, f"baseline_{metric}", candidate.version),
            champion,
            f"v{current.version}" if current is not None else "",
            config.promotion,
            evidence if current is not None else None,
        )

    return promote_with(
        config, candidate.version, reason, force, judge,
        lambda why: apply_promotion(config, candidate.version, why),
    )


def promote_with(
    config: Config,
    version: str,
    reason: str,
    force: bool,
    judge: Callable[[Any | None], Decision],
    apply: Callable[[str], Any],
) -> Decision:
    """The ``promote`` command for registered ``version``: ``force``d (the ``reason`` said), or
    refused if it is the champion already, else ``judge(current champion or None)``'s decision
    with ``reason`` appended; ``apply(why)`` carries out a positive one."""
    if force:
        decision = Decision(True, f"forced: {reason or 'no reason given'}")
    else:
        current = champion_version(config)
        if current is not None and str(current.version) == str(version):
            return Decision(False, f"version {version} is already the champion")
        decision = judge(current)
        if reason:
            decision = Decision(decision.promote, f"{decision.reason}; {reason}")
    if decision.promote:
        apply(decision.reason)
    return decision


def apply_promotion(config: Config, version: str, reason: str) -> Path:
    """Move the ``champion`` alias to ``version``, export its bundle and model card."""
    client = MlflowClient()
    name = config.tracking.registered_model
    set_alias(client, name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    bundle = _registry_bundle(client, name, version)
    # The outgoing champion becomes the serving fallback (fallback.py).
    keep_previous(config, version)
    folder = save_bundle(champion_dir(config), bundle.pipeline, bundle.metadata, bundle.reference)
    write_model_card(config, bundle.metadata, config.resolve(config.paths.model_card))
    return folder


def champion_dir(config: Config) -> Path:
    # fallback.py owns the layout of the artifacts folder (champion, previous, baseline).
    return fallback_dir(config, CHAMPION_DIR)


def load_champion(config: Config) -> Bundle:
    """The champion from the registry; the exported folder if the store cannot be reached."""
    # A tracking server that is down should fail over in seconds, not after MLflow's default
    # seven retries with exponential back-off; an explicit setting still wins.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        return load_registered(config, CHAMPION)
    except Exception as exc:  # any failure of the store means: serve the exported copy
        folder = champion_dir(config)
        log.warning(
            "Cannot load the champion from the registry at %s (%s); using the exported "
            "bundle in %s.",
            config.tracking_uri,
            str(exc).splitlines()[0][:300],
            folder,
        )
        return load_bundle_dir(folder, source="file")


def load_registered(config: Config, reference: str | int) -> Bundle:
    """A registered model as a Bundle: ``reference`` is an alias or a version number."""
    use_store(config)
    client = MlflowClient()
    name = config.tracking.registered_model
    reference = str(reference)
    if reference.isdigit():
        return _registry_bundle(client, name, reference)
    try:
        version = client.get_model_version_by_alias(name, reference).version
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"Model {name!r} has no version with alias {reference!r}.") from exc
    return _registry_bundle(client, name, str(version))


def _registry_bundle(client: MlflowClient, name: str, version: str) -> Bundle:
    model_version = client.get_model_version(name, version)
    pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            artifact: json.loads(
                Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=model_version.run_id, artifact_path=artifact, dst_path=tmp
                    )
                ).read_text()
            )
            for artifact in (METADATA_FILE, REFERENCE_FILE)
        }
    return Bundle(
        pipeline=pipeline,
        metadata=files[METADATA_FILE],
        reference=files[REFERENCE_FILE],
        source="registry",
    )


def _model_version(client: MlflowClient, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(
            f"Model {name!r} has no version {version}. List versions with the MLflow UI "
            "(`mlflow ui --backend-store-uri <tracking uri>`)."
        ) from exc


def _logged(metrics: dict[str, float], key: str, version: str) -> float:
    if key not in metrics:
        raise RegistryError(
            f"Version {version} has no logged metric {key!r} (was it trained with a different "
            "primary metric?). Use --force to promote it anyway."
        )
    return metrics[key]


def _output_example(pipeline: Any, example: pd.DataFrame) -> Any:
    if hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(example)
    return pipeline.predict(example)


def register_version(
    config: Config,
    kind: str,
    metadata: dict[str, Any],
    params: dict[str, Any],
    logged: dict[str, float],
    write_bundle: Callable[[Path, dict[str, Any]], Path],
    log_children: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """A kind's MLflow run and its registered ``challenger`` version.

    The run holds ``params``, the finite ``logged`` metrics, the kind's tags, the child runs
    ``log_children()`` starts (candidates, trials) and, as its :data:`BUNDLE_ARTIFACT`, the
    folder ``write_bundle(folder, metadata)`` writes; ``metadata`` comes back completed with
    the run id and the version number, which the bundle holds too.
    """
    setup(config)
    name = config.tracking.registered_model
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in logged.items() if np.isfinite(v)})
        tags = {"kind": kind, "task": config.task, "seed": str(config.seed),
                "data_hash": metadata.get("data_hash", "")}
        if "git_commit" in metadata:
            tags["git_commit"] = metadata["git_commit"]
        mlflow.set_tags(tags)
        if log_children is not None:
            log_children()
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name)
        version = client.create_model_version(
            name, mlflow.get_artifact_uri(BUNDLE_ARTIFACT), run.info.run_id
        ).version
        metadata = {**metadata, "run_id": run.info.run_id, "model_version": str(version)}
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_bundle(Path(tmp) / BUNDLE_ARTIFACT, metadata)
            mlflow.log_artifacts(str(folder), artifact_path=BUNDLE_ARTIFACT)
    set_alias(client, name, CHALLENGER, str(version))
    return metadata


def read_version(config: Config, reference: str, load: Callable[[Path], Loaded]) -> Loaded:
    """A version :func:`register_version` registered (a number or an alias), read by
    ``load(folder)`` from its bundle folder."""
    client = MlflowClient()
    name = config.tracking.registered_model
    version = (
        _model_version(client, name, reference)
        if reference.isdigit()
        else client.get_model_version_by_alias(name, reference)
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=BUNDLE_ARTIFACT, dst_path=tmp
        )
        return load(Path(folder))


def export_champion(
    config: Config,
    version: str,
    reason: str,
    write_bundle: Callable[[Path], Path],
    model_card: str,
) -> Path:
    """Move the ``champion`` alias to ``version`` and export its bundle (``write_bundle``) and
    model card; the outgoing champion's bundle becomes ``previous/``, the serving fallback."""
    client = MlflowClient()
    name = config.tracking.registered_model
    set_alias(client, name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    keep_previous(config, version)
    folder = write_bundle(champion_dir(config))
    config.resolve(config.paths.model_card).write_text(model_card)
    return folder
