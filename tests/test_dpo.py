"""`trainer fit --backend dpo`: boundary pairs from the assistant curriculum's real seed pairs, DPO steps on a real
tiny Gemma 3 continuing a real SFT run, the result evaluated by `trainer eval`."""
import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file

from curator.records import assistant_text
from curator.seeds import seed_pairs as spec_seed_pairs
from curator.spec import load_spec
from curator.text_signals import is_refusal
from tiny_model import build_tiny_model, write_fixture_release
from trainer.boundary_pairs import COMPLIANT_OPENING, boundary_pairs
from trainer.cli import main

ASSISTANT = Path(__file__).resolve().parents[1] / "specs" / "assistant.yaml"


@pytest.fixture(scope="module")
def assistant():
    return load_spec(ASSISTANT)


@pytest.fixture(scope="module")
def records(assistant, pairs):
    """Two refusal families of the assistant curriculum (refusals and look-alikes), then the starter's pairs."""
    boundary = [p for p in spec_seed_pairs(assistant) if p["task_family"] in ("refuse_weapons", "refuse_harassment")]
    return boundary + pairs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, records) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", records)


@pytest.fixture
def release(tmp_path, monkeypatch, assistant, records) -> Path:
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    return write_fixture_release(tmp_path / "data" / "releases", assistant, train=records, eval=records[:4])


def test_boundary_pairs_prefer_refusing_harm_and_answering_lookalikes(records, pairs):
    found = boundary_pairs(records)
    refusals = {}
    for r in records:
        if is_refusal(assistant_text(r)):
            refusals.setdefault(r["task_family"], set()).add(assistant_text(r))
    assert {"refuse_weapons", "refuse_harassment", "refuse"} == set(refusals)  # the starter's `refuse` family too
    boundary = [r for r in records if r["task_family"] in refusals]
    assert [p["id"] for p in found] == [r["id"] for r in boundary]  # one a row, none from the other families
    by_id = {r["id"]: r for r in boundary}
    kinds = {"refusal": 0, "lookalike": 0}
    for pair in found:
        record = by_id[pair["id"]]
        kinds[pair["kind"]] += 1
        assert pair["prompt"] == [m for m in record["messages"] if m["role"] != "assistant"]
        assert pair["chosen"] == assistant_text(record)
        if pair["kind"] == "refusal":
            assert is_refusal(pair["chosen"]) and pair["rejected"] == COMPLIANT_OPENING
        else:
            assert not is_refusal(pair["chosen"]) and pair["rejected"] in refusals[record["task_family"]]
    assert kinds["refusal"] >= 30 and kinds["lookalike"] >= 30
    lookalike_rejections = [p["rejected"] for p in found if p["kind"] == "lookalike"]
    assert len(set(lookalike_rejections)) > 10  # the family's refusals in turn, not one refusal for all
    assert boundary_pairs([r for r in pairs if r["task_family"] != "refuse"]) == []  # no refusal family, no pairs


def test_dpo_starts_at_the_sft_model_and_learns_the_preferred_answers(tiny_model, release, tmp_path):
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "2", "--out", str(sft)]) == 0
    argv = ["fit", "--backend", "dpo", "--dataset", "release-v1", "--model", str(tiny_model), "--init-adapter", str(sft),
            "--steps", "12", "--batch-size", "8", "--lr", "0.005", "--warmup-steps", "0", "--out", str(dpo)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (dpo / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    # before its first update the policy is the SFT model, which is the reference: no margin, loss log 2
    assert rows[0]["reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    late = rows[-4:]
    assert sum(r["loss"] for r in late) / 4 < math.log(2) - 0.05
    assert sum(r["reward_accuracy"] for r in late) / 4 > 0.75

    run = json.loads((dpo / "run.json").read_text())
    stats = run["fit"]["data_stats"]
    trained = [json.loads(line) for line in (dpo / "pairs.jsonl").read_text().splitlines()]
    assert stats["pairs"] == len(trained) == stats["refusal_pairs"] + stats["lookalike_pairs"]
    assert stats["pairs"] + stats["dropped_truncated"] == len(boundary_pairs(_train(release)))
    assert run["artefacts"] == {"adapter": "adapter", "tokenizer": "tokenizer", "pairs": "pairs.jsonl"}
    start, end = load_file(sft / "adapter" / "adapter_model.safetensors"), load_file(dpo / "adapter" / "adapter_model.safetensors")
    assert start.keys() == end.keys() and any(not start[k].equal(end[k]) for k in start)  # the SFT adapter, trained on

    assert main(["eval", "--model", str(dpo), "--suites", "none", "--limit", "2", "--max-new-tokens", "4"]) == 0
    assert "dpo" in (dpo / "README.md").read_text() and (dpo / "eval.json").is_file()


def _train(release: Path) -> list[dict]:
    from curator.release.store import read_split
    return read_split(release, "train")


@pytest.mark.parametrize(("extra", "message"), [
    (["--init-adapter", "x"], "init_adapter is a setting of the dpo backend, not of 'sft'"),
    (["--backend", "dpo", "--init-adapter", "/nowhere"], "/nowhere: neither a finished trainer run"),
    (["--backend", "dpo", "--dpo-beta", "0"], "dpo_beta must be > 0"),
])
def test_dpo_settings_are_checked(tiny_model, release, tmp_path, capsys, extra, message):
    assert main(["fit", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1", "--out",
                 str(tmp_path / "run"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_dpo_needs_a_refusal_family(tiny_model, tmp_path, monkeypatch, spec, pairs, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    answered = [r for r in pairs if r["task_family"] != "refuse"]
    write_fixture_release(tmp_path / "data" / "releases", spec, train=answered, eval=answered[:2])
    argv = ["fit", "--backend", "dpo", "--dataset", "release-v1", "--model", str(tiny_model), "--steps", "1",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "no preference pairs: the train split has no refusal family" in capsys.readouterr().err
