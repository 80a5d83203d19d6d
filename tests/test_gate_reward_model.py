"""The `reward_model` gate check with tiny BERT sequence-classification models built from a config and saved
as real Hugging Face directories (a word-level tokenizer, no download)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from curator.errors import CuratorError
from curator.gate.check import Row
from curator.gate.checks.reward_model import RewardModel
from curator.gate.pipeline import run_gate
from curator.records import build_messages, make_pair
from curator.release.store import read_ledger, read_split
from curator.rundir import RunDir
from curator.spec import RewardModelConfig, load_spec
from generate_helpers import STARTER

PAIRS = [
    ("Name a colour.", "Blue."),
    ("What is two plus two?", "Four."),
    ("Summarize the text in one sentence.", "The council approved a bike lane expansion."),
    ("Classify the sentiment of the review.", "positive"),
    ("Give one fruit.", "An apple."),
    ("Translate hello into French.", "Bonjour."),
]
WORDS = sorted({w.strip(".,?").lower() for pair in PAIRS for text in pair for w in text.split()})


def tiny_reward_model(directory: Path, labels: int) -> Path:
    """A 1-layer BERT with a `labels`-way head and a word-level vocabulary of PAIRS, saved to `directory`."""
    directory.mkdir(parents=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", *WORDS]) + "\n")
    tokenizer = BertTokenizer(str(vocab))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=labels)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def rows() -> list[Row]:
    return [Row(make_pair(build_messages(q, "", a), task_family="qa", format="free_text", difficulty="easy",
                          source="human"), "runs/fixture", i + 1, i) for i, (q, a) in enumerate(PAIRS)]


def test_one_label_head_writes_the_logit_and_the_threshold_rejects_below_it(tmp_path):
    path = tiny_reward_model(tmp_path / "rm", labels=1)
    config = RewardModelConfig(enabled=True, path=str(path), batch_size=4)
    scored = rows()
    result = RewardModel(config).run(scored)
    assert len(result.kept) == 6 and not result.rejected and result.stats["score"] == "logit"
    values = [r.scores["reward"] for r in scored]
    assert len(set(values)) == 6  # each pair its own score
    assert result.stats["min"] == min(values) and result.stats["max"] == max(values)

    threshold = sorted(values)[3]
    again = rows()
    strict = RewardModel(dataclasses.replace(config, threshold=threshold, batch_size=5)).run(again)
    assert [r.scores["reward"] for r in again] == pytest.approx(values, abs=1e-5)  # batching does not change scores
    assert {x.row.id for x in strict.rejected} == {r.id for r, v in zip(scored, values) if v < threshold}
    assert len(strict.rejected) == 3 and strict.stats["removed"] == 3
    assert all(x.reason.startswith("reward_model:low_score: ") and x.reason.endswith(f" < {threshold:g}")
               for x in strict.rejected)


def test_two_label_head_writes_the_positive_class_probability(tmp_path):
    path = tiny_reward_model(tmp_path / "rm2", labels=2)
    scored = rows()
    result = RewardModel(RewardModelConfig(enabled=True, path=str(path))).run(scored)
    assert result.stats["score"] == "p(label 1)"
    assert all(0.0 < r.scores["reward"] < 1.0 for r in scored)


def test_unusable_models_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(CuratorError, match="needs path"):
        RewardModel(RewardModelConfig(enabled=True))
    with pytest.raises(CuratorError, match="not a Hugging Face model directory"):
        RewardModel(RewardModelConfig(enabled=True, path=str(tmp_path))).run(rows())
    three = tiny_reward_model(tmp_path / "rm3", labels=3)
    with pytest.raises(CuratorError, match="3-label head"):
        RewardModel(RewardModelConfig(enabled=True, path=str(three))).run(rows())
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(CuratorError, match=r"pip install 'instruct-curator\[train\]'") as error:
        RewardModel(RewardModelConfig(enabled=True, path=str(three))).run(rows())
    assert "\n" not in str(error.value)


def test_gate_run_writes_rewards_and_a_duplicate_cluster_keeps_the_best_rewarded_row(tmp_path):
    model = tiny_reward_model(tmp_path / "rm", labels=1)
    doc = yaml.safe_load(STARTER.read_text())
    doc["gate"].update({"content_defects": {"language": None}, "reward_model": {"enabled": True, "path": "rm"}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.gate.reward_model.path == str(model)
    # first, an exact duplicate (once normalised) of PAIRS[0] that the model scores lower: without the reward,
    # the earliest row of the cluster would be kept (equal normalised lengths)
    variant = ("name a colour", "blue")
    records = [make_pair(build_messages(q, "", a), task_family="summarize", format="free_text", difficulty="easy",
                         length_band="short", source="human") for q, a in [variant, *PAIRS]]
    run = RunDir(tmp_path / "run")
    run.create({"kind": "test", "status": "complete"})
    for record in records:
        run.add_pair(record)

    report = run_gate([run.path], spec, root=tmp_path / "releases")
    kept = read_split(report.release, "train") + read_split(report.release, "eval")
    assert all(isinstance(r["scores"]["reward"], float) for r in kept)
    duplicate = next(e for e in read_ledger(report.release) if e["check"] == "exact_dedup")
    keeper = next(r for r in kept if r["id"] == duplicate["duplicate_of"])
    assert (duplicate["id"], keeper["id"]) == (records[0]["id"], records[1]["id"])
    assert keeper["scores"]["reward"] > duplicate["scores"]["reward"]
    stats = next(c["stats"] for c in report.manifest["checks"] if c["name"] == "reward_model")
    assert stats["checked"] == 7 and stats["score"] == "logit"
