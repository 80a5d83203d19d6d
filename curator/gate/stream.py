"""The streaming gate (`curator gate --engine stream`): rows flow through the checks in batches and wait on
disk between checks; the verdicts are those of `pipeline.run_checks`, row for row.

Checks come in three kinds:

- row-local (a class attribute `row_local = True`: schema, content_defects, pii, arithmetic, code_syntax,
  refusal_policy, grounding): a row's verdict depends on that row alone, so they run batch by batch and
  their stats are merged (`merge_stats`).
- narrowed whole-set checks (`NARROWINGS`: labels, exact_dedup, near_dedup): a row's verdict depends only
  on rows sharing a key with it (the normalised question of a label answer; the pair or prompt hash; a
  MinHash LSH band). The keys are computed while the rows stream past (16 bytes a row per hash, 8 per
  LSH band), and the unchanged check then runs on the rows that share a key, read back from the spill
  group by group (rows linked through shared keys), in buckets of about `CHUNK_ROWS`: rows sharing no key
  are neither rejected nor chosen as keepers by it.
- any other check (decontamination, relevance, semantic dedup, screening, selection, plug-ins) runs on all
  rows still in play, read back from the spill: the same verdicts, but it holds those rows while it runs.

The leading row-local checks run while the run directories are read; the rows they keep go to a Parquet
spill (`Spill`) in the gate's temporary directory (under `TMPDIR`), read back in batches by the later checks.
What stays in memory across the whole run: a flag per row (still in play), the keys above, the scores checks
gave, and the ledger entries without their records (`LedgerOnDisk` reads those back from the spills). The
kept rows stay on disk (`KeptOnDisk`): the split, the expectations and the release writer read them back in
passes.
"""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from curator.errors import CuratorError
from curator.gate.check import Check, Row
from curator.gate.checks.exact_dedup import ExactDedup, pair_key, prompt_key
from curator.gate.checks.label_consistency import LabelConsistency
from curator.gate.checks.near_dedup import MINHASH_SEED, NearDedup
from curator.gate.minhash import band_key, char_shingles, choose_bands, signatures, word_shingles
from curator.gate.normalize import pair_text
from curator.gate.pipeline import InputCounts, _family, check_report, iter_rows, ledger_entries, resolve_keepers
from curator.jsonl import loads
from curator.release.store import JSON_PAIRS, scores_json
from curator.rundir import RunDir

BATCH_ROWS = 8192
SPILL_SCHEMA = pa.schema([("order", pa.int64()), ("input", pa.string()), ("line", pa.int64()), ("id", pa.string()),
                          ("record", pa.string())])
EARLY_SPILL = "rejected-early.parquet"  # rows the leading checks rejected, for the ledger
CHUNK_ROWS = 16_384  # rows a narrowed whole-set check is given at a time (whole key groups)
RECORD_CHANGERS = ("pii", "human_review")  # checks that may rewrite a record (keys computed before them go stale)


def is_row_local(check: Check) -> bool:
    return bool(getattr(check, "row_local", False))


def batched(rows: Iterable[Row], size: int = BATCH_ROWS) -> Iterator[list[Row]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def merge_stats(total: dict, part: dict) -> dict:
    """The stats of two batches as one: counts added, mappings merged key by key, lists of findings (mappings)
    joined; anything else (settings echoed in the stats: names, versions, thresholds) is taken from the first."""
    out = dict(total)
    for key, value in part.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict):
            out[key] = merge_stats(out[key], value)
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            out[key] = out[key] + value
        elif isinstance(value, int) and not isinstance(value, bool) and not key.endswith("version"):
            out[key] = out[key] + value
    return out


