"""The LLM planner: a Claude model fills the Plan from the brief and the data profile.

The model must answer through one forced tool, ``submit_plan``, whose input schema is the Plan's
JSON schema (without ``data_path``, which is never the model's to choose), with the runtime's
feature-transform spec for ``feature_transforms``, plus an optional ``feature_code``: Python that
mlgen never runs or imports, kept only as a proposal for a person to read. Its answer is parsed
by the same pydantic Plan and then reviewed against the profile and the brief; problems go back
to the model as an error tool result for at most ``max_repair_turns`` more turns. Transient API
failures are retried with backoff inside a total time budget. Every failure raises
:class:`LLMError`, so the caller can fall back to the heuristic plan; a rejected key raises
:class:`LLMAuthError`.
"""

from __future__ import annotations

import copy
import math
import os
import re
import time
import typing
from dataclasses import dataclass, field
from typing import Any

import anthropic

from mlgen import transforms
from mlgen.brief import Brief
from mlgen.errors import DataError, LLMAuthError, LLMError, MlgenError, PlanError
from mlgen.plan import Plan
from mlgen.planners.heuristic import derived_classes, one_answer
from mlgen.profile import Profile
from mlgen.prompt import Prompt

TOOL_NAME = "submit_plan"
RETRYABLE_STATUS = frozenset({408, 409, 429})
# Which Plan feature types a profiled column kind can be read as by the service's pipeline.
TYPES_FOR_KIND = {
    "numeric": {"numeric", "categorical"},
    "boolean": {"boolean", "numeric", "categorical"},
    "categorical": {"categorical", "text"},
    "text": {"text", "categorical"},
    "datetime": {"datetime", "categorical"},
}
ENCODINGS_FOR_TYPE = {
    "numeric": {"auto", "scale", "passthrough"},
    "categorical": {"auto", "onehot", "ordinal", "target"},
    "text": {"auto", "onehot", "ordinal", "target"},
}
MAX_TEXT = 300
_TEMPLATE_MARKS = re.compile(r"\{[{%#]|[}%#]\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class PlanProblems(Exception):
    """What is wrong with one answer of the model, phrased so the model can fix it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def default_model() -> str:
    """``MLGEN_MODEL``, else the newest Sonnet id in the installed SDK's model list."""
    if os.environ.get("MLGEN_MODEL"):
        return os.environ["MLGEN_MODEL"]
    known = [
        arg for part in typing.get_args(anthropic.types.Model) for arg in typing.get_args(part)
    ]
    versions = {}
    for model in known:
        match = re.fullmatch(r"claude-sonnet-(\d+)(?:-(\d))?", model)
        if match:
            versions[model] = (int(match.group(1)), int(match.group(2) or 0))
    if versions:
        return max(versions, key=versions.__getitem__)
    return known[0]


@dataclass
class Usage:
    """Tokens spent over every call of one planning run (cache reads are billed at ~10%)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    calls: int = 0

    def add(self, usage: Any) -> None:
        self.calls += 1
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            setattr(self, name, getattr(self, name) + int(getattr(usage, name, 0) or 0))

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LLMSettings:
    """How the planner talks to the API; defaults suit a real key on a normal network."""

    model: str = field(default_factory=default_model)
    max_repair_turns: int = 2
    max_tokens: int = 8192
    time_budget_s: float = 180.0
    request_timeout_s: float = 90.0
    first_backoff_s: float = 1.0
    send_sample: bool = True


@dataclass(frozen=True)
class LLMResult:
    """A reviewed plan, the model's Python feature code if it sent any (never run), and how
    many turns it took."""

    plan: Plan
    feature_code: str | None
    turns: int


def plan_tool() -> dict[str, Any]:
    """The ``submit_plan`` tool: the Plan's JSON schema with the transform spec's, inlined,
    plus ``feature_code``."""
    schema = Plan.model_json_schema()
    spec = transforms.spec_schema()
    schema["$defs"] = {**schema.get("$defs", {}), **spec["$defs"]}
    items = {k: v for k, v in spec["properties"]["steps"]["items"].items() if k != "discriminator"}
    schema["properties"]["feature_transforms"].update(
        items=items, maxItems=transforms.max_transforms()
    )
    schema = _inline_refs(schema)
    schema["properties"].pop("data_path")
    schema["properties"]["feature_code"] = {
        "type": "string",
        "description": "Optional, rarely needed: Python for a feature no transform kind can "
        "express. mlgen never runs or imports it; it is saved as a text file for a person to "
        "review and adopt by hand",
    }
    return {
        "name": TOOL_NAME,
        "description": "Submit the complete plan for the service, with a rationale per setting.",
        "input_schema": schema,
    }


class LLMPlanner:
    """One planning conversation with the model; ``usage`` counts tokens even on failure."""

    name = "llm"

    def __init__(self, client: anthropic.Anthropic, settings: LLMSettings, prompt: Prompt) -> None:
        self.client, self.settings, self.prompt = client, settings, prompt
        self.usage = Usage()

    def run(self, brief: Brief, profile: Profile, draft: Plan | None) -> LLMResult:
        """Ask for a plan, send problems back for repair; raise :class:`LLMError` if none fits."""
        request = self.prompt.request(brief, profile, draft, send_sample=self.settings.send_sample)
        messages: list[dict[str, Any]] = [{"role": "user", "content": request}]
        deadline = time.monotonic() + self.settings.time_budget_s
        problems: list[str] = []
        turns = 1 + self.settings.max_repair_turns
        for turn in range(1, turns + 1):
            response = self._call(messages, deadline)
            block = next((b for b in response.content if b.type == "tool_use"), None)
            if block is None:
                raise LLMError("The model answered without calling the submit_plan tool.")
            try:
                plan, code = review(block.input, brief, profile, draft)
                return LLMResult(plan=plan, feature_code=code, turns=turn)
            except PlanProblems as exc:
                problems = exc.problems
            messages.append(
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": block.id,
                            "name": block.name,
                            "input": _encodable(block.input),
                        }
                    ],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": block.id,
                            "is_error": True,
                            "content": "The plan was rejected:\n- "
                            + "\n- ".join(problems)
                            + "\nCall submit_plan again with the whole plan corrected.",
                        }
                    ],
                }
            )
        raise LLMError(
            f"The model's plan was still invalid after {turns} turns: " + "; ".join(problems)
        )

    def _call(self, messages: list[dict[str, Any]], deadline: float) -> Any:
        """One Messages API call, retried on timeouts, 408/409/429 and 5xx until ``deadline``."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self.client.messages.create(
                    model=self.settings.model,
                    max_tokens=self.settings.max_tokens,
                    system=[
                        {
                            "type": "text",
                            "text": self.prompt.system,
                            "cache_control": {"type": "ephemeral"},
                        }
                    ],
                    tools=[plan_tool()],
                    tool_choice={"type": "tool", "name": TOOL_NAME},
                    messages=messages,
                    timeout=max(1.0, min(self.settings.request_timeout_s, remaining)),
                )
            except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
                raise LLMAuthError(
                    f"The Anthropic API rejected the key ({exc.status_code}). Check that "
                    "ANTHROPIC_API_KEY holds a valid key with access to model "
                    f'"{self.settings.model}", or pass --no-llm to plan offline.'
                ) from exc
            except anthropic.APIStatusError as exc:
                if exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500:
                    raise LLMError(
                        f"The Anthropic API refused the request ({exc.status_code}): {exc.message}"
                    ) from exc
                last, wait = f"HTTP {exc.status_code}", _retry_after(exc.response)
            except anthropic.APIConnectionError as exc:
                last, wait = type(exc).__name__, None
            else:
                self.usage.add(response.usage)
                return response
            wait = wait if wait is not None else self.settings.first_backoff_s * 2**attempt
            attempt += 1
            if time.monotonic() + wait >= deadline:
                raise LLMError(
                    f"The Anthropic API did not answer within {self.settings.time_budget_s:.0f} s "
                    f"({attempt} attempts, last: {last}). Try again later or pass --no-llm."
                )
            time.sleep(wait)


