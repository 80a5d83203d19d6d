"""The streaming gate (`curator gate --engine stream`): rows flow through the checks in batches and wait on
disk between checks; the verdicts are those of `pipeline.run_checks`, row for row.

Checks come in three kinds:

- row-local (a class attribute `row_local = True`: schema, content_defects, pii, arithmetic, code_syntax, constraints,
  refusal_policy, grounding): a row's verdict depends on that row alone, so they run batch by batch and
  their stats are merged (`merge_stats`).
- narrowed whole-set checks (`NARROWINGS`: labels, exact_dedup, near_dedup): a row's verdict depends only
  on rows sharing a key with it (the normalised question of a label answer; the pair or prompt hash; a
  MinHash LSH band). The keys are computed while the rows stream past (16 bytes a row per hash, 8 per
  LSH band), and the unchanged check then runs on the rows that share a key, read back from the spill
  group by group (rows linked through shared keys), in buckets of about `CHUNK_ROWS`, one bucket a worker
  process (or, with the ray engine, a Ray task) at a time (`bucket_verdicts`): rows sharing no key are neither
  rejected nor chosen as keepers by it.
- any other check (decontamination, relevance, semantic dedup, screening, selection, plug-ins) runs on all
  rows still in play, read back from the spill: the same verdicts, but it holds those rows while it runs.

The first pass (`FirstPass`) parses the run files' lines, runs the leading row-local checks and computes the
narrowings' keys, batch by batch in worker processes (one per CPU, each given its batch as a byte range of the
input, `line_spans`, and reading it itself; the batches come back in input order); the
rows they keep go to a Parquet spill (`Spill`, one part file per batch, each record as the JSON text it was read
from) in the gate's temporary directory (under `TMPDIR`), read back in batches by the later checks.
What stays in memory across the whole run: a flag per row (still in play), the scores checks gave, and the
ledger entries without their records (`LedgerOnDisk` reads those back from the spills of rejected rows, one per
check, written as the check rejects them); the keys above wait in
temporary files (`_KeyStore`) until their check runs, which reads them back one key column at a time. The
kept rows stay on disk (`KeptOnDisk`): the split, the expectations and the release writer read them back in
passes.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from curator.errors import CuratorError
from curator.gate.check import Check, Row, progress
from curator.gate.checks.exact_dedup import ExactDedup, pair_keys, prompt_keys
from curator.gate.checks.label_consistency import LabelConsistency
from curator.gate.checks.near_dedup import MINHASH_SEED, NearDedup
from curator.gate.line_spans import Span, line_batches
from curator.gate.minhash import band_key, char_shingles, choose_bands, signatures, word_shingles
from curator.gate.normalize import NormalizedMessages
from curator.gate.pipeline import InputCounts, _family, as_text, check_report, keepers, ledger_entries
from curator.jsonl import loads
from curator.ordered_workers import cpu_count, ordered_map
from curator.release.store import JSON_PAIRS, scores_json
from curator.rundir import PAIRS, RunDir

BATCH_ROWS = 8192
SPILL_SCHEMA = pa.schema([("order", pa.int64()), ("input", pa.string()), ("line", pa.int64()), ("id", pa.string()),
                          ("task_family", pa.string()), ("record", pa.string())])  # id and family: for the split
EARLY_SPILL = "rejected-early.parquet"  # rows the leading checks rejected, for the ledger
# a spill is written once and read a few times by this machine: LZ4 and no dictionaries (records are unique text)
# read it about three times faster than Parquet's default Snappy with dictionaries, at the same size
SPILL_WRITE_OPTIONS = {"compression": "lz4", "use_dictionary": False}
CHUNK_ROWS = 4096  # rows a narrowed whole-set check is given at a time (whole key groups); small enough that the
# last buckets keep every worker busy and a bucket's sorts stay short (16,384 was about 0.5 s slower a dedup check at 0.5M)


def is_row_local(check: Check) -> bool:
    return bool(getattr(check, "row_local", False))


def rewrites_records(check: Check) -> bool:
    """Whether the check says it may rewrite the records it keeps (a class attribute `rewrites_records = True`: PII
    redaction, human review): keys computed before it go stale, and after the first pass its rows go to a new
    spill. A check that rewrites records without saying so is refused there."""
    return bool(getattr(check, "rewrites_records", False))


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


def spill_batch(rows: list[Row], texts: list[str | None] | None = None) -> pa.RecordBatch:
    """`rows` as a batch of `SPILL_SCHEMA`; `texts[i]`, when given and not None, is row i's record as JSON already."""
    texts = texts or [None] * len(rows)
    columns = [[r.order for r in rows], [r.input for r in rows], [r.line for r in rows], [as_text(r.id) for r in rows],
               [as_text(r.record.get("task_family")) if isinstance(r.record, dict) else None for r in rows],
               [json.dumps(r.record, ensure_ascii=False) if t is None else t for r, t in zip(rows, texts)]]
    return pa.record_batch(columns, schema=SPILL_SCHEMA)


