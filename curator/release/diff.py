"""`diff_releases(a, b)`: what changed between two releases.

Rows are compared by id over both splits (added, removed, moved between train and eval). The mix is
compared per cell (task_family x format x difficulty) and per family, as counts and shares of the
kept rows. Quality is compared as rows removed per gate check, input and rejected totals, and the
pass/fail of each verdict. A check or verdict present in one release only shows `None` on the other side.
Verdicts renamed since a release was written are read under their current name (`RENAMED_VERDICTS`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from curator.release.store import Release

CELL = ("task_family", "format", "difficulty")
RENAMED_VERDICTS = {"refusal_share": "refusal_family_share"}  # old name -> current name


@dataclass(frozen=True)
class MixRow:
    key: tuple[str, ...]
    before: int
    after: int
    share_before: float
    share_after: float

    @property
    def share_delta(self) -> float:
        return self.share_after - self.share_before


@dataclass(frozen=True)
class ReleaseDiff:
    before: str
    after: str
    added: list[str]  # ids in `after` only
    removed: list[str]  # ids in `before` only
    unchanged: int  # ids in both, same split
    moved: list[tuple[str, str, str]]  # (id, split before, split after)
    cells: list[MixRow]
    families: list[MixRow]
    checks: list[tuple[str, int | None, int | None]]  # (check, removed before, removed after)
    totals: list[tuple[str, int | None, int | None]]  # input, rejected, kept, train, eval
    verdicts: list[tuple[str, bool | None, bool | None]]  # (verdict, passed before, passed after)


def _mix(before: Release, after: Release, key) -> list[MixRow]:
    a = Counter(key(r) for _, r in before.records())
    b = Counter(key(r) for _, r in after.records())
    na, nb = sum(a.values()) or 1, sum(b.values()) or 1
    return [MixRow(k, a[k], b[k], a[k] / na, b[k] / nb) for k in sorted(set(a) | set(b))]


def _paired(before: dict, after: dict) -> list[tuple]:
    names = list(before) + [k for k in after if k not in before]
    return [(k, before.get(k), after.get(k)) for k in names]


def _verdicts(release: Release) -> dict[str, bool]:
    return {RENAMED_VERDICTS.get(v["name"], v["name"]): v["passed"] for v in release.manifest.get("verdicts", [])}


def diff_releases(before: Release, after: Release) -> ReleaseDiff:
    ids_a = {r["id"]: split for split, r in before.records()}
    ids_b = {r["id"]: split for split, r in after.records()}
    common = ids_a.keys() & ids_b.keys()
    moved = sorted((i, ids_a[i], ids_b[i]) for i in common if ids_a[i] != ids_b[i])
    ca, cb = before.manifest.get("counts", {}), after.manifest.get("counts", {})
    return ReleaseDiff(
        before=before.name,
        after=after.name,
        added=sorted(ids_b.keys() - ids_a.keys()),
        removed=sorted(ids_a.keys() - ids_b.keys()),
        unchanged=len(common) - len(moved),
        moved=moved,
        cells=_mix(before, after, lambda r: tuple(str(r.get(k)) for k in CELL)),
        families=_mix(before, after, lambda r: (str(r.get("task_family")),)),
        checks=_paired({c["name"]: c["removed"] for c in before.manifest.get("checks", [])},
                       {c["name"]: c["removed"] for c in after.manifest.get("checks", [])}),
        totals=[(k, ca.get(k), cb.get(k)) for k in ("input", "rejected", "kept", "train", "eval")],
        verdicts=_paired(_verdicts(before), _verdicts(after)),
    )