def review(raw: Any, brief: Brief, profile: Profile, draft: Plan | None) -> tuple[Plan, str | None]:
    """Parse the model's tool input into a Plan that fits the data and the brief.

    The data path is the brief's, never the model's; free text is cleaned before it can reach
    any file. Raises :class:`PlanProblems` listing everything the model must fix.
    """
    if not isinstance(raw, dict):
        raise PlanProblems(["the tool input must be a JSON object with the plan's fields"])
    data = copy.deepcopy(raw)
    code = data.pop("feature_code", None)
    if code is not None and not isinstance(code, str):
        raise PlanProblems(["feature_code must be a string holding a Python module"])
    data["data_path"] = draft.data_path if draft else str(profile.source)
    # exclude_columns is derived from `excluded`; models copying the Plan's dump may send it.
    derived = data.pop("exclude_columns", None)
    listed = [item.get("column") for item in data.get("excluded") or [] if isinstance(item, dict)]
    if derived is not None and derived != listed:
        raise PlanProblems(
            ["list excluded columns in `excluded` with a reason each, not in exclude_columns"]
        )
    if isinstance(data.get("rationale"), dict):
        data["rationale"] = {
            k: clean_text(v) if isinstance(v, str) else v for k, v in data["rationale"].items()
        }
    for key in ("excluded", "feature_transforms"):
        items = data.get(key)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("reason"), str):
                item["reason"] = clean_text(item["reason"])
    try:
        plan = Plan.build(data)
        plan.check_columns(profile.column_names)
    except PlanError as exc:
        raise PlanProblems([str(exc)]) from exc
    problems = _misfits(plan, brief, profile)
    if problems:
        raise PlanProblems(problems)
    return plan, (code.strip() + "\n") if code and code.strip() else None


