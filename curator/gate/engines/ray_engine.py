"""`curator gate --engine ray`: the streaming gate's first pass (the leading row-local checks and the dedup
keys) as a Ray Data `map_batches` over the input rows, and the dedup keys grouped by a Ray Data shuffle, on the
cluster at `RAY_ADDRESS` or, without it, on a local Ray started for the gate.

The driver writes the input rows once to a Parquet file (order, run, line, record as JSON) that Ray Data
reads in blocks; each block runs the row-local checks where it lands and sends back, per row, the check
that rejected it (or none), the reason and the record as it left the checks, plus each check's stats.
The same task computes the keys of the narrowed whole-set checks (`stream.NARROWINGS`: exact and MinHash
dedup, label conflicts) for the rows it kept: hashes and LSH band keys, one 64-bit value per key column.
Blocks come back in input order (`preserve_order`), so the driver continues exactly as `curator.gate.stream`
does. The keys do not come back: a `groupby` on them (a shuffle across the cluster) keeps only the keys two
or more rows share, with those rows (`stream.SharedKeys`); the driver links them into groups (union-find over
integer ids, `stream.key_groups`) and cuts them into buckets of whole groups, and each bucket's rows go to a Ray
task that runs the unchanged check on them (`stream.bucket_verdicts`), so the release is the same. The driver
alone writes the release. On a cluster of several machines the Parquet file must be on storage
every node can read (pass `TMPDIR` on a shared file system).

The embedding models of semantic dedup (MiniLM: about 170 texts a second a CPU) run on the cluster too
(`RayEmbed`): the driver sends the distinct texts, a pool of Ray Data actors (one CPU each, up to one per CPU of
the cluster) loads the model once per actor and embeds blocks of them, and the vectors come back in order. What
needs the whole set stays on the driver: the boilerplate line counts before embedding, and the similarity search.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curator.gate.check import Check, CheckResult, Rejection, Row
from curator.gate.embeddings import load_embedder
from curator.gate.minhash import fmix64
from curator.gate.pipeline import iter_rows
from curator.gate.stream import (Keys, Narrowing, SharedKeys, Spill, Verdicts, batched, bucket_verdicts, merge_stats,
                                  narrowing_keys)
from curator.rundir import RunDir

EMBED_BLOCK = 512  # texts an embedding actor is given at a time
ACTOR_START_S = 600  # how long the embedding actors may take to start (load the model) before the gate fails
PASSED = -1  # `check` column of a row no row-local check rejected
STRINGS = ("input", "reason", "duplicate_of", "record", "scores", "block")  # string columns (may be all null)
_COLUMN_MIX = 0x9E3779B97F4A7C15  # odd: each key column's number times it (mod 2^64) is mixed into its keys


def _connect() -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def folded(keys: Keys) -> np.ndarray:
    """The keys as one 64-bit value per row and column, shape (rows, columns): a 16-byte digest is read as its first
    8 bytes, and each column's number is mixed in, so equal keys in two columns do not link rows."""
    columns = []
    for number, column in enumerate(keys.columns):
        values = column if column.dtype == np.uint64 else np.frombuffer(column.tobytes(), dtype=np.uint64)[::2]
        columns.append(fmix64(values ^ np.uint64((number + 1) * _COLUMN_MIX % 2**64)))
    return np.stack(columns, axis=1) if columns else np.zeros((len(keys.orders), 0), dtype=np.uint64)


def run_head(batch: dict[str, np.ndarray], head: list[Check], narrowings: dict[int, Narrowing]) -> pa.Table:
    """The row-local checks on one block (the Ray Data task): per row its verdict and, for the rows kept, the
    narrowings' keys (`keys<i>`: a list of the folded keys, empty for a row without keys); per block the stats."""
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
    keys = narrowing_keys(narrowings, kept)
    key_columns = {f"keys{i}": key_lists(rows, k) for i, (k, _) in keys.items()}
    key_seconds = {i: seconds for i, (_, seconds) in keys.items()}
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
        out["block"].append(json.dumps({"stats": stats, "seconds": seconds, "key_seconds": key_seconds})
                            if i == 0 else None)
    return pa.table({**{name: pa.array(values, type=pa.string() if name in STRINGS else None)
                        for name, values in out.items()}, **key_columns})


