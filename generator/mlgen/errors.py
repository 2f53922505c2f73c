"""Every failure a user can cause or fix, as one named error class with an actionable message.

The CLI prints ``str(error)`` and exits with ``error.exit_code``: 2 for bad input (brief, data,
target folder), 1 when a rendered service fails verification.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Longest given value a message quotes back.
QUOTE_CHARS = 80
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def quoted(value: Any) -> str:
    """``value`` as a message quotes it (it may come from a model or a file): a string in
    double quotes, anything else as JSON; control, invisible and direction characters escaped,
    long values shortened."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 3] + "..."
    return f'"{text}"' if isinstance(value, str) else text


class MlgenError(Exception):
    """Base class: the message says what is wrong and how to fix it."""

    exit_code = 2


class BriefError(MlgenError):
    """The brief is missing, empty, unreadable, or does not say enough to plan."""


class DataError(MlgenError):
    """The data file is missing, unreadable, empty, or unusable for the stated problem."""


class TargetNotFoundError(DataError):
    """The target the brief names is not a column of the data."""


class PlanError(MlgenError):
    """A plan (from a planner or a brief's front matter) is inconsistent or invalid."""


class RenderError(MlgenError):
    """The service could not be rendered into the requested folder."""


class TemplateStoreError(MlgenError):
    """The template store could not be read or extended."""


class LLMError(MlgenError):
    """The LLM planner could not produce a valid plan (API failure or invalid answers)."""


class LLMAuthError(LLMError):
    """The API rejected the key: the user must fix ANTHROPIC_API_KEY or plan offline."""


class UpdateError(MlgenError):
    """The service cannot be updated as it is; the message says how to fix that."""


class VerifyError(MlgenError):
    """A step of verifying the rendered service failed; the message carries its output tail."""

    exit_code = 1


class DeployError(MlgenError):
    """A model cannot be deployed as given (mlgen deploy); the message says what to change."""
