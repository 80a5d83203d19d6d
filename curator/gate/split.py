"""Train/eval split, stratified by task family and deterministic.

Within each family, rows are ordered by sha256 of their id (ties: input order) and the first
k = floor(eval_fraction * n + 0.5) go to eval, clamped to 1..n-1 when the family has n >= 2 rows and
eval_fraction > 0 (so a family is never all eval, and a family of one row stays in train).
Both splits keep the input order. The same rows always give the same split.
"""
from __future__ import annotations

import math
from collections import defaultdict

from curator.hashing import sha256_text


def eval_count(n: int, eval_fraction: float) -> int:
    """How many of a family's n rows go to eval."""
    if n < 2 or eval_fraction <= 0:
        return 0
    return min(max(math.floor(eval_fraction * n + 0.5), 1), n - 1)


def eval_positions(families: list[str], ids: list[str], eval_fraction: float) -> set[int]:
    """Positions (in input order) of the rows that go to eval, from each row's task family and id alone."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, family in enumerate(families):
        by_family[family].append(i)
    to_eval: set[int] = set()
    for members in by_family.values():
        ordered = sorted(members, key=lambda i: (sha256_text(ids[i]), i))
        to_eval.update(ordered[: eval_count(len(members), eval_fraction)])
    return to_eval


def split(records: list[dict], eval_fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, eval) of `records`, stratified by task_family."""
    to_eval = eval_positions([r["task_family"] for r in records], [r["id"] for r in records], eval_fraction)
    train = [r for i, r in enumerate(records) if i not in to_eval]
    evals = [r for i, r in enumerate(records) if i in to_eval]
    return train, evals
