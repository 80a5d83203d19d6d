"""One writer at a time, complete runs only, and the errors a gate can meet on disk.

Two gates started at the same moment on runs holding the same rows must not both certify them (the second
reads the first's release under the releases lock); an unfinished run is refused with how to resume it; a
gate killed with -9 leaves a staging directory that the next gate removes; a full disk exits 3.
"""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curator.cli import main as curator
from curator.gate.pipeline import run_gate
from curator.release import store
from curator.release.store import read_split, release_versions
from curator.rundir import RunDir
from curator.spec import load_spec
from generate_helpers import STARTER
from test_release import SPEC, gsm8k_pairs

ROOT = Path(__file__).resolve().parents[1]


def write_run(path: Path, pairs: list[dict], status: str = "complete") -> Path:
    run = RunDir(path)
    run.create({"kind": "test", "status": status})
    for p in pairs:
        run.add_pair(p)
    return path


@pytest.fixture
def spec_path(tmp_path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def _gate_worker(barrier, tasks, results) -> None:
    """A gate process: for each (run, spec, releases root) task, wait at the barrier with the other, then gate."""
    while (task := tasks.get()) is not None:
        run, spec_path, root = task
        barrier.wait()
        report = run_gate([run], load_spec(spec_path), root=Path(root))
        results.put((report.release.name, report.certified))


def test_two_gates_at_once_never_certify_the_same_rows(tmp_path, spec_path):
    """Repeated 10 times: two gate processes released by one barrier, each on its own run of the same 12 rows
    into a fresh releases root (processes are spawned once: polars is not fork-safe)."""
    pairs = gsm8k_pairs(12)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    queues = [ctx.Queue(), ctx.Queue()]
    procs = [ctx.Process(target=_gate_worker, args=(barrier, q, results)) for q in queues]
    for p in procs:
        p.start()
    try:
        for attempt in range(10):
            root = tmp_path / f"releases-{attempt}"
            for q, name in zip(queues, ("a", "b")):
                q.put((str(write_run(tmp_path / f"runs-{attempt}" / name, pairs)), str(spec_path), str(root)))
            got = sorted(results.get(timeout=300) for _ in procs)
            assert [name for name, _ in got] == ["release-v1", "release-v2"]
            certified_ids = [r["id"] for name, ok in got if ok for split in ("train", "eval")
                             for r in read_split(root / name, split)]
            assert len(certified_ids) == len(set(certified_ids)) == 12, f"attempt {attempt}: duplicates certified"
            assert dict(got) == {"release-v1": True, "release-v2": False}  # v2 rejected every row as a v1 duplicate
    finally:
        for q in queues:
            q.put(None)
        for p in procs:
            p.join(60)


def test_an_unfinished_run_is_refused_with_how_to_resume_it(tmp_path, spec_path, capsys):
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"instruction": p["messages"][0]["content"], "output": p["messages"][1]["content"]})
                           + "\n" for p in gsm8k_pairs(12)))
    out = tmp_path / "runs" / "imported"
    assert curator(["import", str(src), "--format", "alpaca", "--out", str(out), "--task-family", "math"]) == 0
    meta = RunDir(out).read_meta()
    RunDir(out).write_meta({**meta, "status": "running"})  # what a kill -9 leaves (see test_import_hostile for a real one)
    capsys.readouterr()
    assert curator(["gate", str(out), "--spec", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: unfinished run (status running); resume it with `curator import {src} --format alpaca --out {out}`" in err
    assert "--allow-partial" in err and not (tmp_path / "data" / "releases").exists()
    assert curator(["gate", str(out), "--spec", str(spec_path), "--allow-partial"]) == 0
    release = tmp_path / "data" / "releases" / "release-v1"
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["allow_partial"] is True and manifest["inputs"][0]["complete"] is False
    assert curator(["verify", "release-v1"]) == 0


def test_an_unreadable_run_json_is_one_line(tmp_path, spec_path, capsys):
    run = write_run(tmp_path / "runs" / "torn", gsm8k_pairs(3))
    (run / "run.json").write_text('{"kind": "te')
    capsys.readouterr()
    assert curator(["gate", str(run), "--spec", str(spec_path)]) == 2
    err = capsys.readouterr().err
    assert "run.json (JSONDecodeError" in err and err.count("\n") == 1


def test_a_staging_dir_left_by_a_killed_gate_is_removed_by_the_next(tmp_path, spec_path):
    """A real gate process killed with -9 while its release is being built (it is held just before the rename)."""
    run = write_run(tmp_path / "runs" / "a", gsm8k_pairs(12))
    root = tmp_path / "data" / "releases"
    hold = tmp_path / "hold.py"
    hold.write_text(
        "import os, sys, time\n"
        "import curator.release.store as store\n"
        "real = os.rename\n"
        "def slow(a, b):\n"
        "    if '.building-' in str(a):\n"
        "        open(sys.argv[1], 'w').close(); time.sleep(600)\n"
        "    return real(a, b)\n"
        "store.os.rename = slow\n"
        "from curator.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n")
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(hold), str(ready), "gate", str(run), "--spec", str(spec_path)], env=env)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [staging] = [p.name for p in root.iterdir() if p.name.startswith(".release-v1.building-")]
    assert staging == f".release-v1.building-{proc.pid}" and release_versions(root) == []
    assert curator(["gate", str(run), "--spec", str(spec_path)]) == 0
    assert sorted(p.name for p in root.iterdir()) == [".lock", "release-v1"]


def test_a_full_disk_exits_3_and_leaves_nothing(tmp_path, spec_path, monkeypatch, capsys):
    run = write_run(tmp_path / "runs" / "a", gsm8k_pairs(12))
    real = store._write_parquets

    def full_after_the_splits(staging, frames, schemas):
        if "train" not in schemas:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(staging, frames, schemas)

    monkeypatch.setattr(store, "_write_parquets", full_after_the_splits)
    capsys.readouterr()
    assert curator(["gate", str(run), "--spec", str(spec_path)]) == 3
    err = capsys.readouterr().err
    assert "no space left while writing release-v1" in err and "nothing was written" in err
    assert [p.name for p in (tmp_path / "data" / "releases").iterdir()] == [".lock"]


def test_run_files_never_go_into_a_release(tmp_path, spec_path, capsys):
    run = write_run(tmp_path / "runs" / "a", gsm8k_pairs(12))
    assert curator(["gate", str(run), "--spec", str(spec_path)]) == 0
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    release = tmp_path / "data" / "releases" / "release-v1"
    for out in (release, release / "sub", release.parent):
        capsys.readouterr()
        assert curator(["import", str(src), "--format", "alpaca", "--out", str(out)]) == 2
        assert "inside a release directory" in capsys.readouterr().err
    assert curator(["generate", str(STARTER), "--pairs", "1", "--out", str(release / "gen")]) == 2
    assert "inside a release directory" in capsys.readouterr().err
    assert curator(["verify", "release-v1"]) == 0


def test_report_out_refuses_a_directory_holding_other_files(tmp_path, spec_path, capsys):
    run = write_run(tmp_path / "runs" / "a", gsm8k_pairs(12))
    assert curator(["gate", str(run), "--spec", str(spec_path)]) == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert curator(["report", "release-v1", "--out", str(busy), "--no-embeddings"]) == 2
    assert "holds other files than a report" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
