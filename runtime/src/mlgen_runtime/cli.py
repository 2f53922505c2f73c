"""The *command line* of the service: ``python -m <package> <command>``.

Commands: train, evaluate, serve, score, drift, investigate, compare, promote, retrain, adopt
(``--help`` on each), and the commands of the service's kind (kinds/: e.g. recommend-all of a
recommendation service).

Expected failures (bad config, bad data, registry refusals, nothing to compare) print one line
and exit with status 2; a trained model that does not beat its Dummy baseline, a refused
promotion, a retrained model kept as challenger, or a challenger `compare` does not find better
exits with 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from .config import ROOT_ENV, Config, load_config
from .errors import ServiceError, UsageError

RUNTIME = __package__ or "mlgen_runtime"


def _train(config: Config, args: argparse.Namespace) -> int:
    from .kinds import kind_of

    kind = kind_of(config)
    result = kind.train(config, data_path=args.data, trials=args.trials)
    print(kind.summary(result))
    # A model kept as challenger behind a better champion is a normal outcome; a model that
    # cannot beat its own Dummy baseline is a failed training, for scripts and CI too, unless
    # the baseline itself serves (a forecaster's seasonal naive: RegisteredRun.baseline_serves).
    return 0 if result.decision.beats_baseline or result.baseline_serves else 1


def _evaluate(config: Config, args: argparse.Namespace) -> int:
    from .evaluate import evaluate_champion
    from .scoring import metrics_for

    report = evaluate_champion(config, data_path=args.data)
    metrics, baseline = report["metrics"], report["baseline_metrics"]
    print(
        f"{report['model_name']} v{report['model_version']} ({report['source']}) on "
        f"{report['rows']} test rows of {report['data']}:"
    )
    for name in metrics_for(config.task):
        print(
            f"  {name:<18} {metrics[name]:.4f}  [{metrics[name + '_ci_low']:.4f}, "
            f"{metrics[name + '_ci_high']:.4f}]  baseline {baseline.get(name, float('nan')):.4f}"
        )
    print(f"Plots and evaluation.json in {config.resolve(config.paths.reports) / 'evaluation'}")
    return 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    # Imported here: prometheus_client must not be imported before serving.run() sets up the
    # multiprocess folder for several workers.
    from .serving import run

    run(config, host=args.host, port=args.port, workers=args.workers)
    return 0


def _score(config: Config, args: argparse.Namespace) -> int:
    from .batch import score_folder

    result = score_folder(config, args.data, args.out, engine=args.engine, scheduler=args.scheduler)
    print(result.summary())
    return 0


def _drift(config: Config, args: argparse.Namespace) -> int:
    from .monitoring.report import run_drift

    out_dir = Path(args.out) if args.out else config.resolve(config.paths.reports) / "drift"
    return run_drift(config, args.data, out_dir)


def _investigate(config: Config, args: argparse.Namespace) -> int:
    """1 when the report found something, 0 when not (2: an error)."""
    from datetime import UTC, datetime

    from .kinds import kind_of
    from .monitoring.investigation import from_file, from_log, write

    if bool(args.data) == bool(args.since):
        raise UsageError(
            "Say what to investigate: --since 30d (the service's logged predictions) or "
            "--data recent.csv (a data file), not both."
        )
    kind = kind_of(config)
    prepared = None
    if args.data:
        observed = from_file(config, args.data)
    else:
        from concurrent.futures import ThreadPoolExecutor

        # SQLite and the JSON parser release the GIL: the kind's imports and training data
        # load on the other core while the log is read (a million records: ~10 s of CPU).
        with ThreadPoolExecutor(max_workers=1) as pool:
            reading = pool.submit(from_log, config, args.since, args.log)
            prepared = kind.prepare_investigation(config)
            observed = reading.result()
    investigation = kind.investigate(config, observed, prepared)
    if args.out:
        out_dir = Path(args.out)
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = config.resolve(config.paths.reports) / f"investigation-{stamp}"
    json_path, html_path = write(investigation, out_dir)
    print(investigation.summary())
    print(f"Report: {html_path}\nJSON:   {json_path}")
    for section in investigation.sections:
        for name in section.files:
            print(
                f"Data:   {out_dir / name}  (python -m {config.project.package} retrain "
                f"--data {out_dir / name})"
            )
    return 1 if investigation.findings else 0


def _compare(config: Config, args: argparse.Namespace) -> int:
    from .live_comparison import compare_log

    comparison = compare_log(config, args.version)
    print(comparison.summary())
    # Scripts and CI can gate on it like on `promote`.
    return 0 if comparison.better else 1


def _promote(config: Config, args: argparse.Namespace) -> int:
    from .kinds import kind_of

    if args.force and not args.reason:
        raise UsageError("--force skips the promotion gate: say why with --reason TEXT.")
    decision = kind_of(config).promote(config, args.version, reason=args.reason, force=args.force)
    verdict = "promoted to champion" if decision.promote else "not promoted"
    print(f"Version {args.version} {verdict}: {decision.reason}")
    return 0 if decision.promote else 1


def _retrain(config: Config, args: argparse.Namespace) -> int:
    from .retrain import retrain
    from .train import summary

    result = retrain(config, data_path=args.data, trials=args.trials)
    print(summary(result))
    return 0 if result.decision.promote else 1


def _adopt(config: Config, args: argparse.Namespace) -> int:
    from .adopt import adopt

    metadata = adopt(config, args.model, Path(args.sample), trust_pickle=args.trust_pickle,
                     tracking_uri=args.tracking_uri)
    primary = metadata["primary_metric"]
    print(f"{metadata['model_name']} v{metadata['model_version']} is the champion: "
          f"{metadata['promotion_reason']}")
    print(f"  {primary} {metadata['metrics'][primary]:.4f} "
          f"[{metadata['metrics'][primary + '_ci_low']:.4f}, "
          f"{metadata['metrics'][primary + '_ci_high']:.4f}]; served answers equal the model's "
          f"own on all {metadata['serving']['rows']} sample rows")
    return 0


def build_parser(package: str = RUNTIME) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {package}", description=__doc__)
    parser.add_argument(
        "--root", help=f"service folder holding configs/config.yaml (default: ${ROOT_ENV} or cwd)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, evaluate, register; promote if better")
    train.add_argument("--data", help="training data file (default: data.path in the config)")
    train.add_argument("--trials", type=int, help="Optuna trials (default: tuning.trials)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="score the champion on the test split")
    evaluate.add_argument("--data", help="data file (default: data.path in the config)")
    evaluate.set_defaults(handler=_evaluate)

    serve = commands.add_parser("serve", help="run the HTTP API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=_serve)

    score = commands.add_parser(
        "score", help="score a folder of Parquet partitions with the champion (batch)"
    )
    score.add_argument("--data", required=True, help="folder of .parquet files (or one file)")
    score.add_argument("--out", required=True, help="new folder for the scored partitions")
    score.add_argument(
        "--engine", choices=["local", "dask"], help="local or dask (default: engine.name)"
    )
    score.add_argument(
        "--scheduler",
        help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: "
        "$MLSERVICE_DASK_SCHEDULER, engine.scheduler, else a local cluster)",
    )
    score.set_defaults(handler=_score)

    drift = commands.add_parser("drift", help="compare a data file with the training data")
    drift.add_argument("--data", required=True, help="the current data (CSV or Parquet)")
    drift.add_argument("--out", help="report folder (default: <paths.reports>/drift)")
    drift.set_defaults(handler=_drift)

    investigate = commands.add_parser(
        "investigate",
        help="explain a degraded model: performance over time, slices, drift, label shift, "
        "concept drift, data quality, and a backtested retrain",
    )
    source = investigate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--since", help="the service's logged predictions of the last 30d, 12h, 2w, ..."
    )
    source.add_argument("--data", help="a data file (CSV or Parquet), labelled or not")
    investigate.add_argument(
        "--log", help="the prediction log (default: $MLSERVICE_FEEDBACK_DB or serving.feedback_db)"
    )
    investigate.add_argument(
        "--out", help="report folder (default: <paths.reports>/investigation-<time>)"
    )
    investigate.set_defaults(handler=_investigate)

    compare = commands.add_parser(
        "compare", help="test the rollout challenger against the champion on fed-back outcomes"
    )
    compare.add_argument("--version", help="challenger version (default: the latest logged)")
    compare.set_defaults(handler=_compare)

    promote = commands.add_parser("promote", help="make a registered version the champion")
    promote.add_argument("--version", required=True, help="registered model version number")
    promote.add_argument(
        "--force", action="store_true", help="skip the promotion gate (needs --reason)"
    )
    promote.add_argument("--reason", default="", help="why (recorded on the model version)")
    promote.set_defaults(handler=_promote)

    retrain = commands.add_parser(
        "retrain", help="train on new data; promote only if better on the same holdout"
    )
    retrain.add_argument("--data", help="the new data file (default: data.path in the config)")
    retrain.add_argument("--trials", type=int, help="Optuna trials (default: tuning.trials)")
    retrain.set_defaults(handler=_retrain)

    adopt = commands.add_parser(
        "adopt", help="serve a model trained elsewhere: check it, register it as the champion"
    )
    adopt.add_argument("--model", required=True,
                       help="a .skops/.joblib/.pkl/.onnx file, an MLflow model folder or URI")
    adopt.add_argument("--sample", required=True,
                       help="labelled rows the model is checked and measured on (CSV/Parquet)")
    adopt.add_argument("--trust-pickle", action="store_true",
                       help="load a pickle (or skops types beyond scikit-learn): runs its code")
    adopt.add_argument("--tracking-uri", help="the registry of a models:/ URI")
    adopt.set_defaults(handler=_adopt)
    _kind_commands(commands)
    return parser


def _check_supported(config: Config, command: str) -> None:
    """Refuse a shared command the service's kind does not have, saying what to use instead."""
    from .kinds import kind_of
    from .kinds.package import refusal

    kind = kind_of(config)
    if command in kind.unsupported_commands:
        raise refusal(kind.name, kind.unsupported_commands, command)


def _kind_commands(commands: argparse._SubParsersAction) -> None:
    """The commands of every kind (e.g. recommend-all); each refuses a service of another."""
    from .kinds import KINDS, get_kind

    for kind_name in KINDS:
        for command in get_kind(kind_name).commands():
            sub = commands.add_parser(command.name, help=f"{command.help} ({kind_name} services)")
            command.arguments(sub)
            sub.set_defaults(handler=_for_kind(kind_name, command.name, command.run))


def _for_kind(
    kind: str, name: str, run: Callable[[Config, argparse.Namespace], int]
) -> Callable[[Config, argparse.Namespace], int]:
    def handler(config: Config, args: argparse.Namespace) -> int:
        if config.kind != kind:
            raise UsageError(
                f"`{name}` is a command of {kind} services; this service is of the "
                f"{config.kind} kind."
            )
        return run(config, args)

    return handler


def main(argv: list[str] | None = None, package: str | None = None) -> int:
    """Run one command; ``package`` is the service's import name (for help and logging)."""
    package = package or RUNTIME
    args = build_parser(package).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in {RUNTIME, package}:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        config = load_config(args.root)
        _check_supported(config, args.command)
        return args.handler(config, args)
    except (ServiceError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
