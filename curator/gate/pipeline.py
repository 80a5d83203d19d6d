"""`run_gate`: run directories in, one release out (certified or not), every input row accounted for."""
from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from curator.errors import CuratorError
from curator.gate.check import Check, GateContext, Rejection, Row, progress
from curator.gate.checks.human_review import HumanReview
from curator.gate.checks.relevance import relevance_on
from curator.gate.embeddings import LoadEmbedder, load_embedder
from curator.gate.engines import ENGINES
from curator.gate.expectations import evaluating, import_in_background, refusal_families, start_suite_process
from curator.gate.kept_columns import empty as empty_columns
from curator.gate.kept_columns import piece_columns
from curator.gate.registry import CheckEntry, build_from, plugin_checks, shipped_suites
from curator.gate.split import eval_mask
from curator.ordered_workers import cpu_count, ordered_map
from curator.paths import releases_root, runs_root
from curator.release.store import JSON_PAIRS, Conclusion, JsonBatch, JsonPiece, releases_lock, scores_json, write_release
from curator.rundir import RunDir, resolve_run_dir
from curator.spec import Spec
from curator.text_signals import SIGNALS_VERSION

BATCH_ROWS = 8192  # kept rows a batch of the in-memory engine holds
PARALLEL_PIECES = 4  # kept pieces from which decoding them in worker processes pays for starting those
UNKNOWN_FAMILY = "(none)"  # family column for a rejected row that names no task family


@dataclass(frozen=True)
class GateReport:
    release: Path
    certified: bool
    manifest: dict  # what the gate put in the release manifest: checks, verdicts, counts, inputs


def iter_rows(runs: list[RunDir]) -> Iterator[Row]:
    """Every pair of every run, in the order given, tagged with its run and line (read as it is consumed)."""
    order = 0
    for run in runs:
        line = 0
        try:
            for line, record in enumerate(progress(run.pairs(), f"reading {run.path.name}"), 1):
                yield Row(record=record, input=str(run.path), line=line, order=order)
                order += 1
        except json.JSONDecodeError as e:
            raise CuratorError(f"{run.path / 'pairs.jsonl'}:{line + 1}: not valid JSON: {e.msg}") from None


def read_rows(runs: list[RunDir]) -> list[Row]:
    """Every pair of every run, in the order given, tagged with its run and line."""
    return list(iter_rows(runs))


ROW_CHECKS: list[CheckEntry] = [
    CheckEntry(lambda spec: True, "schema:SchemaCheck"),
    CheckEntry(lambda spec: spec.gate.content_defects.enabled, "content_defects:ContentDefects"),
    CheckEntry(lambda spec: spec.gate.pii.enabled, "pii:PIICheck"),
    CheckEntry(lambda spec: spec.gate.decontamination.enabled, "decontaminate:Decontaminate"),
    # consistency review: is the answer right for this instruction (before dedup, so keepers passed it)
    CheckEntry(lambda spec: spec.gate.arithmetic.enabled, "arithmetic:Arithmetic"),
    CheckEntry(lambda spec: spec.gate.code_syntax.enabled, "code_syntax:CodeSyntax"),
    CheckEntry(lambda spec: spec.gate.constraints.enabled, "constraints:Constraints"),
    CheckEntry(lambda spec: spec.gate.refusal_policy.enabled, "refusal_policy:RefusalPolicy"),
    CheckEntry(lambda spec: spec.gate.labels.enabled, "label_consistency:LabelConsistency"),
    CheckEntry(lambda spec: spec.gate.grounding.enabled, "grounding:Grounding"),
    CheckEntry(relevance_on, "relevance:Relevance"),
    CheckEntry(lambda spec: spec.gate.self_consistency.enabled, "self_consistency:SelfConsistency"),
    CheckEntry(lambda spec: spec.gate.reward_model.enabled, "reward_model:RewardModel"),
    CheckEntry(lambda spec: spec.gate.judge.enabled, "judge:Judge"),
    CheckEntry(lambda spec: spec.gate.minhash.against_releases and (spec.gate.exact_dedup or spec.gate.minhash.enabled),
               "release_dedup:PriorReleaseDedup"),
    CheckEntry(lambda spec: spec.gate.exact_dedup, "exact_dedup:ExactDedup"),
    CheckEntry(lambda spec: spec.gate.minhash.enabled, "near_dedup:NearDedup"),
    CheckEntry(lambda spec: spec.gate.semantic_dedup.enabled, "semantic_dedup:SemanticDedup"),
]
DATASET_CHECKS: list[CheckEntry] = [  # after plug-ins: they judge the set that is left
    CheckEntry(lambda spec: spec.gate.screening.enabled, "screening:Screening"),
    CheckEntry(lambda spec: any(v is not None for v in vars(spec.gate.selection).values()), "selection:Selection"),
]


