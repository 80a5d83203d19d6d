"""`curator gate RUN_DIR... --spec SPEC`: check, deduplicate and split run directories into a release.

Exit 0 when the release is certified, 1 when a release was written but is not certified
(its failing verdicts are listed), 2 on a usage error.
"""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curator.gate.pipeline import GateReport, run_gate
from curator.spec import load_spec


def render(report: GateReport, console: Console) -> None:
    """Compact tables: rows removed per check, rows kept per family, verdicts; then the release path."""
    m = report.manifest
    counts = m["counts"]
    checks = Table(title=f"gate: {counts['input']} input rows", title_justify="left")
    checks.add_column("check")
    checks.add_column("removed", justify="right")
    checks.add_column("details")
    for c in m["checks"]:
        details = ", ".join(f"{k}={v}" for k, v in c["stats"].items() if k not in ("checked", "removed"))
        checks.add_row(c["name"], str(c["removed"]), details)
    checks.add_row("kept", str(counts["kept"]), f"train={counts['train']}, eval={counts['eval']}", style="bold")
    console.print(checks)

    families = Table(title="kept per task family", title_justify="left")
    for col in ("family", "train", "eval", "share", "target"):
        families.add_column(col, justify="left" if col == "family" else "right")
    targets = {t["name"]: t["share"] for t in m["spec"]["raw"]["task_families"]}
    for name in sorted(set(targets) | set(counts["by_family"])):
        n = counts["by_family"].get(name, {"train": 0, "eval": 0})
        share = (n["train"] + n["eval"]) / counts["kept"] if counts["kept"] else 0.0
        families.add_row(name, str(n["train"]), str(n["eval"]), f"{share:.2f}", f"{targets.get(name, 0):.2f}")
    console.print(families)

    verdicts = Table(title="expectations", title_justify="left")
    for col in ("expectation", "observed", "expected", "verdict"):
        verdicts.add_column(col)
    for v in m["verdicts"]:
        verdicts.add_row(v["name"], str(v["observed"]), v["expected"],
                         "[green]pass[/green]" if v["passed"] else "[red]FAIL[/red]")
    console.print(verdicts)
    state = "[green]certified[/green]" if report.certified else "[red]NOT certified[/red]"
    console.print(f"{escape(str(report.release))}  {state}", soft_wrap=True)


def _run(args: argparse.Namespace) -> int:
    report = run_gate(args.run_dirs, load_spec(args.spec))
    render(report, Console())
    return 0 if report.certified else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="check, deduplicate and split run directories into a release",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory (path, or name under data/runs)")
    p.add_argument("--spec", required=True, help="curriculum spec (YAML) the pairs are gated against")
    p.set_defaults(func=_run)
