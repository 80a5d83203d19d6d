"""Exact duplicates after normalisation (see `curator.gate.normalize`), in two passes.

1. full pair: every message's normalised content, role by role; the same conversation twice.
2. prompt: the normalised user side (instruction + input); the same question with another answer.

In each group of duplicates one row is kept by `keep_rank` (best quality score, longest response, earliest input)
and the others are rejected naming the kept row's id as `duplicate_of`. Keys are 128-bit BLAKE2b
digests of the normalised text (they are compared within one gate run and never stored).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable

from curator.gate.check import CheckResult, GateContext, Rejection, Row, keep_rank
from curator.gate.normalize import NormalizedMessages
from curator.records import user_text
from curator.spec import Spec
from curator.text_signals import normalize

_FIELD, _MESSAGE = "\x1f", "\x1e"  # separators that normalised text never contains (they are whitespace)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _pair_text(messages: list[dict], contents: Iterable[str]) -> str:
    return _MESSAGE.join(m["role"] + _FIELD + content for m, content in zip(messages, contents))


def pair_key(record: dict) -> bytes:
    """Key of the whole conversation: role and normalised content of every message, in order."""
    return _digest(_pair_text(record["messages"], (normalize(m["content"]) for m in record["messages"])))


def prompt_key(record: dict) -> bytes:
    """Key of the user side: the normalised user turns."""
    return _digest(normalize(user_text(record)))


def pair_keys(normalized: NormalizedMessages) -> list[bytes]:
    """`pair_key` of each record of `normalized`, from its once-normalised messages."""
    return [_digest(_pair_text(r["messages"], contents)) for r, contents in zip(normalized.records, normalized.contents)]


def prompt_keys(normalized: NormalizedMessages) -> list[bytes]:
    """`prompt_key` of each record of `normalized`, from its once-normalised messages."""
    return [_digest(text) for text in normalized.users()]


def _dedup(rows: list[Row], keys: list[bytes]) -> tuple[list[int], dict[int, Row], int]:
    """Keep one row per key (`keys[i]` is row i's): the kept rows' positions in `rows` (in order), each dropped
    row's keeper by `order`, the group count."""
    groups: dict[bytes, list[Row]] = defaultdict(list)
    for row, key in zip(rows, keys):
        groups[key].append(row)
    keeper_of: dict[int, Row] = {}
    n_groups = 0
    for members in groups.values():
        if len(members) > 1:
            n_groups += 1
            keep = min(members, key=keep_rank)
            keeper_of.update({row.order: keep for row in members if row is not keep})
    return [i for i, r in enumerate(rows) if r.order not in keeper_of], keeper_of, n_groups


class ExactDedup:
    name = "exact_dedup"

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "ExactDedup":
        return cls()

    def run(self, rows: list[Row]) -> CheckResult:
        normalized = NormalizedMessages.of([r.record for r in rows])  # each message once, for both passes
        remaining, pair_keeper, pair_groups = _dedup(rows, pair_keys(normalized))
        after_pair = [rows[i] for i in remaining]
        kept_at, prompt_keeper, prompt_groups = _dedup(after_pair, prompt_keys(normalized.subset(remaining)))
        kept = [after_pair[i] for i in kept_at]
        rejected = []
        for row in rows:
            if row.order in pair_keeper:
                keep = pair_keeper[row.order]
                keep = prompt_keeper.get(keep.order, keep)  # name the row that stays, not one dropped later
                rejected.append(Rejection(row, f"exact_duplicate: same normalised pair as {keep.id}", keep.id))
            elif row.order in prompt_keeper:
                keep = prompt_keeper[row.order]
                rejected.append(Rejection(row, f"exact_duplicate: same normalised prompt as {keep.id}", keep.id))
        stats = {
            "checked": len(rows),
            "pair_groups": pair_groups,
            "pair_removed": len(pair_keeper),
            "prompt_groups": prompt_groups,
            "prompt_removed": len(prompt_keeper),
            "removed": len(rejected),
        }
        return CheckResult(kept, rejected, stats)
