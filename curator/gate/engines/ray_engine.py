"""`curator gate --engine ray`: the streaming gate's first pass (the leading row-local checks) as a Ray Data
`map_batches` over the input rows, on the cluster at `RAY_ADDRESS` or, without it, on a local Ray started
for the gate.

The driver writes the input rows once to a Parquet file (order, run, line, record as JSON) that Ray Data
reads in blocks; each block runs the row-local checks where it lands and sends back, per row, the check
that rejected it (or none), the reason and the record as it left the checks, plus each check's stats.
Blocks come back in input order (`preserve_order`), so the driver continues exactly as
`curator.gate.stream` does (keys, whole-set checks, release), and the release is the same. The driver
alone writes the release. On a cluster of several machines the Parquet file must be on storage every
node can read (pass `TMPDIR` on a shared file system).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from curator.gate.check import Check, CheckResult, Rejection, Row
from curator.gate.pipeline import iter_rows
from curator.gate.stream import Spill, batched, merge_stats
from curator.rundir import RunDir

PASSED = -1  # `check` column of a row no row-local check rejected


def _connect() -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def run_head(batch: dict[str, np.ndarray], head: list[Check]) -> dict[str, list]:
    """The row-local checks on one block (the Ray Data task): per row its verdict, per block the stats."""
    rows = [Row(record=json.loads(rec), input=inp, line=int(line), order=int(order))
            for order, inp, line, rec in zip(batch["order"], batch["input"], batch["line"], batch["record"])]
    verdict: dict[int, tuple[int, Rejection]] = {}
    final = {r.order: r for r in rows}
    stats, seconds, kept = [], [], rows
    for k, check in enumerate(head):
        started = time.perf_counter()
        result = check.run(kept)
        seconds.append(time.perf_counter() - started)
        stats.append(result.stats)
        for rej in result.rejected:
            verdict[rej.row.order] = (k, rej)
            final[rej.row.order] = rej.row
        for row in result.kept:
            final[row.order] = row
        kept = result.kept
    out: dict[str, list] = {"order": [], "input": [], "line": [], "check": [], "reason": [], "duplicate_of": [],
                            "record": [], "scores": [], "block": []}
    for i, row in enumerate(rows):
        k, rej = verdict.get(row.order, (PASSED, None))
        out["order"].append(row.order)
        out["input"].append(row.input)
        out["line"].append(row.line)
        out["check"].append(k)
        out["reason"].append(rej.reason if rej else None)
        out["duplicate_of"].append(rej.duplicate_of if rej else None)
        out["record"].append(json.dumps(final[row.order].record, ensure_ascii=False))
        out["scores"].append(json.dumps(final[row.order].scores))
        out["block"].append(json.dumps({"stats": stats, "seconds": seconds}) if i == 0 else None)
    return out


def first_pass(head: list[Check], runs: list[RunDir], batch_rows: int) -> Iterator[tuple[list[Row], list]]:
    """As `stream._first_pass`: each batch of input rows with the results of the leading row-local checks."""
    import ray

    _connect()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    with tempfile.TemporaryDirectory(prefix="curator-ray-") as tmp:
        source = Spill(Path(tmp) / "input.parquet")
        for batch in batched(iter_rows(runs), batch_rows):
            source.write(batch)
        source.close()
        if not head:
            for batch in source.rows(np.ones(_count(source), dtype=bool), {}):
                yield batch, []
            return
        dataset = ray.data.read_parquet(str(source.path)).map_batches(
            run_head, fn_args=(head,), batch_size=batch_rows, batch_format="numpy")
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield _results(head, block)


def _count(spill: Spill) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(spill.path).metadata.num_rows


def _results(head: list[Check], block: pa.Table) -> tuple[list[Row], list]:
    """One block's rows and per-check results (`CheckResult`s with the block's stats merged, seconds summed)."""
    columns = block.to_pydict()
    rows = [Row(record=json.loads(rec), input=inp, line=line, order=order, scores=json.loads(scores))
            for order, inp, line, rec, scores
            in zip(columns["order"], columns["input"], columns["line"], columns["record"], columns["scores"])]
    stats: list[dict] = [{} for _ in head]
    seconds = [0.0 for _ in head]
    for entry in filter(None, columns["block"]):
        part = json.loads(entry)
        stats = [merge_stats(a, b) if a else b for a, b in zip(stats, part["stats"])]
        seconds = [a + b for a, b in zip(seconds, part["seconds"])]
    results, kept = [], rows
    for k in range(len(head)):
        rejected = [Rejection(row, reason, dup) for row, check, reason, dup
                    in zip(rows, columns["check"], columns["reason"], columns["duplicate_of"]) if check == k]
        out = {r.row.order for r in rejected}
        kept = [r for r in kept if r.order not in out]
        results.append((CheckResult(kept, rejected, stats[k]), seconds[k]))
    return rows, results
