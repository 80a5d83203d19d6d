"""Run directories: where `curator generate` and `curator import` leave pairs for the gate.

Layout of `data/runs/<name>/`:
  run.json          what made the run (kind, spec, teacher or source file) and its counts
  pairs.jsonl       accepted pair records, one per line, appended as they arrive
  quarantine.jsonl  rows kept aside with a reason: {"reason", "origin", "plan_slot", "raw"}
  failed.jsonl      plan slots whose teacher call failed for good: {"plan_slot", "reason"}

Files are append-only. Each line is handed to the OS (written and flushed) as it comes, so a killed process
(kill -9 included) keeps every line it finished, and readers skip a torn last line. fsync only matters for a power loss:
`RunDir.add_*` fsync each line; a `RunAppender` (what `curator generate` and `curator import` write with) leaves
fsync to `sync()`, which its owner calls once per group of lines (import also hands a group to the OS at once).
Every input row of an import, or slot of a plan, lands in exactly one of pairs / quarantine / failed, so the
counts add up.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple

import orjson

from curator.errors import CuratorError
from curator.hashing import sha256_file
from curator.jsonl import loads
from curator.paths import releases_root, runs_root

PAIRS, QUARANTINE, FAILED = RUN_FILES = ("pairs.jsonl", "quarantine.jsonl", "failed.jsonl")


def complete_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of a JSONL file written by this module, without their newline; a torn final line (crash
    mid-write) is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # torn write at the end of the file
            if line.strip():
                yield line[:-1]


def read_jsonl(path: Path) -> Iterator[dict]:
    """Records of a JSONL file written by this module (`complete_lines`)."""
    return (loads(line) for line in complete_lines(path))


class RunDir:
    """A run directory opened for appending; reopening an existing one resumes it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def create(self, meta: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            p = self.path / name
            _drop_torn_tail(p)
            p.touch()
        self.write_meta(meta)

    def read_meta(self) -> dict:
        """run.json; CuratorError when it cannot be read as a JSON object."""
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise CuratorError(f"{self.meta_path}: unreadable run.json ({type(e).__name__}: {str(e)[:120]})") from None
        if not isinstance(meta, dict):
            raise CuratorError(f"{self.meta_path}: unreadable run.json (expected a JSON object)")
        return meta

    def unfinished(self) -> str | None:
        """Why the run is not complete, with how to resume it; None when its status is `complete` (or, for a
        generate run from before statuses, when nothing is pending)."""
        try:
            meta = self.read_meta()
        except CuratorError as e:
            return str(e).removeprefix(f"{self.meta_path}: ")
        status = meta.get("status")
        if status == "complete" or (status is None and (meta.get("counts") or {}).get("pending") == 0):
            return None
        if meta.get("kind") == "import":
            source = meta.get("input") or {}
            how = f"curator import {source.get('path')} --format {source.get('format')} --out {self.path}"
        elif meta.get("kind") == "generate":
            how = f"curator generate {meta.get('spec_path')} --out {self.path} (with the same options)"
        else:
            how = "the command that made it"
        return f"unfinished run (status {status or 'unknown'}); resume it with `{how}`"

    def write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.meta_path)

    def appender(self) -> "RunAppender":
        return RunAppender(self.path)

    def add_pair(self, record: dict) -> None:
        with self.appender() as out:
            out.add_pair(record)

    def add_quarantine(self, reason: str, raw: Any, origin: str | None = None, plan_slot: str | None = None) -> None:
        with self.appender() as out:
            out.add_quarantine(reason, raw, origin, plan_slot)

    def add_failed(self, plan_slot: str, reason: str) -> None:
        with self.appender() as out:
            out.add_failed(plan_slot, reason)

    def pairs(self) -> Iterator[dict]:
        return read_jsonl(self.path / PAIRS)

    def quarantined(self) -> Iterator[dict]:
        return read_jsonl(self.path / QUARANTINE)

    def failed(self) -> Iterator[dict]:
        return read_jsonl(self.path / FAILED)

    def line_count(self, name: str) -> int:
        """Records in one run file, as `read_jsonl` yields them (blank lines and a torn last line not counted),
        without parsing them."""
        path = self.path / name
        if not path.exists():
            return 0
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n") and line.strip())

    def counts(self) -> dict[str, int]:
        """Rows per outcome; a failed plan slot that a rerun later filled counts only once, where it ended."""
        pairs, quarantined = list(self.pairs()), list(self.quarantined())
        settled = {r["provenance"].get("plan_slot") for r in pairs} | {q.get("plan_slot") for q in quarantined}
        return {
            "accepted": len(pairs),
            "quarantined": len(quarantined),
            "failed": len({f["plan_slot"] for f in self.failed()} - settled),
        }

    def file_hashes(self) -> dict[str, str]:
        return {name: sha256_file(self.path / name) for name in ("run.json",) + RUN_FILES if (self.path / name).exists()}


