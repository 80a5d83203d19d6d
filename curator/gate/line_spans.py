"""Runs' pairs files cut into batches of lines as byte ranges (`Span`), for the streaming gate's first pass.

The process that cuts them reads each file once, in large blocks, to find its line ends (numpy), and sends the
workers four numbers a span instead of the text: each worker reads its own bytes. Shipping the text instead cost the
main process about as much CPU as one worker's share of parsing it (reading lines, pickling them, writing them to a
pipe), on a machine where that process shares the cores with the workers.

A span's lines are those `rundir.complete_lines` gives: split at newlines (a carriage return before one is dropped),
blank lines skipped and not numbered, a torn last line (no newline) left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from curator.errors import CuratorError
from curator.rundir import PAIRS, RunDir

BLOCK_BYTES = 1 << 24  # read at a time while finding line ends
# first bytes of a line that may yet be blank (`str.strip()` empty): ASCII whitespace and the lead or continuation
# bytes of multi-byte UTF-8 (Unicode spaces); any other first byte makes a line non-blank
_MAY_BE_BLANK = np.zeros(256, dtype=bool)
_MAY_BE_BLANK[[c for c in range(128) if chr(c).isspace()]] = True
_MAY_BE_BLANK[128:] = True

Line = tuple[str, int, str]  # (run directory, line number, the pair as JSON text)


@dataclass(frozen=True)
class Span:
    """Whole lines of a run's pairs file: bytes [start, end) of it, its first non-blank line numbered `number`."""

    run: str  # the run directory
    start: int
    end: int
    number: int

    def lines(self) -> Iterator[Line]:
        """The span's non-blank lines, numbered, without their newlines."""
        path = Path(self.run) / PAIRS
        with open(path, "rb") as f:
            f.seek(self.start)
            data = f.read(self.end - self.start)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CuratorError(f"{path}:{self._undecodable(data)}: not valid UTF-8") from None
        number = self.number
        for line in text.split("\n")[:-1]:  # the span ends with a newline
            if not _blank(line):
                yield self.run, number, line[:-1] if line.endswith("\r") else line
                number += 1

    def _undecodable(self, data: bytes) -> int:
        """The number of the first line of `data` that is not UTF-8."""
        number = self.number
        for raw in data.split(b"\n"):
            try:
                number += not _blank(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return number
        return number


def _blank(line: str) -> bool:
    """`not line.strip()`, as `complete_lines` skips a line, without copying the line to say so."""
    return not line or line.isspace()


def _is_blank(line: bytes) -> bool:
    try:
        return _blank(line.decode("utf-8"))
    except UnicodeDecodeError:
        return False  # its span's reader names it


def _non_blank_ends(path: Path) -> Iterator[np.ndarray]:
    """Per block of `path`: the file offsets one past the newline of each non-blank line ending in the block."""
    offset, carry = 0, b""
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            data = carry + block
            view = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(view == 10)
            starts = np.concatenate(([0], ends[:-1] + 1))[:len(ends)]
            empty = starts == ends
            suspect = np.flatnonzero(~empty & _MAY_BE_BLANK[view[np.minimum(starts, len(view) - 1)]])
            keep = ~empty
            for i in suspect.tolist():
                keep[i] = not _is_blank(data[starts[i]:ends[i]])
            yield offset + ends[keep] + 1
            cut = int(ends[-1]) + 1 if len(ends) else 0
            offset, carry = offset + cut, data[cut:]  # a torn last line stays in `carry`, never ended


def line_batches(runs: list[RunDir], batch_rows: int) -> Iterator[list[Span]]:
    """The non-blank lines of every run's pairs file, in order, as batches of `batch_rows` lines (the last one
    fewer): each batch the spans of the runs it takes lines from."""
    pending: list[Span] = []
    need = batch_rows
    for run in runs:
        path = run.path / PAIRS
        if not path.exists():
            continue
        start, number = 0, 1  # where the current span starts, and its first line's number
        taken = 0  # lines of the current span
        last_end = 0
        for ends in _non_blank_ends(path):
            at = 0
            while at < len(ends):
                take = min(need, len(ends) - at)
                at += take
                taken += take
                need -= take
                last_end = int(ends[at - 1])
                if not need:
                    pending.append(Span(str(run.path), start, last_end, number))
                    yield pending
                    pending, need = [], batch_rows
                    start, number, taken = last_end, number + taken, 0
        if taken:
            pending.append(Span(str(run.path), start, last_end, number))
    if pending:
        yield pending
