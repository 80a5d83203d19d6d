"""Percentile-bootstrap confidence intervals over prompts, seeded and vectorised with numpy.

A (weighted) mean is `sum(w * v) / sum(w)`; with weights = instructions per prompt and values =
fraction followed, that is IFEval's instruction-level accuracy, resampled by prompt. A paired
difference resamples the same prompts for both sides, so prompt difficulty cancels out.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def _weighted_means(values: np.ndarray, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
    w = weights[index]
    return (values[index] * w).sum(axis=-1) / w.sum(axis=-1)


def _arrays(values: Sequence[float], weights: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    if v.ndim != 1 or v.size == 0 or w.shape != v.shape or (w <= 0).any():
        raise ValueError("bootstrap needs a non-empty 1-d list of values and as many positive weights")
    return v, w


def _interval(estimate: float, resampled: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_mean(
    values: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """(estimate, low, high) of the (weighted) mean, resampling prompts with replacement."""
    v, w = _arrays(values, weights)
    index = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    estimate = _weighted_means(v, w, np.arange(v.size))
    return _interval(estimate, _weighted_means(v, w, index), confidence)


def bootstrap_paired_difference(
    base: Sequence[float],
    tuned: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """(estimate, low, high) of mean(tuned) - mean(base) over the same prompts, resampled together."""
    b, w = _arrays(base, weights)
    t, _ = _arrays(tuned, weights)
    if t.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {b.size} base vs {t.size} tuned")
    index = np.random.default_rng(seed).integers(0, b.size, size=(resamples, b.size))
    everything = np.arange(b.size)
    estimate = _weighted_means(t, w, everything) - _weighted_means(b, w, everything)
    return _interval(estimate, _weighted_means(t, w, index) - _weighted_means(b, w, index), confidence)
