"""Selection by quality: keep the best rows of each curriculum cell ("a few thousand excellent pairs").

Cells are (task family, format, difficulty). Within a cell rows are ranked by `keep_rank`: the
quality score first (judge, else reward model; scored rows before unscored ones), then the longest
response, then the earliest input. `gate.selection.top_n` keeps at most that many rows of each
cell; `top_share` keeps that share of each cell (rounded up, at least one row); with both, the
smaller. The rest are rejected `selection:below_cut`, naming their rank.
"""
from __future__ import annotations

import math
from collections import defaultdict

from curator.gate.check import CheckResult, GateContext, Rejection, Row, keep_rank, quality
from curator.spec import SelectionConfig, Spec


def cell_of(record: dict) -> str:
    return "/".join(str(record.get(k)) for k in ("task_family", "format", "difficulty"))


class Selection:
    """Keep the top of each curriculum cell by quality score."""

    name = "selection"

    def __init__(self, config: SelectionConfig):
        self.config = config

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Selection":
        return cls(spec.gate.selection)

    def keep_count(self, n: int) -> int:
        limits = [n]
        if self.config.top_n is not None:
            limits.append(self.config.top_n)
        if self.config.top_share is not None:
            limits.append(max(1, math.ceil(n * self.config.top_share)))
        return min(limits)

    def run(self, rows: list[Row]) -> CheckResult:
        cells: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            cells[cell_of(row.record)].append(i)
        cut: dict[int, str] = {}
        per_cell = {}
        for cell, members in cells.items():
            ranked = sorted(members, key=lambda i: keep_rank(rows[i]))
            keep = self.keep_count(len(ranked))
            per_cell[cell] = {"input": len(ranked), "kept": keep,
                              "scored": sum(quality(rows[i]) is not None for i in ranked)}
            for rank, i in enumerate(ranked[keep:], keep + 1):
                score = quality(rows[i])
                cut[i] = (f"selection:below_cut: rank {rank} of {len(ranked)} in cell {cell} (top {keep} kept"
                          + (f"; quality {score:g})" if score is not None else "; unscored)"))
        kept = [r for i, r in enumerate(rows) if i not in cut]
        rejected = [Rejection(rows[i], cut[i]) for i in sorted(cut)]
        stats = {"checked": len(rows), "top_n": self.config.top_n, "top_share": self.config.top_share,
                 "cells": per_cell, "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
