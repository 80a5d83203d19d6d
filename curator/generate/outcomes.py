"""One plan slot through the teacher: its outcome (accepted, quarantined or failed) and the run-file line that
records it."""
from __future__ import annotations

from curator.generate.parse import Problem, review
from curator.generate.plan import LOOKALIKE, RESPOND, SELF_INSTRUCT, Slot
from curator.generate.requests import build_request
from curator.records import build_messages, make_pair
from curator.rundir import RunLine
from curator.spec import Spec
from curator.teacher.client import TeacherClient, TeacherError

STRATEGIES = {"completion": "self_instruct", "chat": "chat"}  # provenance of self_instruct slots, by teacher mode


def provenance_strategy(slot: Slot, mode: str) -> str:
    """`self_instruct` / `chat` (`...:lookalike` for look-alikes), else the slot's strategy (respond, evol:...)."""
    if slot.strategy == SELF_INSTRUCT:
        return STRATEGIES[mode]
    if slot.strategy == LOOKALIKE:
        return f"{STRATEGIES[mode]}:{LOOKALIKE}"
    return slot.strategy


async def run_slot(spec: Spec, slot: Slot, client: TeacherClient) -> tuple[str, RunLine]:
    """Ask the teacher for one slot: the outcome and the line that records it."""
    request, template = build_request(spec, slot)
    try:
        reply = await client.complete(request)
    except TeacherError as e:
        return "failed", RunLine.failed(slot.id, str(e))
    verdict = review(reply.text, reply.finish_reason, mode=request.mode, spec=spec, slot=slot)
    if isinstance(verdict, Problem):
        raw = {"text": reply.text, "finish_reason": reply.finish_reason, "prompt_template": template, "prompt_hash": request.key,
               **({"parent": slot.parent.origin} if slot.parent else {})}
        return "quarantined", RunLine.quarantine(verdict.reason, raw, origin=f"teacher:{request.model}", plan_slot=slot.id)
    messages = build_messages(verdict.instruction, verdict.input, verdict.output, spec.response_standards.system_prompt)
    if slot.strategy == RESPOND and slot.parent.context:  # a multi-turn parent: its earlier turns come first
        head = 1 if messages[0]["role"] == "system" else 0
        messages = [*messages[:head], *slot.parent.context, *messages[head:]]
    pair = make_pair(
        messages,
        task_family=slot.family, format=slot.format, difficulty=slot.difficulty, length_band=slot.length_band,
        source="synthetic", strategy=provenance_strategy(slot, request.mode), teacher_model=request.model,
        prompt_template=template, prompt_hash=request.key, sampling=request.sampling,
        spec_name=spec.name, spec_hash=spec.hash, plan_slot=slot.id, **({"origin": slot.parent.origin} if slot.parent else {}),
    )
    return "accepted", RunLine.pair(pair)
