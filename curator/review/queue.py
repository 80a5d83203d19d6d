"""The review queue: which pairs a person should look at, in what order, with every automatic finding.

Candidates come from a release (kept rows and rejected ones, with the ledger's check and reason) or from
run directories (their pairs, with the findings of the newest release that gated them, if any). A finding is
`(check, detail, score, threshold)`; scores come generically from
- `findings` / `scores` mappings in a row or a ledger entry: `{name: {"score": s, "threshold": t}}`,
  `{name: [s, t]}`, or a bare `{name: s}` (the gate's per-row scores) measured against a threshold the release
  names for `name` (`release_thresholds`); new per-row checks slot in here,
- similarities quoted in rejection reasons (`Jaccard 0.83`, `cosine 0.962 ... threshold 0.95`) against the
  release's gate thresholds,
- and id lists in check stats (`*_ids`, e.g. screening's `flagged_ids`), which are hits without a score.

Order: first the rows the checks were least sure of (a score within `UNSURE_MARGIN` of its threshold, relative
to it; nearest first), then rows a check rejected or flagged (screening hits among them), then the rest of a
random sample stratified by cell
(family x format x difficulty, proportional allocation, at least one per cell). Sampled rows carry
`sample: True` wherever they sit, so the gate's precision can be estimated on them. A share `overlap` of the
sample (chosen by id) is asked of two reviewers.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from curator.errors import CuratorError
from curator.rundir import resolve_run_dir
from curator.paths import releases_root
from curator.release.store import open_release, release_versions, resolve_release, verify_release

_SIMILARITY = re.compile(r"\b(Jaccard|cosine) ([01](?:\.\d+)?)(?:.*?threshold ([01](?:\.\d+)?))?")


UNSURE_MARGIN = 0.1  # a score within this share of its threshold is one the check was unsure of


@dataclass(frozen=True)
class Finding:
    check: str
    detail: str
    score: float | None = None
    threshold: float | None = None
    flagged: bool = False  # the check rejected or flagged the pair (a bare score is not a flag)

    @property
    def margin(self) -> float | None:
        """Distance of the score from its threshold, relative to the threshold (None without a score)."""
        if self.score is None or self.threshold is None:
            return None
        return abs(self.score - self.threshold) / max(abs(self.threshold), 1e-9)


@dataclass
class Item:
    """One pair in the queue."""

    record: dict
    status: str  # kept | rejected (in a release under review) | "<kept|rejected> in release-vN" | not gated yet
    findings: list[Finding] = field(default_factory=list)
    why: str = "sample"  # uncertain | hit | sample
    sample: bool = False
    want: int = 1  # reviewers asked

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def cell(self) -> tuple[str, str, str]:
        r = self.record
        return (str(r.get("task_family")), str(r.get("format")), str(r.get("difficulty")))

    @property
    def margin(self) -> float | None:
        margins = [m for f in self.findings if (m := f.margin) is not None]
        return min(margins) if margins else None

    @property
    def flagged_by(self) -> list[str]:
        """The checks that rejected or flagged the pair (what precision and recall are estimated for)."""
        return sorted({f.check for f in self.findings if f.flagged})


def numeric_findings(obj: dict, check: str | None = None, thresholds: dict[str, float] | None = None) -> list[Finding]:
    """Findings from a `findings` or `scores` mapping of a row or ledger entry (see the module docstring); a bare
    score counts when `thresholds` (from the release, `release_thresholds`) knows its threshold."""
    out = []
    for key in ("findings", "scores"):
        found = obj.get(key)
        if isinstance(found, str):
            try:
                found = json.loads(found)
            except json.JSONDecodeError:
                continue
        if not isinstance(found, dict):
            continue
        for name, value in found.items():
            score = threshold = None
            if isinstance(value, dict):
                score, threshold = value.get("score"), value.get("threshold")
            elif isinstance(value, (list, tuple)) and len(value) == 2:
                score, threshold = value
            elif isinstance(value, (int, float)):
                score, threshold = value, (thresholds or {}).get(name)
            if isinstance(score, (int, float)) and isinstance(threshold, (int, float)):
                out.append(Finding(check or name, f"{name} {score:g} (threshold {threshold:g})", float(score),
                                   float(threshold)))
    return out


def reason_finding(check: str, reason: str, gate: dict) -> Finding:
    """A rejection as a finding, with the similarity it quotes against its threshold where there is one."""
    m = _SIMILARITY.search(reason)
    if m:
        default = (gate.get("minhash", {}).get("threshold") if m.group(1) == "Jaccard"
                   else gate.get("semantic_dedup", {}).get("threshold"))
        threshold = float(m.group(3)) if m.group(3) else default
        if threshold is not None:
            return Finding(check, reason, float(m.group(2)), float(threshold), flagged=True)
    return Finding(check, reason, flagged=True)


def release_thresholds(manifest: dict) -> dict[str, float]:
    """Thresholds a release names: a numeric `threshold` in a check's stats or in a gate config section,
    keyed by that check or section name (what a bare per-row score of the same name is measured against)."""
    out = {name: float(v["threshold"]) for name, v in manifest.get("gate", {}).items()
           if isinstance(v, dict) and isinstance(v.get("threshold"), (int, float))}
    out.update({c["name"]: float(c["stats"]["threshold"]) for c in manifest.get("checks", [])
                if isinstance(c.get("stats", {}).get("threshold"), (int, float))})
    return out


def _stat_hits(checks: list[dict]) -> dict[str, list[Finding]]:
    """Ids listed in check stats under keys ending in `_ids`, as hits of that check."""
    hits: dict[str, list[Finding]] = {}

    def walk(name: str, value: object, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k.endswith("_ids") and isinstance(v, list):
                    for pid in v:
                        if isinstance(pid, str):
                            hits.setdefault(pid, []).append(Finding(name, f"{name}: {path}{k}", flagged=True))
                else:
                    walk(name, v, f"{path}{k}.")

    for c in checks:
        walk(c["name"], c.get("stats", {}), "")
    return hits


def _from_release(path: Path, only_inputs: set[str] | None = None) -> list[Item]:
    """Kept and rejected rows of a release with their findings; `only_inputs`: rejected rows read from these
    runs only (kept rows are matched by id by the caller)."""
    release = open_release(path)
    gate, thresholds = release.manifest.get("gate", {}), release_thresholds(release.manifest)
    hits = _stat_hits(release.manifest.get("checks", []))
    items = [Item(record, "kept", hits.get(record["id"], []) + numeric_findings(record, thresholds=thresholds))
             for _, record in release.records()]
    for entry in release.rejected:
        record = entry["record"]
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list) or not record.get("id"):
            continue
        if only_inputs is not None and not any((entry["input"] or "").startswith(p + "/") for p in only_inputs):
            continue
        findings = [reason_finding(entry["check"], entry["reason"], gate),
                    *numeric_findings(entry, thresholds=thresholds)]
        items.append(Item(record, "rejected", findings + hits.get(record["id"], [])
                          + numeric_findings(record, thresholds=thresholds)))
    return items


def _newest_release_of(run_path: str, root: Path) -> Path | None:
    for version in reversed(release_versions(root)):
        path = root / f"release-v{version}"
        manifest = verify_release(path, require_certified=False)
        if any(i["path"] == run_path for i in manifest.get("inputs", [])):
            return path
    return None


def load_items(targets: list[str], root: Path | None = None) -> tuple[list[Item], list[str]]:
    """The candidate pairs of `targets` (one release, or run directories) and the names of what was read."""
    root = releases_root() if root is None else Path(root)
    if (Path(targets[0]) / "manifest.json").exists() or re.fullmatch(r"(release-)?v?\d+|latest", targets[0]):
        if len(targets) > 1:
            raise CuratorError("review one release at a time, or run directories")
        path = resolve_release(targets[0], root)
        return _from_release(path), [str(path)]
    items: list[Item] = []
    for target in targets:
        run = resolve_run_dir(target)
        run_path = str(run.path)
        release = _newest_release_of(run_path, root)
        gated = {i.id: i for i in _from_release(release, {run_path})} if release is not None else {}
        for record in run.pairs():
            if isinstance(record, dict) and record.get("id") and isinstance(record.get("messages"), list):
                seen = gated.get(record["id"])
                status = f"{seen.status} in {release.name}" if seen else "not gated yet"
                items.append(Item(record, status, (seen.findings if seen else []) + numeric_findings(record)))
    return items, [str(resolve_run_dir(t).path) for t in targets]


def build_queue(items: list[Item], sample_size: int = 200, overlap: float = 0.1, seed: int = 0) -> list[Item]:
    """Least sure first, then hits, then the rest of the stratified random sample (see the module docstring)."""
    unique: dict[str, Item] = {}
    for item in items:
        unique.setdefault(item.id, item)
    items = list(unique.values())
    by_cell: dict[tuple, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.id):
        item.sample, item.want = False, 1
        by_cell.setdefault(item.cell, []).append(item)
    rng = random.Random(seed)
    total = len(items) or 1
    for cell in sorted(by_cell):
        members = by_cell[cell]
        take = min(len(members), max(1, round(sample_size * len(members) / total)))
        for item in rng.sample(members, take):
            item.sample = True
            item.want = 2 if int(item.id[:8], 16) / 0x1_0000_0000 < overlap else 1
    unsure = {i.id for i in items if i.margin is not None and i.margin <= UNSURE_MARGIN}
    uncertain = sorted((i for i in items if i.id in unsure), key=lambda i: (i.margin, i.id))
    hits = sorted((i for i in items if i.id not in unsure and i.flagged_by), key=lambda i: i.id)
    rest = sorted((i for i in items if i.sample and i.id not in unsure and not i.flagged_by),
                  key=lambda i: (i.cell, i.id))
    for group, why in ((uncertain, "uncertain"), (hits, "hit"), (rest, "sample")):
        for item in group:
            item.why = why
    return uncertain + hits + rest
