"""`curator gate RUN_DIR... --spec SPEC`: check, deduplicate and split run directories into a release.

Exit 0 when the release is certified, 1 when a release was written but is not certified
(its failing verdicts are listed), 2 on a usage error, 3 when the disk filled up (nothing written).
An unfinished run (killed or interrupted) is refused unless --allow-partial, which the manifest records.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curator.gate.engines import ENGINES
from curator.ordered_workers import start_forkserver
from curator.release.check_stats import stats_summary
from curator.spec import load_spec

if TYPE_CHECKING:
    from curator.gate.pipeline import GateReport


def _observed(value: object) -> str:
    if isinstance(value, dict) and "unexpected" in value:  # a per-row expectation
        return f"{value['unexpected']} of {value['of']} rows off"
    return str(value)


def render(report: GateReport, console: Console) -> None:
    """Compact tables: rows removed per check, per family and check, verdicts; then the release path."""
    m = report.manifest
    counts = m["counts"]
    checks = Table(title=f"gate: {counts['input']} input rows", title_justify="left")
    checks.add_column("check")
    checks.add_column("removed", justify="right")
    checks.add_column("seconds", justify="right")
    checks.add_column("details")
    for c in m["checks"]:
        checks.add_row(c["name"], str(c["removed"]), f"{c['seconds']:.2f}", escape(stats_summary(c["stats"])))
    checks.add_row("kept", str(counts["kept"]), "", f"train={counts['train']}, eval={counts['eval']}", style="bold")
    console.print(checks)

    families = Table(title="per task family: input, removed by each check, kept", title_justify="left")
    names = [c["name"] for c in m["checks"]]
    for col in ("family", "input", *names, "train", "eval", "share", "target"):
        families.add_column(col, justify="left" if col == "family" else "right")
    targets = {t["name"]: t["share"] for t in m["spec"]["raw"]["task_families"]}
    empty = {"input": 0, "train": 0, "eval": 0}
    for name in sorted(set(targets) | set(counts["by_family"])):
        n = counts["by_family"].get(name, empty)
        removed = [str(c["removed_by_family"].get(name, 0)) for c in m["checks"]]
        share = (n["train"] + n["eval"]) / counts["kept"] if counts["kept"] else 0.0
        target = f"{targets[name]:.2f}" if name in targets else "-"
        families.add_row(escape(name), str(n["input"]), *removed, str(n["train"]), str(n["eval"]),
                         f"{share:.2f}", target)
    console.print(families)

    verdicts = Table(title="expectations (great-expectations on the kept rows)", title_justify="left")
    for col in ("expectation", "observed", "expected", "verdict"):
        verdicts.add_column(col)
    for v in m["verdicts"]:
        observed = _observed(v["observed"]) + (f" e.g. {v['examples'][:3]}" if v.get("examples") else "")
        verdicts.add_row(escape(v["name"]), escape(observed), escape(v["expected"]),
                         "[green]pass[/green]" if v["passed"] else "[red]FAIL[/red]")
    console.print(verdicts)
    state = "[green]certified[/green]" if report.certified else "[red]NOT certified[/red]"
    console.print(f"{escape(str(report.release))}  {state}", soft_wrap=True)


def _run(args: argparse.Namespace) -> int:
    if args.engine == "stream":  # its worker processes' server imports the gate while this process does, and what
        # each worker would import on first use: datasketch (MinHash permutations), pandas (pyarrow's to_numpy)
        start_forkserver(("curator.gate.stream", "datasketch", "pandas"))
    from curator.gate.pipeline import run_gate
    report = run_gate(args.run_dirs, load_spec(args.spec), name=args.name, notes=args.notes,
                      review_ledger=args.review_ledger,
                      allow_partial=args.allow_partial, engine=args.engine)
    render(report, Console())
    return 0 if report.certified else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="check, deduplicate and split run directories into a release",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory (path, or name under data/runs)")
    p.add_argument("--spec", required=True, help="curriculum spec (YAML) the pairs are gated against")
    p.add_argument("--name", help="a human name for the release (kept in its manifest)")
    p.add_argument("--notes", help="free-text notes kept in the release manifest")
    p.add_argument("--review-ledger", type=Path, metavar="JSONL",
                   help="review ledger from `curator review` to obey (default: the spec's gate.human_review.ledger)")
    p.add_argument("--allow-partial", action="store_true",
                   help="gate runs that did not finish (killed or interrupted); the manifest records it")
    p.add_argument("--engine", choices=ENGINES, default="memory",
                   help="memory: every row in memory (default); stream: rows in batches, spilled to disk (bounded "
                        "memory for row checks and dedup); ray: the stream engine's row checks on a Ray cluster "
                        "(RAY_ADDRESS, else a local one). All three give the same release")
    p.set_defaults(func=_run)