class Spill:
    """Rows on disk as Parquet (order, input, line, id, record as JSON): appended in batches, read back in batches."""

    def __init__(self, path: Path):
        self.path = path
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(path, SPILL_SCHEMA)

    def write(self, rows: list[Row]) -> None:
        assert self._writer is not None, "spill already closed"
        columns = [[r.order for r in rows], [r.input for r in rows], [r.line for r in rows], [r.id for r in rows],
                   [json.dumps(r.record, ensure_ascii=False) for r in rows]]
        self._writer.write_batch(pa.record_batch(columns, schema=SPILL_SCHEMA))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def ids_among(self, wanted: np.ndarray, ids: set[str]) -> set[str]:
        """Which of `ids` a row whose `wanted[order]` is set carries (no record is parsed)."""
        self.close()
        found: set[str] = set()
        for batch in pq.ParquetFile(self.path).iter_batches(BATCH_ROWS, columns=["order", "id"]):
            mask = wanted[batch.column("order").to_numpy()]
            found.update(i for i in batch.column("id").filter(pa.array(mask)).to_pylist() if i in ids)
        return found

    def partition(self, bucket: np.ndarray) -> list["Spill"]:
        """The rows with `bucket[order]` set (not -1), one spill beside this one per bucket, in one pass."""
        self.close()
        parts = {b: Spill(self.path.with_name(f"{self.path.stem}-{b}.parquet")) for b in np.unique(bucket[bucket >= 0])}
        for batch in pq.ParquetFile(self.path).iter_batches(BATCH_ROWS):
            of = bucket[batch.column("order").to_numpy()]
            for b in np.unique(of[of >= 0]):
                parts[b]._writer.write_batch(batch.filter(pa.array(of == b)))
        for part in parts.values():
            part.close()
        return list(parts.values())

    def batches(self, wanted: np.ndarray, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The rows whose `wanted[order]` is set, in input order, as Arrow batches (of `columns`, or all)."""
        self.close()
        read = None if columns is None else ["order", *columns]
        for batch in pq.ParquetFile(self.path).iter_batches(BATCH_ROWS, columns=read):
            mask = wanted[batch.column("order").to_numpy()]
            if mask.any():
                yield batch.filter(pa.array(mask))

    def rows(self, wanted: np.ndarray, scores: dict[int, dict]) -> Iterator[list[Row]]:
        """Batches of the rows whose `wanted[order]` is set, in input order, with the scores checks gave them."""
        for batch in self.batches(wanted):
            part = batch.to_pydict()
            yield [Row(record=loads(rec), input=inp, line=line, order=order, scores=dict(scores.get(order, {})))
                   for order, inp, line, rec in zip(part["order"], part["input"], part["line"], part["record"])]


class Narrowing(Protocol):
    """Keys of a whole-set check, gathered as rows stream past: which rows can its verdicts concern?"""

    def observe(self, rows: list[Row]) -> None: ...

    def groups(self, alive: np.ndarray) -> np.ndarray:
        """Per order: a group number for each row still in play whose verdict may depend on another row (the
        verdicts in one group depend on that group's rows alone), -1 for every other row."""
        ...

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        """The check's stats on the affected rows, made those of a run on every row in play."""
        ...


def key_groups(n: int, orders: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """Per order (of `n`): rows linked through an equal key in any column (chains included) share a group
    number, the connected components of an integer-id graph; -1 for rows sharing no key."""
    linked, first = [], []
    for keys in columns:
        _, index, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        shared = np.flatnonzero(counts[inverse] > 1)
        linked.append(shared)
        first.append(index[inverse[shared]])  # each row is linked to the first row with its key
    out = np.full(n, -1, dtype=np.int64)
    src, dst = np.concatenate(linked), np.concatenate(first)
    if not len(src):
        return out
    graph = coo_array((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(len(orders), len(orders)))
    _, labels = connected_components(graph, directed=False)
    out[orders[src]] = labels[src]
    return out


def buckets(groups: np.ndarray, size: int) -> np.ndarray:
    """Per order: a bucket number for each grouped row (-1 stays -1), whole groups in group order, about `size`
    rows a bucket (a larger group is a bucket of its own)."""
    out = np.full_like(groups, -1)
    member = groups >= 0
    if member.any():
        _, inverse, counts = np.unique(groups[member], return_inverse=True, return_counts=True)
        out[member] = ((np.cumsum(counts) - counts) // size)[inverse]
    return out


class _Keys:
    """16-byte keys per row, kept as numpy arrays (orders, and one or more key columns)."""

    def __init__(self, columns: int):
        self.orders: list[np.ndarray] = []
        self.columns: list[list[np.ndarray]] = [[] for _ in range(columns)]

    def add(self, orders: list[int], *keys: list[bytes]) -> None:
        self.orders.append(np.asarray(orders, dtype=np.int64))
        for column, values in zip(self.columns, keys):
            column.append(np.frombuffer(b"".join(values), dtype="V16"))

    def groups(self, alive: np.ndarray) -> np.ndarray:
        """Per order: rows in play linked through equal keys in any column share a group number; -1 for the rest."""
        if not self.orders:
            return np.full(len(alive), -1, dtype=np.int64)
        orders = np.concatenate(self.orders)
        live = alive[orders]
        return key_groups(len(alive), orders[live], [np.concatenate(column)[live] for column in self.columns])

    def live(self, alive: np.ndarray) -> int:
        return int(alive[np.concatenate(self.orders)].sum()) if self.orders else 0


class ExactKeys:
    """`ExactDedup` concerns rows sharing a normalised pair or prompt hash with another row."""

    def __init__(self, check: ExactDedup):
        self.keys = _Keys(2)

    def observe(self, rows: list[Row]) -> None:
        self.keys.add([r.order for r in rows], [pair_key(r.record) for r in rows], [prompt_key(r.record) for r in rows])

    def groups(self, alive: np.ndarray) -> np.ndarray:
        return self.keys.groups(alive)

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        return {**stats, "checked": int(alive.sum())}


class LabelKeys:
    """`LabelConsistency` concerns label answers whose normalised question another label answer has too."""

    def __init__(self, check: LabelConsistency):
        self.check = check
        self.keys = _Keys(1)

    def observe(self, rows: list[Row]) -> None:
        labelled = [r for r in rows if self.check.label_of(r.record) is not None]
        self.keys.add([r.order for r in labelled], [prompt_key(r.record) for r in labelled])  # the normalised question

    def groups(self, alive: np.ndarray) -> np.ndarray:
        return self.keys.groups(alive)

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        return {**stats, "checked": int(alive.sum()), "label_rows": self.keys.live(alive)}


class NearKeys:
    """`NearDedup` concerns rows that are an LSH candidate of another row: that share a band key (the folded
    values of one band of the MinHash signature, as `candidate_pairs` bands them) in any shingle kind. Only
    the band keys are kept: 8 bytes a band (16 bands for 128 permutations at 0.8), not the signatures."""

    def __init__(self, check: NearDedup):
        self.config = check.config
        self.keys = {kind: [] for kind, _, _ in self.config.kinds()}  # per kind: (rows, bands) uint64 blocks
        self.orders: list[np.ndarray] = []

    def observe(self, rows: list[Row]) -> None:
        self.orders.append(np.asarray([r.order for r in rows], dtype=np.int64))
        texts = [pair_text(r.record) for r in rows]
        for kind, n, threshold in self.config.kinds():
            shingles = word_shingles(texts, n) if kind == "word" else char_shingles(texts, n)
            sigs = signatures(shingles, self.config.num_perm, MINHASH_SEED)
            bands, per_band = choose_bands(self.config.num_perm, threshold)
            self.keys[kind].append(np.stack([band_key(sigs, b, per_band) for b in range(bands)], axis=1)
                                   if len(rows) else np.zeros((0, bands), dtype=np.uint64))

    def groups(self, alive: np.ndarray) -> np.ndarray:
        if not self.orders:
            return np.full(len(alive), -1, dtype=np.int64)
        orders = np.concatenate(self.orders)
        live = alive[orders]
        bands = [band for blocks in self.keys.values() for band in np.concatenate(blocks)[live].T]
        return key_groups(len(alive), orders[live], bands)

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        bands, per_band = choose_bands(self.config.num_perm, self.config.threshold)  # settings, not summed
        return {**stats, "checked": int(alive.sum()), "bands": bands, "rows_per_band": per_band}


NARROWINGS: dict[type, type] = {ExactDedup: ExactKeys, LabelConsistency: LabelKeys, NearDedup: NearKeys}


class _Outcome:
    """The ledger, reports and scores gathered check by check. Ledger entries are held without their records:
    a row rejected by a leading check goes to the `early` spill, any other is in the row spill already."""

    def __init__(self, checks: list[Check], lead: int, rows: Spill, early: Spill):
        self.ledger: dict[str, list[tuple[int, dict]]] = {c.name: [] for c in checks}  # (order, entry)
        self.early = early
        self.source = {c.name: early if i < lead else rows for i, c in enumerate(checks)}  # where records are
        self.by_family: dict[str, Counter[str]] = defaultdict(Counter)
        self.stats: dict[str, dict] = {}
        self.seconds: Counter[str] = Counter()
        self.scores: dict[int, dict] = {}

    def record(self, check: Check, given: list[Row], result, seconds: float, stats: dict | None = None) -> None:
        if result.added:
            raise CuratorError(f"check {check.name} adds rows; the streaming gate cannot run it (use --engine memory)")
        if len(result.kept) + len(result.rejected) != len(given):
            raise CuratorError(f"gate check {check.name}: {len(given)} rows in, {len(result.kept)} kept + "
                               f"{len(result.rejected)} rejected out; rows would be lost")
        entries, by_family = ledger_entries(check.name, result.rejected)
        if result.rejected and self.source[check.name] is self.early:
            self.source[check.name].write([rej.row for rej in result.rejected])
        for entry in entries:
            entry["record"] = None  # read back when the ledger is (`LedgerOnDisk`)
        self.ledger[check.name].extend(zip((rej.row.order for rej in result.rejected), entries))
        self.by_family[check.name].update(by_family)
        part = result.stats if stats is None else stats
        self.stats[check.name] = merge_stats(self.stats[check.name], part) if check.name in self.stats else part
        self.seconds[check.name] += seconds
        self.scores.update({r.order: dict(r.scores) for r in given if r.scores})

    def in_input_order(self, check: Check) -> None:
        """Sort the check's ledger entries by input row (as its run on all rows at once lists them)."""
        self.ledger[check.name].sort(key=lambda item: item[0])

    def entries(self, checks: list[Check]) -> list[dict]:
        """The ledger entries, without records."""
        return [entry for c in checks for _, entry in self.ledger[c.name]]

    def reports(self, checks: list[Check]) -> list[dict]:
        return [check_report(c.name, len(self.ledger[c.name]), 0, self.by_family[c.name], self.seconds[c.name],
                             self.stats.get(c.name, {})) for c in checks]


def _timed(check: Check, rows: list[Row]):
    started = time.perf_counter()
    result = check.run(rows)
    return result, time.perf_counter() - started


@dataclass(frozen=True)
class LedgerOnDisk:
    """The ledger in check order, each entry with its record read back from the spill that holds it."""

    outcome: _Outcome
    checks: list[Check]
    total: int

    def __len__(self) -> int:
        return sum(len(self.outcome.ledger[c.name]) for c in self.checks)

    def __iter__(self) -> Iterator[dict]:
        for check in self.checks:
            items = self.outcome.ledger[check.name]
            orders = np.fromiter((order for order, _ in items), dtype=np.int64, count=len(items))
            wanted = np.zeros(self.total, dtype=bool)
            wanted[orders] = True
            rows = (row for batch in self.outcome.source[check.name].rows(wanted, {}) for row in batch)
            if np.all(orders[1:] > orders[:-1]):  # in input order, as the spill: read alongside
                records = (row.record for row in rows)
            else:  # a whole-set check listed its rejections in its own order
                by_order = {row.order: row.record for row in rows}
                records = (by_order[order] for order in orders.tolist())
            for (_, entry), record in zip(items, records):
                yield {**entry, "record": record}


@dataclass(frozen=True)
class KeptOnDisk:
    """The rows the checks kept: the spilled rows still in play, read back as release records."""

    spill: Spill
    alive: np.ndarray
    scores: dict[int, dict]

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.spill.batches(self.alive, ["record"]):
            scores = [scores_json(self.scores.get(order)) for order in batch.column("order").to_pylist()]
            yield pa.record_batch([batch.column("record"), pa.array(scores, pa.string())], schema=JSON_PAIRS)


def run_checks_streaming(checks: list[Check], runs: list[RunDir], engine: str, workdir: Path,
                         batch_rows: int | None = None) -> tuple[KeptOnDisk, LedgerOnDisk, list[dict], InputCounts]:
    """What `pipeline.run_checks` returns for the rows of `runs` (kept rows, ledger, reports), and the input
    counts, with the rows in batches (`BATCH_ROWS` unless given) and spilled to `workdir` between checks (see
    the module doc); the kept rows stay there, to be read back while `workdir` exists."""
    batch_rows = batch_rows or BATCH_ROWS
    lead = 0
    while lead < len(checks) and is_row_local(checks[lead]):
        lead += 1
    head, rest = checks[:lead], checks[lead:]
    spill = Spill(workdir / "rows.parquet")
    outcome = _Outcome(checks, lead, spill, Spill(workdir / EARLY_SPILL))
    narrowings: dict[int, Narrowing] = {}
    for i, check in enumerate(rest):
        if type(check) in NARROWINGS and not any(c.name in RECORD_CHANGERS for c in rest[:i + 1]):
            narrowings[i] = NARROWINGS[type(check)](check)
    total, per_run, by_family, spilled = 0, Counter(), Counter(), []
    if engine == "ray":
        from curator.gate.engines.ray_engine import first_pass
        passes = first_pass(head, runs, batch_rows)
    else:
        passes = _first_pass(head, runs, batch_rows)
    for batch, results in passes:
        total += len(batch)
        per_run.update(r.input for r in batch)
        by_family.update(_family(r.record) for r in batch)
        survivors = batch
        for check, (result, seconds) in zip(head, results):
            outcome.record(check, survivors, result, seconds)
            survivors = result.kept
        spill.write(survivors)
        spilled.append(np.asarray([r.order for r in survivors], dtype=np.int64))
        for i, narrowing in narrowings.items():
            started = time.perf_counter()
            narrowing.observe(survivors)
            outcome.seconds[rest[i].name] += time.perf_counter() - started
    if not total:
        raise CuratorError(f"no pairs to gate in {', '.join(str(r.path) for r in runs)}")
    alive = np.zeros(total, dtype=bool)
    alive[np.concatenate(spilled)] = True
    for i, check in enumerate(rest):
        narrowing = narrowings.get(i)
        if is_row_local(check):
            for batch in spill.rows(alive, outcome.scores):
                result, seconds = _timed(check, batch)
                outcome.record(check, batch, result, seconds)
                alive[[rej.row.order for rej in result.rejected]] = False
            continue
        started = time.perf_counter()
        if narrowing is None:
            rows = [row for batch in spill.rows(alive, outcome.scores) for row in batch]
            result = check.run(rows)
            outcome.record(check, rows, result, time.perf_counter() - started)
            alive[[rej.row.order for rej in result.rejected]] = False
            continue
        in_play = alive.copy()
        bucket = buckets(narrowing.groups(alive), CHUNK_ROWS)
        for part in spill.partition(bucket) or [None]:  # no bucket: one run on no rows, for the stats
            rows = [] if part is None else [row for batch in part.rows(bucket >= 0, outcome.scores) for row in batch]
            result = check.run(rows)
            outcome.record(check, rows, result, 0.0)
            alive[[rej.row.order for rej in result.rejected]] = False
            if part is not None:
                part.path.unlink()
        outcome.in_input_order(check)
        outcome.stats[check.name] = narrowing.stats(outcome.stats[check.name], in_play)
        outcome.seconds[check.name] += time.perf_counter() - started
    entries = outcome.entries(checks)
    kept = KeptOnDisk(spill, alive, outcome.scores)
    if int(alive.sum()) + len(entries) != total:
        raise CuratorError(f"gate: {total} input rows do not add up to {int(alive.sum())} kept + {len(entries)} rejected")
    resolve_keepers(entries, spill.ids_among(alive, {e["duplicate_of"] for e in entries if e["duplicate_of"]}))
    return kept, LedgerOnDisk(outcome, checks, total), outcome.reports(checks), InputCounts(total, per_run, by_family)


def _first_pass(head: list[Check], runs: list[RunDir], batch_rows: int) -> Iterator[tuple[list[Row], list]]:
    """Each batch of input rows with the results of the leading row-local checks, each on what the one before kept."""
    for batch in batched(iter_rows(runs), batch_rows):
        results, kept = [], batch
        for check in head:
            result, seconds = _timed(check, kept)
            results.append((result, seconds))
            kept = result.kept
        yield batch, results