def _embedders(engine: str) -> LoadEmbedder:
    """Where the checks' embedding models run: on the Ray cluster's workers with the ray engine, here otherwise."""
    if engine != "ray":
        return load_embedder
    from curator.gate.engines.ray_engine import RayEmbed
    return RayEmbed


def build_checks(spec: Spec, releases: Path, review_ledger: Path | None = None,
                 load_embedder: LoadEmbedder = load_embedder) -> list[Check]:
    """The checks the spec's gate section switches on, in the order they run: built-in row checks,
    plug-ins named in `gate.plugins`, then the dataset-level screens (see `curator.gate.registry`).

    Duplicates of earlier releases go before in-batch dedup, so a row that repeats an older release
    is rejected against it and never becomes the keeper of an in-batch cluster. Human review (a ledger
    given or named by the spec) goes before all, so edited pairs meet every check. `load_embedder` says where
    the embedding models of the checks that load them lazily (semantic dedup) run.
    """
    context = GateContext(releases=releases, shipped_suites=shipped_suites(), load_embedder=load_embedder)
    checks = (build_from(ROW_CHECKS, spec, context) + plugin_checks(spec, context)
              + build_from(DATASET_CHECKS, spec, context))
    if review_ledger or spec.gate.human_review.ledger:
        review = HumanReview.from_spec(spec, review_ledger)
        checks = [review, *review.protect(checks)]
    return checks


def _family(record: object) -> str:
    family = record.get("task_family") if isinstance(record, dict) else None
    return family if isinstance(family, str) else UNKNOWN_FAMILY


def as_text(value: object) -> str | None:
    """A ledger field as text: a string as it is, any other value (a malformed row's) as JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def ledger_entries(check: str, rejected: list[Rejection]) -> tuple[list[dict], Counter[str]]:
    """The ledger entries of one check's rejections, and how many it removed per task family."""
    entries, by_family = [], Counter()
    for rej in rejected:
        record = rej.row.record
        by_family[_family(record)] += 1
        entries.append({
            "id": as_text(rej.row.id),
            "check": check,
            "reason": rej.reason,
            "duplicate_of": rej.duplicate_of,
            "kept_as": None,
            "task_family": as_text(record.get("task_family") if isinstance(record, dict) else None),
            "input": rej.row.origin,
            "record": record,
            "scores": dict(rej.row.scores),
        })
    return entries, by_family


def check_report(check: str, removed: int, added: int, by_family: Counter[str], seconds: float, stats: dict) -> dict:
    """A check's entry in the manifest: removed in total and per task family, rows added, seconds, stats."""
    return {
        "name": check,
        "removed": removed,
        "added": added,
        "removed_by_family": dict(sorted(by_family.items())),
        "seconds": round(seconds, 3),
        "stats": stats,
    }


def run_checks(checks: list[Check], rows: list[Row]) -> tuple[list[Row], list[dict], list[dict]]:
    """Kept rows, ledger entries and per-check reports (removed in total and per task family, stats,
    seconds); CuratorError unless every row lands in exactly one place."""
    ledger, reports = [], []
    kept = rows
    for check in checks:
        started = time.perf_counter()
        result = check.run(kept)
        seconds = time.perf_counter() - started
        if len(result.kept) + len(result.rejected) != len(kept) + len(result.added):
            raise CuratorError(f"gate check {check.name}: {len(kept)} rows in (+{len(result.added)} added), "
                               f"{len(result.kept)} kept + {len(result.rejected)} rejected out; rows would be lost")
        entries, by_family = ledger_entries(check.name, result.rejected)
        ledger.extend(entries)
        reports.append(check_report(check.name, len(result.rejected), len(result.added), by_family, seconds,
                                    result.stats))
        kept = result.kept
    if len(kept) + len(ledger) != len(rows) + sum(r["added"] for r in reports):
        raise CuratorError(f"gate: {len(rows)} input rows do not add up to {len(kept)} kept + {len(ledger)} rejected")
    resolve_keepers(ledger, {r.id for r in kept})
    return kept, ledger, reports


