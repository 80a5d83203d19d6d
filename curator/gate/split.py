"""Train/eval split, stratified by task family and deterministic.

Within each family, rows are ordered by sha256 of their id (ties: input order) and the first
k = floor(eval_fraction * n + 0.5) go to eval, clamped to 1..n-1 when the family has n >= 2 rows and
eval_fraction > 0 (so a family is never all eval, and a family of one row stays in train).
Both splits keep the input order. The same rows always give the same split.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl

SLICE = 1 << 16


def eval_count(n: int, eval_fraction: float) -> int:
    """How many of a family's n rows go to eval."""
    if n < 2 or eval_fraction <= 0:
        return 0
    return min(max(math.floor(eval_fraction * n + 0.5), 1), n - 1)


def eval_mask(families: pl.Series, ids: pl.Series, eval_fraction: float) -> np.ndarray:
    """Per row (in input order): whether it goes to eval, from each row's task family and id alone."""
    n = len(ids)
    family = families.cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    digest = np.empty((n, 4), dtype=">u8")  # sha256 as four big-endian words: ordered as its hex text
    for start in range(0, n, SLICE):  # a slice of ids at a time as Python strings, not millions at once
        part = ids.slice(start, SLICE).to_list()
        digest[start:start + len(part)] = np.frombuffer(
            b"".join(hashlib.sha256(i.encode("utf-8")).digest() for i in part), dtype=">u8").reshape(-1, 4)
    order = np.lexsort((np.arange(n), *digest.T[::-1], family))  # by family, then sha256 of the id, then position
    family = family[order]
    starts = np.flatnonzero(np.r_[True, family[1:] != family[:-1]]) if n else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, n])
    wanted = np.repeat([eval_count(int(size), eval_fraction) for size in sizes], sizes)
    rank = np.arange(n) - np.repeat(starts, sizes)
    mask = np.zeros(n, dtype=bool)
    mask[order[rank < wanted]] = True
    return mask


def split(records: list[dict], eval_fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, eval) of `records`, stratified by task_family."""
    to_eval = eval_mask(pl.Series([r["task_family"] for r in records], dtype=pl.String),
                        pl.Series([r["id"] for r in records], dtype=pl.String), eval_fraction)
    train = [r for r, e in zip(records, to_eval) if not e]
    evals = [r for r, e in zip(records, to_eval) if e]
    return train, evals
