"""A function mapped over items in forked worker processes, results in input order, few items in flight.

`curator import` parses and builds rows in workers while its own process reads the input and alone writes the
run directory, in input order (a rerun resumes by counting lines); the streaming gate's first pass runs its
batches in them too. Workers ignore Ctrl-C (the parent handles it) and end when the parent dies, kill -9 included:
forked copies by the kernel (Linux's parent-death signal), a forkserver's workers within a second (a thread in each
watches the parent). Each worker sets its garbage collector for batch work (`gc_tuning`).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
from typing import Callable, Iterable, Iterator, TypeVar

from curator.gc_tuning import tune_for_batches

T = TypeVar("T")
R = TypeVar("R")
PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, *, start_method: str = "fork",
                preload: tuple[str, ...] = (), initializer: Callable[..., None] | None = None,
                initargs: tuple = (), min_items: int = 2) -> Iterator[R]:
    """`map(fn, items)`, with `fn` run in `workers` processes; at most two items a worker are in flight.
    It runs in this process where there is one worker or fewer than `min_items` items (starting workers would cost
    more than they save), or off Linux (where forking is not safe).
    `start_method` "fork": workers are copies of this process, killed when it dies; "forkserver": they fork from
    one fresh process that imported the modules `preload` once, and end within a second of this process's death.
    `initializer(*initargs)` runs once in each worker."""
    items, min_items = iter(items), max(min_items, 2)
    head = list(islice(items, min_items))
    if workers <= 1 or len(head) < min_items or not sys.platform.startswith("linux"):
        yield from map(fn, chain(head, items))
        return
    items = chain(head, items)
    pool = worker_pool(workers, start_method, preload, initializer, initargs)
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


def start_forkserver(preload: tuple[str, ...]) -> None:
    """Start this process's forkserver now, importing the modules `preload` there while this process goes on: the
    first `ordered_map(..., start_method="forkserver")` then finds it ready instead of waiting for its imports (about
    2 s for the gate's). Nothing on one CPU or off Linux, where `ordered_map` starts no workers."""
    if cpu_count() > 1 and sys.platform.startswith("linux"):
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))
        multiprocessing.forkserver.ensure_running()


def worker_pool(workers: int, start_method: str = "fork", preload: tuple[str, ...] = (),
                initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> ProcessPoolExecutor:
    """A pool of `workers` processes started as `ordered_map` starts them (see there); Linux only."""
    context = multiprocessing.get_context(start_method)
    if preload:
        context.set_forkserver_preload(list(preload))
    parent = os.getpid() if start_method == "fork" else None
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                               initargs=(parent, os.getpid(), initializer, initargs))


def _exit_with(owner: int) -> None:
    """End this process (at once, mid-item) when process `owner` no longer exists; checked every second."""
    while True:
        time.sleep(1)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(1)


def _worker_start(parent: int | None, owner: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_for_batches()
    if parent is not None:  # a forked copy: dies with the process that forked it
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above ran
            os._exit(1)
    else:  # a forkserver's: its parent, the forkserver, outlives the process that started it
        threading.Thread(target=_exit_with, args=(owner,), name="exit with owner", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)
