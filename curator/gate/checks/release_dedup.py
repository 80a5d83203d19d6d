"""Duplicates of earlier releases: a row that an earlier certified release already holds is rejected.

`PriorReleaseDedup` rejects rows that duplicate, exactly (the normalised pair or prompt, as
`exact_dedup`) or nearly (a verified MinHash match, as `near_dedup`), a row of an earlier certified
release, naming `release-vN/<id>` as `duplicate_of`, so a new release never re-admits what an older
one already holds. Earlier releases are re-read and re-verified on every gate (at about 50k rows/s);
uncertified ones are not reference data, and one whose files fail verification stops the gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.gate.checks.exact_dedup import pair_keys, prompt_keys
from curator.gate.checks.near_dedup import Match, Matcher
from curator.gate.normalize import NormalizedMessages
from curator.release.store import SPLITS, release_versions, verify_release
from curator.spec import MinHashConfig, Spec


@dataclass(frozen=True)
class ReleasedRow:
    """A row of an earlier release: which release, and its record (id and messages at least)."""

    release: str
    record: dict

    @property
    def ref(self) -> str:
        return f"{self.release}/{self.record['id']}"


def released_rows(root: Path) -> list[ReleasedRow]:
    """Rows (id and messages) of every certified release under `root`, oldest first.

    Uncertified releases are not reference data (they are not meant for training). A release whose
    files fail verification stops the gate: what it holds cannot be known.
    """
    out: list[ReleasedRow] = []
    for version in release_versions(root):
        path = root / f"release-v{version}"
        if not verify_release(path, require_certified=False).get("certified"):
            continue
        for part in SPLITS:
            df = pl.read_parquet(path / f"{part}.parquet", columns=["id", "messages"])
            out.extend(ReleasedRow(path.name, record) for record in df.to_dicts())
    return out


class PriorReleaseDedup:
    """Rejects rows that an earlier certified release already holds: the same normalised pair or
    prompt (when `exact`), or a verified near duplicate (when `near`; same rules as `NearDedup`)."""

    name = "release_dedup"

    def __init__(self, released: list[ReleasedRow], config: MinHashConfig, *, exact: bool, near: bool):
        self.released = released
        self.config = config
        self.exact = exact
        self.near = near

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext) -> "PriorReleaseDedup | None":
        """The check against every certified release under `context.releases`; None when there is none."""
        released = released_rows(context.releases)
        if not released:
            return None
        return cls(released, spec.gate.minhash, exact=spec.gate.exact_dedup, near=spec.gate.minhash.enabled)

    def run(self, rows: list[Row]) -> CheckResult:
        dropped: dict[int, Rejection] = {}
        if self.exact:
            released = NormalizedMessages.of([r.record for r in self.released])
            by_pair = dict(zip(pair_keys(released), self.released))
            by_prompt = dict(zip(prompt_keys(released), self.released))
            normalized = NormalizedMessages.of([r.record for r in rows])
            for i, (row, pair, prompt) in enumerate(zip(rows, pair_keys(normalized), prompt_keys(normalized))):
                if (hit := by_pair.get(pair)) is not None:
                    dropped[i] = Rejection(row, f"release_duplicate: same normalised pair as {hit.ref}", hit.ref)
                elif (hit := by_prompt.get(prompt)) is not None:
                    dropped[i] = Rejection(row, f"release_duplicate: same normalised prompt as {hit.ref}", hit.ref)
        exact_removed = len(dropped)
        matcher = Matcher(self.config)
        if self.near and self.released:
            todo = [i for i in range(len(rows)) if i not in dropped]
            records = [rows[i].record for i in todo] + [r.record for r in self.released]
            first_released = len(todo)
            found = matcher.matches(records, keep_pair=lambda a, b: (a < first_released) & (b >= first_released))
            best: dict[int, Match] = {}
            for m in found.values():
                if m.i not in best or m.jaccard > best[m.i].jaccard:
                    best[m.i] = m
            for k, m in best.items():
                hit = self.released[m.j - first_released]
                row = rows[todo[k]]
                reason = f"release_duplicate: near duplicate of {hit.ref}; {m.describe()}"
                dropped[todo[k]] = Rejection(row, reason, hit.ref)
        stats = {
            "checked": len(rows),
            "releases": sorted({r.release for r in self.released}),
            "released_rows": len(self.released),
            "exact_removed": exact_removed,
            **{k: matcher.stats[k] for k in sorted(matcher.stats)},
            "near_removed": len(dropped) - exact_removed,
            "removed": len(dropped),
        }
        kept = [r for i, r in enumerate(rows) if i not in dropped]
        return CheckResult(kept, [dropped[i] for i in sorted(dropped)], stats)