def resolve_keepers(ledger: list[dict], kept_ids: set[str | None]) -> None:
    """Set each ledger entry's `kept_as` (`keepers`)."""
    found = keepers([e["id"] for e in ledger], [e["duplicate_of"] for e in ledger], kept_ids)
    for entry, kept_as in zip(ledger, found):
        entry["kept_as"] = kept_as


def keepers(ids: list[str | None], duplicate_of: list[str | None], kept_ids: set[str | None]) -> list[str | None]:
    """Per rejected row (`ids[i]`, a duplicate of `duplicate_of[i]` or None): the row that carries its content into
    this release, or into an earlier one (`release-vN/<id>`), following `duplicate_of` through keepers a later check
    removed. None where the chain ends at a row rejected for something other than duplication."""
    next_of = {i: d for i, d in zip(ids, duplicate_of) if d}
    out: list[str | None] = []
    for target in duplicate_of:
        seen = set()
        while target is not None and target not in kept_ids and "/" not in target and target not in seen:
            seen.add(target)
            target = next_of.get(target)
        out.append(None if target is None or target in seen else target)
    return out


class _Clock:
    """Wall-clock laps of the gate's phases (a stat of the run, reported in the manifest)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def refuse_unfinished(runs: list[RunDir], allow_partial: bool) -> dict[str, str]:
    """Why each unfinished run is unfinished (path -> reason); CuratorError unless `allow_partial`."""
    unfinished = {str(run.path): reason for run in runs if (reason := run.unfinished())}
    if unfinished and not allow_partial:
        path, reason = next(iter(unfinished.items()))
        more = f" (and {len(unfinished) - 1} more)" if len(unfinished) > 1 else ""
        raise CuratorError(f"{path}: {reason}{more}; or pass --allow-partial to gate what it holds")
    return unfinished


def _input_summary(run: RunDir, rows_read: int, complete: bool) -> dict:
    counts = {  # as RunDir.counts(), without parsing pairs.jsonl a second time
        "accepted": rows_read,
        "quarantined": sum(1 for _ in run.quarantined()),
        "failed": sum(1 for _ in run.failed()),
    }
    return {
        "path": str(run.path),
        "meta": run.read_meta(),
        "sha256": run.file_hashes(),
        "counts": counts,
        "rows_read": rows_read,
        "complete": complete,
    }


class KeptRecords(Protocol):
    """The rows the checks kept, in input order, as `JsonPiece`s (record and scores as JSON)."""

    def ids_and_families(self) -> tuple[pl.Series, pl.Series]:
        """The kept rows' ids and task families, in input order (what the split needs)."""
        ...

    def pieces(self) -> Iterator[JsonPiece]:
        """The kept rows as pieces (the end stage reads them once)."""
        ...


@dataclass(frozen=True)
class KeptInMemory:
    rows: list[Row]

    def ids_and_families(self) -> tuple[pl.Series, pl.Series]:
        return (pl.Series([r.record["id"] for r in self.rows], dtype=pl.String),
                pl.Series([r.record["task_family"] for r in self.rows], dtype=pl.String))

    def pieces(self) -> Iterator[JsonBatch]:
        rows = iter(self.rows)
        while part := list(islice(rows, BATCH_ROWS)):
            yield JsonBatch(pa.record_batch([[json.dumps(r.record, ensure_ascii=False) for r in part],
                                             [scores_json(r.scores) for r in part]], schema=JSON_PAIRS))


@dataclass(frozen=True)
class InputCounts:
    """What the gate read: rows in all, per run directory and per task family."""

    total: int
    per_run: Counter[str]
    by_family: Counter[str]

    @classmethod
    def of(cls, rows: list[Row]) -> InputCounts:
        return cls(len(rows), Counter(r.input for r in rows), Counter(_family(r.record) for r in rows))


