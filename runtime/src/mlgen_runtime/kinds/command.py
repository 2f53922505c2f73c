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
