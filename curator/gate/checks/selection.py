"""Selection: keep the best rows of each curriculum cell ("a few thousand excellent pairs"), by count or tokens.

Cells are (task family, format, difficulty). Within a cell rows are ordered best first:
1. rows with a quality score (judge, else reward model), best score first (`keep_rank`);
2. then the unscored rows, those that passed more verifiers first (`scores["verified"]`: arithmetic
   recomputed, code parsed), and among equals by coverage of embedding space: farthest-point (greedy
   k-center) order on the model2vec embeddings of their user text, starting from the best by `keep_rank`,
   so near-identical prompts (one T0 template, many entities) come last. Without the `gate` extra the
   coverage order is `keep_rank`.

What is kept: `top_n` rows of each cell; `top_share` of each cell (rounded up, at least one row);
`max_tokens_per_cell` tokens of each cell; `max_tokens` tokens in all, split over task families in
proportion to share x mean tokens of the family's rows (so each family's share of the kept rows is its
share in the spec, and the mix verdict holds) and over a family's cells equally. A row is kept while the
cell's kept tokens stay within its budget (a row that would overflow is skipped, a shorter one after it
may fit, until 50 in a row do not). Tokens are counted as words and punctuation marks of the user and
assistant text (`approx_tokens`), close to a subword tokenizer's count for English prose. With several
limits, each applies. The rest are rejected `selection:below_cut`.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from itertools import chain
from typing import Callable, Iterator

import numpy as np

from curator.gate.check import CheckResult, GateContext, Rejection, Row, keep_rank, quality
from curator.records import assistant_text, user_text
from curator.spec import SelectionConfig, Spec

Embed = Callable[[list[str]], np.ndarray]
_TOKEN = re.compile(r"\w+|[^\w\s]")
MAX_SKIPPED = 50  # rows in a row too long for what is left of a cell's budget: the cell is full


def cell_of(record: dict) -> str:
    return "/".join(str(record.get(k)) for k in ("task_family", "format", "difficulty"))


def approx_tokens(record: dict) -> int:
    """Words and punctuation marks of the user and assistant text."""
    return len(_TOKEN.findall(user_text(record))) + len(_TOKEN.findall(assistant_text(record)))


def farthest_first(vectors: np.ndarray) -> Iterator[int]:
    """Indices of unit `vectors` in greedy k-center order: the first, then each next one the farthest (least
    cosine) from all chosen so far."""
    if len(vectors) == 0:
        return
    nearest = np.full(len(vectors), -np.inf, dtype=np.float32)  # best cosine to any chosen vector
    chosen = np.zeros(len(vectors), dtype=bool)
    pick = 0
    for _ in range(len(vectors)):
        yield pick
        chosen[pick] = True
        np.maximum(nearest, vectors @ vectors[pick], out=nearest)
        nearest[chosen] = np.inf
        pick = int(np.argmin(nearest))


class Selection:
    """Keep the top of each curriculum cell by quality score, verifier passes and coverage."""

    name = "selection"

    def __init__(self, config: SelectionConfig, family_shares: dict[str, float] | None = None,
                 embed: Callable[[], Embed] | None = None):
        """`embed` makes the embedding function for the coverage order (called once, when first needed)."""
        self.config = config
        self.family_shares = family_shares or {}
        self._make_embed = embed
        self._embed: Embed | None = None

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Selection":
        from curator.gate.checks.relevance import gate_extra_installed
        from curator.gate.embeddings import model2vec_embedder

        return cls(spec.gate.selection, {t.name: t.share for t in spec.task_families},
                   model2vec_embedder if gate_extra_installed() else None)

    def keep_count(self, n: int) -> int:
        limits = [n]
        if self.config.top_n is not None:
            limits.append(self.config.top_n)
        if self.config.top_share is not None:
            limits.append(max(1, math.ceil(n * self.config.top_share)))
        return min(limits)

    def token_budgets(self, cells: dict[str, list[int]], rows: list[Row]) -> dict[str, float]:
        """Each cell's token budget (inf when no token limit applies)."""
        budgets = {cell: float(self.config.max_tokens_per_cell or math.inf) for cell in cells}
        if self.config.max_tokens is not None:
            per_family: dict[str, list[str]] = defaultdict(list)
            for cell, members in cells.items():
                per_family[rows[members[0]].record.get("task_family")].append(cell)
            # a family's tokens in proportion to share x mean row tokens, so its share of the kept rows is its share
            weight = {}
            for family, family_cells in per_family.items():
                members = [i for cell in family_cells for i in cells[cell]]
                mean_tokens = sum(approx_tokens(rows[i].record) for i in members) / len(members)
                share = self.family_shares.get(family, 0.0) if self.family_shares else 1.0 / len(per_family)
                weight[family] = share * mean_tokens
            total = sum(weight.values()) or 1.0
            for family, family_cells in per_family.items():
                for cell in family_cells:
                    part = self.config.max_tokens * weight[family] / total / len(family_cells)
                    budgets[cell] = min(budgets[cell], part)
        return budgets

    def _coverage_order(self, unscored: list[int], rows: list[Row]) -> Iterator[int]:
        """Unscored rows: most verifier passes first, then farthest-first in embedding space."""
        groups: dict[float, list[int]] = defaultdict(list)
        for i in unscored:
            groups[rows[i].scores.get("verified", 0)].append(i)
        for _, group in sorted(groups.items(), key=lambda kv: -kv[0]):
            group.sort(key=lambda i: keep_rank(rows[i]))
            if self._make_embed is None or len(group) < 3:
                yield from group
                continue
            if self._embed is None:
                self._embed = self._make_embed()
            vectors = self._embed([user_text(rows[i].record) for i in group])
            yield from (group[j] for j in farthest_first(vectors))

    def _select(self, members: list[int], rows: list[Row], budget: float) -> tuple[list[int], list[int]]:
        """(kept, ranked) row indices of one cell; `ranked` is the whole cell, best first as far as it was ordered."""
        scored = sorted((i for i in members if quality(rows[i]) is not None), key=lambda i: keep_rank(rows[i]))
        unscored = [i for i in members if quality(rows[i]) is None]
        keep_n = self.keep_count(len(members))
        kept: list[int] = []
        seen: list[int] = []
        tokens, skipped = 0, 0
        for i in chain(scored, self._coverage_order(unscored, rows) if unscored else ()):
            seen.append(i)
            size = approx_tokens(rows[i].record)
            fits = tokens + size <= budget
            if fits:
                kept.append(i)
                tokens += size
            skipped = 0 if fits else skipped + 1
            if len(kept) >= keep_n or tokens >= budget or skipped >= MAX_SKIPPED:
                break
        rest = sorted(set(members) - set(seen), key=lambda i: (quality(rows[i]) is None, keep_rank(rows[i])))
        return kept, seen + rest

    def run(self, rows: list[Row]) -> CheckResult:
        cells: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            cells[cell_of(row.record)].append(i)
        budgets = self.token_budgets(cells, rows)
        cut: dict[int, str] = {}
        per_cell = {}
        for cell, members in cells.items():
            kept, ranked = self._select(members, rows, budgets[cell])
            kept_set = set(kept)
            per_cell[cell] = {"input": len(members), "kept": len(kept),
                              "tokens": sum(approx_tokens(rows[i].record) for i in kept),
                              "scored": sum(quality(rows[i]) is not None for i in members)}
            if budgets[cell] != math.inf:
                per_cell[cell]["token_budget"] = int(budgets[cell])
            for rank, i in enumerate(ranked, 1):
                if i in kept_set:
                    continue
                score = quality(rows[i])
                cut[i] = (f"selection:below_cut: rank {rank} of {len(ranked)} in cell {cell} ({len(kept)} kept"
                          + (f"; quality {score:g})" if score is not None else "; unscored)"))
        kept_rows = [r for i, r in enumerate(rows) if i not in cut]
        rejected = [Rejection(rows[i], cut[i]) for i in sorted(cut)]
        stats = {"checked": len(rows), "top_n": self.config.top_n, "top_share": self.config.top_share,
                 "max_tokens": self.config.max_tokens, "max_tokens_per_cell": self.config.max_tokens_per_cell,
                 "tokens": sum(c["tokens"] for c in per_cell.values()), "cells": per_cell, "removed": len(rejected)}
        return CheckResult(kept_rows, rejected, stats)
