"""The ``mlgen`` command line: ``mlgen new`` renders a service from a brief, ``mlgen plan`` shows
the plan without rendering anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mlgen import __version__
from mlgen.brief import Brief
from mlgen.console import console, show_plan, show_verification
from mlgen.environment import take_api_key
from mlgen.errors import MlgenError
from mlgen.planning import PlanOptions, PlanOutcome, plan_brief
from mlgen.profile import Profile, profile_file
from mlgen.render import project_answers, render_service
from mlgen.update import parse_answers, update_service
from mlgen.verify import package_name, verify_service

app = typer.Typer(
    help=(
        "Turn a short brief about an ML problem (tabular prediction, recommendation, "
        "forecasting, audio or text classification) into a working ML service, or serve a "
        "model you already have."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

BriefOption = Annotated[
    Path,
    typer.Option(
        "--brief",
        "-b",
        help="Markdown brief, optionally with YAML front matter "
        "(data, target, task, metric, ...). See examples/README.md.",
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Data file (CSV or Parquet); overrides the brief's `data:`."),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout (progress stays on stderr)."),
]
LlmOption = Annotated[
    bool | None,
    typer.Option("--llm/--no-llm", help="Plan with Claude (default: on when ANTHROPIC_API_KEY "
                 "is set). --no-llm plans offline with the heuristic planner."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="Claude model id (default: $MLGEN_MODEL, else the newest "
                 "Sonnet the installed anthropic SDK knows)."),
]
LlmRequiredOption = Annotated[
    bool,
    typer.Option("--llm-required", help="Fail instead of falling back to the heuristic plan "
                 "when the LLM cannot produce a valid plan."),
]
NoSampleOption = Annotated[
    bool,
    typer.Option("--no-sample", help="Send the LLM no data rows (only column statistics)."),
]
ReplayOption = Annotated[
    Path | None,
    typer.Option("--llm-replay", hidden=True, help="Replay recorded LLM responses (offline)."),
]
RecordOption = Annotated[
    Path | None,
    typer.Option("--llm-record", hidden=True, help="Save the LLM responses to this file."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlgen {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Turn a short brief about an ML problem (tabular prediction, recommendation,
    forecasting, audio or text classification) into a working ML service, or serve a model
    you already have."""
    # Before any command can start a process: from here on the key lives in ctx.obj, then in
    # the SDK client only, and no child process (git, Copier, pip, the service) inherits it.
    ctx.obj = take_api_key()


def _prepare(
    brief_path: Path, data: Path | None, options: PlanOptions
) -> tuple[Brief, Profile, PlanOutcome]:
    brief = Brief.load(brief_path)
    data_path = brief.data_path(data)
    with console.status(f"Profiling {data_path.name}..."):
        profile = profile_file(data_path.resolve())
    with console.status("Planning..."):
        outcome = plan_brief(brief, profile, options)
    for warning in outcome.warnings:
        # Warnings quote what the model sent: shown as text, never as Rich markup.
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    return brief, profile, outcome


@app.command()
def plan(
    ctx: typer.Context,
    brief: BriefOption,
    data: DataOption = None,
    as_json: JsonOption = False,
    llm: LlmOption = None,
    model: ModelOption = None,
    llm_required: LlmRequiredOption = False,
    no_sample: NoSampleOption = False,
    llm_replay: ReplayOption = None,
    llm_record: RecordOption = None,
) -> None:
    """Read the brief, profile its data and show the plan with its reasons. Renders nothing."""
    options = PlanOptions(llm=llm, model=model, llm_required=llm_required,
                          send_sample=not no_sample, replay=llm_replay, record=llm_record,
                          api_key=ctx.obj)
    try:
        _, profile, outcome = _prepare(brief, data, options)
    except MlgenError as exc:
        _fail(exc)
    decided = outcome.plan
    show_plan(decided, profile, outcome.manifest["planner"])
    if as_json:
        typer.echo(decided.model_dump_json(indent=2))


