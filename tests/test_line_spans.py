"""The first pass's batches as byte ranges read the lines `complete_lines` reads, numbered alike."""
from __future__ import annotations

from pathlib import Path

import pytest

from curator.errors import CuratorError
from curator.gate import line_spans
from curator.gate.line_spans import line_batches
from curator.rundir import PAIRS, RunDir, complete_lines


def _run(tmp_path: Path, name: str, content: bytes) -> RunDir:
    (tmp_path / name).mkdir()
    (tmp_path / name / PAIRS).write_bytes(content)
    return RunDir(tmp_path / name)


def _expected(runs: list[RunDir]) -> list[tuple[str, int, str]]:
    return [(str(r.path), n, line) for r in runs for n, line in enumerate(complete_lines(r.path / PAIRS), 1)]


TRICKY = ('{"a": 1}\n\n   \n{"b": "\u00e9\u3000"}\r\n\u3000\u00a0\n\t{"c": 3}\n\u00e9x\n' + '{"d": 4}\n' * 7
          + '{"torn": ').encode("utf-8")


@pytest.mark.parametrize("block", [1, 5, 64, 1 << 24])
@pytest.mark.parametrize("batch_rows", [1, 3, 100])
def test_batches_hold_the_lines_complete_lines_reads_numbered_alike(tmp_path, monkeypatch, block, batch_rows):
    monkeypatch.setattr(line_spans, "BLOCK_BYTES", block)
    runs = [_run(tmp_path, "a", TRICKY), _run(tmp_path, "empty", b""), _run(tmp_path, "b", b'\n{"e": 5}\n{"f": 6}\n')]
    batches = list(line_batches(runs + [RunDir(tmp_path / "missing")], batch_rows))
    got = [line for batch in batches for span in batch for line in span.lines()]
    assert got == _expected(runs)
    assert len(got) == 13
    assert [sum(1 for s in b for _ in s.lines()) for b in batches[:-1]] == [batch_rows] * (len(batches) - 1)


def test_a_line_that_is_not_utf8_is_named_by_file_and_line(tmp_path):
    run = _run(tmp_path, "r", b'{"a": 1}\n\n{"b": "\xff"}\n')
    [batch] = line_batches([run], 10)
    with pytest.raises(CuratorError, match=r"r/pairs.jsonl:2: not valid UTF-8"):
        [line for span in batch for line in span.lines()]
