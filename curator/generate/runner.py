"""Run a generation plan against the teacher, writing every slot's outcome to the run directory as it arrives.

Each slot ends in exactly one of pairs.jsonl (accepted), quarantine.jsonl (with a reason) or failed.jsonl
(the teacher call failed for good). Resume: a rerun skips slots already in pairs or quarantine; slots whose
latest outcome is `failed` are tried again, and replies already paid for come from the response cache.
A quarantined slot stays quarantined (one attempt per slot). failed.jsonl is a history: a slot that failed
and later succeeded keeps its old failed line, and the summary counts each slot once, by its latest outcome.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curator.generate.parse import Problem, review
from curator.generate.plan import LOOKALIKE, SELF_INSTRUCT, Slot, cell_targets
from curator.generate.requests import build_request
from curator.records import build_messages, make_pair, now_iso
from curator.rundir import RunDir
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


@dataclass(frozen=True)
class SlotStates:
    """Each plan slot's latest outcome in a run directory."""

    accepted: set[str]
    quarantined: dict[str, str]  # slot -> reason
    failed: dict[str, str]  # slot -> reason, only slots not accepted or quarantined since

    @classmethod
    def read(cls, run_dir: RunDir) -> "SlotStates":
        accepted = {p["provenance"].get("plan_slot") for p in run_dir.pairs()}
        quarantined = {q["plan_slot"]: q["reason"] for q in run_dir.quarantined()}
        failed = {f["plan_slot"]: f["reason"] for f in run_dir.failed()}
        done = accepted | set(quarantined)
        return cls(accepted, quarantined, {k: v for k, v in failed.items() if k not in done})

    @property
    def done(self) -> set[str]:
        return self.accepted | set(self.quarantined)


def pending_slots(slots: list[Slot], run_dir: RunDir) -> list[Slot]:
    """Slots still to do: neither accepted nor quarantined (failed ones are retried)."""
    done = SlotStates.read(run_dir).done
    return [s for s in slots if s.id not in done]


def progress_line(counts: Counter[str], client: TeacherClient) -> str:
    """Live counts of this session and what the teacher cost so far, for the progress bar."""
    st = client.stats
    return (
        f"[green]{counts['accepted']} accepted[/] [yellow]{counts['quarantined']} quarantined[/] "
        f"[red]{counts['failed']} failed[/] | {st.prompt_tokens}+{st.completion_tokens} tok, "
        f"{st.retries} retries, {st.cache_hits} cached"
    )


async def run_slot(spec: Spec, slot: Slot, client: TeacherClient) -> tuple[str, Callable[[RunDir], None]]:
    """Ask the teacher for one slot: the outcome (accepted, quarantined or failed) and the write that records it."""
    request, template = build_request(spec, slot)
    try:
        reply = await client.complete(request)
    except TeacherError as e:
        reason = str(e)
        return "failed", lambda run: run.add_failed(slot.id, reason)
    verdict = review(reply.text, reply.finish_reason, mode=request.mode, spec=spec, slot=slot)
    if isinstance(verdict, Problem):
        raw = {"text": reply.text, "finish_reason": reply.finish_reason, "prompt_template": template, "prompt_hash": request.key,
               **({"parent": slot.parent.origin} if slot.parent else {})}
        return "quarantined", lambda run: run.add_quarantine(verdict.reason, raw, origin=f"teacher:{request.model}", plan_slot=slot.id)
    messages = build_messages(verdict.instruction, verdict.input, verdict.output, spec.response_standards.system_prompt)
    pair = make_pair(
        messages,
        task_family=slot.family, format=slot.format, difficulty=slot.difficulty, length_band=slot.length_band,
        source="synthetic", strategy=provenance_strategy(slot, request.mode), teacher_model=request.model,
        prompt_template=template, prompt_hash=request.key, sampling=request.sampling,
        spec_name=spec.name, spec_hash=spec.hash, plan_slot=slot.id, **({"origin": slot.parent.origin} if slot.parent else {}),
    )
    return "accepted", lambda run: run.add_pair(pair)


async def run_plan(
    spec: Spec, slots: list[Slot], client: TeacherClient, run_dir: RunDir, counts: Counter[str],
    *, console: Console | None = None,
) -> None:
    """Run the pending `slots` concurrently (the client bounds requests in flight) with a live progress bar.

    Outcomes are written as they arrive, in order, by one writer thread, so fsync never stalls the event loop;
    `counts` tallies them as they land, so it is right even when the run is interrupted.
    """
    pending = pending_slots(slots, run_dir)
    loop = asyncio.get_running_loop()
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
    with ThreadPoolExecutor(1, thread_name_prefix="run-dir-writer") as writer, \
            Progress(*columns, console=console or Console(stderr=True)) as progress:
        task = progress.add_task("generate", total=len(slots), completed=len(slots) - len(pending), stats=progress_line(counts, client))

        async def one(slot: Slot) -> None:
            outcome, record = await run_slot(spec, slot, client)
            await loop.run_in_executor(writer, record, run_dir)
            counts[outcome] += 1
            progress.update(task, advance=1, stats=progress_line(counts, client))

        await asyncio.gather(*(one(s) for s in pending))


def summarize(slots: list[Slot], run_dir: RunDir) -> dict[str, Any]:
    """Counts per outcome and per cell, from what is on disk (all sessions of the run)."""
    states = SlotStates.read(run_dir)
    planned = {s.id for s in slots}
    counts = {
        "planned": len(slots),
        "accepted": len(states.accepted & planned),
        "quarantined": len(set(states.quarantined) & planned),
        "failed": len(set(states.failed) & planned),
    }
    counts["pending"] = counts["planned"] - counts["accepted"] - counts["quarantined"] - counts["failed"]
    cells = {cell: {"target": n, "accepted": 0, "quarantined": 0, "failed": 0} for cell, n in cell_targets(slots).items()}
    for s in slots:
        for outcome, ids in (("accepted", states.accepted), ("quarantined", states.quarantined), ("failed", states.failed)):
            if s.id in ids:
                cells[s.cell][outcome] += 1
    reasons = Counter(r.split(":", 1)[0] for slot, r in states.quarantined.items() if slot in planned)
    return {"counts": counts, "cells": cells, "quarantine_reasons": dict(sorted(reasons.items()))}


def session_record(started: float, started_at: str, outcomes: Counter[str], client: TeacherClient | None) -> dict[str, Any]:
    """One invocation's share of the work, appended to run.json's `sessions`."""
    return {
        "started_at": started_at,
        "finished_at": now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "outcomes": {k: outcomes.get(k, 0) for k in ("accepted", "quarantined", "failed")},
        "teacher_base_url": client.base_url if client else None,
        "usage": client.stats.as_dict() if client else {},
    }
