"""Figures from human verdicts: a pair's verdict, coverage per cell, Cohen's kappa, and each automatic check's
precision and recall against people on the random sample (Wilson 95% intervals).

A person calls a pair bad when they reject it or edit it (the original needed changing). An automatic check
flagged a pair when the pair's `findings`, recorded in the ledger from the queue, name it. Only pairs of the
queue's random stratified sample count towards precision and recall: the rest of the queue was chosen because
the checks were unsure, which would bias both.
"""
from __future__ import annotations

import math
from collections import Counter

Z95 = 1.959964


def pair_verdict(by_reviewer: dict[str, dict]) -> dict:
    """One verdict from every reviewer's live decision on a pair: the latest edit, else the latest reject, else
    an accept (a reject outweighs an accept; an edit, which fixes the pair, outweighs both)."""
    for kind in ("edit", "reject", "accept"):
        hits = [d for d in by_reviewer.values() if d["decision"] == kind]
        if hits:
            return max(hits, key=lambda d: d["seq"])
    raise ValueError("no decisions")


def is_bad(decision: dict) -> bool:
    return decision["decision"] in ("reject", "edit")


def wilson(successes: int, n: int) -> list[float] | None:
    """Wilson score 95% interval of a proportion; None when n is 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n ** 2)) / (1 + Z95 ** 2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels; None without pairs, 1.0 when both always give one same label."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first) / n ** 2
    if expected == 1.0:
        return 1.0
    return round((observed - expected) / (1 - expected), 4)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def review_summary(per_pair: dict[str, dict[str, dict]], rows_per_cell: dict[tuple, int],
                   checks: list[str]) -> dict:
    """The review section of a release: `per_pair` (pair id -> reviewer -> live decision), the gate's input
    rows per cell (family, format, difficulty), and the automatic checks to estimate."""
    verdicts = {pid: pair_verdict(d) for pid, d in per_pair.items() if d}
    in_sample = {pid for pid, d in per_pair.items() if any(x.get("sample") for x in d.values())}
    flagged_by = {pid: {c for x in d.values() for c in (x.get("findings") or ())} for pid, d in per_pair.items()}
    reviewed = Counter(tuple(v.get("cell") or ("?", "?", "?")) for v in verdicts.values())
    coverage = [{"cell": list(cell), "rows": rows_per_cell.get(cell, 0), "reviewed": reviewed[cell],
                 "share": _ratio(reviewed[cell], rows_per_cell.get(cell, 0))}
                for cell in sorted(set(rows_per_cell) | set(reviewed))]
    two = [sorted(d.values(), key=lambda x: x["reviewer"])[:2] for d in per_pair.values() if len(d) >= 2]
    kappa_pairs = [(a["decision"], b["decision"]) for a, b in two]
    sample = [v for pid, v in verdicts.items() if pid in in_sample]
    names = sorted(set(checks) | {c for v in sample for c in flagged_by[v["pair_id"]]})
    estimates = []
    bad = sum(is_bad(v) for v in sample)
    for name in names:
        flagged = [v for v in sample if name in flagged_by[v["pair_id"]]]
        tp = sum(is_bad(v) for v in flagged)
        estimates.append({"check": name, "sample": len(sample), "flagged": len(flagged), "human_bad": bad,
                          "true_positive": tp, "precision": _ratio(tp, len(flagged)),
                          "precision_ci": wilson(tp, len(flagged)), "recall": _ratio(tp, bad),
                          "recall_ci": wilson(tp, bad)})
    return {
        "pairs_reviewed": len(verdicts),
        "verdicts": dict(Counter(v["decision"] for v in verdicts.values())),
        "reviewers": dict(sorted(Counter(r for d in per_pair.values() for r in d).items())),
        "coverage": coverage,
        "agreement": {"pairs": len(kappa_pairs), "observed": _ratio(sum(a == b for a, b in kappa_pairs),
                                                                    len(kappa_pairs)),
                      "kappa": cohen_kappa(kappa_pairs)},
        "sample_reviewed": len(sample),
        "checks": estimates,
    }
