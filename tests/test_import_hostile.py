"""`curator import` on hostile input: every bad row is quarantined with file:line and the field, the good rows are
kept, and an import killed with -9 resumes with the same command to exactly what an uninterrupted one writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curator.cli import main
from curator.importers import WORKERS
from curator.rundir import RunDir
from shared_data import mix_path

ROOT = Path(__file__).resolve().parents[1]
GOOD = b'{"instruction": "Say hi.", "output": "Hi."}'


def _import(src: Path, out: Path, fmt: str = "alpaca") -> int:
    return main(["import", str(src), "--format", fmt, "--out", str(out)])


def _reasons(out: Path) -> dict[str, str]:
    return {q["origin"].rsplit(":", 1)[1]: q["reason"] for q in RunDir(out).quarantined()}


def test_bad_lines_are_quarantined_and_the_rest_kept(tmp_path):
    lines = [
        GOOD,
        b'{"instruction": "caf\xe9", "output": "latin-1 byte"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"instruction": "\\ud800", "output": "lone surrogate"}',
        b'{"instruction": "a\\u0000b", "output": "NUL"}',
        b'{"instruction": "ok", "output": "fine", "task_family": ["x"]}',
        b'{"instruction": "Name a colour.", "output": "Blue."}',
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")  # a BOM must not cost the first row
    out = tmp_path / "run"
    assert _import(src, out) == 0
    assert RunDir(out).read_meta()["counts"] == {"read": 7, "accepted": 2, "quarantined": 5}
    assert [p["provenance"]["origin"] for p in RunDir(out).pairs()] == [f"{src}:1", f"{src}:7"]
    reasons = _reasons(out)
    assert reasons["2"] == f"{src}:2: invalid UTF-8 at byte 20"
    assert reasons["3"] == f"{src}:3: nested deeper than 64 levels"
    assert reasons["4"] == f"{src}:4: field instruction: lone surrogate U+D800 (an invalid UTF-8 byte or escape)"
    assert reasons["5"] == f"{src}:5: field instruction: NUL character"
    assert reasons["6"] == f"{src}:6: field 'task_family' must be a string, got list"
    raw = [q["raw"] for q in RunDir(out).quarantined()]
    assert raw[0] == '{"instruction": "caf\\xe9", "output": "latin-1 byte"}'  # the bytes, readable, no decode error


def test_a_latin1_file_is_quarantined_row_by_row(tmp_path):
    src = tmp_path / "latin1.jsonl"
    src.write_bytes('{"instruction": "café?", "output": "oui"}\n{"instruction": "tea?", "output": "yes"}\n'.encode("latin-1"))
    assert _import(src, tmp_path / "run") == 0
    assert RunDir(tmp_path / "run").read_meta()["counts"] == {"read": 2, "accepted": 1, "quarantined": 1}


def test_sharegpt_speaker_of_the_wrong_type(tmp_path):
    src = tmp_path / "share.jsonl"
    src.write_text(json.dumps({"conversations": [{"from": ["human"], "value": "hi"}, {"from": "gpt", "value": "yo"}]}) + "\n")
    assert _import(src, tmp_path / "run", "sharegpt") == 0
    assert "conversations[0].from: expected one of" in _reasons(tmp_path / "run")["1"]


def test_a_json_array_file_names_the_bad_element_and_keeps_the_others(tmp_path):
    src = tmp_path / "rows.json"
    src.write_bytes(b'\xef\xbb\xbf[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "output": },\n '
                    + b"[" * 3000 + b"]" * 3000 + b',\n {"instruction": "\xff", "output": "z"},\n'
                    b' {"instruction": "e", "output": "f"}\n]')
    out = tmp_path / "run"
    assert _import(src, out) == 0
    assert RunDir(out).read_meta()["counts"] == {"read": 5, "accepted": 2, "quarantined": 3}
    assert [r for r in _reasons(out).values()] == [
        f"{src}:3: element 1: invalid JSON: Expecting value",
        f"{src}:4: element 2: nested deeper than 64 levels",
        f"{src}:5: element 3: field instruction: lone surrogate U+DCFF (an invalid UTF-8 byte or escape)",
    ]
    bom_only = tmp_path / "bom.json"
    bom_only.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"instruction": "a", "output": "b"}]).encode())
    assert _import(bom_only, tmp_path / "bom") == 0
    assert len(list(RunDir(tmp_path / "bom").pairs())) == 1


def test_a_row_nested_too_deep_is_quarantined_as_its_text(tmp_path):
    """Written back as JSON, a 600-deep row could exhaust the recursion limit: the quarantine keeps its text."""
    deep = b"[" * 600 + b"]" * 600
    for name, data in (("rows.jsonl", GOOD + b"\n" + deep + b"\n"), ("rows.json", b"[" + GOOD + b", " + deep + b"]")):
        src, out = tmp_path / name, tmp_path / f"run-{name}"
        src.write_bytes(data)
        assert _import(src, out) == 0
        [entry] = RunDir(out).quarantined()
        assert "nested deeper than 64 levels" in entry["reason"]
        assert entry["raw"] == deep.decode()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_import_killed_with_minus_9_resumes_exactly(tmp_path, capsys):
    """A real `curator import` of 30,000 real rows killed mid-way, then the same command: the run equals one
    imported without interruption, read = accepted + quarantined, and the killed import's worker processes are
    gone with it."""
    src = tmp_path / "mix.jsonl"
    with open(mix_path(), "rb") as f:
        src.write_bytes(b"".join(f.readline() for _ in range(30000)))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _import(src, whole) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "curator.cli", "import", str(src), "--format", "alpaca",
                             "--out", str(cut)], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / "pairs.jsonl").exists() or (cut / "pairs.jsonl").stat().st_size < 200_000:
        assert proc.poll() is None and time.monotonic() < deadline, "import finished before it could be killed"
        time.sleep(0.01)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(workers) == (WORKERS if WORKERS > 1 else 0)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a worker process outlived the killed import"
        time.sleep(0.05)
    assert RunDir(cut).read_meta()["status"] == "running"
    assert 0 < sum(1 for _ in RunDir(cut).pairs()) < 29000
    assert _import(src, cut) == 0
    meta = RunDir(cut).read_meta()
    assert meta["status"] == "complete" and len(meta["resumed_at"]) == 1
    assert meta["counts"] == RunDir(whole).read_meta()["counts"]
    assert meta["counts"]["read"] == 30000 == meta["counts"]["accepted"] + meta["counts"]["quarantined"]
    strip = lambda p: {k: v for k, v in p["provenance"].items() if k != "created_at"}  # noqa: E731
    assert [(p["id"], strip(p)) for p in RunDir(cut).pairs()] == [(p["id"], strip(p)) for p in RunDir(whole).pairs()]
    assert [q["origin"] for q in RunDir(cut).quarantined()] == [q["origin"] for q in RunDir(whole).quarantined()]


def test_a_worker_killed_mid_import_is_one_line_and_the_import_resumes(tmp_path):
    """A worker process of a real `curator import` killed with -9: the import stops with one line naming it (exit 2),
    and the same command completes the run, every row accounted for once."""
    if WORKERS < 2:
        pytest.skip("one CPU: import runs without worker processes")
    src = tmp_path / "mix.jsonl"
    with open(mix_path(), "rb") as f:
        src.write_bytes(b"".join(f.readline() for _ in range(30000)))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "curator.cli", "import", str(src), "--format", "alpaca",
                             "--out", str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while not (workers := _children(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline, "import finished before a worker could be killed"
        time.sleep(0.01)
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.strip().startswith("curator: error: ") and "a worker process died" in err and err.strip().count("\n") == 0
    assert _import(src, out) == 0
    counts = RunDir(out).read_meta()["counts"]
    assert counts["read"] == 30000 == counts["accepted"] + counts["quarantined"]
    origins = [p["provenance"]["origin"] for p in RunDir(out).pairs()] + [q["origin"] for q in RunDir(out).quarantined()]
    assert len(set(origins)) == len(origins) == 30000


def test_a_full_disk_is_one_line_exit_3_and_the_import_resumes(tmp_path, capsys):
    """A real `curator import` under a file-size limit (writes fail with EFBIG, as on a full disk), then the same
    command without it."""
    import resource

    src = tmp_path / "mix.jsonl"
    with open(mix_path(), "rb") as f:
        src.write_bytes(b"".join(f.readline() for _ in range(2000)))
    out = tmp_path / "run"
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # noqa: E731
    done = subprocess.run([sys.executable, "-m", "curator.cli", "import", str(src), "--format", "alpaca", "--out", str(out)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit, capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().endswith("free space, then rerun the same command (runs resume)")
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0
    assert _import(src, out) == 0
    counts = RunDir(out).read_meta()["counts"]
    assert counts["read"] == 2000 == counts["accepted"] + counts["quarantined"]
