"""Fewer cyclic garbage collections for batch work.

A batch of parsed records is tens of thousands of dicts and lists, almost none in a reference cycle. With
CPython's default thresholds (a young collection every 700 container allocations, an old one every 100 young
ones) the collector walks them again and again, the more often the more objects are alive: the streaming gate's
first pass costs 48.5 us a row with the defaults and 42.5 with these settings in `benchmarks/gate_stages.py`
(one batch alive at a time). `tune_for_batches` leaves the objects alive at the call (modules, configuration) out
of every later collection and collects far less often; cycles are still collected."""
from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # container allocations between young collections (CPython's default: 700)


def tune_for_batches() -> None:
    """Set this process's collector for batch work (see the module doc): for a process started for that work (a
    `curator` command, a worker), at its start."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
