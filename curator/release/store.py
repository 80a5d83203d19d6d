"""Release storage: write-once `release-vN` directories, their verification, and reading splits back.

Layout of `<data root>/releases/release-vN/`:
  train.parquet, eval.parquet   pair records (provenance as a JSON string column)
  rejected.parquet              the ledger: every input row that did not make it, with check and reason
  manifest.json                 counts, per-file sha256, bytes and rows, spec, gate config and verdicts,
                                inputs, and an optional human name and notes
  certificate.json              binds sha256(manifest.json) to the gate verdict

A release is built in a hidden sibling directory and renamed into place under a lock, so two
builds never take the same version, an existing release is never overwritten, and a failed build
leaves nothing behind.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from curator import __version__
from curator.durable import fsync_dir
from curator.errors import CuratorError
from curator.hashing import sha256_file
from curator.paths import releases_root
from curator.records import now_iso

SPLITS = ("train", "eval")
_VERSION = re.compile(r"^release-v(\d+)$")


class ReleaseError(CuratorError):
    """A release that is missing, altered, or not certified."""


def release_versions(root: Path) -> list[int]:
    if not root.exists():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir())


def resolve_release(name: str | Path, root: Path | None = None) -> Path:
    """`release-v3`, `v3`, `3`, `latest` or a path to a release directory."""
    root = releases_root() if root is None else Path(root)
    text = str(name)
    if Path(text).is_dir() and (Path(text) / "manifest.json").exists():
        return Path(text)
    if text == "latest":
        versions = release_versions(root)
        if not versions:
            raise ReleaseError(f"no releases under {root}")
        return root / f"release-v{versions[-1]}"
    m = re.fullmatch(r"(?:release-)?v?(\d+)", text)
    if not m or not (root / f"release-v{m.group(1)}").is_dir():
        known = ", ".join(f"release-v{v}" for v in release_versions(root)) or "none"
        raise ReleaseError(f"no release {text!r} under {root} (known: {known})")
    return root / f"release-v{m.group(1)}"


def _frame(records: list[dict]) -> pl.DataFrame:
    rows = [
        {
            "id": r["id"],
            "messages": [{"role": m["role"], "content": m["content"]} for m in r["messages"]],
            "task_family": r["task_family"],
            "format": r["format"],
            "difficulty": r["difficulty"],
            "length_band": r.get("length_band"),
            "provenance": json.dumps(r["provenance"], sort_keys=True, ensure_ascii=False),
            "scores": _scores_json(r.get("scores")),
        }
        for r in records
    ]
    schema = {
        "id": pl.String,
        "messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
        "task_family": pl.String,
        "format": pl.String,
        "difficulty": pl.String,
        "length_band": pl.String,
        "provenance": pl.String,
        "scores": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def _scores_json(scores: dict | None) -> str | None:
    """Per-row check scores (judge, relevance, ...) as a JSON column; null when the gate scored nothing."""
    return json.dumps(scores, sort_keys=True) if scores else None


def _ledger_frame(rejected: list[dict]) -> pl.DataFrame:
    schema = {
        "id": pl.String, "check": pl.String, "reason": pl.String, "duplicate_of": pl.String,
        "kept_as": pl.String, "task_family": pl.String, "input": pl.String, "record": pl.String,
        "scores": pl.String,
    }
    rows = [
        {
            "id": r.get("id"), "check": r["check"], "reason": r["reason"], "duplicate_of": r.get("duplicate_of"),
            "kept_as": r.get("kept_as"), "task_family": r.get("task_family"), "input": r.get("input"),
            "record": json.dumps(r.get("record"), sort_keys=True, ensure_ascii=False),
            "scores": _scores_json(r.get("scores")),
        }
        for r in rejected
    ]
    return pl.DataFrame(rows, schema=schema)


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_release(
    *,
    train: list[dict],
    eval: list[dict],
    rejected: list[dict],
    manifest: dict[str, Any],
    certified: bool,
    failed_verdicts: list[str],
    root: Path | None = None,
    name: str | None = None,
    notes: str | None = None,
) -> Path:
    """Write the next release-vN atomically and return its path.

    `manifest` carries what the caller knows (spec, gate config, verdicts, inputs); this function
    adds the version, the files with sha256, size and row counts, the tool version, and the
    optional human `name` and `notes` (bound by the certificate like the rest of the manifest).
    """
    root = releases_root() if root is None else Path(root)
    with _lock(root):
        version = (release_versions(root) or [0])[-1] + 1
        release = f"release-v{version}"
        final = root / release
        staging = root / f".{release}.building-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            frames = {"train": _frame(train), "eval": _frame(eval), "rejected": _ledger_frame(rejected)}
            files = {}
            for split, df in frames.items():
                path = staging / f"{split}.parquet"
                df.write_parquet(path)
                files[path.name] = {"sha256": sha256_file(path), "rows": df.height, "bytes": path.stat().st_size}
            full = {
                **manifest,
                "release": release,
                "name": name,
                "notes": notes,
                "version": version,
                "created_at": now_iso(),
                "tool_version": __version__,
                "files": files,
                "certified": certified,
            }
            (staging / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            certificate = {
                "release": release,
                "manifest_sha256": sha256_file(staging / "manifest.json"),
                "verdict": "certified" if certified else "not_certified",
                "failed_verdicts": failed_verdicts,
                "issued_at": full["created_at"],
                "tool_version": __version__,
            }
            (staging / "certificate.json").write_text(json.dumps(certificate, indent=2, sort_keys=True) + "\n")
            for p in staging.iterdir():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
                p.chmod(0o444)
            fsync_dir(staging)
            os.rename(staging, final)  # fails rather than overwrite; atomic on one filesystem
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def verify_release(path: str | Path, require_certified: bool = True) -> dict:
    """Recompute every hash of a release; return its manifest, or raise ReleaseError naming each bad file."""
    path = Path(path)
    problems = []
    cert_path, man_path = path / "certificate.json", path / "manifest.json"
    for p in (man_path, cert_path):
        if not p.exists():
            problems.append(f"{p}: missing")
    if problems:
        raise ReleaseError(f"release {path} failed verification: " + "; ".join(problems))
    certificate, manifest = _read_json(cert_path), _read_json(man_path)
    if sha256_file(man_path) != certificate.get("manifest_sha256"):
        problems.append(f"{man_path}: changed since the certificate was issued (sha256 mismatch)")
    for name, meta in manifest.get("files", {}).items():
        p = path / name
        if not p.exists():
            problems.append(f"{p}: missing")
        elif sha256_file(p) != meta["sha256"]:
            size, recorded = p.stat().st_size, meta.get("bytes")
            short = f"; truncated: {size} of {recorded} bytes" if recorded is not None and size < recorded else ""
            problems.append(f"{p}: changed since release (sha256 mismatch{short})")
    if problems:
        raise ReleaseError(f"release {path} failed verification: " + "; ".join(problems))
    if require_certified and certificate.get("verdict") != "certified":
        failed = ", ".join(certificate.get("failed_verdicts", [])) or "unknown"
        raise ReleaseError(f"release {path} is not certified (failed: {failed})")
    return manifest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReleaseError(f"release {path.parent} failed verification: {path}: unreadable JSON ({e})") from None


def read_split(path: str | Path, split: str) -> list[dict]:
    """Pair records of one split (`train` or `eval`), provenance parsed back into a dict."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    df = pl.read_parquet(Path(path) / f"{split}.parquet")
    out = df.to_dicts()
    for r in out:
        r["provenance"] = json.loads(r["provenance"])
        r["scores"] = json.loads(r["scores"]) if r.get("scores") else {}
    return out