def key_lists(rows: list[Row], keys: Keys) -> pa.ListArray:
    """Per row of `rows`, its folded keys (`folded`) as a list, empty for a row `keys` has no keys of. The keys are
    stored as int64 (the same bits): Ray's hash aggregation turns uint64 values past 2^63 into Python objects."""
    position = {order: p for p, order in enumerate(keys.orders.tolist())}
    index = np.fromiter((position.get(r.order, -1) for r in rows), dtype=np.int64, count=len(rows))
    values = folded(keys)
    counts = np.where(index >= 0, values.shape[1], 0)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[index[index >= 0]].ravel().view(np.int64)))


def key_rows(batch: pa.Table, column: str) -> pa.Table:
    """One row per key of a block's `column` (lists of folded keys): (key, order)."""
    lists = batch.column(column).combine_chunks()
    return pa.table({"key": pc.list_flatten(lists),
                     "order": pc.take(batch.column("order"), pc.list_parent_indices(lists))})


def among(batch: pa.Table, shared: pa.Array) -> pa.Table:
    """The (key, order) rows of a block whose key is one of `shared`."""
    return batch.filter(pc.is_in(batch.column("key"), value_set=shared))


def distinct_orders(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of a block of (key, order) rows, each once."""
    return {"order": np.unique(batch["order"])}


def _bucket_task(check: Check, table: pa.Table, scores: dict[int, dict]
                 ) -> tuple[Verdicts, pa.RecordBatch | None, np.ndarray, str]:
    """`stream.bucket_verdicts` as a Ray task, with the id of the node it ran on."""
    import ray

    return (*bucket_verdicts(check, table, scores), ray.get_runtime_context().get_node_id())


class RayFirstPass:
    """The first pass on Ray: `run` yields each block's rows and the leading checks' results in input order (as
    `stream.FirstPass` with no narrowings); once it is done, `shared` holds each narrowing's shared keys and
    `key_seconds` the seconds the tasks spent computing them. `bucket_verdicts` then checks the rows those keys
    group, a Ray task a bucket; `bucket_nodes` collects the nodes those tasks ran on."""

    def __init__(self, head: list[Check], narrowings: dict[int, Narrowing]):
        self.head = head
        self.narrowings = narrowings
        self.shared: dict[int, SharedKeys] = {}
        self.key_seconds: dict[int, float] = {i: 0.0 for i in narrowings}
        self.bucket_nodes: set[str] = set()

    def bucket_verdicts(self, check: Check, buckets: Iterable[tuple[pa.Table, dict[int, dict]]]
                        ) -> Iterator[tuple[Verdicts, pa.RecordBatch | None, np.ndarray]]:
        """`stream.bucket_verdicts` of each (rows, scores) bucket, each a Ray task (one CPU) spread over the
        cluster's nodes (under Ray's default strategy data locality keeps them on the driver's node, which holds
        every bucket), two a CPU of the cluster in flight; the results in bucket order."""
        import ray

        task = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_bucket_task)
        shared_check = ray.put(check)
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: deque = deque()
        for table, scores in buckets:
            pending.append(task.remote(shared_check, table, scores))
            if len(pending) >= window:
                yield self._done(pending.popleft())
        while pending:
            yield self._done(pending.popleft())

    def _done(self, ref) -> tuple[Verdicts, pa.RecordBatch | None, np.ndarray]:
        import ray

        found, batch, orders, node = ray.get(ref)
        self.bucket_nodes.add(node)
        return found, batch, orders

    def run(self, runs: list[RunDir], batch_rows: int) -> Iterator[tuple[list[Row], list]]:
        import ray

        _connect()
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        key_columns = [f"keys{i}" for i in self.narrowings]
        with tempfile.TemporaryDirectory(prefix="curator-ray-") as tmp:
            source = Spill(Path(tmp) / "input.parquet")
            for batch in batched(iter_rows(runs), batch_rows):
                source.write(batch)
            source.close()
            passed = ray.data.read_parquet(str(source.path)).map_batches(
                run_head, fn_args=(self.head, self.narrowings), batch_size=batch_rows, batch_format="numpy"
            ).materialize()
            verdicts = passed.drop_columns(key_columns) if key_columns else passed
            for block in verdicts.iter_batches(batch_size=None, batch_format="pyarrow"):
                entries = [json.loads(entry) for entry in block.column("block").to_pylist() if entry]
                for entry in entries:
                    for i, seconds in entry["key_seconds"].items():
                        self.key_seconds[int(i)] += seconds
                yield _results(self.head, block, entries)
            for i, column in zip(self.narrowings, key_columns):
                self.shared[i] = _shuffled(passed, column)


def _shuffled(passed, column: str) -> SharedKeys:
    """The keys in `column` of `passed` that two or more rows share, with those rows, and the rows with keys: a
    `groupby` count on the cluster (a shuffle) finds the shared keys, which are few; each block then keeps the rows
    of those keys. (Ray's `AsList` of the rows of every key, shared or not, was far slower than its count.)"""
    from ray.data.aggregate import Count

    keys = passed.select_columns(["order", column]).map_batches(
        key_rows, fn_args=(column,), batch_format="pyarrow", batch_size=None).materialize()
    counted = keys.groupby("key", num_partitions=passed.num_blocks()).aggregate(Count(alias_name="rows"))
    shared = pa.array(np.concatenate([b["key"][b["rows"] > 1] for b in
                                      counted.iter_batches(batch_size=None, batch_format="numpy")]
                                     + [np.zeros(0, np.int64)]))
    found = [b for b in keys.map_batches(among, fn_args=(shared,), batch_format="pyarrow", batch_size=None)
             .iter_batches(batch_size=None, batch_format="numpy")]
    keyed = [b["order"] for b in keys.map_batches(distinct_orders, batch_format="numpy", batch_size=None)
             .iter_batches(batch_size=None, batch_format="numpy")]  # the rows with keys, from the keys themselves
    empty = np.zeros(0, np.int64)
    return SharedKeys(np.concatenate([b["key"] for b in found] + [empty]),
                      np.concatenate([b["order"] for b in found] + [empty]), np.unique(np.concatenate(keyed + [empty])))


def _results(head: list[Check], block: pa.Table, entries: list[dict]) -> tuple[list[Row], list]:
    """One block's rows and per-check results (`CheckResult`s with the stats of its batches' `entries` merged,
    seconds summed)."""
    columns = block.to_pydict()
    rows = [Row(record=json.loads(rec), input=inp, line=line, order=order, scores=json.loads(scores))
            for order, inp, line, rec, scores
            in zip(columns["order"], columns["input"], columns["line"], columns["record"], columns["scores"])]
    stats: list[dict] = [{} for _ in head]
    seconds = [0.0 for _ in head]
    for part in entries:
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


class _Embedder:
    """A Ray Data actor holding one embedding model (loaded once): a block of texts in, their vectors out, with the
    id of the process that computed them and of the Ray node it ran on."""

    def __init__(self, backend: str):
        import ray

        self.embed = load_embedder(backend)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = np.ascontiguousarray(self.embed(batch.column("text").to_pylist()), dtype=np.float32)
        return pa.table({"index": batch.column("index"),
                         "vector": pa.FixedSizeListArray.from_arrays(vectors.ravel(), vectors.shape[1]),
                         "pid": np.full(len(vectors), os.getpid()), "node": pa.array([self.node] * len(vectors))})


class RayEmbed:
    """`Embed` on the Ray cluster (`_connect`): each call embeds its texts in a pool of `_Embedder` actors, up to
    one per CPU of the cluster; `workers` and `nodes` collect the process ids and Ray node ids that computed vectors."""

    def __init__(self, backend: str, block: int = EMBED_BLOCK):
        self.backend = backend
        self.block = block
        self.workers: set[int] = set()
        self.nodes: set[str] = set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        import ray

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        _connect()
        # the whole pool loads the model before any texts go out: otherwise the first actor up takes every block
        ray.data.DataContext.get_current().wait_for_min_actors_s = ACTOR_START_S
        actors = max(1, min(int(ray.cluster_resources().get("CPU", 1)), -(-len(texts) // self.block)))
        table = pa.table({"index": np.arange(len(texts)), "text": pa.array(texts, pa.string())})
        source = ray.data.from_arrow([table.slice(start, self.block) for start in range(0, len(texts), self.block)])
        embedded = source.map_batches(_Embedder, fn_constructor_args=(self.backend,), batch_size=self.block,
                                      batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
                                      num_cpus=1)
        index, vectors = [], []
        for part in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            index.append(part["index"])
            vectors.append(np.stack(part["vector"]))
            self.workers.update(part["pid"].tolist())
            self.nodes.update(part["node"].tolist())
        return np.concatenate(vectors).astype(np.float32)[np.argsort(np.concatenate(index), kind="stable")]