def rows_of(batch: pa.RecordBatch | pa.Table, scores: dict[int, dict]) -> list[Row]:
    """The rows of a batch of `SPILL_SCHEMA`, with the scores checks gave them (by order)."""
    part = batch.to_pydict()
    return [Row(record=loads(rec), input=inp, line=line, order=order, scores=dict(scores.get(order, {})))
            for order, inp, line, rec in zip(part["order"], part["input"], part["line"], part["record"])]


class Spill:
    """Rows on disk as Parquet (order, input, line, id, record as JSON) in one or more part files, read back in
    part order: appended in batches (`write`) or given whole parts written elsewhere (`adopt`, a worker's)."""

    def __init__(self, path: Path):
        self.path = path
        self.parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None

    def write(self, rows: list[Row], texts: list[str | None] | None = None) -> None:
        """Append `rows`; `texts[i]`, when given and not None, is row i's record as JSON already (its input line)."""
        self.write_batch(spill_batch(rows, texts))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            part = self.path if not self.parts else self.path.with_name(f"{self.path.stem}-{len(self.parts)}.parquet")
            self.parts.append(part)
            self._writer = pq.ParquetWriter(part, SPILL_SCHEMA, **SPILL_WRITE_OPTIONS)
        self._writer.write_batch(batch)

    def adopt(self, part: Path) -> None:
        """Append a part file written by another `Spill` (the rows after those already here)."""
        self.close()
        self.parts.append(part)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _read(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        self.close()
        for part in self.parts:
            yield from pq.ParquetFile(part).iter_batches(BATCH_ROWS, columns=columns)

    def sort(self) -> None:
        """Rewrite the rows in input order (`order`), as one part: for a spill of a few rows, read whole."""
        self.close()
        if self.parts:
            table = pa.concat_tables(pq.read_table(part, schema=SPILL_SCHEMA) for part in self.parts).sort_by("order")
            self.remove()
            self.parts = [self.path]
            pq.write_table(table, self.path, row_group_size=BATCH_ROWS, **SPILL_WRITE_OPTIONS)

    def table(self) -> pa.Table:
        """All rows, in part order, read whole (a bucket's few)."""
        return pa.Table.from_batches(list(self._read()), schema=SPILL_SCHEMA)

    def ids_among(self, wanted: np.ndarray, ids: set[str]) -> set[str]:
        """Which of `ids` a row whose `wanted[order]` is set carries (no record is parsed)."""
        found: set[str] = set()
        for batch in self._read(["order", "id"]):
            mask = wanted[batch.column("order").to_numpy()]
            found.update(i for i in batch.column("id").filter(pa.array(mask)).to_pylist() if i in ids)
        return found

    def partition(self, bucket: np.ndarray) -> dict[int, "Spill"]:
        """The rows with `bucket[order]` set (not -1), one spill beside this one per bucket, in one pass."""
        parts = {b: Spill(self.path.with_name(f"{self.path.stem}-bucket{b}.parquet"))
                 for b in np.unique(bucket[bucket >= 0])}
        for batch in self._read():
            of = bucket[batch.column("order").to_numpy()]
            for b in np.unique(of[of >= 0]):
                parts[b].write_batch(batch.filter(pa.array(of == b)))
        for part in parts.values():
            part.close()
        return {int(b): part for b, part in parts.items()}

    def batches(self, wanted: np.ndarray | None, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The rows whose `wanted[order]` is set (all rows: None), in input order, as Arrow batches (of `columns`,
        or all)."""
        for batch in self._read(None if columns is None else ["order", *columns]):
            if wanted is None:
                yield batch
                continue
            mask = wanted[batch.column("order").to_numpy()]
            if mask.any():
                yield batch.filter(pa.array(mask))

    def rows(self, wanted: np.ndarray | None, scores: dict[int, dict]) -> Iterator[list[Row]]:
        """Batches of the rows whose `wanted[order]` is set (all rows: None), in input order, with the scores checks
        gave them."""
        for batch in self.batches(wanted):
            yield rows_of(batch, scores)

    def remove(self) -> None:
        self.close()
        for part in self.parts:
            part.unlink()


class Narrowing(Protocol):
    """Keys of a whole-set check, gathered as rows stream past: which rows can its verdicts concern?"""

    def keys(self, rows: list[Row], normalized: NormalizedMessages) -> "Keys":
        """The keys of `rows` (computed where the rows are: a worker process; the narrowing is not changed), from
        their messages' normalised texts (`normalized`, of `rows`' records: computed once for every narrowing)."""
        ...

    def add(self, keys: "Keys") -> None:
        """Keep the keys of one batch (batches in input order)."""
        ...

    def groups(self, alive: np.ndarray) -> np.ndarray:
        """Per order: a group number for each row still in play whose verdict may depend on another row (the
        verdicts in one group depend on that group's rows alone), -1 for every other row."""
        ...

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        """The check's stats on the affected rows, made those of a run on every row in play."""
        ...


@dataclass(frozen=True)
class Keys:
    """The keys of some rows: their orders, and one array per key column (equal values link rows)."""

    orders: np.ndarray
    columns: list[np.ndarray]


def key_groups(n: int, columns: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per order (of `n`): rows linked through an equal key in any column (chains included) share a group
    number, the connected components of an integer-id graph; -1 for rows sharing no key. A column is its keys
    and the order of the row each key belongs to. Group numbers rise with the groups' first rows. The columns are
    sorted in threads (numpy sorts without the GIL), one a CPU at a time: memory holds that many columns."""
    links: list[tuple[np.ndarray, np.ndarray]] = []
    workers = cpu_count()
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future] = deque()
        for keys, orders in columns:
            pending.append(pool.submit(_links, keys, orders))
            if len(pending) >= workers:
                links.append(pending.popleft().result())
        links.extend(future.result() for future in pending)
    out = np.full(n, -1, dtype=np.int64)
    src = np.concatenate([linked for linked, _ in links] or [out[:0]])
    dst = np.concatenate([first for _, first in links] or [out[:0]])
    if not len(src):
        return out
    graph = coo_array((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    out[src] = labels[src]
    return out


def _links(keys: np.ndarray, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of one key column that share their key, and for each the first row with that key."""
    _, index, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse] > 1)
    return orders[shared], orders[index[inverse[shared]]]


def buckets(groups: np.ndarray, size: int) -> np.ndarray:
    """Per order: a bucket number for each grouped row (-1 stays -1), whole groups in group order, about `size`
    rows a bucket (a larger group is a bucket of its own)."""
    out = np.full_like(groups, -1)
    member = groups >= 0
    if member.any():
        _, inverse, counts = np.unique(groups[member], return_inverse=True, return_counts=True)
        out[member] = ((np.cumsum(counts) - counts) // size)[inverse]
    return out


def digests(keys: list[bytes]) -> np.ndarray:
    """16-byte digests as one numpy array (`V16`)."""
    return np.frombuffer(b"".join(keys), dtype="V16")


class _KeyStore:
    """The keys of every batch, on disk: one anonymous temporary file (under `TMPDIR`) for the rows' orders and one
    per key column, appended batch by batch and read back one column at a time when the groups are formed, so
    memory holds one column, not every key of every row. Rows linked through equal keys form the groups. Where a
    shuffle elsewhere (the Ray engine's) already kept only the keys two or more rows share, they are `shared`
    instead."""

    def __init__(self):
        self.files: list[IO[bytes]] = []  # orders, then each key column
        self.dtypes: list[np.dtype] = []
        self.shared: SharedKeys | None = None

    def add(self, keys: Keys) -> None:
        arrays = [keys.orders, *keys.columns]
        if not self.files:
            self.files = [tempfile.TemporaryFile(prefix="gate-keys-") for _ in arrays]
            self.dtypes = [a.dtype for a in arrays]
        for file, array, dtype in zip(self.files, arrays, self.dtypes):
            file.write(np.ascontiguousarray(array, dtype=dtype).tobytes())

    def _read(self, k: int) -> np.ndarray:
        """File k's values (the orders for 0, key column k - 1 otherwise)."""
        file = self.files[k]
        file.flush()
        file.seek(0)
        values = np.fromfile(file, dtype=self.dtypes[k])
        file.seek(0, 2)  # back to the end, for a later `add`
        return values

    def groups(self, alive: np.ndarray) -> np.ndarray:
        """Per order: rows in play linked through equal keys in any column share a group number; -1 for the rest."""
        if self.shared is not None:
            return self.shared.groups(alive)
        if not self.files:
            return np.full(len(alive), -1, dtype=np.int64)
        orders = self._read(0)
        live = alive[orders]
        in_play = orders[live]
        return key_groups(len(alive), ((self._read(k)[live], in_play)  # one column at a time
                                       for k in range(1, len(self.files))))

    def live(self, alive: np.ndarray) -> int:
        """The rows in play that have keys."""
        if self.shared is not None:
            return int(alive[self.shared.keyed].sum())
        return int(alive[self._read(0)].sum()) if self.files else 0


@dataclass(frozen=True)
class SharedKeys:
    """The keys that two or more rows share, one 64-bit value per (key column, key): the rows they link (`orders`,
    as long as `keys`), and every row that has keys at all (`keyed`). What a distributed shuffle on the keys
    leaves; a row sharing no key is in `keyed` only. Two keys folded to one value only join their groups (the
    check then runs on both together, with the same verdicts)."""

    keys: np.ndarray  # 64-bit
    orders: np.ndarray  # int64
    keyed: np.ndarray  # int64

    def groups(self, alive: np.ndarray) -> np.ndarray:
        live = alive[self.orders]
        return key_groups(len(alive), [(self.keys[live], self.orders[live])])


def _orders(rows: list[Row]) -> np.ndarray:
    return np.fromiter((r.order for r in rows), dtype=np.int64, count=len(rows))


class ExactKeys(_KeyStore):
    """`ExactDedup` concerns rows sharing a normalised pair or prompt hash with another row."""

    def __init__(self, check: ExactDedup):
        super().__init__()

    def keys(self, rows: list[Row], normalized: NormalizedMessages) -> Keys:
        return Keys(_orders(rows), [digests(pair_keys(normalized)), digests(prompt_keys(normalized))])

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        return {**stats, "checked": int(alive.sum())}


class LabelKeys(_KeyStore):
    """`LabelConsistency` concerns label answers whose normalised question another label answer has too."""

    def __init__(self, check: LabelConsistency):
        super().__init__()
        self.check = check

    def keys(self, rows: list[Row], normalized: NormalizedMessages) -> Keys:
        labelled = [i for i, r in enumerate(rows) if self.check.label_of(r.record) is not None]
        return Keys(_orders([rows[i] for i in labelled]),  # keyed by the normalised question
                    [digests(prompt_keys(normalized.subset(labelled)))])

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        return {**stats, "checked": int(alive.sum()), "label_rows": self.live(alive)}


class NearKeys(_KeyStore):
    """`NearDedup` concerns rows that are an LSH candidate of another row: that share a band key (the folded
    values of one band of the MinHash signature, as `candidate_pairs` bands them) in any shingle kind. Only
    the band keys are kept: 8 bytes a band (16 bands for 128 permutations at 0.8), not the signatures."""

    def __init__(self, check: NearDedup):
        super().__init__()
        self.config = check.config

    def keys(self, rows: list[Row], normalized: NormalizedMessages) -> Keys:
        texts = normalized.pair_texts()
        columns = []
        for kind, n, threshold in self.config.kinds():
            shingles = word_shingles(texts, n) if kind == "word" else char_shingles(texts, n)
            sigs = signatures(shingles, self.config.num_perm, MINHASH_SEED)
            bands, per_band = choose_bands(self.config.num_perm, threshold)
            columns.extend(band_key(sigs, b, per_band) for b in range(bands))
        return Keys(_orders(rows), columns)

    def stats(self, stats: dict, alive: np.ndarray) -> dict:
        bands, per_band = choose_bands(self.config.num_perm, self.config.threshold)  # settings, not summed
        return {**stats, "checked": int(alive.sum()), "bands": bands, "rows_per_band": per_band}


NARROWINGS: dict[type, type] = {ExactDedup: ExactKeys, LabelConsistency: LabelKeys, NearDedup: NearKeys}


ENTRY_SCHEMA = pa.schema([("order", pa.int64()), ("id", pa.string()), ("reason", pa.string()),
                          ("duplicate_of", pa.string()), ("task_family", pa.string()), ("input", pa.string()),
                          ("scores", pa.string())])  # a ledger entry without its check, record and keeper


def entry_batch(orders: list[int], entries: list[dict]) -> pa.RecordBatch:
    """Ledger entries (as `ledger_entries` makes them) of the rows at `orders`, as columns: a few hundred bytes an
    entry instead of a dict's, for the millions a large input can reject."""
    columns = [orders, *([e[name] for e in entries] for name in ENTRY_SCHEMA.names[1:-1]),
               [scores_json(e["scores"]) for e in entries]]
    return pa.record_batch(columns, schema=ENTRY_SCHEMA)


@dataclass
class Verdicts:
    """One check's result on some rows without their records: what the main process keeps of it."""

    entries: pa.RecordBatch  # the rejected rows' ledger entries (`ENTRY_SCHEMA`; records read back: `LedgerOnDisk`)
    by_family: Counter[str]
    stats: dict
    seconds: float
    scores: dict[int, dict]  # the scores of the rows given, by order


def verdicts(check: Check, given: list[Row], result, seconds: float, early: Spill | None = None,
             texts: dict[int, tuple[object, str]] | None = None) -> Verdicts:
    """`result` of `check` on `given` as `Verdicts`; the rejected rows are written to `early` when given."""
    if result.added:
        raise CuratorError(f"check {check.name} adds rows; the streaming gate cannot run it (use --engine memory)")
    if len(result.kept) + len(result.rejected) != len(given):
        raise CuratorError(f"gate check {check.name}: {len(given)} rows in, {len(result.kept)} kept + "
                           f"{len(result.rejected)} rejected out; rows would be lost")
    entries, by_family = ledger_entries(check.name, result.rejected)
    if result.rejected and early is not None:
        rows = [rej.row for rej in result.rejected]
        early.write(rows, _texts(rows, texts))
    return Verdicts(entry_batch([rej.row.order for rej in result.rejected], entries), by_family, result.stats,
                    seconds, {r.order: dict(r.scores) for r in given if r.scores})


def _texts(rows: list[Row], texts: dict[int, tuple[object, str]] | None) -> list[str | None] | None:
    """Each row's record as the JSON text it was read from, None where a check replaced the record."""
    if texts is None:
        return None
    out: list[str | None] = []
    for row in rows:
        record, text = texts.get(row.order, (None, None))
        out.append(text if record is row.record else None)
    return out


class _Outcome:
    """The ledger, reports and scores gathered check by check. Ledger entries are held as columns without their
    records: a row rejected by a leading check goes to the `early` spill, one rejected by a later check to that
    check's own spill (`rejected-<k>.parquet` beside `early`), so the ledger reads back only rejected rows."""

    def __init__(self, checks: list[Check], lead: int, early: Spill):
        self.ledger: dict[str, list[pa.RecordBatch]] = {c.name: [] for c in checks}  # `ENTRY_SCHEMA` batches
        self.kept_as: dict[str, list[str | None]] = {}  # per check, its entries' keepers (`resolve`)
        self.early = early
        self.source = {c.name: early if i < lead else Spill(early.path.with_name(f"rejected-{i}.parquet"))
                       for i, c in enumerate(checks)}  # where the records of each check's rejected rows are
        self.by_family: dict[str, Counter[str]] = defaultdict(Counter)
        self.stats: dict[str, dict] = {}
        self.seconds: Counter[str] = Counter()
        self.scores: dict[int, dict] = {}

    def record(self, check: Check, given: list[Row], result, seconds: float) -> None:
        """A later check's result (the rows it rejected go to its spill)."""
        self.add(check.name, verdicts(check, given, result, seconds, self.source[check.name]))

    def add(self, name: str, found: Verdicts) -> None:
        if found.entries.num_rows:
            self.ledger[name].append(found.entries)
        self.by_family[name].update(found.by_family)
        self.stats[name] = merge_stats(self.stats[name], found.stats) if name in self.stats else found.stats
        self.seconds[name] += found.seconds
        self.scores.update(found.scores)

    def in_input_order(self, check: Check) -> None:
        """Sort the check's ledger entries, and its spill of rejected rows, by input row (as its run on all rows at
        once lists them)."""
        if self.ledger[check.name]:
            self.ledger[check.name] = self.table(check.name).sort_by("order").to_batches()
            self.source[check.name].sort()

    def table(self, name: str) -> pa.Table:
        return pa.Table.from_batches(self.ledger[name], schema=ENTRY_SCHEMA)

    def count(self, name: str) -> int:
        return sum(batch.num_rows for batch in self.ledger[name])

    def resolve(self, checks: list[Check], kept_ids: Callable[[set[str]], set[str]]) -> None:
        """Each entry's `kept_as` (`keepers`), given which of some ids the kept rows carry (`kept_ids`)."""
        ids, targets = [], []
        for c in checks:
            table = self.table(c.name)
            ids += table.column("id").to_pylist()
            targets += table.column("duplicate_of").to_pylist()
        found = iter(keepers(ids, targets, kept_ids({t for t in targets if t})))
        self.kept_as = {c.name: list(islice(found, self.count(c.name))) for c in checks}

    def reports(self, checks: list[Check]) -> list[dict]:
        return [check_report(c.name, self.count(c.name), 0, self.by_family[c.name], self.seconds[c.name],
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
        return sum(self.outcome.count(c.name) for c in self.checks)

    def __iter__(self) -> Iterator[dict]:
        for check in self.checks:
            name = check.name
            orders = self.outcome.table(name).column("order").to_numpy()
            wanted = np.zeros(self.total, dtype=bool)
            wanted[orders] = True
            rows = (row for batch in self.outcome.source[name].rows(wanted, {}) for row in batch)
            if np.all(orders[1:] > orders[:-1]):  # in input order, as the spill: read alongside
                records = (row.record for row in rows)
            else:  # a whole-set check listed its rejections in its own order
                by_order = {row.order: row.record for row in rows}
                records = (by_order[order] for order in orders.tolist())
            entries = (entry for batch in self.outcome.ledger[name] for entry in batch.to_pylist())
            for entry, kept_as, record in zip(entries, self.outcome.kept_as[name], records):
                yield {"id": entry["id"], "check": name, "reason": entry["reason"],
                       "duplicate_of": entry["duplicate_of"], "kept_as": kept_as, "task_family": entry["task_family"],
                       "input": entry["input"], "record": record,
                       "scores": json.loads(entry["scores"]) if entry["scores"] else {}}


@dataclass(frozen=True)
class KeptSlice:
    """A `store.JsonPiece` of the kept rows: those of row group `row_group` of spill part `part` whose `mask` is set
    (`rows` of them), with `scores`, the scores checks gave them by order. Read by the worker process it is given
    to: the text does not pass through the process that cuts the slices."""

    part: Path
    row_group: int
    mask: np.ndarray
    rows: int
    scores: dict[int, dict]

    def table(self) -> pa.Table:
        group = pq.ParquetFile(self.part).read_row_group(self.row_group, columns=["order", "record"])
        kept = group.filter(pa.array(self.mask))
        orders = kept.column("order").to_pylist()
        return pa.table([kept.column("record"), pa.array([scores_json(self.scores.get(o)) for o in orders],
                                                         pa.string())], schema=JSON_PAIRS)


@dataclass(frozen=True)
class KeptOnDisk:
    """The rows the checks kept: the spilled rows still in play, read back as release records."""

    spill: Spill
    alive: np.ndarray
    scores: dict[int, dict]

    def ids_and_families(self) -> tuple[pl.Series, pl.Series]:
        """The kept rows' ids and task families, in input order (what the split needs; no record is read)."""
        batches = list(self.spill.batches(self.alive, ["id", "task_family"]))
        table = pa.Table.from_batches(batches, schema=pa.schema([SPILL_SCHEMA.field(n) for n in ("order", "id",
                                                                                                 "task_family")]))
        return (pl.Series(table.column("id"), dtype=pl.String),
                pl.Series(table.column("task_family"), dtype=pl.String))

    def pieces(self) -> Iterator[KeptSlice]:
        """The kept rows, in input order, a slice of each row group of the spill that holds any (only their
        orders are read here)."""
        self.spill.close()
        for part in self.spill.parts:
            file = pq.ParquetFile(part)
            for group in range(file.num_row_groups):
                orders = file.read_row_group(group, columns=["order"]).column("order").to_numpy()
                mask = self.alive[orders]
                if mask.any():
                    scores = {o: self.scores[o] for o in orders[mask].tolist() if o in self.scores}
                    yield KeptSlice(part, group, mask, int(mask.sum()), scores)


@dataclass
class BatchDone:
    """A batch of input rows after the leading row-local checks, without its records: what the main process keeps
    (the rows went to spill part files)."""

    rows: int
    per_run: Counter[str]
    by_family: Counter[str]
    verdicts: list[Verdicts]  # per leading check
    survivors: np.ndarray  # orders of the rows no leading check rejected (in `spilled`)
    keys: dict[int, tuple[Keys, float]]  # per narrowing: the survivors' keys, and the seconds they took
    spilled: list[Path]  # part files of the survivors
    early: list[Path]  # part files of the rows a leading check rejected


class FirstPass:
    """The first pass over the input: parse each batch, run the leading row-local checks, spill what they keep
    (and, apart, what they reject) and compute the narrowings' keys. With more than one batch and more than one
    CPU the batches go to worker processes (one per CPU, `ordered_workers.cpu_count`) as byte ranges of the
    input (`line_spans`), a few batches ahead, and come back in input order."""

    def __init__(self, head: list[Check], narrowings: dict[int, Narrowing], workdir: Path):
        self.head = head
        self.narrowings = narrowings
        self.workdir = workdir

    def run(self, runs: list[RunDir], batch_rows: int) -> Iterator[BatchDone]:
        names = ", ".join(run.path.name for run in runs)
        batches = enumerate(progress(line_batches(runs, batch_rows), f"gating {names} ({batch_rows} rows a batch)"))
        ahead = list(islice(batches, 2))
        workers = cpu_count()
        if len(ahead) < 2 or workers < 2:
            yield from (self.lines(k, k * batch_rows, spans) for k, spans in chain(ahead, batches))
            return
        jobs = ((k, k * batch_rows, spans) for k, spans in chain(ahead, batches))
        yield from ordered_map(_worker_lines, jobs, workers, start_method="forkserver", preload=(__name__,),
                               initializer=_start_worker, initargs=(self,))  # workers import this module once

    def lines(self, k: int, first: int, spans: list[Span]) -> BatchDone:
        """Batch `k` of the input (the lines of `spans`), its rows numbered (`order`) from `first`, through the first
        pass."""
        batch, texts = [], {}
        for order, (run, number, text) in enumerate(chain.from_iterable(s.lines() for s in spans), first):
            try:
                record = loads(text)
            except json.JSONDecodeError as e:
                raise CuratorError(f"{Path(run) / PAIRS}:{number}: not valid JSON: {e.msg}") from None
            texts[order] = (record, text)
            batch.append(Row(record=record, input=run, line=number, order=order))
        results, kept = [], batch
        for check in self.head:
            result, seconds = _timed(check, kept)
            results.append((result, seconds))
            kept = result.kept
        return self.settle(k, batch, results, texts)

    def settle(self, k: int, batch: list[Row], results: list, texts: dict[int, tuple[object, str]] | None = None
               ) -> BatchDone:
        """Batch `k` with the results of the leading checks: spill its rows, keep verdicts and keys (`texts`: each
        row's record and the JSON text it was parsed from, written as it is while the record is unchanged)."""
        early = Spill(self.workdir / f"early-part{k}.parquet")
        found, survivors = [], batch
        for check, (result, seconds) in zip(self.head, results):
            found.append(verdicts(check, survivors, result, seconds, early, texts))
            survivors = result.kept
        early.close()
        spill = Spill(self.workdir / f"rows-part{k}.parquet")
        if survivors:
            spill.write(survivors, _texts(survivors, texts))
            spill.close()
        keys = narrowing_keys(self.narrowings, survivors)
        return BatchDone(len(batch), Counter(r.input for r in batch), Counter(_family(r.record) for r in batch),
                         found, _orders(survivors), keys, spill.parts, early.parts)


def _taken(part: Spill) -> pa.Table:
    """A bucket's rows, its file removed."""
    table = part.table()
    part.remove()
    return table


def _rewrote(given: list[Row], kept: list[Row]) -> bool:
    """Whether a check kept a row with another record than it was given."""
    by_order = {row.order: row.record for row in given}
    return any(row.record is not by_order[row.order] for row in kept)


def _scores_in(scores: dict[int, dict], bucket: np.ndarray, b: int) -> dict[int, dict]:
    """The scores of the rows in bucket `b` (`bucket[order] == b`): what a worker process is given with them."""
    return {o: scores[o] for o in np.flatnonzero(bucket == b).tolist() if o in scores} if scores else {}


def bucket_verdicts(check: Check, table: pa.Table, scores: dict[int, dict]
                    ) -> tuple[Verdicts, pa.RecordBatch | None, np.ndarray]:
    """A narrowed check run on one bucket of rows (`Spill.partition`, as a table of `SPILL_SCHEMA`) with their
    scores: its verdicts, the rows it rejected (a batch of `SPILL_SCHEMA`, their records as read) and their orders.
    Where the bucket is checked, a worker process here (`_bucket_verdicts`) or a Ray task (the ray engine)."""
    rows = rows_of(table, scores)
    result = check.run(rows)
    found = verdicts(check, rows, result, 0.0)
    rejected = [rej.row for rej in result.rejected]
    texts = dict(zip(table.column("order").to_pylist(), table.column("record").to_pylist()))
    batch = spill_batch(rejected, [texts[r.order] for r in rejected]) if rejected else None
    return found, batch, np.array([r.order for r in rejected], dtype=np.int64)


def _bucket_verdicts(job: tuple[Check, Spill, dict[int, dict], Path]) -> tuple[Verdicts, list[Path], np.ndarray]:
    """`bucket_verdicts` in a worker process, on a bucket's spill: the part files of the rows it rejected (`out`)
    instead of the rows; the bucket's file is removed."""
    check, part, scores, out = job
    found, batch, orders = bucket_verdicts(check, _taken(part), scores)
    rejected = Spill(out)
    if batch is not None:
        rejected.write_batch(batch)
    rejected.close()
    return found, rejected.parts, orders


def narrowing_keys(narrowings: dict[int, Narrowing], rows: list[Row]) -> dict[int, tuple[Keys, float]]:
    """Each narrowing's keys of `rows` and the seconds they took: the messages are normalised once for all of them
    (`NormalizedMessages`), those seconds split evenly."""
    started = time.perf_counter()
    normalized = NormalizedMessages.of([r.record for r in rows]) if narrowings else None
    shared = (time.perf_counter() - started) / max(len(narrowings), 1)
    out = {}
    for i, narrowing in narrowings.items():
        started = time.perf_counter()
        out[i] = (narrowing.keys(rows, normalized), time.perf_counter() - started + shared)
    return out


_WORKER: FirstPass | None = None  # in a worker process: the first pass it serves


def _start_worker(first: FirstPass) -> None:
    global _WORKER
    _WORKER = first


def _worker_lines(job: tuple[int, int, list[Span]]) -> BatchDone:
    assert _WORKER is not None, "worker not started"
    return _WORKER.lines(*job)


def run_checks_streaming(checks: list[Check], runs: list[RunDir], engine: str, workdir: Path,
                         batch_rows: int | None = None, after_first_pass: Callable[[], None] = lambda: None
                         ) -> tuple[KeptOnDisk, LedgerOnDisk, list[dict], InputCounts]:
    """What `pipeline.run_checks` returns for the rows of `runs` (kept rows, ledger, reports), and the input
    counts, with the rows in batches (`BATCH_ROWS` unless given) and spilled to `workdir` between checks (see
    the module doc); the kept rows stay there, to be read back while `workdir` exists. `after_first_pass` is
    called when the first pass, which keeps every CPU busy, is over."""
    batch_rows = batch_rows or BATCH_ROWS
    lead = 0
    while lead < len(checks) and is_row_local(checks[lead]):
        lead += 1
    head, rest = checks[:lead], checks[lead:]
    spill = Spill(workdir / "rows.parquet")
    outcome = _Outcome(checks, lead, Spill(workdir / EARLY_SPILL))
    narrowings: dict[int, Narrowing] = {}
    for i, check in enumerate(rest):
        if type(check) in NARROWINGS and not any(rewrites_records(c) for c in rest[:i + 1]):
            narrowings[i] = NARROWINGS[type(check)](check)
    total, per_run, by_family, spilled = 0, Counter(), Counter(), []
    if engine == "ray":  # the keys stay on the cluster: a shuffle there leaves the shared ones (`SharedKeys`)
        from curator.gate.engines.ray_engine import RayFirstPass
        distributed, stage = RayFirstPass(head, narrowings), FirstPass(head, {}, workdir)
        passes = (stage.settle(k, *done) for k, done in enumerate(distributed.run(runs, batch_rows)))
    else:
        distributed, stage = None, FirstPass(head, narrowings, workdir)
        passes = stage.run(runs, batch_rows)
    for done in passes:
        total += done.rows
        per_run.update(done.per_run)
        by_family.update(done.by_family)
        for check, found in zip(head, done.verdicts):
            outcome.add(check.name, found)
        for part in done.spilled:
            spill.adopt(part)
        for part in done.early:
            outcome.early.adopt(part)
        spilled.append(done.survivors)
        for i, (keys, seconds) in done.keys.items():
            narrowings[i].add(keys)
            outcome.seconds[rest[i].name] += seconds
    if not total:
        raise CuratorError(f"no pairs to gate in {', '.join(str(r.path) for r in runs)}")
    after_first_pass()
    if distributed is not None:
        for i, shared in distributed.shared.items():
            narrowings[i].shared = shared
            outcome.seconds[rest[i].name] += distributed.key_seconds[i]
    alive = np.zeros(total, dtype=bool)
    alive[np.concatenate(spilled)] = True
    for i, check in enumerate(rest):
        narrowing = narrowings.get(i)
        if is_row_local(check):  # one that rewrites records leaves the rows it keeps in a new spill
            rewritten = Spill(workdir / f"rows-after-{i}.parquet") if rewrites_records(check) else None
            for batch in spill.rows(alive, outcome.scores):
                result, seconds = _timed(check, batch)
                outcome.record(check, batch, result, seconds)
                alive[[rej.row.order for rej in result.rejected]] = False
                if rewritten is None and _rewrote(batch, result.kept):
                    raise CuratorError(f"check {check.name} rewrites records without declaring `rewrites_records = "
                                       f"True`; the streaming gate would lose them (use --engine memory)")
                if rewritten is not None and result.kept:
                    rewritten.write(result.kept)
            if rewritten is not None:
                spill.remove()
                spill = rewritten
            continue
        started = time.perf_counter()
        if narrowing is None:
            rows = [row for batch in spill.rows(alive, outcome.scores) for row in batch]
            result = check.run(rows)
            outcome.record(check, rows, result, time.perf_counter() - started)  # refuses a check that adds rows
            if _rewrote(rows, result.kept):
                raise CuratorError(f"check {check.name} rewrites records of the whole set; the streaming gate "
                                   f"cannot run it (use --engine memory)")
            alive[[rej.row.order for rej in result.rejected]] = False
            continue
        in_play = alive.copy()
        bucket = buckets(narrowing.groups(alive), CHUNK_ROWS)
        parts = spill.partition(bucket)
        if not parts:  # one run on no rows, for the stats
            outcome.record(check, [], check.run([]), 0.0)
        rejected = outcome.source[check.name]
        if distributed is not None:  # each bucket a Ray task; the rejected rows come back to this process's spill
            tables = ((_taken(part), _scores_in(outcome.scores, bucket, b)) for b, part in parts.items())
            for found, batch, orders in distributed.bucket_verdicts(check, tables):
                outcome.add(check.name, found)
                if batch is not None:
                    rejected.write_batch(batch)
                alive[orders] = False
        else:
            jobs = ((check, part, _scores_in(outcome.scores, bucket, b),
                     rejected.path.with_name(f"{rejected.path.stem}-bucket{b}.parquet")) for b, part in parts.items())
            for found, rejected_parts, orders in ordered_map(_bucket_verdicts, jobs, cpu_count(),
                                                             start_method="forkserver", preload=(__name__,)):
                outcome.add(check.name, found)
                for path in rejected_parts:
                    rejected.adopt(path)
                alive[orders] = False
        outcome.in_input_order(check)
        outcome.stats[check.name] = narrowing.stats(outcome.stats[check.name], in_play)
        outcome.seconds[check.name] += time.perf_counter() - started
    kept, ledger = KeptOnDisk(spill, alive, outcome.scores), LedgerOnDisk(outcome, checks, total)
    if int(alive.sum()) + len(ledger) != total:
        raise CuratorError(f"gate: {total} input rows do not add up to {int(alive.sum())} kept + {len(ledger)} rejected")
    outcome.resolve(checks, lambda ids: spill.ids_among(alive, ids))
    return kept, ledger, outcome.reports(checks), InputCounts(total, per_run, by_family)


