"""`lineage(pair_id)`: where a pair went, where it came from, and which trained models used it.

Every release under the releases root is searched: its train and eval splits (kept) and its ledger
(rejected, with check and reason). For each hit the input run directory the row came from is found
from the manifest's `inputs`: a rejected row names its `file:line`; a kept row is looked up by id in
each input's `pairs.jsonl` (noting when that file changed after gating). Trained models are the
`trainer fit` run directories (`<data root>/training/*/run.json`, plus any given) whose certificate
hash matches a release holding the pair.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from curator.errors import CuratorError
from curator.hashing import sha256_file
from curator.paths import data_root, releases_root
from curator.release.store import SPLITS, ReleaseError, release_versions, verify_release

PROVENANCE_FIELDS = ("source", "strategy", "teacher_model", "prompt_template", "prompt_hash", "spec_name",
                     "spec_hash", "origin", "plan_slot", "original_id", "reviewer", "reviewed_at", "created_at")


@dataclass(frozen=True)
class Appearance:
    """The pair in one release: kept in a split, or rejected by a check."""

    release: str
    path: Path
    certified: bool
    manifest_sha256: str
    spec: str  # the spec the release was gated against: name and sha256
    split: str  # train | eval | rejected
    record: dict | None
    check: str | None = None
    reason: str | None = None
    duplicate_of: str | None = None
    kept_as: str | None = None  # the row holding a duplicate's content in the release (duplicate_of, followed)
    input_path: str | None = None  # the run directory the row was read from
    input_line: str | None = None  # file:line inside it, where known
    input_changed: bool = False  # the run's pairs.jsonl no longer matches the hash the manifest recorded


@dataclass(frozen=True)
class ModelUse:
    run_dir: Path
    release: str
    split: str  # the split of that release the pair sits in
    base_model: str | None


@dataclass
class Lineage:
    pair_id: str
    appearances: list[Appearance] = field(default_factory=list)
    models: list[ModelUse] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # releases that could not be searched, and why

    @property
    def provenance(self) -> dict:
        """The pair's provenance, from the first appearance that carries a record."""
        for a in self.appearances:
            if isinstance(a.record, dict) and isinstance(a.record.get("provenance"), dict):
                return a.record["provenance"]
        return {}


def training_root() -> Path:
    """`<data root>/training/`, where `trainer fit` writes its run directories."""
    return data_root() / "training"


def _find_in_run(run_path: Path, pair_id: str) -> str | None:
    pairs = run_path / "pairs.jsonl"
    if not pairs.exists():
        return None
    needle = f'"{pair_id}"'
    with open(pairs, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                try:
                    if json.loads(line).get("id") == pair_id:
                        return f"{pairs}:{n}"
                except json.JSONDecodeError:
                    continue
    return None


def _kept_source(manifest: dict, pair_id: str) -> tuple[str | None, str | None, bool]:
    """(run dir, file:line, changed since gating) of a kept row, looked up in the manifest's inputs."""
    inputs = manifest.get("inputs", [])
    for inp in inputs:
        run = Path(inp["path"])
        if line := _find_in_run(run, pair_id):
            recorded = inp.get("sha256", {}).get("pairs.jsonl")
            return inp["path"], line, recorded is not None and sha256_file(run / "pairs.jsonl") != recorded
    if len(inputs) == 1:  # the only input; its file no longer holds the row
        return inputs[0]["path"], None, True
    return None, None, False


def _input_of(manifest: dict, origin: str | None) -> str | None:
    for inp in manifest.get("inputs", []):
        if origin and origin.startswith(inp["path"].rstrip("/") + "/"):
            return inp["path"]
    return None


def _search_release(path: Path, pair_id: str) -> list[Appearance]:
    manifest = verify_release(path, require_certified=False)
    certificate = json.loads((path / "certificate.json").read_text())
    spec = manifest.get("spec", {})
    common = dict(release=path.name, path=path, certified=bool(manifest.get("certified")),
                  manifest_sha256=certificate["manifest_sha256"], spec=f"{spec.get('name')} {spec.get('sha256', '')[:12]}")
    found = []
    for split in SPLITS:
        hits = pl.read_parquet(path / f"{split}.parquet").filter(pl.col("id") == pair_id).to_dicts()
        for r in hits:
            r["provenance"] = json.loads(r["provenance"])
            run, line, changed = _kept_source(manifest, pair_id)
            found.append(Appearance(**common, split=split, record=r, input_path=run, input_line=line,
                                    input_changed=changed))
    ledger = pl.read_parquet(path / "rejected.parquet").filter(pl.col("id") == pair_id).to_dicts()
    for r in ledger:
        found.append(Appearance(**common, split="rejected", record=json.loads(r["record"]), check=r["check"],
                                reason=r["reason"], duplicate_of=r["duplicate_of"], kept_as=r.get("kept_as"),
                                input_path=_input_of(manifest, r["input"]), input_line=r["input"]))
    return found


def _model_runs(extra: list[Path]) -> list[tuple[Path, dict]]:
    dirs = sorted(p.parent for p in training_root().glob("*/run.json")) if training_root().is_dir() else []
    for d in extra:
        if not (Path(d) / "run.json").is_file():
            raise CuratorError(f"{d}: not a trainer run directory (no run.json)")
        if Path(d).resolve() not in {x.resolve() for x in dirs}:
            dirs.append(Path(d))
    runs = []
    for d in dirs:
        try:
            runs.append((d, json.loads((d / "run.json").read_text())))
        except json.JSONDecodeError as e:
            raise CuratorError(f"{d / 'run.json'}: not valid JSON: {e.msg}") from None
    return runs


def lineage(pair_id: str, models: list[Path] | None = None, root: Path | None = None) -> Lineage:
    """Search every release for `pair_id`; raise CuratorError when no release knows it."""
    root = releases_root() if root is None else Path(root)
    result = Lineage(pair_id)
    for version in release_versions(root):
        path = root / f"release-v{version}"
        try:
            result.appearances.extend(_search_release(path, pair_id))
        except ReleaseError as e:
            result.problems.append(str(e))
    if not result.appearances:
        searched = f"{len(release_versions(root))} releases under {root}"
        detail = ("; not searched: " + "; ".join(result.problems)) if result.problems else ""
        raise CuratorError(f"pair {pair_id!r} is in none of the {searched}{detail}")
    kept = {a.manifest_sha256: a for a in result.appearances if a.split in SPLITS}
    for run_dir, run in _model_runs(list(models or [])):
        hit = kept.get(run.get("manifest_sha256"))
        if hit:
            result.models.append(ModelUse(run_dir, hit.release, hit.split, run.get("base_model")))
    return result
