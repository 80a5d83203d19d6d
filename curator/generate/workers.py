"""A plan's slots run by several worker processes, for teachers that answer faster than one event loop can take.

The openai SDK costs 0.7-0.9 ms of CPU a request on this 2-core VM, the whole runner about 1 ms: one process
tops out near 1,000 requests a second, and replies that come back together wait for the loop in turn (at 64 in
flight and 200 ms, one process loses about 10% to that queueing; two lose about 6%). With workers, each process
runs its share of the slots (every W-th) through its own event loop and TeacherClient (its share of the requests
in flight and of the rate limits, the same response cache file), and sends each outcome's encoded line, with its
client's usage so far, to the parent over a pipe every SEND_INTERVAL_S. The parent alone writes the run directory
and draws the progress, so the run files keep one writer and their crash guarantees.

Workers are forked (no re-import, no pickling of the plan), on Linux; elsewhere the run stays in one process.
A worker ignores Ctrl-C (the parent handles it and stops them) and exits as soon as the parent is gone, kill -9
included (it watches the parent's sentinel). A reply a worker received but had not yet handed over when it
stopped is in the response cache; the rerun takes it from there without paying again.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from curator.errors import CuratorError
from curator.generate.aio import heap_frozen, run_gradually
from curator.generate.outcomes import run_slot
from curator.generate.plan import Slot
from curator.rundir import RunLine
from curator.spec import Spec
from curator.teacher.client import ResponseCache, TeacherClient, TeacherStats

# A worker sends its outcomes at most this often: a message per reply would cost the parent a wake-up each. A
# worker killed before sending loses at most this much, which a rerun takes from the response cache.
SEND_INTERVAL_S = 0.05
IN_FLIGHT_PER_WORKER = 32  # `workers: auto` gives a process to each this many requests in flight (up to the CPUs)
Land = Callable[[list[tuple[str, RunLine]]], None]  # what the parent does with outcomes and their lines


def can_fork() -> bool:
    """Workers are forked on Linux only (macOS offers fork, but its system libraries are not safe across it)."""
    return sys.platform.startswith("linux")


def worker_count(setting: int | str, max_in_flight: int) -> int:
    """Processes for a run: the spec's number, or for `auto` one per IN_FLIGHT_PER_WORKER requests in flight, at
    most one per CPU; 1 where processes cannot be forked."""
    if not can_fork():
        return 1
    if setting == "auto":
        return max(1, min(os.cpu_count() or 1, max_in_flight // IN_FLIGHT_PER_WORKER))
    return int(setting)


class Workers:
    """The worker processes of one run_plan call: `start` forks them, `collect` lands their outcomes until all
    are done, `stop` ends any still running (and lands what they had sent)."""

    def __init__(self, spec: Spec, slots: list[Slot], client: TeacherClient, count: int):
        self.spec = spec
        self.shards = [slots[i::count] for i in range(count)]
        self.client_args = client.shares(count)
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[Connection] = []
        self.usage: list[TeacherStats] = [TeacherStats() for _ in range(count)]
        self.finished: set[int] = set()

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        for i, shard in enumerate(self.shards):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=work, args=(self.spec, shard, self.client_args[i], writer),
                               name=f"curator-generate-{i}", daemon=True)
            proc.start()
            writer.close()  # the worker holds the only writing end: its exit is our EOF (and later forks lack it)
            self.procs.append(proc)
            self.conns.append(reader)

    @property
    def stats(self) -> TeacherStats:
        """The workers' usage so far, summed."""
        return TeacherStats.total(self.usage)

    def _receive(self, i: int, land: Land) -> bool:
        """Land every message waiting from worker i; False once its pipe is closed."""
        conn = self.conns[i]
        try:
            while conn.poll():
                kind, payload, usage = conn.recv()
                if usage is not None:
                    self.usage[i] = usage
                if kind == "lines":
                    land(payload)
                elif kind == "done":
                    self.finished.add(i)
                else:
                    raise WorkerError(f"generation worker {i} failed; rerun the same command to resume:\n{payload}")
        except (EOFError, OSError):
            return False
        return True

    async def collect(self, land: Land) -> None:
        """Land the workers' outcomes as they arrive, until every worker is done; WorkerError when one fails or
        dies before finishing."""
        loop = asyncio.get_running_loop()
        over: asyncio.Future[None] = loop.create_future()
        open_pipes = set(range(len(self.conns)))

        def readable(i: int) -> None:
            try:
                alive = self._receive(i, land)
            except Exception as e:  # a worker's failure, or ours in landing its lines: the run stops
                alive = False
                if not over.done():
                    over.set_exception(e)
            if alive:
                return
            loop.remove_reader(self.conns[i].fileno())
            open_pipes.discard(i)
            if i not in self.finished and not over.done():
                self.procs[i].join(5)
                over.set_exception(WorkerError(f"generation worker {i} exited (code {self.procs[i].exitcode}) before finishing "
                                               "its slots; rerun the same command to resume"))
            elif not open_pipes and not over.done():
                over.set_result(None)

        for i, conn in enumerate(self.conns):
            loop.add_reader(conn.fileno(), readable, i)
        try:
            await over
        finally:
            for i in open_pipes:
                loop.remove_reader(self.conns[i].fileno())

    def stop(self, land: Land) -> None:
        """End the workers still running, land what they had sent, and release the pipes."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join()
        for i, conn in enumerate(self.conns):
            try:
                self._receive(i, land)
            except WorkerError:
                pass  # already reported, or the run is being stopped anyway
            conn.close()


class WorkerError(CuratorError):
    """A worker process failed or died before finishing its slots (what the others sent is written: a rerun
    resumes)."""


class Outbox:
    """A worker's outcomes, sent to the parent with the client's usage SEND_INTERVAL_S after the first of them."""

    def __init__(self, conn: Connection, client: TeacherClient):
        self.conn, self.client = conn, client
        self.lines: list[tuple[str, RunLine]] = []

    def put(self, outcome: str, line: RunLine) -> None:
        if not self.lines:
            asyncio.get_running_loop().call_later(SEND_INTERVAL_S, self.flush)
        self.lines.append((outcome, line))

    def flush(self) -> None:
        if self.lines:
            self.conn.send(("lines", self.lines, self.client.stats))
            self.lines = []


def work(spec: Spec, slots: list[Slot], client_args: dict[str, Any], conn: Connection) -> None:
    """A worker process: run `slots`, sending each outcome to the parent; a failure is sent as its traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    try:
        asyncio.run(run_shard(spec, slots, client_args, conn))
    except asyncio.CancelledError:  # the parent is gone: nobody to report to
        os._exit(1)
    except BaseException:
        conn.send(("error", traceback.format_exc(), None))
        raise


async def run_shard(spec: Spec, slots: list[Slot], client_args: dict[str, Any], conn: Connection) -> None:
    """Run a worker's slots with a client of its own, sending outcomes and then its usage to the parent."""
    loop = asyncio.get_running_loop()
    parent = multiprocessing.parent_process()
    if parent is not None:  # the parent's sentinel becomes readable when it exits, however it exits
        loop.add_reader(parent.sentinel, asyncio.current_task().cancel)
    cache_path = client_args.pop("cache_path")
    cache = ResponseCache(cache_path) if cache_path else None
    client = TeacherClient(**client_args, cache=cache)
    outbox = Outbox(conn, client)

    async def one(slot: Slot) -> None:
        outbox.put(*await run_slot(spec, slot, client))

    try:
        with heap_frozen():
            await run_gradually(one, slots)
        outbox.flush()
        conn.send(("done", None, client.stats))
    finally:
        await client.close()
        if cache is not None:
            cache.close()
