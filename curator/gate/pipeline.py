"""`run_gate`: run directories in, one release out (certified or not), every input row accounted for."""
from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from curator.errors import CuratorError
from curator.gate.check import Check, Row, progress
from curator.gate.checks.arithmetic import Arithmetic
from curator.gate.checks.code_syntax import CodeSyntax
from curator.gate.checks.content_defects import ContentDefects
from curator.gate.checks.decontaminate import Decontaminate
from curator.gate.checks.exact_dedup import ExactDedup
from curator.gate.checks.grounding import Grounding
from curator.gate.checks.human_review import HumanReview
from curator.gate.checks.judge import Judge
from curator.gate.checks.label_consistency import LabelConsistency
from curator.gate.checks.near_dedup import NearDedup, NearDedupConfig, PriorReleaseDedup, ReleasedRow
from curator.gate.checks.pii import PIICheck
from curator.gate.checks.refusal_policy import RefusalPolicy
from curator.gate.checks.relevance import Relevance, relevance_on
from curator.gate.checks.reward_model import RewardModel
from curator.gate.checks.schema import SchemaCheck
from curator.gate.checks.selection import Selection
from curator.gate.checks.self_consistency import SelfConsistency
from curator.gate.checks.semantic_dedup import SemanticDedup
from curator.gate.registry import CheckEntry, GateContext, build_from, plugin_checks
from curator.gate.screening import Screening
from curator.gate.expectations import evaluate
from curator.gate.split import split
from curator.paths import releases_root, runs_root
from curator.release.store import SPLITS, release_versions, releases_lock, verify_release, write_release
from curator.rundir import RunDir
from curator.spec import Spec

UNKNOWN_FAMILY = "(none)"  # family column for a rejected row that names no task family


@dataclass(frozen=True)
class GateReport:
    release: Path
    certified: bool
    manifest: dict  # what the gate put in the release manifest: checks, verdicts, counts, inputs


def resolve_run_dir(name: str | Path) -> RunDir:
    """A run directory given as a path, or by name under the runs root; CuratorError when it has no run.json."""
    for candidate in (Path(name), runs_root() / str(name)):
        run = RunDir(candidate.resolve())
        if run.exists():
            return run
    raise CuratorError(f"{name}: not a run directory (no run.json there or under {runs_root()})")


def read_rows(runs: list[RunDir]) -> list[Row]:
    """Every pair of every run, in the order given, tagged with its run and line."""
    rows: list[Row] = []
    for run in runs:
        line = 0
        try:
            for line, record in enumerate(progress(run.pairs(), f"reading {run.path.name}"), 1):
                rows.append(Row(record=record, input=str(run.path), line=line, order=len(rows)))
        except json.JSONDecodeError as e:
            raise CuratorError(f"{run.path / 'pairs.jsonl'}:{line + 1}: not valid JSON: {e.msg}") from None
    return rows


def released_rows(root: Path) -> list[ReleasedRow]:
    """Rows (id and messages) of every certified release under `root`, oldest first.

    Uncertified releases are not reference data (they are not meant for training). A release whose
    files fail verification stops the gate: what it holds cannot be known.
    """
    out: list[ReleasedRow] = []
    for version in release_versions(root):
        path = root / f"release-v{version}"
        if not verify_release(path, require_certified=False).get("certified"):
            continue
        for part in SPLITS:
            df = pl.read_parquet(path / f"{part}.parquet", columns=["id", "messages"])
            out.extend(ReleasedRow(path.name, record) for record in df.to_dicts())
    return out


def _prior_release_dedup(spec: Spec, context: GateContext) -> Check | None:
    released = released_rows(context.releases)
    if not released:
        return None
    near = NearDedupConfig.from_spec(spec)
    return PriorReleaseDedup(released, near, exact=spec.gate.exact_dedup, near=spec.gate.minhash.enabled)


def _decontamination_on(spec: Spec) -> bool:
    return spec.gate.decontamination.enabled and bool(spec.gate.decontamination.eval_files)


