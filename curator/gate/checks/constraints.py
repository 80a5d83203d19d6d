"""Constraint verifier: a pair that records verifiable instructions (`constraints`, as `curator constrain`
writes them, or as an imported instruction-following set carries them) must follow every one.

Each constraint is a checker id of `curator.instructions` with its arguments, checked strictly on the
response (the battery's strict score). A constraint that names no known checker, or has wrong arguments,
is a defect of the row, rejected with the checker's own message. Rows without constraints pass untouched.
"""
from __future__ import annotations

from collections import Counter

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.instructions import build_instruction
from curator.records import assistant_text
from curator.spec import Spec


class Constraints:
    """Reject pairs whose response breaks a constraint the pair records."""

    name = "constraints"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Constraints":
        return cls()

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        checked: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for row in rows:
            problem = None
            for constraint in row.record.get("constraints") or ():
                checked[constraint["id"]] += 1
                try:
                    followed = build_instruction(constraint["id"], constraint["kwargs"]).check(
                        assistant_text(row.record))
                except ValueError as e:
                    followed, problem = False, problem or f"constraints: invalid constraint: {e}"
                if not followed:
                    failed[constraint["id"]] += 1
                    problem = problem or f"constraints:{constraint['id']}: not followed ({constraint['kwargs']})"
            if problem:
                rejected.append(Rejection(row, problem))
            else:
                kept.append(row)
        stats = {"checked": dict(checked), "failed": dict(failed), "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
