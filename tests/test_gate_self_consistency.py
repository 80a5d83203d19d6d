"""The `self_consistency` gate check: its answer extractors on hand-written replies, and the check against the
real llama.cpp teacher on loopback (k=2 samples on two label rows: mechanics and the response cache)."""
from __future__ import annotations

import dataclasses

import pytest

from curator.gate.check import Row
from curator.gate.checks.self_consistency import SelfConsistency, default_families, final_answer
from curator.records import build_messages, make_pair
from curator.spec import load_spec
from curator.teacher.embedded import embedded_teacher
from generate_helpers import write_spec

MODEL = "gemma-3-270m"
LABELS = ("positive", "negative", "neutral")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with embedded_teacher(MODEL, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


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


def label_rows(spec) -> list[Row]:
    family = spec.family("classify")
    rows = []
    for i, seed in enumerate(family.seeds[:2]):
        record = make_pair(build_messages(seed.instruction, seed.input, seed.output), task_family="classify",
                           format="label", difficulty=seed.difficulty, length_band=family.length_band, source="human")
        rows.append(Row(record, "runs/fixture", i + 1, i))
    summary = spec.family("summarize").seeds[0]
    rows.append(Row(make_pair(build_messages(summary.instruction, summary.input, summary.output), task_family="summarize",
                              format="free_text", difficulty="easy", length_band="short", source="human"),
                    "runs/fixture", 3, 2))
    return rows


def test_teacher_samples_vote_on_label_rows_and_a_rerun_is_free(server, tmp_path):
    spec = load_spec(write_spec(tmp_path, max_tokens=8, base_url=server))
    config = dataclasses.replace(spec.gate.self_consistency, enabled=True, samples=2, cache=str(tmp_path / "c.sqlite"))
    check = SelfConsistency(spec, config)
    requests = check.samples(label_rows(spec)[0])
    assert len({r.key for r in requests}) == 2 and len({r.prompt for r in requests}) == 1  # same prompt, own seeds

    rows = label_rows(spec)
    result = check.run(rows)
    stats = result.stats
    assert stats["calls"] == 4 and stats["cached"] == 0 and stats["completion_tokens"] > 0
    assert stats["not_applicable"] == 1 and stats["no_answer"] == 0
    assert stats["compared"] + stats["no_teacher_answer"] == 2
    assert sum(stats["agreement"].values()) == stats["compared"]
    assert "self_consistency" not in rows[2].scores and rows[2] in result.kept
    for row in rows[:2]:
        if "self_consistency" in row.scores:
            assert row.scores["self_consistency"] in (0.0, 0.5, 1.0)
    for x in result.rejected:
        assert x.reason.startswith(f"self_consistency:disagrees: answer {x.row.record['messages'][-1]['content']}, "
                                   "teacher majority ")
        assert x.reason.endswith("/2)") and x.row.scores["self_consistency"] < 1.0
    print("self_consistency:", stats)

    again = SelfConsistency(spec, config).run(label_rows(spec))
    assert again.stats["calls"] == 0 and again.stats["cached"] == 4
    assert [x.reason for x in again.rejected] == [x.reason for x in result.rejected]
    assert [r.scores for r in again.kept] == [r.scores for r in result.kept]
