"""A process started for a `curator` command collects garbage for batch work; a caller passing argv keeps its own."""
from __future__ import annotations

import gc
import json
import subprocess
import sys

from curator.cli import main
from curator.gc_tuning import YOUNG_THRESHOLD
from curator.ordered_workers import ordered_map

PROBE = """
import gc, json, sys
from curator import cli
sys.argv = ["curator", "releases"]
code = cli.main()
print(json.dumps({"code": code, "threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_a_curator_process_sets_its_collector_for_batch_work(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=tmp_path)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0
    assert probe["threshold"][0] == YOUNG_THRESHOLD
    assert probe["frozen"] > 1_000  # the modules and objects alive at the start left out of collections


def test_main_given_argv_keeps_the_callers_collector(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path))
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert main(["releases"]) == 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def _young_threshold(_: int) -> int:
    return gc.get_threshold()[0]


def test_worker_processes_collect_for_batch_work():
    assert set(ordered_map(_young_threshold, range(4), 2)) == {YOUNG_THRESHOLD}
    assert gc.get_threshold()[0] != YOUNG_THRESHOLD  # this process is left as it was
