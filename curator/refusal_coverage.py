"""Refusal coverage: how many refusals and answered benign look-alikes each refusal family (policy category) holds.

A refusal is a row of a refusal family whose response the one detector (`curator.text_signals.is_refusal`)
reads as a refusal; a look-alike is a row whose provenance strategy ends in `:lookalike` and whose response
is an answer. The gate's coverage verdicts and the datasheet's plain-words summary both count with this.
"""
from __future__ import annotations

from curator.records import assistant_text
from curator.text_signals import is_refusal

LOOKALIKE_SUFFIX = ":lookalike"


def is_lookalike(record: dict) -> bool:
    """Whether the pair is a benign look-alike (a request that sounds risky, to be answered)."""
    return str((record.get("provenance") or {}).get("strategy") or "").endswith(LOOKALIKE_SUFFIX)


def coverage_kind(record: dict, refusal_families: frozenset[str] | set[str]) -> str | None:
    """"refusal", "lookalike" (answered) or None, for one pair."""
    if record.get("task_family") not in refusal_families:
        return None
    refused = is_refusal(assistant_text(record))
    if is_lookalike(record):
        return None if refused else "lookalike"
    return "refusal" if refused else None


def refusal_coverage(records: list[dict], refusal_families: list[str]) -> dict[str, dict[str, int]]:
    """Per refusal family: {"refusals": n, "lookalikes": n}."""
    out = {f: {"refusals": 0, "lookalikes": 0} for f in refusal_families}
    families = frozenset(refusal_families)
    for record in records:
        kind = coverage_kind(record, families)
        if kind is not None:
            out[record["task_family"]][kind + "s"] += 1
    return out
