"""*Planning* picks the LLM or the heuristic planner for a brief and records what happened.

:func:`plan_brief` always computes the heuristic plan (offline, deterministic); when the LLM is
on, that plan is the model's starting draft and the fallback. Trouble with the LLM (API errors,
answers that stay invalid) gives the heuristic plan and a warning, or an error under
``llm_required``; a rejected or missing key is always an error, because the user asked for the
LLM and must fix the key or pass ``--no-llm``. The outcome carries the plan, the checked slot
code, the manifest and the warnings; :meth:`PlanOutcome.write` puts the last three into a
rendered service.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgen.brief import Brief
from mlgen.errors import LLMAuthError, LLMError, MlgenError, SlotError
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

SLOT_FILE = "custom_features.py"


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
    """A plan ready to render, the validated slot code (or None), the manifest and warnings."""

    plan: Plan
    slot_code: str | None
    manifest: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())

    def write(self, service: Path) -> None:
        """Write ``.mlgen/manifest.json`` and, when there is one, the checked slot code."""
        service = Path(service)
        if self.slot_code is not None:
            slots = sorted(service.glob(f"src/*/{SLOT_FILE}"))
            if len(slots) != 1:
                raise MlgenError(
                    f"Cannot place the custom features: expected one src/<package>/{SLOT_FILE} "
                    f"in {service}, found {len(slots)}."
                )
            slots[0].write_text(self.slot_code, encoding="utf-8")
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
    from mlgen.slot import check_slot

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
    warnings: list[str] = []
    slot_code, slot = None, {"written": False}
    if result.feature_code:
        try:
            checked = check_slot(result.feature_code, _slot_sample(profile, result.plan))
        except SlotError as exc:
            warnings.append(f"The model's custom feature code was dropped: {exc}.")
            slot = {
                "written": False,
                "dropped_reason": str(exc),
                "proposed_sha256": sha256_text(result.feature_code),
            }
        else:
            slot_code = _slot_header(settings.model, prompt.version) + checked.code
            slot = {
                "written": True,
                "sha256": sha256_text(slot_code),
                "added_columns": list(checked.added_columns),
            }
    manifest = build_manifest(
        brief.text,
        result.plan,
        "llm",
        turns=result.turns,
        slot=slot,
        warnings=tuple(warnings),
        **record,
    )
    return PlanOutcome(result.plan, slot_code, manifest, tuple(warnings))


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


def _slot_sample(profile: Profile, plan: Plan) -> Any:
    """The raw columns ``add_features`` receives in the service: the features, never the target."""
    if plan.features:
        names = [f.name for f in plan.features]
    else:
        roles = {plan.target, plan.id_column, plan.time_column, plan.group_column}
        names = [c for c in profile.column_names if c not in roles | set(plan.exclude_columns)]
    return profile.raw[names]


def _slot_header(model: str, prompt_version: str) -> str:
    return (
        f"# Written by {model} (mlgen prompt {prompt_version}) for this service's brief, then\n"
        "# checked by mlgen: allowed imports only, no I/O, run on a data sample. It is yours now.\n"
    )