def _misfits(plan: Plan, brief: Brief, profile: Profile) -> list[str]:
    """Ways a well-formed plan contradicts the data or what the brief states."""
    if brief.kind and plan.kind != brief.kind:
        return [f"the brief states kind: {brief.kind}: keep it"]
    if plan.kind == "recommendation":
        return _recommendation_misfits(plan, brief, profile)
    if plan.kind in ("audio", "text"):
        return _labelled_misfits(plan, brief, profile)
    problems = []
    try:
        kind = profile.target(plan.target).kind
    except DataError as exc:
        return [str(exc)]
    target_numeric = profile.column(plan.target).kind in ("numeric", "boolean")
    fits = {
        "binary": {"binary_classification"},
        "multiclass": {"multiclass_classification"} | ({"regression"} if target_numeric else set()),
        "regression": {"regression"},
    }[kind]
    if plan.positive_when:
        # A yes/no question asked of a number: binary whatever the number's values.
        fits = {"binary_classification"}
        if not target_numeric:
            problems.append(
                f'positive_when compares the target "{plan.target}" with a number, but it is '
                f"{profile.column(plan.target).kind} in the data: leave positive_when empty"
            )
        else:
            counts = derived_classes(profile, plan.target, plan.positive_when)
            if not counts["yes"] or not counts["no"]:
                problems.append(one_answer(plan.target, plan.positive_when, counts))

    if plan.task not in fits:
        problems.append(
            f'task {plan.task} does not fit the target "{plan.target}", which is '
            f"{kind} in the data: use {' or '.join(sorted(fits))}"
            + (
                ', or set positive_when (e.g. "> 0") to ask a yes/no question of the number'
                if target_numeric and kind != "binary" and plan.task == "binary_classification"
                else ""
            )
        )
    if "target" in brief.front and plan.target != _stated_target(brief, profile):
        problems.append(f'the brief states the target "{brief.front["target"]}": keep it')
    stated = brief.task
    if (
        stated == "classification"
        and plan.task == "regression"
        or (stated not in (None, "classification") and plan.task != stated)
    ):
        problems.append(f"the brief states the task ({stated}): keep it")
    for name, value in brief.plan_overrides.items():
        if name == "exclude_columns":
            missing = [str(c) for c in value if str(c) not in plan.exclude_columns]
            if missing:
                problems.append(f"the brief excludes {', '.join(missing)}: keep them excluded")
        elif isinstance(value, str | int | float | bool) and getattr(plan, name, value) != value:
            problems.append(f"the brief states {name}: {value!r}: keep it")
    for feature in plan.features:
        column = profile.column(feature.name)
        if feature.type not in TYPES_FOR_KIND[column.kind]:
            problems.append(
                f'feature "{feature.name}" is {column.kind} in the data: its type '
                f"must be one of {', '.join(sorted(TYPES_FOR_KIND[column.kind]))}"
            )
        allowed = ENCODINGS_FOR_TYPE.get(feature.type)
        if allowed and feature.encoding not in allowed:
            problems.append(
                f'feature "{feature.name}" ({feature.type}) takes encoding '
                f"{', '.join(sorted(allowed))}, not {feature.encoding}"
            )
        if feature.name == plan.id_column:
            problems.append(f'"{feature.name}" is the id column: it cannot be a feature')
    if plan.time_column and profile.column(plan.time_column).kind not in ("datetime", "numeric"):
        problems.append(f'time_column "{plan.time_column}" holds neither dates nor numbers')
    return problems


