"""*Planning* picks the LLM or the heuristic planner for a brief and records what happened.

:func:`plan_brief` always computes the heuristic plan (offline, deterministic); when the LLM is
on, that plan is the model's starting draft and the fallback. Trouble with the LLM (API errors,
answers that stay invalid) gives the heuristic plan and a warning, or an error under
``llm_required``; a rejected or missing key is always an error, because the user asked for the
LLM and must fix the key or pass ``--no-llm``. The outcome carries the plan, the model's feature
code as an inert proposal (if it sent any), the manifest and the warnings; :meth:`PlanOutcome.write`
puts the proposal and the manifest into a rendered service.

Code an LLM writes is never executed, imported or checked by running it: feature engineering
reaches the service as data (``feature_transforms``, compiled by the runtime), and
``feature_code`` is written, unwired, as ``docs/proposed_features.py.txt`` for a person to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgen.brief import Brief
from mlgen.errors import LLMAuthError, LLMError, MlgenError
from mlgen.manifest import build_manifest, sha256_text, write_manifest
from mlgen.plan import Plan
from mlgen.planners.heuristic import HeuristicPlanner
from mlgen.profile import Profile

if TYPE_CHECKING:
    # The SDK takes seconds to import: offline planning never loads it.
    import anthropic
    import httpx2

    from mlgen.planners.llm import LLMSettings
    from mlgen.recording import Recording

PROPOSAL_FILE = Path("docs") / "proposed_features.py.txt"
# Longer feature code is not kept at all: a proposal is meant to be read in full.
MAX_PROPOSAL_CHARS = 20_000
PROPOSAL_HEADER = """\
# PROPOSAL ONLY, NOT USED BY THIS SERVICE: Python feature code that {author}
# wrote for this service's brief. mlgen never runs, imports or tests code an LLM writes: nothing
# below has been executed or reviewed, and nothing imports this file. It may be wrong, or
# written to do harm. Prefer a feature transform (`transforms` in configs/local.yaml); to adopt
# an idea from it, read every line, then write your own src/<package>/custom_features.py.

"""
# Characters that change how text displays (terminal escapes, bidirectional overrides, invisible
# characters): a proposal is read by a person, so what they see must be what the file says.
_DISPLAY_CONTROLS = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
)


@dataclass(frozen=True)
class PlanOptions:
    """The CLI's planning options (``--llm/--no-llm``, ``--model``, ``--llm-required``, ...)."""

    llm: bool | None = None
    model: str | None = None
    llm_required: bool = False
    send_sample: bool = True
    replay: Path | None = None
    record: Path | None = None
    # Taken from the environment by the CLI (mlgen.environment.take_api_key); kept out of repr
    # so that no log or traceback of the options shows it.
    api_key: str | None = field(default=None, repr=False)
    settings: LLMSettings | None = None
    # Where requests go instead of the network (tests use httpx2.MockTransport).
    transport: httpx2.BaseTransport | None = None

    @property
    def use_llm(self) -> bool:
        """On when asked for, else when a replay or an API key is given."""
        if self.llm is not None:
            return self.llm
        return self.replay is not None or self.api_key is not None


@dataclass(frozen=True)
class PlanOutcome:
    """A plan ready to render, the model's feature code as a proposal to read (or None), the
    manifest and warnings."""

    plan: Plan
    proposal: str | None
    manifest: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    def write(self, service: Path) -> None:
        """Write ``.mlgen/manifest.json`` and, when there is one, the unwired proposal."""
        service = Path(service)
        if self.proposal is not None:
            (service / PROPOSAL_FILE).parent.mkdir(parents=True, exist_ok=True)
            (service / PROPOSAL_FILE).write_text(self.proposal, encoding="utf-8")
        write_manifest(service, self.manifest)


def plan_brief(brief: Brief, profile: Profile, options: PlanOptions | None = None) -> PlanOutcome:
    """Plan ``brief`` with the LLM when it is on, falling back to the heuristic plan."""
    options = options or PlanOptions()
    try:
        heuristic: Plan | None = HeuristicPlanner().plan(brief, profile)
        heuristic_error: MlgenError | None = None
    except MlgenError as exc:
        heuristic, heuristic_error = None, exc
    if not options.use_llm:
        if heuristic is None:
            raise heuristic_error
        return PlanOutcome(heuristic, None, build_manifest(brief.text, heuristic, "heuristic"))
    return _plan_with_llm(brief, profile, options, heuristic, heuristic_error)


