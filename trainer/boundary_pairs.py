"""Preference pairs on the refusal boundary, taken from a release's train split (for the `dpo` backend).

A family that holds refusals (answers `curator.text_signals.is_refusal` calls refusals: a spec's refusal
families, with their benign look-alikes) gives one pair per row:

- a refusal: chosen = the row's refusal, rejected = `COMPLIANT_OPENING` (the start of doing what was asked:
  no harmful content is written, and none is needed: the decision is made in the first tokens);
- a look-alike (answered): chosen = the row's answer, rejected = a refusal from the same family (the
  family's refusals in turn), i.e. the over-refusal the model must not learn.

SFT on such rows teaches both sides by imitation only; a small model then draws the line by topic words
(README: What curation buys). The pairs say which of two answers to the same prompt is better.
"""
from __future__ import annotations

from collections import defaultdict

from curator.records import assistant_text
from curator.text_signals import is_refusal

COMPLIANT_OPENING = "Sure! Here is how to do that, step by step:\n\n1."


def boundary_pairs(records: list[dict]) -> list[dict]:
    """One pair a row of each family that holds refusals, in record order: `id`, `kind` (`refusal` or
    `lookalike`), `prompt` (the messages before the answer), `chosen` and `rejected` (answer texts)."""
    refusals: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if is_refusal(assistant_text(record)):
            refusals[record["task_family"]].append(assistant_text(record))
    pairs, turn = [], defaultdict(int)
    for record in records:
        family, answer = record["task_family"], assistant_text(record)
        if family not in refusals:
            continue
        prompt = [m for m in record["messages"] if m["role"] != "assistant"]
        if is_refusal(answer):
            pairs.append({"id": record["id"], "kind": "refusal", "prompt": prompt, "chosen": answer,
                          "rejected": COMPLIANT_OPENING})
        else:
            options = refusals[family]
            pairs.append({"id": record["id"], "kind": "lookalike", "prompt": prompt, "chosen": answer,
                          "rejected": options[turn[family] % len(options)]})
            turn[family] += 1
    return pairs