def refuse_release_dir(out: Path) -> None:
    """CuratorError when `out` is inside the releases directory or inside a release (run files never go there)."""
    where = out.resolve()
    releases = releases_root().resolve()
    inside_release = any((d / "certificate.json").exists() or (d / "manifest.json").exists() for d in (where, *where.parents))
    if where == releases or releases in where.parents or inside_release:
        raise CuratorError(f"{out}: inside a release directory; run files go under {runs_root()} or another --out")


class RunLine(NamedTuple):
    """One record for one of the run files, encoded as its JSONL line (what a worker process of generate or import
    hands to the process that writes the run directory; import joins a run of lines for one file into one)."""

    file: str
    data: bytes

    @classmethod
    def of(cls, file: str, obj: dict) -> "RunLine":
        # a lone surrogate (kept in a quarantined row's raw text) is written as its JSON escape
        return cls(file, (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace"))

    @classmethod
    def pair(cls, record: dict) -> "RunLine":
        return cls.of(PAIRS, record)

    @classmethod
    def text_pair(cls, record: dict) -> "RunLine":
        """A pair record holding only strings and None (in dicts and lists), as import builds them: written
        compactly by orjson, about ten times faster than `pair` (which keeps NaN and huge numbers as json does)."""
        try:
            return cls(PAIRS, orjson.dumps(record) + b"\n")
        except orjson.JSONEncodeError:  # a lone surrogate
            return cls.pair(record)

    @classmethod
    def quarantine(cls, reason: str, raw: Any, origin: str | None = None, plan_slot: str | None = None) -> "RunLine":
        return cls.of(QUARANTINE, {"reason": reason, "origin": origin, "plan_slot": plan_slot, "raw": raw})

    @classmethod
    def failed(cls, plan_slot: str, reason: str) -> "RunLine":
        return cls.of(FAILED, {"plan_slot": plan_slot, "reason": reason})


class RunAppender:
    """A run directory's files held open for appending: every line is written (flushed to the OS) as it comes,
    and `sync` fsyncs them. `sync` may run in another thread while lines are added; closing syncs, so the owner
    closes only once no `sync` is running elsewhere."""

    def __init__(self, path: Path):
        self.path = path
        self._files: dict[str, BinaryIO] = {}
        self.unsynced = False  # lines were written since the last sync began

    def __enter__(self) -> "RunAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, *lines: RunLine) -> None:
        """Append the lines, then hand each file's new lines to the OS at once."""
        touched = set()
        for line in lines:
            f = self._files.get(line.file)
            if f is None:
                f = self._files[line.file] = open(self.path / line.file, "ab")
            f.write(line.data)
            touched.add(f)
        for f in touched:
            f.flush()
        self.unsynced = True

    def add_pair(self, record: dict) -> None:
        self.write(RunLine.pair(record))

    def add_quarantine(self, reason: str, raw: Any, origin: str | None = None, plan_slot: str | None = None) -> None:
        self.write(RunLine.quarantine(reason, raw, origin, plan_slot))

    def add_failed(self, plan_slot: str, reason: str) -> None:
        self.write(RunLine.failed(plan_slot, reason))

    def sync(self) -> None:
        """fsync the files, if anything was written since the last sync (a line written meanwhile sets `unsynced`
        again, for the next one)."""
        if not self.unsynced:
            return
        self.unsynced = False
        for f in list(self._files.values()):
            os.fsync(f.fileno())

    def close(self) -> None:
        self.sync()
        for f in self._files.values():
            f.close()
        self._files.clear()


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line left by a crash, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(cut)


def resolve_run_dir(name: str | Path) -> RunDir:
    """A run directory given as a path, or by name under the runs root; CuratorError when it has no run.json."""
    for candidate in (Path(name), runs_root() / str(name)):
        run = RunDir(candidate.resolve())
        if run.exists():
            return run
    raise CuratorError(f"{name}: not a run directory (no run.json there or under {runs_root()})")