def _plan_with_llm(
    brief: Brief,
    profile: Profile,
    options: PlanOptions,
    heuristic: Plan | None,
    heuristic_error: MlgenError | None,
) -> PlanOutcome:
    from mlgen.planners.llm import LLMPlanner, LLMSettings
    from mlgen.prompt import SAMPLE_ROWS, Prompt
    from mlgen.recording import Recording

    prompt = Prompt.load()
    recording = Recording.load(options.replay) if options.replay else None
    settings = options.settings or LLMSettings()
    model = options.model or (recording.model if recording and recording.model else None)
    settings = replace(settings, model=model or settings.model, send_sample=options.send_sample)
    recorder = (
        Recording(model=settings.model, prompt_version=prompt.version) if options.record else None
    )
    planner = LLMPlanner(_client(options, recording, recorder), settings, prompt)
    record: dict[str, Any] = {
        "model": settings.model,
        "prompt_version": prompt.version,
        "usage": planner.usage.as_dict(),
        "sample_rows_sent": min(SAMPLE_ROWS, profile.n_sampled) if options.send_sample else 0,
        "replayed_from": options.replay.name if options.replay else None,
    }
    try:
        result = planner.run(brief, profile, heuristic)
    except LLMAuthError:
        raise
    except LLMError as exc:
        if options.llm_required:
            raise
        if heuristic is None:
            raise LLMError(
                f"{exc} The heuristic planner could not plan either: {heuristic_error}"
            ) from exc
        warning = f"The LLM plan was not used ({exc}); the heuristic plan is rendered instead."
        record["usage"] = planner.usage.as_dict()
        manifest = build_manifest(
            brief.text,
            heuristic,
            "heuristic",
            fallback_reason=str(exc),
            warnings=(warning,),
            **record,
        )
        return PlanOutcome(heuristic, None, manifest, (warning,))
    finally:
        if recorder is not None:
            recorder.save(options.record)
    record["usage"] = planner.usage.as_dict()
    proposal, feature_code, warnings = None, {"proposed": False}, []
    if result.feature_code:
        feature_code = {"proposed": True, "sha256": sha256_text(result.feature_code),
                        "run": False, "written": None}
        if len(result.feature_code) > MAX_PROPOSAL_CHARS:
            warnings.append(
                f"The model also sent {len(result.feature_code):,} characters of Python feature "
                f"code. mlgen never runs model-written code, and code this long (over "
                f"{MAX_PROPOSAL_CHARS:,}) is not kept."
            )
        else:
            proposal = proposal_text(result.feature_code, settings.model, prompt.version)
            feature_code["written"] = str(PROPOSAL_FILE)
            warnings.append(
                "The model also sent Python feature code. mlgen never runs model-written code: "
                f"it is saved, unused, as {PROPOSAL_FILE} for you to read."
            )
    manifest = build_manifest(
        brief.text,
        result.plan,
        "llm",
        turns=result.turns,
        feature_code=feature_code,
        warnings=tuple(warnings),
        **record,
    )
    return PlanOutcome(result.plan, proposal, manifest, tuple(warnings))


def _client(
    options: PlanOptions, recording: Recording | None, recorder: Recording | None
) -> anthropic.Anthropic:
    import anthropic
    import httpx2

    if recording is not None:
        # A replay never reaches the network; the SDK still wants some key to build headers.
        return anthropic.Anthropic(
            api_key="replay", max_retries=0, http_client=recording.replay_client()
        )
    key = options.api_key
    if not key:
        raise LLMAuthError(
            "The LLM planner needs ANTHROPIC_API_KEY in the environment. Set it, or pass "
            "--no-llm to plan offline."
        )
    if recorder is not None:
        http_client = recorder.recording_client(options.transport)
    else:
        http_client = httpx2.Client(transport=options.transport) if options.transport else None
    # Retries are ours (bounded by LLMSettings.time_budget_s), not the SDK's.
    return anthropic.Anthropic(api_key=key, max_retries=0, http_client=http_client)


def proposal_text(code: str, model: str, prompt_version: str) -> str:
    """The model's feature code as an inert text file a person may read, and adopt by hand."""
    author = " ".join(f"{model} (mlgen prompt {prompt_version})".split())
    return PROPOSAL_HEADER.format(author=author) + _DISPLAY_CONTROLS.sub(
        "", code.replace("\r\n", "\n")
    )
