"""`curator export`: a real gated release (plus a multi-turn and a system-prompt pair) read back by the
tools each format is for: Hugging Face `datasets`, TRL's SFTTrainer with a tiny real model, and JSONL readers."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from curator.cli import main
from curator.hashing import sha256_file
from curator.records import build_messages, make_pair
from curator.release.export import alpaca_skip_reason
from curator.release.store import Conclusion, read_ledger, read_split, verify_release, write_release
from test_lineage_diff import build_world
from tiny_model import MULTI_TURN

STORE_KEYS = {"release", "name", "notes", "version", "created_at", "tool_version", "files", "certified"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The gated world, and release-v3: release-v2's rows plus a multi-turn pair and a system-prompt pair."""
    data = tmp_path_factory.mktemp("export") / "data"
    w = build_world(data)
    manifest = verify_release(w.v2)
    extra = [
        make_pair(MULTI_TURN, task_family="qa", format="free_text", difficulty="medium", source="human"),
        make_pair(build_messages("Name the largest planet.", "", "Jupiter.", system="Answer in one word."),
                  task_family="qa", format="free_text", difficulty="medium", source="human"),
    ]
    v3 = write_release(train=read_split(w.v2, "train") + extra, eval=read_split(w.v2, "eval"),
                       rejected=read_ledger(w.v2), conclusion=Conclusion({k: v for k, v in manifest.items() if k not in STORE_KEYS}, []),
                       root=data / "releases")
    return {"data": data, "v2": w.v2, "v3": v3, "extra": extra}


@pytest.fixture()
def data(world, monkeypatch):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(world["data"]))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(world["data"].parent / "hf-cache"))
    return world


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _export(release: str, fmt: str, out: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["export", release, "--to", fmt, "--out", str(out)]) == 0
    return capsys.readouterr().out


def test_release_parquet_loads_in_datasets_as_is(data, tmp_path):
    v2 = data["v2"]
    ds = datasets.load_dataset("parquet", data_files={s: str(v2 / f"{s}.parquet") for s in ("train", "eval")},
                               cache_dir=str(tmp_path / "cache"))
    for split in ("train", "eval"):
        records = read_split(v2, split)
        assert ds[split]["id"] == [r["id"] for r in records]
        assert ds[split][0]["messages"] == records[0]["messages"]
        assert json.loads(ds[split][0]["provenance"]) == records[0]["provenance"]


def test_hf_export_is_a_loadable_dataset_repository(data, tmp_path, capsys):
    out = tmp_path / "hf"
    _export("release-v2", "hf", out, capsys)
    manifest = verify_release(data["v2"])
    for split in ("train", "eval"):
        assert sha256_file(out / "data" / f"{split}.parquet") == manifest["files"][f"{split}.parquet"]["sha256"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "## Composition" in card
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    assert {s: len(ds[s]) for s in ds} == {"train": manifest["counts"]["train"], "eval": manifest["counts"]["eval"]}
    summary = json.loads((out / "export.json").read_text())
    assert summary["manifest_sha256"] == json.loads((data["v2"] / "certificate.json").read_text())["manifest_sha256"]


def test_hf_disk_export_reloads_with_load_from_disk(data, tmp_path, capsys):
    out = tmp_path / "disk"
    _export("release-v3", "hf-disk", out, capsys)
    ds = datasets.load_from_disk(str(out))
    train = read_split(data["v3"], "train")
    assert ds["train"]["id"] == [r["id"] for r in train]
    assert ds["train"][len(train) - 2]["messages"] == data["extra"][0]["messages"]


def test_openai_and_trl_exports_are_message_lists(data, tmp_path, capsys):
    for fmt in ("openai", "trl"):
        out = tmp_path / fmt
        _export("release-v3", fmt, out, capsys)
        for split in ("train", "eval"):
            rows, records = _jsonl(out / f"{split}.jsonl"), read_split(data["v3"], split)
            assert rows == [{"messages": r["messages"]} for r in records]
    assert _jsonl(tmp_path / "openai" / "train.jsonl")[-2]["messages"][0] == {"role": "system",
                                                                            "content": MULTI_TURN[0]["content"]}


def test_sharegpt_export_maps_roles(data, tmp_path, capsys):
    out = tmp_path / "sharegpt"
    _export("release-v3", "sharegpt", out, capsys)
    multi = next(r for r in _jsonl(out / "train.jsonl") if r["id"] == data["extra"][0]["id"])
    assert [t["from"] for t in multi["conversations"]] == ["system", "human", "gpt", "human", "gpt"]
    assert multi["conversations"][4]["value"] == MULTI_TURN[4]["content"]


def test_alpaca_export_skips_and_counts_what_it_cannot_hold(data, tmp_path, capsys):
    out = tmp_path / "alpaca"
    printed = _export("release-v3", "alpaca", out, capsys)
    train = read_split(data["v3"], "train")
    rows = _jsonl(out / "train.jsonl")
    assert len(rows) == len(train) - 2
    first = train[0]
    assert rows[0] == {"instruction": first["messages"][0]["content"], "input": "",
                       "output": first["messages"][1]["content"]}
    skipped = json.loads((out / "export.json").read_text())["skipped"]
    assert skipped == {"has a system message (Alpaca has no system field)": 2}
    assert "skipped: 2 has a system message" in printed
    single_user_multi = make_pair(MULTI_TURN[1:], task_family="qa", format="free_text", difficulty="medium",
                                  source="human")
    assert alpaca_skip_reason(single_user_multi) == "multi-turn (2 user turns; Alpaca holds one)"


def test_export_refuses_a_non_empty_directory_and_an_uncertified_release(data, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "release-v2", "--to", "openai", "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["export", "release-v1", "--to", "openai", "--out", str(tmp_path / "v1")]) == 2
    assert "not certified" in capsys.readouterr().err
    assert main(["export", "release-v1", "--to", "openai", "--out", str(tmp_path / "v1"), "--allow-uncertified"]) == 0


def test_trl_export_is_accepted_by_sft_trainer(data, tmp_path, capsys):
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational

    from tiny_model import build_tiny_model
    from trainer.models import load_tokenizer

    out = tmp_path / "trl"
    _export("release-v3", "trl", out, capsys)
    ds = datasets.load_dataset("json", data_files={"train": str(out / "train.jsonl")},
                               cache_dir=str(tmp_path / "cache"))["train"]
    assert is_conversational(ds[0])
    model_dir = build_tiny_model(tmp_path / "tiny", read_split(data["v3"], "train")[:8])
    config = SFTConfig(output_dir=str(tmp_path / "sft"), max_length=128, report_to=[], use_cpu=True,
                       per_device_train_batch_size=2, max_steps=1, dataset_num_proc=None)
    trainer = SFTTrainer(model=str(model_dir), args=config, train_dataset=ds,
                         processing_class=load_tokenizer(model_dir))
    prepared = trainer.train_dataset
    assert len(prepared) == len(ds) and "input_ids" in prepared.column_names
    tokenizer = trainer.processing_class
    text = tokenizer.decode(prepared[len(ds) - 2]["input_ids"])
    assert "What is the capital of Norway?" in text and "Oslo." in text
    assert trainer.train().global_step == 1
