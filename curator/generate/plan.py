"""The generation plan: how many pairs each curriculum cell (family x format x difficulty x length band) gets.

Family counts come from `target_pairs x share` with largest-remainder rounding (ties go to the family listed
first); each family's count is dealt round-robin over its formats x difficulties. Every planned slot has a
stable id, `family/format/difficulty/band/#i`, which is the resume key: a rerun skips slots already done.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import zip_longest

from curator.spec import Spec, TaskFamily


@dataclass(frozen=True)
class Slot:
    family: str
    format: str
    difficulty: str
    length_band: str
    index: int  # position within its cell

    @property
    def cell(self) -> str:
        return f"{self.family}/{self.format}/{self.difficulty}/{self.length_band}"

    @property
    def id(self) -> str:
        return f"{self.cell}/#{self.index}"


def family_counts(spec: Spec, total: int) -> dict[str, int]:
    """Pairs per family: floor of each quota, then the leftover to the largest remainders."""
    quotas = [(t.name, t.share * total) for t in spec.task_families]
    counts = {name: math.floor(q) for name, q in quotas}
    leftover = total - sum(counts.values())
    by_remainder = sorted(range(len(quotas)), key=lambda i: -(quotas[i][1] - math.floor(quotas[i][1])))
    for i in by_remainder[:leftover]:
        counts[quotas[i][0]] += 1
    return counts


def family_slots(family: TaskFamily, count: int) -> list[Slot]:
    """`count` slots dealt round-robin over the family's formats x difficulties."""
    cells = [(f, d) for f in family.formats for d in family.difficulties]
    seen: dict[tuple[str, str], int] = {}
    slots = []
    for k in range(count):
        fmt, difficulty = cells[k % len(cells)]
        index = seen.get((fmt, difficulty), 0)
        seen[(fmt, difficulty)] = index + 1
        slots.append(Slot(family.name, fmt, difficulty, family.length_band, index))
    return slots


def plan(spec: Spec, total: int | None = None) -> list[Slot]:
    """All slots for `total` pairs (default `spec.target_pairs`), families interleaved so a partial run is spread."""
    total = spec.target_pairs if total is None else total
    if total < 1:
        raise ValueError("a plan needs at least one pair")
    counts = family_counts(spec, total)
    per_family = [family_slots(t, counts[t.name]) for t in spec.task_families]
    return [s for group in zip_longest(*per_family) for s in group if s is not None]


def cell_targets(slots: list[Slot]) -> dict[str, int]:
    targets: dict[str, int] = {}
    for s in slots:
        targets[s.cell] = targets.get(s.cell, 0) + 1
    return targets
