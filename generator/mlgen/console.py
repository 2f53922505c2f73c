"""How mlgen talks to people: Rich output on stderr, so stdout stays clean for ``--json``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlgen import transforms
from mlgen.plan import Plan
from mlgen.profile import Profile
from mlgen.verify import Verification

console = Console(stderr=True, highlight=False)


def show_plan(plan: Plan, profile: Profile, planner: str) -> None:
    sampled = f", profiled on the first {profile.n_sampled:,}" if profile.sampled else ""
    console.print(
        f"[bold]Plan[/bold] ({planner} planner) for [cyan]{profile.source}[/cyan]: "
        f"{profile.n_rows:,} rows{sampled}, {len(profile.columns)} columns"
    )
    table = Table(show_lines=False)
    table.add_column("setting", style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("why", style="dim", overflow="fold")
    # Values and reasons may come from the model: text, never Rich markup.
    for field, value, why in plan.rows():
        table.add_row(field, escape(value), escape(why))
    console.print(table)
    if plan.feature_transforms:
        added = Table(title="Feature transforms", title_justify="left")
        for name, style in (("adds", "bold"), ("kind", None), ("from", None), ("why", "dim")):
            added.add_column(name, style=style, overflow="fold")
        for step in plan.feature_transforms:
            added.add_row(", ".join(transforms.outputs(step)), step["kind"],
                          escape(transforms.describe(step)), escape(step["reason"]))
        console.print(added)
    if plan.excluded:
        excluded = Table(title="Excluded columns", title_justify="left")
        excluded.add_column("column", style="bold")
        excluded.add_column("reason")
        for item in plan.excluded:
            excluded.add_row(escape(item.column), escape(item.reason))
        console.print(excluded)
    for note in profile.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def show_verification(result: Verification) -> None:
    table = Table(title="Test split", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    primary = result.primary_metric
    names = [primary] + sorted(
        k
        for k in result.metrics
        if k != primary and k in result.baseline_metrics and not k.endswith(("_ci_low", "_ci_high"))
    )
    for name in names:
        table.add_row(
            name + (" (primary)" if name == primary else ""),
            f"{result.metrics[name]:.4f}",
            f"{result.baseline_metrics[name]:.4f}",
        )
    console.print(table)
    if result.baseline_serves:
        # Text from the service's metadata: shown, never read as markup.
        console.print(f"[yellow]{escape(result.baseline_serves)}[/yellow]", soft_wrap=True)
    else:
        verdict = "beats" if result.beats_baseline else "does NOT beat"
        colour = "green" if result.beats_baseline else "red"
        console.print(f"[{colour}]The model {verdict} the baseline on {primary}.[/{colour}]")
    for call in result.calls:
        # What the served API answered: ids come from the data, shown as text.
        console.print(f"[green]served:[/green] {escape(call)}", soft_wrap=True)
