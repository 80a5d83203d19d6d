"""Run a generation plan against the teacher, writing every slot's outcome to the run directory as it arrives.

Each slot ends in exactly one of pairs.jsonl (accepted), quarantine.jsonl (with a reason) or failed.jsonl
(the teacher call failed for good). Resume: a rerun skips slots already in pairs or quarantine; slots whose
latest outcome is `failed` are tried again, and replies already paid for come from the response cache.
A quarantined slot stays quarantined (one attempt per slot). failed.jsonl is a history: a slot that failed
and later succeeded keeps its old failed line, and the summary counts each slot once, by its latest outcome.

Durability: an outcome's line is written to the OS as soon as the slot ends, so a killed process (kill -9
included) never loses nor repeats a finished slot. fsync, which only a power loss needs, runs off the event
loop once per group of lines (every SYNC_INTERVAL_S at most) rather than once per line; a power loss can cost
the outcomes of that last interval, which a rerun redoes (from the response cache, unless it lost them too).
"""
from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curator.generate.parse import Problem, review
from curator.generate.plan import LOOKALIKE, RESPOND, SELF_INSTRUCT, Slot, cell_targets
from curator.generate.requests import build_request
from curator.records import build_messages, make_pair, now_iso
from curator.rundir import RunAppender, RunDir
from curator.spec import Spec
from curator.teacher.client import TeacherClient, TeacherError

T = TypeVar("T")
STRATEGIES = {"completion": "self_instruct", "chat": "chat"}  # provenance of self_instruct slots, by teacher mode
SYNC_INTERVAL_S = 0.5  # the run files are fsynced this often at most while slots land
# Slots started per turn of the event loop. Started all at once, no request would leave before every slot had been
# prepared (a quarter of a second for 1,000 slots) and the replies would come back in one burst.
LAUNCH_BATCH = 16
REFRESH_PER_S = 4  # progress bar redraws (rich's default of 10 costs the client ~5 ms of CPU a second)


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
        + (f", {st.rate_limited_s:.0f}s rate-limited" if st.rate_limited_s else "")
    )


async def run_slot(spec: Spec, slot: Slot, client: TeacherClient) -> tuple[str, Callable[[RunAppender], None]]:
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
    return "accepted", lambda run: run.add_pair(pair)


async def run_plan(
    spec: Spec, slots: list[Slot], client: TeacherClient, run_dir: RunDir, counts: Counter[str],
    *, console: Console | None = None,
) -> None:
    """Run the pending `slots` concurrently (the client bounds requests in flight) with a live progress bar.

    Each outcome is written as it arrives and fsynced in a group (see the module's docstring); `counts` tallies
    outcomes as they are written, so it is right even when the run is interrupted.
    """
    pending = pending_slots(slots, run_dir)
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
    # exit order: the syncer thread finishes its fsync before the appender's last sync and close
    with heap_frozen(), run_dir.appender() as out, ThreadPoolExecutor(1, thread_name_prefix="run-dir-sync") as syncer, \
            Progress(*columns, console=console or Console(stderr=True), refresh_per_second=REFRESH_PER_S) as progress:
        task = progress.add_task("generate", total=len(slots), completed=len(slots) - len(pending), stats=progress_line(counts, client))

        async def one(slot: Slot) -> None:
            outcome, record = await run_slot(spec, slot, client)
            record(out)
            counts[outcome] += 1
            progress.update(task, advance=1, stats=progress_line(counts, client))

        syncing = asyncio.create_task(sync_in_groups(out, syncer))
        try:
            await run_gradually(one, pending)
        finally:
            syncing.cancel()
            with suppress(asyncio.CancelledError):
                await syncing


async def run_gradually(fn: Callable[[T], Awaitable[Any]], items: Sequence[T]) -> None:
    """`fn(item)` for every item, all concurrently, started LAUNCH_BATCH at a time with a turn of the event loop
    between, so the first requests are on the wire while later items are still being prepared. If one fails, or
    the caller is cancelled, those still running are cancelled."""
    started: list[asyncio.Future[Any]] = []
    try:
        for i in range(0, len(items), LAUNCH_BATCH):
            started += [asyncio.ensure_future(fn(item)) for item in items[i:i + LAUNCH_BATCH]]
            await asyncio.sleep(0)
        await asyncio.gather(*started)
    finally:
        for task in started:
            task.cancel()  # a no-op for those done


@contextmanager
def heap_frozen() -> Iterator[None]:
    """Let the garbage collector skip every object alive now (modules, the SDK's thousands of models, the spec and
    plan): with hundreds of requests in flight its full collections otherwise walk them all, about a tenth of the
    client's CPU."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def sync_in_groups(out: RunAppender, syncer: ThreadPoolExecutor) -> None:
    """fsync what `out` wrote, every SYNC_INTERVAL_S at most, in the `syncer` thread; runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(SYNC_INTERVAL_S)
        if out.unsynced:
            await loop.run_in_executor(syncer, out.sync)


def summarize(slots: list[Slot], states: SlotStates) -> dict[str, Any]:
    """Counts per outcome and per cell, from the slots' states on disk (all sessions of the run)."""
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
