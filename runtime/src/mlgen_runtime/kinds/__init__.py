"""*Problem kinds*: the plug-ins of the runtime, one per kind of problem a service can solve.

A kind owns everything that differs between problems: which tasks it serves, how its input is
validated and split, its baseline and candidate models, its metrics and their comparison test,
its training run, its HTTP app (endpoints and response schemas), its drift signals, its
fast-serving export and the sections of its model card. The rest of the runtime (config,
registry, command line, monitoring plumbing) is shared and asks the service's kind
(``config.kind``) for the parts that differ. Adding a kind is adding a module here and one
entry in :data:`KINDS`; nothing else dispatches on kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigError
from .command import Command

if TYPE_CHECKING:
    import pandas as pd
    from fastapi import FastAPI

    from ..bundle import Bundle
    from ..config import Config
    from ..monitoring.investigation import Investigation, Observed
    from ..registry import Decision


@runtime_checkable
class ProblemKind(Protocol):
    """The interface every problem kind implements (see the module docstring)."""

    name: str
    #: The ``task`` values a service of this kind may have.
    tasks: tuple[str, ...]
    #: Shared commands (cli.py) this kind's services do not have, each with what to do instead.
    unsupported_commands: dict[str, str]

    def validate(self, df: pd.DataFrame, config: Config) -> None:
        """Raise ``DataValidationError`` naming the column and the problem."""

    def split(self, df: pd.DataFrame, config: Config) -> Any:
        """Train, validation and test parts, as the config's split strategy says."""

    def baseline(self, config: Config) -> Any:
        """The honest baseline every candidate must beat (unfitted)."""

    def candidates(self, config: Config) -> list[str]:
        """The model families this service may train, the configured one first."""

    def metrics(self, config: Config) -> list[str]:
        """The metrics reported for this service, the primary one included."""

    def higher_is_better(self, metric: str) -> bool:
        """The direction of ``metric``."""

    def comparison_test(self, config: Config) -> str:
        """The statistical test that compares two models on this service's predictions."""

    def train(
        self, config: Config, data_path: str | Path | None = None, trials: int | None = None
    ) -> Any:
        """One tracked training run; the result has a ``summary()``-able form (see ``summary``)
        and a ``decision`` (:class:`..registry.Decision`): the CLI exits 1 when it says the
        model does not beat its baseline, unless the result's ``baseline_serves``."""

    def summary(self, result: Any) -> str:
        """What a person reads after training."""

    def create_app(
        self, config: Config, bundle: Bundle | None = None, fallback: Bundle | None = None
    ) -> FastAPI:
        """The service's HTTP app."""

    def drift_signals(self, config: Config) -> list[str]:
        """What the service watches for drift (shown in the model card and /metadata)."""

    def export_check(self, bundle: Bundle, sample: pd.DataFrame) -> dict[str, Any]:
        """Prove the fast-serving export equal to the model on ``sample``."""

    def model_card_sections(self, config: Config, metadata: dict[str, Any]) -> list[str]:
        """Markdown sections this kind adds to the model card."""

    def prepare_investigation(self, config: Config) -> Any:
        """What ``investigate`` needs that does not depend on the rows under investigation
        (imports, the training data), passed back to it as ``prepared``: cli.py runs it while
        it reads the prediction log in a thread (SQLite and the JSON parser let the other core
        work)."""

    def investigate(
        self, config: Config, observed: Observed, prepared: Any = None
    ) -> Investigation:
        """Why the champion got worse on ``observed``: the sections of ``investigate``'s report
        (monitoring/investigation.py holds the rows, the false-alarm budget and the report)."""

    def commands(self) -> list[Command]:
        """Commands of this kind's services beyond the shared ones (cli.py offers them)."""

    def promote(self, config: Config, version: str, reason: str, force: bool) -> Decision:
        """The ``promote`` command's gate for a registered version (``force``: none, but a
        ``reason``); it prints the evidence it weighed, and applies a positive decision."""


def _tabular() -> ProblemKind:
    from .tabular import TabularKind

    return TabularKind()


def _recommendation() -> ProblemKind:
    from .recommendation import RecommendationKind

    return RecommendationKind()


def _forecasting() -> ProblemKind:
    from .forecasting import ForecastingKind

    return ForecastingKind()


def _audio() -> ProblemKind:
    from .audio import AudioKind

    return AudioKind()


def _text() -> ProblemKind:
    from .text import TextKind

    return TextKind()


#: Every kind by name, built on first use (a kind imports its heavy libraries only then).
KINDS: dict[str, Callable[[], ProblemKind]] = {
    "tabular": _tabular,
    "recommendation": _recommendation,
    "forecasting": _forecasting,
    "audio": _audio,
    "text": _text,
}
_loaded: dict[str, ProblemKind] = {}


def get_kind(name: str) -> ProblemKind:
    """The kind called ``name``; an unknown name lists the kinds there are."""
    if name not in KINDS:
        raise ConfigError(
            f"Unknown problem kind {name!r}: this runtime has {', '.join(sorted(KINDS))}. "
            "Fix `kind` in configs/config.yaml, or update the service (mlgen update) to a "
            "runtime that has it."
        )
    if name not in _loaded:
        kind = KINDS[name]()
        if not isinstance(kind, ProblemKind):
            raise TypeError(f"Kind {name!r} does not implement the ProblemKind interface.")
        _loaded[name] = kind
    return _loaded[name]


def kind_of(config: Config) -> ProblemKind:
    """The kind of the service ``config`` describes; its task must be one the kind serves."""
    kind = get_kind(config.kind)
    if config.task not in kind.tasks:
        raise ConfigError(
            f"task {config.task!r} is not a task of the {kind.name!r} kind "
            f"(it has {', '.join(kind.tasks)}). Fix `task` or `kind` in configs/config.yaml."
        )
    return kind


def create_service_app(config: Config | None = None) -> FastAPI:
    """The HTTP app of the service at ``config`` (default: the one found from the cwd or
    ``$MLSERVICE_ROOT``), built by its kind. Servers import this as an app factory."""
    from ..config import load_config

    config = config or load_config()
    return kind_of(config).create_app(config)
