"""A *kind package*: a problem kind laid out as a package, whose ``train.py`` trains and
describes its models and whose ``serving.py`` builds its HTTP app.

:class:`KindPackage` is the plumbing every such kind (recommendation, forecasting, audio, text)
has the same way: each method imports the kind's own module when called, so that building the
kind (``kinds.get_kind``) stays cheap. :class:`LabelledKind` adds what the labelled-example
kinds (audio, text) share: their metrics, the paired test that compares two models, and the
``promote`` of a registered version (labelled.py). :func:`refusal` is the one answer to a
shared command a kind does not have, whether the command line or a direct call asks.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .command import LABELLED_UNSUPPORTED

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..bundle import Bundle
    from ..config import Config
    from ..monitoring.investigation import Investigation, Observed
    from ..registry import Decision
    from .command import Command

#: The metrics of a labelled-example kind, after its primary one.
LABELLED_METRICS = ("accuracy", "f1_macro", "balanced_accuracy", "log_loss")


def refusal(kind: str, unsupported: dict[str, str], command: str) -> UsageError:
    """The error for ``command``, a shared command that ``kind``'s services do not have
    (``unsupported`` says what to do instead)."""
    return UsageError(f"`{command}` is not a command of {kind} services: {unsupported[command]}")


class KindPackage:
    """The methods of :class:`~.ProblemKind` that a kind package answers from its modules."""

    name: str
    unsupported_commands: dict[str, str]

    def _module(self, name: str) -> ModuleType:
        # The kind's class is defined in its package's __init__.py.
        return importlib.import_module(f"{type(self).__module__}.{name}")

    def summary(self, result: Any) -> str:
        return str(self._module("train").summary(result))

    def model_card_sections(self, config: Config, metadata: dict[str, Any]) -> list[str]:
        return [self._module("train").model_card(config, metadata)]

    def create_app(
        self, config: Config, bundle: Bundle | None = None, fallback: Bundle | None = None
    ) -> FastAPI:
        app: FastAPI = self._module("serving").create_app(config)
        return app

    def promote(self, config: Config, version: str, reason: str, force: bool) -> Decision:
        decision: Decision = self._module("train").promote_version(config, version, reason, force)
        return decision

    def prepare_investigation(self, config: Config) -> Any:
        return None

    def investigate(
        self, config: Config, observed: Observed, prepared: Any = None
    ) -> Investigation:
        # cli.py refuses the command first (unsupported_commands); a direct call is refused too.
        raise refusal(self.name, self.unsupported_commands, "investigate")


class LabelledKind(KindPackage):
    """A kind whose examples each have one label (audio clips, texts): see labelled.py."""

    unsupported_commands: dict[str, str] = LABELLED_UNSUPPORTED
    #: What one test example is, in the comparison test's description.
    examples: str

    def metrics(self, config: Config) -> list[str]:
        primary = self._module("train").section(config).primary_metric
        return [primary, *(m for m in LABELLED_METRICS if m != primary)]

    def higher_is_better(self, metric: str) -> bool:
        return metric != "log_loss"

    def comparison_test(self, config: Config) -> str:
        from ..compare import statistical_test

        primary = self._module("train").section(config).primary_metric
        return f"{statistical_test(primary, paired=True)} on {primary} of the test {self.examples}"

    def commands(self) -> list[Command]:
        return []

    def promote(self, config: Config, version: str, reason: str, force: bool) -> Decision:
        from .labelled import promote_registered

        return promote_registered(config, version, reason, force)
