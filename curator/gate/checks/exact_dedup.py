"""Exact duplicates after normalisation (see `curator.gate.normalize`), in two passes.

1. full pair: every message's normalised content, role by role; the same conversation twice.
2. prompt: the normalised user side (instruction + input); the same question with another answer.

In each group of duplicates one row is kept by `keep_rank` (longest response, then earliest input)
and the others are rejected naming the kept row's id as `duplicate_of`.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

from curator.gate.check import CheckResult, Rejection, Row, keep_rank
from curator.gate.normalize import normalize
from curator.hashing import sha256_json
from curator.records import user_text


def pair_key(record: dict) -> str:
    return sha256_json([[m["role"], normalize(m["content"])] for m in record["messages"]])


def prompt_key(record: dict) -> str:
    return sha256_json(normalize(user_text(record)))


def _dedup(rows: list[Row], key: Callable[[dict], str], what: str) -> tuple[list[Row], list[Rejection], int]:
    """Keep one row per key; return kept rows (input order), rejections, and the number of duplicate groups."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[key(row.record)].append(row)
    winners, rejected, n_groups = set(), [], 0
    for members in groups.values():
        keep = min(members, key=keep_rank)
        winners.add(keep.order)
        if len(members) > 1:
            n_groups += 1
            for row in members:
                if row is not keep:
                    rejected.append(Rejection(row, f"exact_duplicate: same normalised {what} as {keep.id}", keep.id))
    rejected.sort(key=lambda r: r.row.order)
    return [r for r in rows if r.order in winners], rejected, n_groups


class ExactDedup:
    name = "exact_dedup"

    def run(self, rows: list[Row]) -> CheckResult:
        kept, pair_rejected, pair_groups = _dedup(rows, pair_key, "pair")
        kept, prompt_rejected, prompt_groups = _dedup(kept, prompt_key, "prompt")
        stats = {
            "checked": len(rows),
            "pair_groups": pair_groups,
            "pair_removed": len(pair_rejected),
            "prompt_groups": prompt_groups,
            "prompt_removed": len(prompt_rejected),
            "removed": len(pair_rejected) + len(prompt_rejected),
        }
        return CheckResult(kept, pair_rejected + prompt_rejected, stats)
