"""A function mapped over items in forked worker processes, results in input order, few items in flight.

`curator import` parses and builds rows in workers while its own process reads the input and alone writes the
run directory, in input order (a rerun resumes by counting lines). Workers ignore Ctrl-C (the parent handles it)
and are killed by the kernel when the parent dies, kill -9 included (Linux's parent-death signal).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
PR_SET_PDEATHSIG = 1


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(fn, items)`, with `fn` run in `workers` forked processes; at most two items a worker are in flight.
    It runs in this process where there is one worker or one item, or off Linux (where forking is not safe)."""
    items = iter(items)
    head = list(islice(items, 2))
    if workers <= 1 or len(head) < 2 or not sys.platform.startswith("linux"):
        yield from map(fn, chain(head, items))
        return
    items = chain(head, items)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_start, initargs=(os.getpid(),))
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


def _worker_start(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)