def run_gate(
    run_dirs: list[str | Path], spec: Spec, root: Path | None = None, name: str | None = None, notes: str | None = None,
    review_ledger: Path | None = None,
    allow_partial: bool = False,
    engine: str = "memory",
) -> GateReport:
    """Gate the pairs of `run_dirs` against `spec` and write the next release (optionally named) under `root`.

    Unfinished runs are refused unless `allow_partial` (recorded in the manifest). The releases lock is held
    from reading earlier releases until the new one is in place, so two gates never certify the same rows.
    `engine`: "memory" holds every row; "stream" reads the rows in batches and spills them to disk
    (`curator.gate.stream`); "ray" runs the row-local work of "stream" on a Ray cluster; all give the same release."""
    if engine not in ENGINES:
        raise CuratorError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    root = releases_root() if root is None else Path(root)
    runs = [resolve_run_dir(d) for d in run_dirs]
    seen = Counter(r.path.resolve() for r in runs)
    if twice := [str(p) for p, n in seen.items() if n > 1]:
        raise CuratorError(f"run directory given more than once: {', '.join(twice)}")
    unfinished = refuse_unfinished(runs, allow_partial)
    clock = _Clock()
    rows = read_rows(runs) if engine == "memory" else []
    if engine == "memory" and not rows:
        raise CuratorError(f"no pairs to gate in {', '.join(str(r.path) for r in runs)}")
    clock.lap("read")
    with releases_lock(root), tempfile.TemporaryDirectory(prefix="curator-gate-") as workdir:
        checks = build_checks(spec, root, review_ledger, _embedders(engine))
        clock.lap("earlier_releases")
        if engine == "memory":
            import_in_background()  # great-expectations, overlapping the checks (stream: after its first pass)
            kept_rows, ledger, check_reports = run_checks(checks, rows)
            kept, counts = KeptInMemory(kept_rows), InputCounts.of(rows)
        else:
            from curator.gate.stream import run_checks_streaming
            kept, ledger, check_reports, counts = run_checks_streaming(checks, runs, engine, Path(workdir),
                                                                       after_first_pass=start_suite_process)
        clock.lap("checks")
        return _write(runs, counts, kept, ledger, check_reports, spec, root, name, notes, unfinished, clock)


def _manifest(runs: list[RunDir], counts: InputCounts, columns: pl.DataFrame, is_train: np.ndarray, rejected: int,
              check_reports: list[dict], verdicts: list[dict], spec: Spec, unfinished: dict[str, str],
              clock: _Clock) -> dict:
    """What the gate puts in the release manifest (the store adds files, version and tool)."""
    by_family: dict[str, dict[str, int]] = defaultdict(lambda: {"input": 0, "train": 0, "eval": 0})
    for family, n in counts.by_family.items():
        by_family[family]["input"] = n
    split_counts = pl.DataFrame({"family": columns["task_family"], "eval": ~is_train}).group_by("family").agg(
        pl.len().alias("rows"), pl.col("eval").sum())
    for family, rows, evals in split_counts.iter_rows():
        by_family[family]["train"] += rows - evals
        by_family[family]["eval"] += evals
    n_eval = int((~is_train).sum())
    return {
        "spec": {"name": spec.name, "path": spec.path, "sha256": spec.hash, "raw": spec.raw},
        "gate": asdict(spec.gate),
        "checks": check_reports,
        "verdicts": verdicts,
        "counts": {
            "input": counts.total,
            "removed": {c["name"]: c["removed"] for c in check_reports},
            "rejected": rejected,
            "kept": len(columns),
            "train": len(columns) - n_eval,
            "eval": n_eval,
            "by_family": dict(sorted(by_family.items())),
        },
        "inputs": [_input_summary(run, counts.per_run[str(run.path)], str(run.path) not in unfinished) for run in runs],
        "allow_partial": bool(unfinished),
        "teacher_models": sorted(m for m in columns["teacher_model"].unique().to_list() if m),
        "text_signals": SIGNALS_VERSION,  # versions of the refusal detector, lexicon and language detector
        "seconds": clock.laps,  # wall time per gate phase, before the manifest is written
        "review": next((c["stats"]["review"] for c in check_reports if c["name"] == "human_review"), None),
    }


