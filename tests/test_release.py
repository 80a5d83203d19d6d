"""`curator verify` and `curator releases` on real releases written by the gate."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from curator.cli import main
from curator.records import build_messages, make_pair
from curator.rundir import RunDir
from shared_data import mix_path


SPEC = """
name: release-test
difficulty_levels: [medium]
length_bands: [{name: any, min_words: 1, max_words: 400}]
formats: [{name: free_text, kind: text}]
gate: {eval_fraction: 0.25, min_train_rows: 3}
task_families:
  - {name: math, share: 1.0, description: Word problems., formats: [free_text], length_band: any}
"""


def gsm8k_pairs(n: int, skip: int = 0) -> list[dict]:
    out = []
    with open(mix_path(), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["source"] != "gsm8k":
                continue
            if skip:
                skip -= 1
                continue
            out.append(make_pair(build_messages(row["instruction"], "", row["output"]), task_family="math",
                                 format="free_text", difficulty="medium", source="synthetic"))
            if len(out) == n:
                return out
    raise AssertionError("not enough gsm8k rows")


@pytest.fixture()
def releases(tmp_path, monkeypatch):
    """release-v1 (certified, 12 rows) and release-v2 (not certified: 2 rows, min_train_rows is 3)."""
    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    spec = tmp_path / "release-test.yaml"
    spec.write_text(SPEC)
    for name, pairs in (("big", gsm8k_pairs(12)), ("small", gsm8k_pairs(2, skip=12))):
        run = RunDir(data / "runs" / name)
        run.create({"kind": "test", "status": "complete"})
        for p in pairs:
            run.add_pair(p)
    assert main(["gate", "big", "--spec", str(spec)]) == 0
    assert main(["gate", "small", "--spec", str(spec)]) == 1
    return data / "releases"


def _make_writable(path: Path) -> None:
    path.chmod(0o644)


def test_verify_accepts_an_intact_certified_release(releases, capsys):
    capsys.readouterr()
    assert main(["verify", "release-v1"]) == 0
    out = capsys.readouterr().out
    assert "release-v1: ok" in out and "train 9, eval 3" in out


def test_verify_refuses_an_uncertified_release_unless_allowed(releases, capsys):
    capsys.readouterr()
    assert main(["verify", "v2"]) == 2
    assert "not certified (failed: min_train_rows)" in capsys.readouterr().err
    assert main(["verify", "latest", "--allow-uncertified"]) == 0


def test_verify_names_a_tampered_parquet(releases, capsys):
    train = releases / "release-v1" / "train.parquet"
    _make_writable(train)
    with open(train, "ab") as f:
        f.write(b"\0")
    capsys.readouterr()
    assert main(["verify", "release-v1"]) == 2
    err = capsys.readouterr().err
    assert f"{train}: changed since release (sha256 mismatch)" in err
    assert "eval.parquet" not in err


def test_verify_names_a_deleted_file(releases, capsys):
    evals = releases / "release-v1" / "eval.parquet"
    os.remove(evals)
    capsys.readouterr()
    assert main(["verify", "1"]) == 2
    assert f"{evals}: missing" in capsys.readouterr().err


def test_verify_names_an_edited_manifest(releases, capsys):
    manifest = releases / "release-v1" / "manifest.json"
    _make_writable(manifest)
    doc = json.loads(manifest.read_text())
    doc["certified"] = True
    doc["counts"]["train"] += 1
    manifest.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["verify", "release-v1"]) == 2
    assert "manifest.json: changed since the certificate was issued" in capsys.readouterr().err


def test_verify_names_an_unknown_release(releases, capsys):
    capsys.readouterr()
    assert main(["verify", "release-v9"]) == 2
    assert "known: release-v1, release-v2" in capsys.readouterr().err


def test_releases_lists_every_release(releases, capsys):
    capsys.readouterr()
    assert main(["releases"]) == 0
    lines = capsys.readouterr().out.splitlines()
    v1 = next(ln for ln in lines if "release-v1" in ln).split()
    v2 = next(ln for ln in lines if "release-v2" in ln).split()
    assert v1[3:] == ["9", "3", "yes", "release-test", "big"]
    assert v2[3:] == ["1", "1", "no", "release-test", "small"]
