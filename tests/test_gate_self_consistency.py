"""The `self_consistency` gate check: its answer extractors on hand-written replies, and a gate run with the
real embedded llama.cpp teacher (k=2 samples on two label rows: mechanics, the release and the response cache)."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from curator.gate.check import Row
from curator.gate.checks.self_consistency import SelfConsistency, default_families, final_answer
from curator.gate.pipeline import run_gate
from curator.records import build_messages, make_pair
from curator.release.store import read_ledger, read_split
from curator.rundir import RunDir
from curator.spec import load_spec
from generate_helpers import write_spec

LABELS = ("positive", "negative", "neutral")


@pytest.mark.parametrize("text, answer", [
    ("positive", "positive"), ("Positive.", "positive"), ('"neutral"', "neutral"), (" NEGATIVE! ", "negative"),
    ("mixed", None), ("positive, mostly", None), ("The sentiment is positive", None), ("", None),
])
def test_label_answers(text, answer):
    assert final_answer(text, "label", LABELS) == answer


@pytest.mark.parametrize("text, answer", [
    ('{"names": ["Tom", "Maria"], "places": ["Oslo"]}', '{"names":["Maria","Tom"],"places":["Oslo"]}'),
    ('Here it is: {"places": [" Oslo"], "names": ["Maria", "Tom"]} done', '{"names":["Maria","Tom"],"places":["Oslo"]}'),
    ('{"names": []}', '{"names":[]}'),
    ('{"names": ["Tom",]}', None), ("no json here", None), ("}{", None),
])
def test_json_answers_are_canonical(text, answer):
    assert final_answer(text, "json") == answer


@pytest.mark.parametrize("text, answer", [
    ("She has 3 apples and buys 4 more, so 7.\n#### 7", "7"),
    ("12 boxes of 10 give 120. #### 1,200", "1200"),
    ("First 2 + 2 = 4. The answer is 4.", "4"),
    ("The answer is: $12.50 in total, not 13", "12.5"),
    ("3 trains, 2 stops each: 6 stops", "6"),
    ("-4 degrees", "-4"),
    ("No numbers at all.", None),
])
def test_number_answers(text, answer):
    assert final_answer(text, "text") == answer


def test_default_families_are_the_checkable_ones(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert default_families(spec) == ("classify", "extract", "reason")


def label_records(spec) -> list[dict]:
    """The two classify seeds as label pairs, and one summarize pair (a family without a checkable answer)."""
    family = spec.family("classify")
    records = [make_pair(build_messages(seed.instruction, seed.input, seed.output), task_family="classify",
                         format="label", difficulty=seed.difficulty, length_band=family.length_band, source="human")
               for seed in family.seeds[:2]]
    summary = spec.family("summarize").seeds[0]
    return records + [make_pair(build_messages(summary.instruction, summary.input, summary.output),
                                task_family="summarize", format="free_text", difficulty="easy", length_band="short",
                                source="human")]


def test_each_sample_is_the_same_request_with_its_own_seed(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    check = SelfConsistency(spec, dataclasses.replace(spec.gate.self_consistency, samples=3))
    requests = check.samples(Row(label_records(spec)[0], "runs/fixture", 1, 0))
    assert len({r.key for r in requests}) == 3 and len({r.prompt for r in requests}) == 1
    assert len({r.sampling["seed"] for r in requests}) == 3


def test_gate_run_with_the_embedded_teacher_votes_on_label_rows_and_a_rerun_is_free(tmp_path):
    doc = yaml.safe_load(write_spec(tmp_path, max_tokens=8).read_text())  # teacher.base_url null: embedded server
    doc["gate"]["self_consistency"] = {"enabled": True, "samples": 2, "cache": "teacher-cache.sqlite"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(tmp_path / "spec.yaml")
    run = RunDir(tmp_path / "run")
    run.create({"kind": "test", "status": "complete"})
    for record in label_records(spec):
        run.add_pair(record)

    first = run_gate([run.path], spec, root=tmp_path / "releases")
    stats = next(c["stats"] for c in first.manifest["checks"] if c["name"] == "self_consistency")
    assert stats["calls"] == 4 and stats["cached"] == 0 and stats["completion_tokens"] > 0
    assert stats["not_applicable"] == 1 and stats["no_answer"] == 0
    assert stats["compared"] + stats["no_teacher_answer"] == 2 and sum(stats["agreement"].values()) == stats["compared"]
    print("self_consistency:", stats)
    kept = read_split(first.release, "train") + read_split(first.release, "eval")
    rejected = [e for e in read_ledger(first.release) if e["check"] == "self_consistency"]
    for record in kept + [e["record"] | {"scores": e["scores"]} for e in rejected]:
        if record["task_family"] == "summarize":
            assert "self_consistency" not in record["scores"]
        elif stats["no_teacher_answer"] == 0:
            assert record["scores"]["self_consistency"] in (0.0, 0.5, 1.0)
    for entry in rejected:
        label = entry["record"]["messages"][-1]["content"]
        assert entry["reason"].startswith(f"self_consistency:disagrees: answer {label}, teacher majority ")
        assert entry["reason"].endswith("/2)") and entry["scores"]["self_consistency"] < 1.0

    again = run_gate([run.path], spec, root=tmp_path / "releases-again")
    stats_again = next(c["stats"] for c in again.manifest["checks"] if c["name"] == "self_consistency")
    assert stats_again["calls"] == 0 and stats_again["cached"] == 4
    assert sorted(e["reason"] for e in read_ledger(again.release) if e["check"] == "self_consistency") == \
        sorted(e["reason"] for e in rejected)
