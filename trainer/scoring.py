"""Per-answer scores of an eval pair, each a number in [0, 1], and the prompt and reference of the pair.

Every eval-split answer is scored once, in the battery's `discipline` suite (`trainer.battery`): its
items carry these metrics and `trainer.battery.discipline`'s; `trainer eval` reports `METRICS` per
task family from those items.

- `format_ok`: 1 when the answer keeps its pair's format (`curator.formats.format_problem`: bullet
  lines, an allowed label, JSON matching the format's schema; any non-empty text for `text`).
- `length_ok`: 1 when the answer's word count lies in its family's length band.
- `reference_f1`: SQuAD-style token-overlap F1 against the reference answer (lower-cased,
  punctuation removed, split on whitespace).
- `refusal_correct`: 1 when the answer refuses exactly when its family is a refusal family
  (`curator.text_signals.is_refusal`, the detector the gate and the release report use).
"""
from __future__ import annotations

import re
from collections import Counter

from curator.formats import format_problem, length_problem
from curator.spec import Spec
from curator.text_signals import is_refusal

METRICS = ("format_ok", "length_ok", "reference_f1", "refusal_correct")

_WORD = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of words); 1.0 when both are empty."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def prompt_messages(record: dict) -> list[dict]:
    """The conversation up to (not including) its last assistant turn: what a model is asked."""
    messages = record["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def reference_answer(record: dict) -> str:
    """The pair's last assistant turn: what a generated answer is compared with."""
    return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "assistant")


def format_ok(answer: str, record: dict, spec: Spec) -> float:
    """1.0 when the answer keeps its pair's format."""
    return float(format_problem(spec.format(record["format"]), answer) is None)


def score_answer(answer: str, record: dict, spec: Spec) -> dict[str, float]:
    """Every metric in `METRICS` for one generated answer to one eval pair."""
    family = spec.family(record["task_family"])
    return {
        "format_ok": format_ok(answer, record, spec),
        "length_ok": float(length_problem(spec.band(family.length_band), answer) is None),
        "reference_f1": token_f1(answer, reference_answer(record)),
        "refusal_correct": float(is_refusal(answer) == family.refusal),
    }
