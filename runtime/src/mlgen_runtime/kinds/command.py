"""A kind's own *command*: a command of the service's command line (cli.py) that only
services of that kind have, such as the recommendation kind's ``recommend-all``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config


@dataclass(frozen=True)
class Command:
    """One command: its name and help, its options, and what it runs."""

    name: str
    help: str
    #: Declares the command's options on its sub-parser.
    arguments: Callable[[argparse.ArgumentParser], None]
    #: Runs it; the exit status as the shared commands' (0 done, 1 refused, 2 failed).
    run: Callable[[Config, argparse.Namespace], int]


#: The shared commands (cli.py) an audio or text service does not have, and what to do instead.
LABELLED_UNSUPPORTED = {
    "evaluate": "`train` prints the test metrics with their intervals and logs them to MLflow.",
    "retrain": "run `train --data NEW_DATA`: the new model replaces the champion only if the "
    "gate finds it significantly better on the same test examples.",
    "drift": "the service scores drift as it serves: see /metrics and the Grafana dashboard.",
    "compare": "champion/challenger rollouts are not available for this kind yet.",
    "investigate": "the report of why a champion got worse is the tabular kind's; for this "
    "kind, compare /metrics drift gauges with the test metrics in MODEL_CARD.md.",
}
