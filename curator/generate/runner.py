"""Run a generation plan against the teacher, writing every slot's outcome to the run directory as it arrives.

Each slot ends in exactly one of pairs.jsonl (accepted), quarantine.jsonl (with a reason) or failed.jsonl
(the teacher call failed for good). Resume: a rerun skips slots already in pairs or quarantine; slots whose
latest outcome is `failed` are tried again, and replies already paid for come from the response cache.
A quarantined slot stays quarantined (one attempt per slot). failed.jsonl is a history: a slot that failed
and later succeeded keeps its old failed line, and the summary counts each slot once, by its latest outcome.

With `workers` > 1 the slots are shared among forked worker processes (curator/generate/workers.py) and this
process writes what they send; with 1 it runs them itself. Either way this process alone writes the run files.

Durability: an outcome's line is written to the OS as soon as it reaches this process, so a killed process
(kill -9 included) never loses nor repeats a written slot. fsync, which only a power loss needs, runs off the
event loop once per group of lines (every SYNC_INTERVAL_S at most) rather than once per line; a power loss can
cost the outcomes of that last interval, which a rerun redoes (from the response cache, unless it lost them too).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curator.generate.aio import heap_frozen, run_gradually
from curator.generate.outcomes import run_slot
from curator.generate.plan import Slot, cell_targets
from curator.generate.workers import Workers
from curator.records import now_iso
from curator.rundir import RunAppender, RunDir, RunLine
from curator.spec import Spec
from curator.teacher.client import TeacherClient, TeacherStats

SYNC_INTERVAL_S = 0.5  # the run files are fsynced this often at most while slots land
REFRESH_PER_S = 4  # progress bar redraws (rich's default of 10 costs the client ~5 ms of CPU a second)


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


def progress_line(counts: Counter[str], stats: TeacherStats) -> str:
    """Live counts of this session and what the teacher cost so far, for the progress bar."""
    return (
        f"[green]{counts['accepted']} accepted[/] [yellow]{counts['quarantined']} quarantined[/] "
        f"[red]{counts['failed']} failed[/] | {stats.prompt_tokens}+{stats.completion_tokens} tok, "
        f"{stats.retries} retries, {stats.cache_hits} cached"
        + (f", {stats.rate_limited_s:.0f}s rate-limited" if stats.rate_limited_s else "")
    )


async def run_plan(
    spec: Spec, slots: list[Slot], client: TeacherClient, run_dir: RunDir, counts: Counter[str],
    *, workers: int = 1, console: Console | None = None,
) -> int:
    """Run the pending `slots` concurrently (the client bounds requests in flight), in `workers` processes, with a
    live progress bar.

    Each outcome is written as it arrives and fsynced in a group (see the module's docstring); `counts` tallies
    outcomes as they are written, so it is right even when the run is interrupted. With workers, their usage is
    added to `client.stats`, whose shares they were. Returns the number of processes that ran the slots (fewer
    than `workers` when there are fewer slots or requests in flight).
    """
    pending = pending_slots(slots, run_dir)
    workers = max(1, min(workers, client.max_in_flight, len(pending)))
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[stats]}"))
    with heap_frozen():
        shards = Workers(spec, pending, client, workers) if workers > 1 else None
        own = client.stats
        if shards:
            shards.start()  # forked before this process starts any thread of its own

        def usage() -> TeacherStats:
            return TeacherStats.total([own, shards.stats]) if shards else own

        # exit order: the syncer thread finishes its fsync before the appender's last sync and close
        with run_dir.appender() as out, ThreadPoolExecutor(1, thread_name_prefix="run-dir-sync") as syncer, \
                Progress(*columns, console=console or Console(stderr=True), refresh_per_second=REFRESH_PER_S) as progress:
            task = progress.add_task("generate", total=len(slots), completed=len(slots) - len(pending), stats=progress_line(counts, usage()))

            def land(outcomes: list[tuple[str, RunLine]]) -> None:
                out.write(*(line for _, line in outcomes))
                counts.update(outcome for outcome, _ in outcomes)
                progress.update(task, advance=len(outcomes), stats=progress_line(counts, usage()))

            async def one(slot: Slot) -> None:
                land([await run_slot(spec, slot, client)])

            syncing = asyncio.create_task(sync_in_groups(out, syncer))
            try:
                if shards:
                    await shards.collect(land)
                else:
                    await run_gradually(one, pending)
            finally:
                if shards:
                    shards.stop(land)
                    client.stats = usage()
                syncing.cancel()
                with suppress(asyncio.CancelledError):
                    await syncing
    return workers


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


def session_record(started: float, started_at: str, outcomes: Counter[str], client: TeacherClient | None,
                   workers: int = 0) -> dict[str, Any]:
    """One invocation's share of the work, appended to run.json's `sessions` (`workers`: the processes that ran
    its slots, 0 when none ran)."""
    return {
        "started_at": started_at,
        "finished_at": now_iso(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "workers": workers,
        "outcomes": {k: outcomes.get(k, 0) for k in ("accepted", "quarantined", "failed")},
        "teacher_base_url": client.base_url if client else None,
        "usage": client.stats.as_dict() if client else {},
    }