def read_ledger(path: str | Path) -> list[dict]:
    """The release's rejected rows (`id`, `check`, `reason`, `duplicate_of`, `kept_as`, `task_family`, `input`),
    each with the rejected `record` parsed back (None where the input line held no JSON object)."""
    out = pl.read_parquet(Path(path) / "rejected.parquet").to_dicts()
    for r in out:
        r["record"] = json.loads(r["record"]) if r["record"] is not None else None
        r["scores"] = json.loads(r["scores"]) if r.get("scores") else {}
    return out


@dataclass(frozen=True)
class Release:
    """A verified release read into memory: its manifest, certificate, splits and ledger."""

    path: Path
    manifest: dict
    certificate: dict
    train: list[dict]
    eval: list[dict]
    rejected: list[dict]

    @property
    def name(self) -> str:
        return self.manifest.get("release", self.path.name)

    def records(self) -> list[tuple[str, dict]]:
        """(split, record) for every kept row, train first."""
        return [("train", r) for r in self.train] + [("eval", r) for r in self.eval]


def open_release(name: str | Path, root: Path | None = None, require_certified: bool = False) -> Release:
    """Resolve, verify and read a release (uncertified ones too, unless `require_certified`)."""
    path = resolve_release(name, root)
    manifest = verify_release(path, require_certified=require_certified)
    return Release(
        path=path,
        manifest=manifest,
        certificate=json.loads((path / "certificate.json").read_text()),
        train=read_split(path, "train"),
        eval=read_split(path, "eval"),
        rejected=read_ledger(path),
    )
