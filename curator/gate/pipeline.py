"""`run_gate`: run directories in, one release out (certified or not), every input row accounted for."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from curator.errors import CuratorError
from curator.gate.check import Check, Row, progress
from curator.gate.checks import checks_for
from curator.gate.expectations import evaluate
from curator.gate.split import split
from curator.paths import runs_root
from curator.release.store import write_release
from curator.rundir import RunDir
from curator.spec import Spec


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


def run_checks(checks: list[Check], rows: list[Row]) -> tuple[list[Row], list[dict], list[dict]]:
    """Kept rows, ledger entries and per-check stats; asserts every row lands in exactly one place."""
    ledger, reports = [], []
    kept = rows
    for check in checks:
        result = check.run(kept)
        assert len(result.kept) + len(result.rejected) == len(kept), f"{check.name} lost rows"
        for rej in result.rejected:
            record = rej.row.record
            ledger.append({
                "id": rej.row.id,
                "check": check.name,
                "reason": rej.reason,
                "duplicate_of": rej.duplicate_of,
                "task_family": record.get("task_family") if isinstance(record, dict) else None,
                "input": rej.row.origin,
                "record": record,
            })
        reports.append({"name": check.name, "removed": len(result.rejected), "stats": result.stats})
        kept = result.kept
    assert len(kept) + len(ledger) == len(rows), "gate rows do not add up"
    return kept, ledger, reports


def _input_summary(run: RunDir, rows_read: int) -> dict:
    meta = run.read_meta()
    return {
        "path": str(run.path),
        "meta": meta,
        "sha256": run.file_hashes(),
        "counts": run.counts(),
        "rows_read": rows_read,
    }


def run_gate(run_dirs: list[str | Path], spec: Spec, root: Path | None = None) -> GateReport:
    """Gate the pairs of `run_dirs` against `spec` and write the next release under `root`."""
    runs = [resolve_run_dir(d) for d in run_dirs]
    seen = Counter(r.path.resolve() for r in runs)
    if twice := [str(p) for p, n in seen.items() if n > 1]:
        raise CuratorError(f"run directory given more than once: {', '.join(twice)}")
    rows = read_rows(runs)
    if not rows:
        raise CuratorError(f"no pairs to gate in {', '.join(str(r.path) for r in runs)}")
    kept_rows, ledger, check_reports = run_checks(checks_for(spec), rows)
    kept = [r.record for r in kept_rows]
    train, evals = split(kept, spec.gate.eval_fraction)
    assert len(train) + len(evals) == len(kept), "split lost rows"
    verdicts = evaluate(spec, kept=kept, train=train, n_input=len(rows), n_rejected=len(ledger))
    failed = [v["name"] for v in verdicts if not v["passed"]]
    rows_per_run = Counter(r.input for r in rows)
    by_family: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "eval": 0})
    for name, part in (("train", train), ("eval", evals)):
        for r in part:
            by_family[r["task_family"]][name] += 1
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
        "inputs": [_input_summary(run, rows_per_run[str(run.path)]) for run in runs],
        "teacher_models": sorted({m for r in kept if (m := r["provenance"].get("teacher_model"))}),
    }
    path = write_release(train=train, eval=evals, rejected=ledger, manifest=manifest,
                         certified=not failed, failed_verdicts=failed, root=root)
    return GateReport(release=path, certified=not failed, manifest=manifest)