@app.command()
def new(
    ctx: typer.Context,
    brief: BriefOption,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the service (default: ./<project name>)."),
    ] = None,
    data: DataOption = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Project name (default: from the brief's title).")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Install the service in a virtualenv, run its tests and "
            "train it on your data; exit 1 if any step fails.",
        ),
    ] = False,
    venv: Annotated[
        Path | None,
        typer.Option(
            "--venv",
            help="With --verify: reuse this virtualenv instead of creating "
            "<out>/.venv (already-installed dependencies are reused).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out if it exists and is not empty.")
    ] = False,
    as_json: JsonOption = False,
    llm: LlmOption = None,
    model: ModelOption = None,
    llm_required: LlmRequiredOption = False,
    no_sample: NoSampleOption = False,
    llm_replay: ReplayOption = None,
    llm_record: RecordOption = None,
) -> None:
    """Plan a service from the brief and its data, render it, and optionally verify it."""
    options = PlanOptions(llm=llm, model=model, llm_required=llm_required,
                          send_sample=not no_sample, replay=llm_replay, record=llm_record,
                          api_key=ctx.obj)
    try:
        parsed, profile, outcome = _prepare(brief, data, options)
        decided = outcome.plan
        show_plan(decided, profile, outcome.manifest["planner"])
        answers = project_answers(decided, parsed, name)
        target = out or Path.cwd() / answers["project_name"]
        with console.status("Rendering the service...") as status:
            service = render_service(
                decided,
                profile,
                parsed,
                target,
                answers,
                force=force,
                on_step=lambda step: status.update(f"Rendering the service ({step})..."),
                outcome=outcome,
            )
        console.print(f"[green]Service rendered in[/green] {service}")
        result = None
        if verify:
            package = package_name(service)
            with console.status("Verifying...") as status:
                result = verify_service(
                    service,
                    package,
                    venv,
                    on_step=lambda step: status.update(f"Verifying: {step}..."),
                )
            show_verification(result)
    except MlgenError as exc:
        _fail(exc)
    if as_json:
        summary = {"service": str(service), "plan": decided.model_dump(mode="json")}
        if result is not None:
            summary["verification"] = {
                "primary_metric": result.primary_metric,
                "metric": result.metric,
                "baseline": result.baseline,
                "calls": list(result.calls),
            }
        typer.echo(json.dumps(summary, indent=2))
    else:
        console.print(f"Next: cd {service} && make install && make train && make serve")


@app.command()
def update(
    path: Annotated[
        Path, typer.Argument(help="The service folder (default: the current folder).")
    ] = Path("."),
    to: Annotated[
        str | None,
        typer.Option("--to", help="Template version to update to, e.g. v0.2.0 "
                     "(default: the one this mlgen installed)."),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="Change an answer, QUESTION=VALUE (repeatable); "
                     "what depends on it is re-rendered."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="After a clean update, run the service's tests (with its "
                     ".venv, else `python` on PATH); exit 1 if they fail."),
    ] = False,
) -> None:
    """Bring a service up to date with the installed template, keeping every local change.

    Exits 1 when conflicts are left to resolve (they are listed with next steps)."""
    try:
        report = update_service(path, to=to, data=parse_answers(data or []), verify=verify)
    except MlgenError as exc:
        _fail(exc)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def deploy(
    model: Annotated[
        str,
        typer.Option("--model", help="The model: a scikit-learn .skops file (.joblib/.pkl with "
                     "--trust-pickle), an .onnx graph, a TorchScript .pt module (one float "
                     "tensor of the sample's columns in, class scores or a value out), an "
                     "MLflow model folder or models:/ URI."),
    ],
    sample: Annotated[
        Path,
        typer.Option("--sample", help="Labelled rows (CSV or Parquet): the model's input columns "
                     "and its target. The service's schema, metrics and drift reference."),
    ],
    brief: Annotated[
        Path | None,
        typer.Option("--brief", "-b", help="Markdown brief (title, target, task, metric, ...)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="The sample's column the model predicts.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the service (default: ./<project name>)."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Also run the service's tests and serve it: every sample "
                     "row over HTTP must get the model's own answer; exit 1 otherwise."),
    ] = False,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Load a pickle/joblib file (or skops types beyond "
                     "scikit-learn): loading runs the code it holds."),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="The MLflow registry a models:/ URI refers to."),
    ] = None,
    venv: Annotated[
        Path | None,
        typer.Option("--venv", help="Install into this virtualenv instead of creating "
                     "<out>/.venv (its dependencies are reused)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out if it exists and is not empty.")
    ] = False,
) -> None:
    """Serve a model you already have: render a service around it and register it as champion.

    The model's answers are checked on every sample row through the service's serving path;
    any difference, a library version that would change predictions, or a sample that does not
    match the model fails the deploy and leaves no service folder behind."""
    from mlgen.deploy import deploy_model

    try:
        with console.status("Deploying...") as status:
            done = deploy_model(
                model, sample, out=out, brief_path=brief, target=target,
                trust_pickle=trust_pickle, tracking_uri=tracking_uri, venv=venv, verify=verify,
                force=force, on_step=lambda step: status.update(f"Deploying: {step}..."),
            )
    except MlgenError as exc:
        _fail(exc)
    console.print(f"[green]Service rendered in[/green] {done.service}")
    console.print(escape(done.adopted), soft_wrap=True)
    if verify:
        console.print(f"[green]Served over HTTP:[/green] {done.served_rows} sample rows, every "
                      "answer equal to the model's own.")
    console.print(f"Next: cd {done.service} && make serve")


def _fail(error: MlgenError) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(error.exit_code)
