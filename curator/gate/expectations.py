"""Dataset-level expectations: verdicts on the release as a whole, derived from the spec.

Each verdict is `{"name", "passed", "observed", "expected"}`; a release is certified iff all pass.
The list (`evaluate`):
  min_train_rows      train rows >= gate.min_train_rows
  max_reject_share    rejected / input rows <= gate.max_reject_share
  mix:<family>        |family's share of kept rows - its target share| <= gate.mix_tolerance
  refusal_share       share of kept rows in refusal families <= refusal_policy.max_share
  unique_ids          no id appears twice among kept rows
  no_empty_messages   no kept message has blank content
"""
from __future__ import annotations

from collections import Counter

from curator.spec import Spec


def _verdict(name: str, passed: bool, observed: object, expected: str) -> dict:
    return {"name": name, "passed": bool(passed), "observed": observed, "expected": expected}


def evaluate(spec: Spec, *, kept: list[dict], train: list[dict], n_input: int, n_rejected: int) -> list[dict]:
    """All verdicts for a release of `kept` rows (`train` is its train split) from `n_input` input rows."""
    gate = spec.gate
    verdicts = [
        _verdict("min_train_rows", len(train) >= gate.min_train_rows, len(train), f">= {gate.min_train_rows}"),
    ]
    reject_share = n_rejected / n_input if n_input else 0.0
    verdicts.append(_verdict("max_reject_share", reject_share <= gate.max_reject_share,
                             round(reject_share, 4), f"<= {gate.max_reject_share}"))
    families = Counter(r["task_family"] for r in kept)
    total = len(kept)
    for family in spec.task_families:
        share = families[family.name] / total if total else 0.0
        verdicts.append(_verdict(f"mix:{family.name}", abs(share - family.share) <= gate.mix_tolerance + 1e-9,
                                 round(share, 4), f"{family.share} ± {gate.mix_tolerance}"))
    refusals = sum(families[f.name] for f in spec.task_families if f.refusal)
    refusal_share = refusals / total if total else 0.0
    verdicts.append(_verdict("refusal_share", refusal_share <= spec.refusal_policy.max_share + 1e-9,
                             round(refusal_share, 4), f"<= {spec.refusal_policy.max_share}"))
    repeated = sorted(i for i, n in Counter(r["id"] for r in kept).items() if n > 1)
    verdicts.append(_verdict("unique_ids", not repeated, repeated[:10], "no repeated id"))
    empty = sorted({r["id"] for r in kept for m in r["messages"] if not m["content"].strip()})
    verdicts.append(_verdict("no_empty_messages", not empty, empty[:10], "no blank message content"))
    return verdicts
