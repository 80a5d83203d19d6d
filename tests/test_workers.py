"""`curator generate` in worker processes (curator/generate/workers.py) against the real llama.cpp server on
loopback, with the fault proxy in front where a fault is needed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from curator.cli import main
from curator.generate.workers import worker_count
from curator.rundir import RunDir
from curator.teacher.embedded import embedded_teacher
from fault_proxy import FaultProxy
from generate_helpers import slots_on_disk, write_spec


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with embedded_teacher("gemma-3-270m", tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def generate_argv(spec: Path, out: Path, base_url: str, pairs: int, workers: int = 2) -> list[str]:
    return ["generate", str(spec), "--pairs", str(pairs), "--out", str(out), "--base-url", base_url,
            "--cache", str(out.parent / "cache.sqlite"), "--workers", str(workers), "--max-in-flight", str(workers)]


def assert_exact(run: RunDir, planned: int) -> dict:
    """Every planned slot landed once: counts add up, no slot or pair twice."""
    meta = run.read_meta()
    counts = meta["counts"]
    assert counts["planned"] == planned == counts["accepted"] + counts["quarantined"] + counts["failed"]
    slots = slots_on_disk(run)
    assert len(slots) == len(set(slots)) == planned - counts["failed"]
    ids = [p["id"] for p in run.pairs()]
    assert len(ids) == len(set(ids))
    return meta


def test_two_workers_run_the_plan_once_and_their_retries_and_tokens_are_counted(server, tmp_path):
    spec = write_spec(tmp_path, max_tokens=48)
    out = tmp_path / "run"
    with FaultProxy(server, ["429", "drop"], retry_after="0.2") as proxy:
        assert main(generate_argv(spec, out, proxy.base_url, pairs=6)) == 0
    meta = assert_exact(RunDir(out), 6)
    assert meta["counts"]["failed"] == 0
    session = meta["sessions"][-1]
    assert session["workers"] == 2 and meta["teacher"]["workers"] == 2
    usage = session["usage"]
    assert usage["requests"] == 8 and usage["retries"] == 2  # both faults, whichever worker met them
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert sum(s["outcomes"][k] for s in meta["sessions"] for k in ("accepted", "quarantined", "failed")) == 6


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class RunningGenerate:
    argv: list[str]
    run: RunDir
    proc: subprocess.Popen
    workers: list[int]
    stderr: Path


def start_and_wait_for_a_slot(server: str, tmp_path: Path, pairs: int = 6) -> RunningGenerate:
    """`curator generate` with 2 workers in a subprocess, returned once its first slot is on disk."""
    spec = write_spec(tmp_path, max_tokens=48)
    out, stderr = tmp_path / "run", tmp_path / "stderr.txt"
    argv = generate_argv(spec, out, server, pairs=pairs)
    run = RunDir(out)
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "curator.cli", *argv], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 180
    while not (run.exists() and slots_on_disk(run)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be interrupted:\n{stderr.read_text()[-2000:]}"
    return RunningGenerate(argv, run, proc, children_of(proc.pid), stderr)


def wait_gone(pids: list[int], timeout_s: float = 15) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(running(p) for p in pids)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads processes from /proc")
def test_kill_9_of_the_parent_ends_its_workers_and_a_rerun_completes_exactly(server, tmp_path):
    started = start_and_wait_for_a_slot(server, tmp_path)
    started.proc.send_signal(signal.SIGKILL)
    assert started.proc.wait() == -signal.SIGKILL
    assert len(started.workers) == 2
    assert wait_gone(started.workers), "a worker outlived its parent"
    landed = len(slots_on_disk(started.run))
    assert 1 <= landed < 6

    assert main(started.argv) == 0
    meta = assert_exact(started.run, 6)
    assert meta["sessions"][-1]["usage"]["requests"] <= 6 - landed


FORKSERVER_SCRIPT = """
import os, sys, time
from pathlib import Path
from curator.ordered_workers import ordered_map

def work(item):
    Path(sys.argv[1], str(os.getpid())).touch()
    time.sleep(600)
    return item

if __name__ == "__main__":
    for _ in ordered_map(work, range(8), 2, start_method="forkserver"):
        pass
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads processes from /proc")
def test_kill_9_of_the_parent_ends_its_forkserver_workers(tmp_path):
    """Workers forked by the forkserver (the stream gate's) die with the process that started them."""
    script, pids = tmp_path / "busy.py", tmp_path / "pids"
    script.write_text(FORKSERVER_SCRIPT)
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(script), str(pids)], env=env)
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    workers = [int(p.name) for p in pids.iterdir()]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert wait_gone(workers), "a forkserver worker outlived its parent"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads processes from /proc")
def test_a_worker_that_dies_stops_the_run_with_a_clear_error_and_a_rerun_completes_exactly(server, tmp_path):
    started = start_and_wait_for_a_slot(server, tmp_path)
    assert len(started.workers) == 2
    os.kill(started.workers[0], signal.SIGKILL)
    assert started.proc.wait(timeout=60) == 2
    assert re.search(r"generation worker \d exited \(code -9\) before finishing its slots; rerun", started.stderr.read_text())
    assert wait_gone(started.workers), "the other worker was not stopped"
    assert started.run.read_meta()["counts"]["pending"] > 0

    assert main(started.argv) == 0
    assert_exact(started.run, 6)


def test_auto_gives_a_worker_to_each_32_requests_in_flight_up_to_the_cpus(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert [worker_count("auto", n) for n in (1, 8, 63, 64, 96, 128, 4096)] == [1, 1, 1, 2, 3, 4, 4]
    assert worker_count(3, 1) == 3
