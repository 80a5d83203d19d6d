"""The generation plan: how many pairs each curriculum cell (family x format x difficulty x length band) gets.

Family counts come from `target_pairs x share` with largest-remainder rounding (ties go to the family listed
first); each family's count is dealt round-robin over its formats x difficulties. A refusal family gives
`refusal_policy.lookalike_share` of its count (rounded) to benign look-alike slots, answered without refusing.
A strategy mix (`generation.strategies`, `--strategy-mix`) splits the total over strategies the same way
(largest remainder, ties to the strategy listed first): self_instruct's count is planned over the curriculum as
above, the others' over the parents (`parent_plan`), and the groups are interleaved.
Every planned slot has a stable id, the resume key: a rerun skips slots already done.
  self_instruct  `family/format/difficulty/band/#i`
  lookalike      `family/format/difficulty/band/lookalike/#i`
  respond        `respond/<parent pair id>`
  evol:deepen    `evol:deepen/<parent pair id>` (evol:widen alike)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import zip_longest
from typing import TYPE_CHECKING

from curator.spec import Spec, TaskFamily

if TYPE_CHECKING:
    from curator.generate.parents import Source


SELF_INSTRUCT = "self_instruct"
LOOKALIKE = "lookalike"
RESPOND = "respond"
EVOL = "evol"
DEEPEN = "evol:deepen"
WIDEN = "evol:widen"
PARENT_SLOTS = {RESPOND: (RESPOND,), EVOL: (DEEPEN, WIDEN), DEEPEN: (DEEPEN,), WIDEN: (WIDEN,)}  # strategy -> slot kinds


@dataclass(frozen=True)
class Parent:
    """The pair (or seed) a respond / evol slot starts from."""

    id: str  # pair id, or `seed:<family>#<i>`
    origin: str  # `<run dir>/pairs.jsonl:<line>`, or `<spec path>:task_families.<family>.seeds[<i>]`
    instruction: str  # of the last user turn
    input: str
    output: str  # the assistant turn after it ("" when the conversation ends with the user)
    context: tuple[dict[str, str], ...] = ()  # the user / assistant turns before the last user turn


@dataclass(frozen=True)
class Slot:
    family: str
    format: str
    difficulty: str
    length_band: str
    index: int  # position within its cell (self_instruct and lookalike)
    strategy: str = SELF_INSTRUCT
    parent: Parent | None = None

    @property
    def cell(self) -> str:
        return f"{self.family}/{self.format}/{self.difficulty}/{self.length_band}"

    @property
    def id(self) -> str:
        if self.parent is not None:
            return f"{self.strategy}/{self.parent.id}"
        if self.strategy == LOOKALIKE:
            return f"{self.cell}/{LOOKALIKE}/#{self.index}"
        return f"{self.cell}/#{self.index}"


def largest_remainder(shares: list[tuple[str, float]], total: int) -> dict[str, int]:
    """`total` split by `shares` (name, share): floor of each quota, then the leftover to the largest remainders
    (ties to the name listed first)."""
    quotas = [(name, share * total) for name, share in shares]
    counts = {name: math.floor(q) for name, q in quotas}
    leftover = total - sum(counts.values())
    by_remainder = sorted(range(len(quotas)), key=lambda i: -(quotas[i][1] - math.floor(quotas[i][1])))
    for i in by_remainder[:leftover]:
        counts[quotas[i][0]] += 1
    return counts


def family_counts(spec: Spec, total: int) -> dict[str, int]:
    """Pairs per family, by the families' shares."""
    return largest_remainder([(t.name, t.share) for t in spec.task_families], total)


def dealt(family: TaskFamily, count: int, strategy: str) -> list[Slot]:
    """`count` slots of one strategy dealt round-robin over the family's formats x difficulties."""
    cells = [(f, d) for f in family.formats for d in family.difficulties]
    seen: dict[tuple[str, str], int] = {}
    slots = []
    for k in range(count):
        fmt, difficulty = cells[k % len(cells)]
        index = seen.get((fmt, difficulty), 0)
        seen[(fmt, difficulty)] = index + 1
        slots.append(Slot(family.name, fmt, difficulty, family.length_band, index, strategy))
    return slots


def family_slots(family: TaskFamily, count: int, lookalike_share: float = 0.0) -> list[Slot]:
    """The family's `count` slots; for a refusal family, `lookalike_share` of them (rounded) are look-alikes."""
    lookalikes = math.floor(count * lookalike_share + 0.5) if family.refusal else 0  # half rounds up
    return dealt(family, count - lookalikes, SELF_INSTRUCT) + dealt(family, lookalikes, LOOKALIKE)


def plan(spec: Spec, total: int | None = None) -> list[Slot]:
    """All slots for `total` pairs (default `spec.target_pairs`), families interleaved so a partial run is spread."""
    total = spec.target_pairs if total is None else total
    if total < 1:
        raise ValueError("a plan needs at least one pair")
    counts = family_counts(spec, total)
    share = spec.refusal_policy.lookalike_share
    per_family = [family_slots(t, counts[t.name], share) for t in spec.task_families]
    return [s for group in zip_longest(*per_family) for s in group if s is not None]


def cell_targets(slots: list[Slot]) -> dict[str, int]:
    targets: dict[str, int] = {}
    for s in slots:
        targets[s.cell] = targets.get(s.cell, 0) + 1
    return targets


def harder(spec: Spec, difficulty: str) -> str:
    """The next difficulty level after `difficulty` (the same at the top, or when the spec does not list it)."""
    levels = spec.difficulty_levels
    return levels[min(levels.index(difficulty) + 1, len(levels) - 1)] if difficulty in levels else difficulty


def parent_plan(spec: Spec, sources: list[Source], strategies: tuple[str, ...], total: int | None = None) -> list[Slot]:
    """One slot per source and strategy (respond, evol:deepen, evol:widen), in source order; the first `total`.
    A deepened slot sits one difficulty level above its parent."""
    slots = [
        Slot(src.family, src.format, harder(spec, src.difficulty) if strategy == DEEPEN else src.difficulty,
             src.length_band, 0, strategy, src.parent)
        for src in sources for strategy in strategies
    ]
    return slots if total is None else slots[:total]


def mixed_plan(spec: Spec, counts: dict[str, int], sources: list[Source]) -> list[Slot]:
    """`counts[strategy]` slots of each strategy of a mix (self_instruct over the curriculum, the others over
    `sources`), interleaved so a partial run is spread; a strategy gets fewer when the parents run out."""
    groups = [
        (plan(spec, n) if name == SELF_INSTRUCT else parent_plan(spec, sources, PARENT_SLOTS[name], n))
        for name, n in counts.items() if n > 0
    ]
    return [s for group in zip_longest(*groups) for s in group if s is not None]


def mix_member(slot: Slot, strategies: dict[str, float]) -> str:
    """The strategy of a mix that planned `slot` (look-alikes belong to self_instruct, deepen / widen to evol when
    the mix lists evol)."""
    if slot.strategy in (SELF_INSTRUCT, LOOKALIKE):
        return SELF_INSTRUCT
    return EVOL if slot.strategy in (DEEPEN, WIDEN) and EVOL in strategies else slot.strategy
