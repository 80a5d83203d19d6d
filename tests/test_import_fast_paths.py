"""What makes `curator import` fast, checked against the slow path it replaces: the check of importer-built records
against jsonschema, rows converted in worker processes against one process, and a start-up that leaves the gate,
teacher and trainer stacks unimported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest

from curator import importers
from curator.import_rows import READERS, RowConverter, RowError, built_pair_conforms, built_pair_errors
from curator.records import make_pair, schema_errors
from curator.rundir import RunDir
from shared_data import mix_path

ROOT = Path(__file__).resolve().parents[1]
TURNS = [  # conversations as the sharegpt reader gets them: every pattern of roles and empty texts it can build
    [("human", "Hi?"), ("gpt", "Hello.")],
    [("human", ""), ("gpt", "Hello.")],
    [("human", "Hi?"), ("gpt", "")],
    [("human", ""), ("gpt", "")],
    [("system", ""), ("human", "Hi?"), ("gpt", "Hello.")],
    [("system", "Be brief."), ("human", "Hi?"), ("gpt", "")],
    [("human", "Hi?")],
    [("gpt", "Hello.")],
    [],
    [("system", "Be brief."), ("gpt", "Hello.")],
    [("system", "Be brief."), ("human", "Hi?")],
    [("gpt", "Hello."), ("gpt", "")],
    [("human", "a"), ("gpt", "b"), ("human", ""), ("gpt", "d"), ("human", "e"), ("gpt", "")],
]
CELLS = [("general", "free_text", "easy"), ("", "free_text", "easy"), ("general", "", ""), ("", "", "")]


def _built(messages: list[dict], cell: tuple[str, str, str], source: str) -> dict:
    family, fmt, difficulty = cell
    return make_pair(messages, task_family=family, format=fmt, difficulty=difficulty, source=source,
                     strategy="import:sharegpt", origin="f.jsonl:1", created_at="2026-12-01T06:00:00+00:00")


def test_the_check_of_built_records_agrees_with_jsonschema():
    with open(mix_path(), encoding="utf-8") as f:
        real = [READERS["alpaca"](row) for row in map(json.loads, islice(f, 300))]
    shaped = []
    for turns in TURNS:
        try:
            shaped.append(READERS["sharegpt"]({"conversations": [{"from": s, "value": v} for s, v in turns]}))
        except RowError:
            pytest.fail(f"the reader refused {turns}")
    records = [_built(m, cell, source) for m in real + shaped for cell in CELLS[:2] for source in ("imported", "human")]
    records += [_built(m, cell, source) for m in shaped for cell in CELLS for source in ("imported", "scraped")]
    verdicts = [(built_pair_conforms(r), not schema_errors(r)) for r in records]
    assert [fast for fast, _ in verdicts] == [reference for _, reference in verdicts]
    assert [built_pair_errors(r) for r in records] == [schema_errors(r) for r in records]
    assert 0 < sum(ok for ok, _ in verdicts) < len(records) / 2  # both kinds, broken ones most
    assert any(not m[-1]["content"] for m in real)  # the mix has empty outputs


def test_workers_write_what_one_process_writes_in_input_order(tmp_path, monkeypatch):
    """Real rows and broken lines in groups of 64, converted by two worker processes and by one: the same lines
    (but for the creation time), pairs and quarantine entries in input order, every row accounted for."""
    with open(mix_path(), "rb") as f:
        lines = list(islice(f, 2000))
    for n in range(7, 2000, 97):
        lines[n] = b'{"instruction": "broken", "output": ' + b"\n"
    lines[500] = b"\n"
    src = tmp_path / "mix.jsonl"
    src.write_bytes(b"".join(lines))
    monkeypatch.setattr(importers, "WRITE_GROUP", 64)
    runs = {}
    for workers in (2, 1):
        monkeypatch.setattr(importers, "WORKERS", workers)
        out = tmp_path / f"w{workers}"
        importers.import_file(src, "alpaca", out, task_family="general", format_name="free_text", difficulty="medium")
        runs[workers] = RunDir(out)
    stamp = lambda p: {**p, "provenance": {**p["provenance"], "created_at": None}}  # noqa: E731
    assert [stamp(p) for p in runs[2].pairs()] == [stamp(p) for p in runs[1].pairs()]
    assert list(runs[2].quarantined()) == list(runs[1].quarantined())
    counts = runs[2].read_meta()["counts"]
    assert counts == runs[1].read_meta()["counts"] and counts["read"] == 1999
    assert counts["quarantined"] >= 21 and counts["read"] == counts["accepted"] + counts["quarantined"]
    for records in (list(runs[2].pairs()), list(runs[2].quarantined())):
        origins = [int((r.get("origin") or r["provenance"]["origin"]).rsplit(":", 1)[1]) for r in records]
        assert origins == sorted(origins)


def test_a_converter_quarantines_what_the_schema_refuses_with_jsonschemas_words():
    convert = RowConverter("f.jsonl", "alpaca", "general", "free_text", "medium", "imported")
    lines = convert.lines([(1, b'{"instruction": "Hi?", "output": "  "}\n'),
                           (2, b'{"instruction": "Hi?", "output": "Hello.", "task_family": ""}\n'),
                           (3, b'{"instruction": "Hi?", "output": "Hello."}\n')])
    assert [line.file for line in lines] == ["quarantine.jsonl", "pairs.jsonl"]
    first = json.loads(lines[0].data.splitlines()[0])
    assert first["reason"] == "f.jsonl:1: messages[1].content: '' should be non-empty"
    assert lines[1].data.count(b"\n") == 2  # the empty task family falls back to the default


def test_curator_import_starts_without_the_gate_teacher_and_trainer(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text('{"instruction": "Hi?", "output": "Hello."}\n')
    code = ("import sys; from curator.cli import main; "
            f"assert main(['import', {str(src)!r}, '--format', 'alpaca', '--out', {str(tmp_path / 'run')!r}]) == 0; "
            "import json; print(json.dumps(sorted({'.'.join(m.split('.')[:2 if m.startswith('curator.') else 1]) "
            "for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "INSTRUCT_CURATOR_DATA": str(tmp_path / "data")})
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "curator.importers" in loaded
    assert not loaded & {"curator.gate", "curator.teacher", "curator.generate", "trainer", "openai", "datasketch",
                         "torch", "pyarrow", "polars", "scipy"}