ROW_CHECKS: list[CheckEntry] = [
    CheckEntry("schema", lambda spec: True, lambda spec, ctx: SchemaCheck(spec)),
    CheckEntry("content_defects", lambda spec: spec.gate.content_defects.enabled,
               lambda spec, ctx: ContentDefects.from_spec(spec)),
    CheckEntry("pii", lambda spec: spec.gate.pii.enabled, lambda spec, ctx: PIICheck.from_spec(spec)),
    CheckEntry("decontamination", _decontamination_on, lambda spec, ctx: Decontaminate.from_spec(spec)),
    # consistency review: is the answer right for this instruction (before dedup, so keepers passed it)
    CheckEntry("arithmetic", lambda spec: spec.gate.arithmetic.enabled, lambda spec, ctx: Arithmetic()),
    CheckEntry("code_syntax", lambda spec: spec.gate.code_syntax.enabled, lambda spec, ctx: CodeSyntax()),
    CheckEntry("refusal_policy", lambda spec: spec.gate.refusal_policy.enabled,
               lambda spec, ctx: RefusalPolicy.from_spec(spec)),
    CheckEntry("labels", lambda spec: spec.gate.labels.enabled, lambda spec, ctx: LabelConsistency.from_spec(spec)),
    CheckEntry("grounding", lambda spec: spec.gate.grounding.enabled, lambda spec, ctx: Grounding.from_spec(spec)),
    CheckEntry("relevance", relevance_on, lambda spec, ctx: Relevance.from_spec(spec)),
    CheckEntry("self_consistency", lambda spec: spec.gate.self_consistency.enabled,
               lambda spec, ctx: SelfConsistency.from_spec(spec)),
    CheckEntry("reward_model", lambda spec: spec.gate.reward_model.enabled, lambda spec, ctx: RewardModel.from_spec(spec)),
    CheckEntry("judge", lambda spec: spec.gate.judge.enabled, lambda spec, ctx: Judge.from_spec(spec)),
    CheckEntry("release_dedup", lambda spec: NearDedupConfig.from_spec(spec).against_releases
               and (spec.gate.exact_dedup or spec.gate.minhash.enabled), _prior_release_dedup),
    CheckEntry("exact_dedup", lambda spec: spec.gate.exact_dedup, lambda spec, ctx: ExactDedup()),
    CheckEntry("near_dedup", lambda spec: spec.gate.minhash.enabled,
               lambda spec, ctx: NearDedup(NearDedupConfig.from_spec(spec))),
    CheckEntry("semantic_dedup", lambda spec: spec.gate.semantic_dedup.enabled,
               lambda spec, ctx: SemanticDedup.from_spec(spec)),
]
DATASET_CHECKS: list[CheckEntry] = [  # after plug-ins: they judge the set that is left
    CheckEntry("screening", lambda spec: spec.gate.screening.enabled, lambda spec, ctx: Screening.from_spec(spec)),
    CheckEntry("selection", lambda spec: any(v is not None for v in vars(spec.gate.selection).values()),
               lambda spec, ctx: Selection.from_spec(spec)),
]


def build_checks(spec: Spec, releases: Path, review_ledger: Path | None = None) -> list[Check]:
    """The checks the spec's gate section switches on, in the order they run: built-in row checks,
    plug-ins named in `gate.plugins`, then the dataset-level screens (see `curator.gate.registry`).

    Duplicates of earlier releases go before in-batch dedup, so a row that repeats an older release
    is rejected against it and never becomes the keeper of an in-batch cluster. Human review (a ledger
    given or named by the spec) goes before all, so edited pairs meet every check.
    """
    context = GateContext(releases=releases)
    checks = (build_from(ROW_CHECKS, spec, context) + plugin_checks(spec, context)
              + build_from(DATASET_CHECKS, spec, context))
    if review_ledger or spec.gate.human_review.ledger:
        review = HumanReview.from_spec(spec, review_ledger)
        checks = [review, *review.protect(checks)]
    return checks


def _family(record: object) -> str:
    family = record.get("task_family") if isinstance(record, dict) else None
    return family if isinstance(family, str) else UNKNOWN_FAMILY


def run_checks(checks: list[Check], rows: list[Row]) -> tuple[list[Row], list[dict], list[dict]]:
    """Kept rows, ledger entries and per-check reports (removed in total and per task family, stats,
    seconds); asserts every row lands in exactly one place."""
    ledger, reports = [], []
    kept = rows
    for check in checks:
        started = time.perf_counter()
        result = check.run(kept)
        seconds = time.perf_counter() - started
        assert len(result.kept) + len(result.rejected) == len(kept) + len(result.added), f"{check.name} lost rows"
        by_family: Counter[str] = Counter()
        for rej in result.rejected:
            record = rej.row.record
            by_family[_family(record)] += 1
            ledger.append({
                "id": rej.row.id,
                "check": check.name,
                "reason": rej.reason,
                "duplicate_of": rej.duplicate_of,
                "kept_as": None,
                "task_family": record.get("task_family") if isinstance(record, dict) else None,
                "input": rej.row.origin,
                "record": record,
                "scores": dict(rej.row.scores),
            })
        reports.append({
            "name": check.name,
            "removed": len(result.rejected),
            "added": len(result.added),
            "removed_by_family": dict(sorted(by_family.items())),
            "seconds": round(seconds, 3),
            "stats": result.stats,
        })
        kept = result.kept
    assert len(kept) + len(ledger) == len(rows) + sum(r["added"] for r in reports), "gate rows do not add up"
    resolve_keepers(ledger, {r.id for r in kept})
    return kept, ledger, reports