class Ledger(Protocol):
    """The ledger entries (as `ledger_entries` makes them, `kept_as` set), counted, and read in order once."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[dict]: ...


@dataclass
class _KeptColumns:
    """The kept rows' `kept_columns`, gathered piece by piece while the release is written (each piece's train rows,
    then its eval rows), and which of them went to train."""

    parts: list[pl.DataFrame] = field(default_factory=list)
    train: list[np.ndarray] = field(default_factory=list)

    def add(self, columns: pl.DataFrame, splits: dict[str, pl.DataFrame]) -> None:
        self.parts.append(columns)
        self.train.append(np.repeat([True, False], [splits["train"].height, splits["eval"].height]))

    def frame(self) -> pl.DataFrame:
        return pl.concat(self.parts) if self.parts else empty_columns()

    def is_train(self) -> np.ndarray:
        return np.concatenate(self.train) if self.train else np.zeros(0, dtype=bool)


def _decoded_pairs(kept: KeptRecords, is_eval: np.ndarray, spec: Spec, columns: _KeptColumns
                   ) -> Iterator[tuple[str, pl.DataFrame]]:
    """(split, release columns) of every kept piece as the pieces come, each piece read and decoded once in a worker
    process (one per CPU) while this one writes the release; each piece's `kept_columns` go to `columns`."""
    decode = partial(piece_columns, refusal_families=refusal_families(spec))
    for piece, splits in ordered_map(decode, _with_eval(kept.pieces(), is_eval), cpu_count(),
                                     start_method="forkserver", preload=("curator.gate.kept_columns",),
                                     min_items=PARALLEL_PIECES):
        columns.add(piece, splits)
        yield from splits.items()


def _with_eval(pieces: Iterable[JsonPiece], is_eval: np.ndarray) -> Iterator[tuple[JsonPiece, np.ndarray]]:
    """Each piece with its rows' eval flags."""
    seen = 0
    for piece in pieces:
        yield piece, is_eval[seen:seen + piece.rows]
        seen += piece.rows
    if seen != len(is_eval):
        raise CuratorError(f"kept rows: {seen} read, {len(is_eval)} flagged")


def _write(runs: list[RunDir], counts: InputCounts, kept: KeptRecords, ledger: Ledger, check_reports: list[dict],
           spec: Spec, root: Path, name: str | None, notes: str | None, unfinished: dict[str, str],
           clock: _Clock) -> GateReport:
    """Split, release files, expectations and manifest, from the checks' outcome, in one pass over the kept
    records (their text-free columns held, never the records)."""
    ids, families = kept.ids_and_families()
    is_eval = eval_mask(families, ids, spec.gate.eval_fraction)
    del ids, families
    clock.lap("split")
    columns, manifest = _KeptColumns(), {}
    selected_out = sum(c["removed"] for c in check_reports if c["name"] == "selection")  # a choice, not a defect
    done: list[tuple[pl.DataFrame, np.ndarray, Callable[[], list[dict]]]] = []

    def pairs() -> Iterator[tuple[str, pl.DataFrame]]:
        yield from _decoded_pairs(kept, is_eval, spec, columns)
        # the columns are all in: the suite runs (in its process) while the release writer writes the ledger
        frame, is_train = columns.frame(), columns.is_train()
        done.append((frame, is_train, evaluating(spec, frame, is_train, n_input=counts.total - selected_out,
                                                 n_rejected=len(ledger) - selected_out)))

    def conclusion() -> Conclusion:  # once the release's data files are written
        clock.lap("release_files")
        frame, is_train, verdicts = done[0]
        found = verdicts()
        clock.lap("expectations")  # waiting for the verdicts
        manifest.update(_manifest(runs, counts, frame, is_train, len(ledger), check_reports, found, spec, unfinished,
                                  clock))
        return Conclusion(manifest, [v["name"] for v in found if not v["passed"]])

    path = write_release(pairs=pairs(), rejected=ledger, conclusion=conclusion, root=root, name=name, notes=notes)
    certified = all(v["passed"] for v in manifest["verdicts"])
    return GateReport(release=path, certified=certified, manifest=manifest)
