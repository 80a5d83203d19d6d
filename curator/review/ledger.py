"""The review ledger: an append-only JSONL file, one line per decision, each fsynced before it is acknowledged.

A line: `{"seq", "time", "reviewer", "pair_id", "decision", "reason", "note", "field", "new_text", "old_text",
"diff", "messages", "cell", "sample", "findings", "undoes"}`. `decision` is `accept`, `reject` (with a
`reason` from the spec's list and an optional free-text `note`), `edit` (the `field`, `response` or
`instruction`, its `old_text` and `new_text`, a unified `diff`, and the edited `messages`) or `undo` (`undoes`:
the `seq` of the reviewer's decision it takes back). `cell`, `sample` (the pair is in the queue's random
stratified sample) and `findings` (automatic checks that flagged it) are copied from the queue so the ledger
alone is enough to estimate each check's precision and recall.

Writes go through one writer thread that commits whatever has arrived in a group: write, flush, fsync,
then every waiting caller is answered (group commit). Only that thread changes `Decisions`, replacing a
pair's mapping rather than changing it, so readers on other threads need no lock. A killed process therefore loses at most the
decisions not yet acknowledged, and a torn last line is cut when the ledger is opened again.
"""
from __future__ import annotations

import fcntl
import json
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from curator.errors import CuratorError
from curator.records import now_iso
from curator.rundir import _drop_torn_tail

DECISIONS = ("accept", "reject", "edit")
FIELDS = ("response", "instruction")


class ReviewError(CuratorError):
    """A decision the ledger refuses (nothing to undo, unknown decision), or an unreadable ledger."""


def read_ledger_lines(path: Path) -> list[dict]:
    """Every complete line of a ledger (a torn last line is skipped); ReviewError naming `path:line` for bad JSON."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ReviewError(f"{path}:{n}: not valid JSON: {e.msg}") from None
    return out


@dataclass
class Decisions:
    """The live decisions of a ledger: every decision not taken back by an undo."""

    live: dict[int, dict] = field(default_factory=dict)  # seq -> line
    by_reviewer: dict[str, list[int]] = field(default_factory=dict)  # live seqs per reviewer, oldest first
    latest: dict[str, dict[str, dict]] = field(default_factory=dict)  # pair id -> reviewer -> live decision

    @classmethod
    def of(cls, lines: list[dict]) -> "Decisions":
        state = cls()
        for line in lines:
            state.apply(line)
        return state

    def last_of(self, reviewer: str) -> dict | None:
        seqs = self.by_reviewer.get(reviewer)
        return self.live[seqs[-1]] if seqs else None

    def apply(self, line: dict) -> None:
        reviewer, seq = line["reviewer"], line["seq"]
        if line["decision"] == "undo":
            seqs = self.by_reviewer.get(reviewer, [])
            if line["undoes"] in seqs:
                seqs.remove(line["undoes"])
                undone = self.live.pop(line["undoes"])
                pair = dict(self.latest[undone["pair_id"]])
                earlier = [s for s in seqs if self.live[s]["pair_id"] == undone["pair_id"]]
                if earlier:
                    pair[reviewer] = self.live[earlier[-1]]
                else:
                    del pair[reviewer]
                self._set(undone["pair_id"], pair)
            return
        self.live[seq] = line
        self.by_reviewer.setdefault(reviewer, []).append(seq)
        self._set(line["pair_id"], {**self.latest.get(line["pair_id"], {}), reviewer: line})

    def _set(self, pair_id: str, by_reviewer: dict[str, dict]) -> None:
        """Replace (never mutate) a pair's mapping, so a reader in another thread never sees it change size."""
        if by_reviewer:
            self.latest[pair_id] = by_reviewer
        else:
            self.latest.pop(pair_id, None)

    def of_pair(self, pair_id: str) -> dict[str, dict]:
        """reviewer -> live decision on `pair_id`."""
        return self.latest.get(pair_id, {})

    def per_pair(self) -> dict[str, dict[str, dict]]:
        """pair id -> reviewer -> live decision, for every pair someone decided."""
        return self.latest


class ReviewLedger:
    """An open review ledger: its live decisions, and a writer thread that appends and fsyncs new ones.
    One process writes a ledger at a time (an exclusive lock, released by the kernel if the process dies)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ReviewError(f"{self.path}: in use by another `curator review` (one writer per ledger)") from None
        _drop_torn_tail(self.path)
        lines = read_ledger_lines(self.path)
        self.decisions = Decisions.of(lines)
        self._next_seq = max((line["seq"] for line in lines), default=0) + 1
        self._pending: queue.Queue[tuple[dict, Future] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="review-ledger", daemon=True)
        self._writer.start()

    def submit(self, entry: dict) -> Future:
        """Queue a decision (without seq and time); the future gives the line once it is on disk."""
        done: Future = Future()
        self._pending.put((entry, done))
        return done

    def record(self, entry: dict) -> dict:
        """Append a decision and wait until it is fsynced; returns the line written."""
        return self.submit(entry).result()

    def close(self) -> None:
        self._pending.put(None)
        self._writer.join()
        self._file.close()

    def _prepare(self, entry: dict) -> dict:
        line = {**entry, "seq": self._next_seq, "time": now_iso()}
        if line["decision"] == "undo":
            last = self.decisions.last_of(line["reviewer"])
            if last is None:
                raise ReviewError(f"{line['reviewer']} has no decision to undo")
            line["undoes"], line["pair_id"] = last["seq"], last["pair_id"]
        elif line["decision"] not in DECISIONS:
            raise ReviewError(f"unknown decision {line['decision']!r}; one of {', '.join(DECISIONS)}, undo")
        self._next_seq += 1
        return line

    def _write_loop(self) -> None:
        while True:
            first = self._pending.get()
            batch = [first]
            while first is not None:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            written: list[tuple[dict, Future]] = []
            for item in batch:
                if item is None:
                    continue
                entry, done = item
                try:
                    line = self._prepare(entry)
                except ReviewError as e:
                    done.set_exception(e)
                    continue
                self.decisions.apply(line)
                self._file.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
                written.append((line, done))
            if written:
                self._file.flush()
                os.fsync(self._file.fileno())
            for line, done in written:
                done.set_result(line)
            if stop:
                return