def _recommendation_misfits(plan: Plan, brief: Brief, profile: Profile) -> list[str]:
    problems = []
    if "target" in brief.front:
        problems.append(
            f'the brief states a target ("{brief.front["target"]}"): plan the tabular kind'
        )
    rows = profile.n_sampled
    for role in ("user_column", "item_column"):
        column = profile.column(getattr(plan, role))
        if column.kind not in ("categorical", "numeric") or (
            column.kind == "numeric" and not column.integer
        ):
            problems.append(
                f'{role} "{column.name}" is {column.kind} in the data: ids are labels or integers'
            )
        elif column.n_unique > 0.9 * rows:
            problems.append(
                f'{role} "{column.name}" has a different value on nearly every row: ids of users '
                "and items repeat over many interactions"
            )
    if plan.time_column and profile.column(plan.time_column).kind not in ("datetime", "numeric"):
        problems.append(f'time_column "{plan.time_column}" holds neither dates nor numbers')
    if plan.weight_column and profile.column(plan.weight_column).kind not in (
        "numeric", "boolean"
    ):
        problems.append(f'weight_column "{plan.weight_column}" is not numeric in the data')
    return problems + _overrides_changed(plan, brief)


def _labelled_misfits(plan: Plan, brief: Brief, profile: Profile) -> list[str]:
    """An audio plan needs clips; a text plan a free-text column and a label of classes."""
    problems = []
    if plan.kind == "audio" and profile.clip_column is None:
        problems.append("the data names no audio files (.wav, .flac): it is not the audio kind")
    if plan.kind == "text":
        column = profile.column(plan.text_column)
        if column.kind not in ("text", "categorical"):
            problems.append(f'text_column "{column.name}" is {column.kind} in the data, not text')
        try:
            if profile.target(plan.target).kind == "regression":
                problems.append(f'the target "{plan.target}" is a continuous number: the text '
                                "kind classifies")
        except DataError as exc:
            problems.append(str(exc))
    return problems + _overrides_changed(plan, brief)


def _overrides_changed(plan: Plan, brief: Brief) -> list[str]:
    """Plain values the brief's front matter states that the plan changed."""
    return [
        f"the brief states {name}: {value!r}: keep it"
        for name, value in brief.plan_overrides.items()
        if isinstance(value, str | int | float | bool) and getattr(plan, name, value) != value
    ]


def _stated_target(brief: Brief, profile: Profile) -> str | None:
    try:
        return brief.find_target(profile.column_names)
    except MlgenError:
        return None


def clean_text(text: str) -> str:
    """Free text from the model as one plain line: no control characters or template marks."""
    text = _CONTROL.sub(" ", text)
    while _TEMPLATE_MARKS.search(text):
        text = _TEMPLATE_MARKS.sub("", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3].rstrip() + "..."


def _encodable(value: Any) -> Any:
    """``value`` with non-finite numbers (which a model's JSON may hold, as 1e999) as null:
    the repair turn sends the answer back, and the API takes standard JSON only."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def _retry_after(response: Any) -> float | None:
    """The server's Retry-After in seconds, when it sends a plain number."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except (TypeError, ValueError):
        return None


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref`` pointers by the definitions they name, so the schema stands alone."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
