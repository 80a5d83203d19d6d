"""The whole mission through the command lines: generate (real gemma on llama.cpp) + import → gate → verify → fit → eval."""
import json
from pathlib import Path

import yaml

from curator.cli import main as curator
from curator.release.store import read_split
from curator.rundir import RunDir
from tests.tiny_model import build_tiny_model, seed_pairs, starter_spec
from trainer.cli import main as trainer

STARTER = Path(__file__).resolve().parents[1] / "specs" / "starter.yaml"


def test_spec_to_evaluated_model(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    # the starter curriculum, with thresholds loose enough for 6 pairs from a 270M base teacher
    doc = yaml.safe_load(STARTER.read_text())
    doc["gate"].update(min_train_rows=2, max_reject_share=1.0, mix_tolerance=1.0)
    doc["teacher"]["sampling"]["max_tokens"] = 96
    spec_path = tmp_path / "e2e.yaml"
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))

    # 1. synthetic pairs from the embedded teacher, started and stopped by curator itself
    assert curator(["generate", str(spec_path), "--pairs", "6", "--cache", str(tmp_path / "cache.sqlite")]) in (0, 1)
    [gen_dir] = list((data / "runs").iterdir())
    gen = RunDir(gen_dir)
    counts = gen.read_meta()["counts"]
    assert counts["accepted"] + counts["quarantined"] + counts["failed"] == 6

    # 2. human-written pairs enter the same way
    human = tmp_path / "human.jsonl"
    human.write_text("".join(json.dumps({"messages": p["messages"], "task_family": p["task_family"],
                                         "format": p["format"], "difficulty": p["difficulty"]}) + "\n"
                             for p in seed_pairs(starter_spec())))
    assert curator(["import", str(human), "--format", "openai-chat", "--source", "human", "--out", str(data / "runs" / "human")]) == 0

    # 3. the gate writes a certified release whose counts add up
    assert curator(["gate", str(gen_dir), str(data / "runs" / "human"), "--spec", str(spec_path)]) == 0
    release = data / "releases" / "release-v1"
    manifest = json.loads((release / "manifest.json").read_text())
    n_in = manifest["counts"]["input"]
    assert n_in == counts["accepted"] + len(seed_pairs(starter_spec()))
    assert manifest["files"]["train.parquet"]["rows"] + manifest["files"]["eval.parquet"]["rows"] \
        + manifest["files"]["rejected.parquet"]["rows"] == n_in
    assert curator(["verify", "release-v1"]) == 0
    sources = {r["provenance"]["source"] for r in read_split(release, "train") + read_split(release, "eval")}
    assert "human" in sources

    # 4. fit (a tiny config-built model keeps this fast) and 5. eval, base beside tuned
    model = build_tiny_model(tmp_path / "tiny", seed_pairs(starter_spec()))
    out = tmp_path / "run"
    assert trainer(["fit", "--dataset", "release-v1", "--model", str(model), "--steps", "3", "--batch-size", "2", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "release-v1" in card and json.loads((release / "certificate.json").read_text())["manifest_sha256"] in card
    assert trainer(["eval", "--model", str(out), "--max-new-tokens", "8"]) == 0
    report = json.loads((out / "eval.json").read_text())
    families = {r["task_family"] for r in read_split(release, "eval")}
    assert families and families <= set(report["families"])
    capsys.readouterr()