def resolve_keepers(ledger: list[dict], kept_ids: set[str | None]) -> None:
    """Set each duplicate's `kept_as`: the row that carries its content into this release, or into an
    earlier one (`release-vN/<id>`), following `duplicate_of` through keepers a later check removed.
    None where the chain ends at a row rejected for something other than duplication."""
    next_of = {e["id"]: e["duplicate_of"] for e in ledger if e["duplicate_of"]}
    for entry in ledger:
        target, seen = entry["duplicate_of"], set()
        while target is not None and target not in kept_ids and "/" not in target and target not in seen:
            seen.add(target)
            target = next_of.get(target)
        entry["kept_as"] = None if target is None or target in seen else target


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


def run_gate(
    run_dirs: list[str | Path], spec: Spec, root: Path | None = None, name: str | None = None, notes: str | None = None,
    review_ledger: Path | None = None,
    allow_partial: bool = False,
) -> GateReport:
    """Gate the pairs of `run_dirs` against `spec` and write the next release (optionally named) under `root`.

    Unfinished runs are refused unless `allow_partial` (recorded in the manifest). The releases lock is held
    from reading earlier releases until the new one is in place, so two gates never certify the same rows."""
    root = releases_root() if root is None else Path(root)
    runs = [resolve_run_dir(d) for d in run_dirs]
    seen = Counter(r.path.resolve() for r in runs)
    if twice := [str(p) for p, n in seen.items() if n > 1]:
        raise CuratorError(f"run directory given more than once: {', '.join(twice)}")
    unfinished = refuse_unfinished(runs, allow_partial)
    clock = _Clock()
    rows = read_rows(runs)
    if not rows:
        raise CuratorError(f"no pairs to gate in {', '.join(str(r.path) for r in runs)}")
    clock.lap("read")
    with releases_lock(root):
        return _gate_locked(runs, rows, spec, root, name, notes, unfinished, clock, review_ledger)


def _gate_locked(runs: list[RunDir], rows: list[Row], spec: Spec, root: Path, name: str | None, notes: str | None,
                 unfinished: dict[str, str], clock: _Clock,
                 review_ledger: Path | None) -> GateReport:
    checks = build_checks(spec, root, review_ledger)
    clock.lap("earlier_releases")
    kept_rows, ledger, check_reports = run_checks(checks, rows)
    clock.lap("checks")
    kept = [{**r.record, "scores": dict(r.scores)} for r in kept_rows]
    train, evals = split(kept, spec.gate.eval_fraction)
    assert len(train) + len(evals) == len(kept), "split lost rows"
    clock.lap("split")
    selected_out = sum(1 for e in ledger if e["check"] == "selection")  # a choice, not a defect: not a reject
    verdicts = evaluate(spec, kept=kept, train=train, n_input=len(rows) - selected_out,
                        n_rejected=len(ledger) - selected_out)
    clock.lap("expectations")
    failed = [v["name"] for v in verdicts if not v["passed"]]
    rows_per_run = Counter(r.input for r in rows)
    input_by_family = Counter(_family(r.record) for r in rows)
    by_family: dict[str, dict[str, int]] = defaultdict(lambda: {"input": 0, "train": 0, "eval": 0})
    for family, n in input_by_family.items():
        by_family[family]["input"] = n
    for split_name, part in (("train", train), ("eval", evals)):
        for r in part:
            by_family[r["task_family"]][split_name] += 1
    manifest = {
        "spec": {"name": spec.name, "path": spec.path, "sha256": spec.hash, "raw": spec.raw},
        "gate": asdict(spec.gate),
        "checks": check_reports,
        "verdicts": verdicts,
        "counts": {
            "input": len(rows),
            "removed": {c["name"]: c["removed"] for c in check_reports},
            "rejected": len(ledger),
            "kept": len(kept),
            "train": len(train),
            "eval": len(evals),
            "by_family": dict(sorted(by_family.items())),
        },
        "inputs": [_input_summary(run, rows_per_run[str(run.path)], str(run.path) not in unfinished) for run in runs],
        "allow_partial": bool(unfinished),
        "teacher_models": sorted({m for r in kept if (m := r["provenance"].get("teacher_model"))}),
        "seconds": clock.laps,  # wall time per gate phase, before the release is written
        "review": next((c["stats"]["review"] for c in check_reports if c["name"] == "human_review"), None),
    }
    path = write_release(train=train, eval=evals, rejected=ledger, manifest=manifest,
                         certified=not failed, failed_verdicts=failed, root=root, name=name, notes=notes)
    return GateReport(release=path, certified=not failed, manifest=manifest)
