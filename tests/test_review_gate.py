"""The review ledger on disk, the figures computed from human verdicts, the queue's order, and the
`human_review` gate check on real run directories (no server: see test_review_app for the browser)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from curator.gate.check import Row
from curator.gate.pipeline import build_checks, run_checks, run_gate
from curator.records import build_messages, make_pair
from curator.review.ledger import Decisions, ReviewError, ReviewLedger, read_ledger_lines
from curator.review.queue import (Finding, Item, build_queue, load_items, numeric_findings, reason_finding,
                                  release_thresholds)
from curator.review.stats import cohen_kappa, review_summary, wilson
from curator.rundir import RunDir
from curator.spec import load_spec

SPEC = """
name: review-gate-test
description: Short answers.
difficulty_levels: [easy]
length_bands: [{name: any, min_words: 1, max_words: 200}]
formats: [{name: free_text, kind: text}]
gate:
  eval_fraction: 0.2
  minhash: {against_releases: false}
  human_review: {protect_from: [content_defects]}
task_families:
  - {name: qa, share: 1.0, description: Questions., formats: [free_text], length_band: any}
"""
QUESTIONS = ["Which planet is known as the red planet?", "What is the boiling point of water at sea level?",
             "Who wrote the play Romeo and Juliet?", "How many legs does a spider have?",
             "What gas do plants take in from the air?", "Which ocean is the largest on Earth?"]
ANSWERS = ["Mars is known as the red planet because of iron oxide on its surface.",
           "Water boils at 100 degrees Celsius at sea level.",
           "William Shakespeare wrote Romeo and Juliet around 1595.",
           "A spider has eight legs, unlike insects which have six.",
           "Plants take in carbon dioxide and release oxygen.",
           "The Pacific Ocean is the largest and deepest ocean on Earth."]


def pair(question: str, answer: str) -> dict:
    return make_pair(build_messages(question, "", answer), task_family="qa", format="free_text", difficulty="easy",
                     length_band="any", source="human", strategy="handwritten")


def decision(ledger: ReviewLedger, reviewer: str, pair_id: str, kind: str, **extra) -> dict:
    entry = {"reviewer": reviewer, "pair_id": pair_id, "decision": kind, "reason": None, "note": None,
             "field": None, "old_text": None, "new_text": None, "diff": None, "messages": None,
             "cell": ["qa", "free_text", "easy"], "sample": False, "findings": [], "undoes": None}
    return ledger.record({**entry, **extra})


@pytest.fixture()
def world(tmp_path):
    """A run of six good pairs, one placeholder answer (content_defects) and one exact duplicate."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    records = [pair(q, a) for q, a in zip(QUESTIONS, ANSWERS)]
    records += [pair("Name the capital city of France.", "N/A"), pair(QUESTIONS[0].upper(), ANSWERS[0].upper())]
    run = RunDir(tmp_path / "runs" / "r")
    run.create({"kind": "test", "status": "complete"})
    for r in records:
        run.add_pair(r)
    return {"spec": load_spec(spec_path), "records": records, "run": run, "ledger": tmp_path / "ledger.jsonl",
            "root": tmp_path / "releases"}


def rows_of(records: list[dict]) -> list[Row]:
    return [Row(r, "run", i + 1, i) for i, r in enumerate(records)]


def test_concurrent_decisions_are_each_written_once_in_seq_order_and_a_torn_tail_is_cut(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = ReviewLedger(path)
    threads = [threading.Thread(target=lambda n=n: [decision(ledger, f"r{n}", f"{i:016x}", "accept")
                                                    for i in range(40)]) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    lines = read_ledger_lines(path)
    assert [line["seq"] for line in lines] == list(range(1, 321))
    assert sorted((line["reviewer"], line["pair_id"]) for line in lines) == sorted(
        (f"r{n}", f"{i:016x}") for n in range(8) for i in range(40))
    with open(path, "ab") as f:
        f.write(b'{"seq": 321, "reviewer": "r0", "pair_id": "torn')
    reopened = ReviewLedger(path)
    with pytest.raises(ReviewError, match="in use by another"):
        ReviewLedger(path)
    assert decision(reopened, "r9", "0" * 16, "accept")["seq"] == 321
    reopened.close()
    assert path.read_text().count("\n") == 321 and path.read_text().endswith("\n")
    assert len(Decisions.of(read_ledger_lines(path)).per_pair()["0" * 16]) == 9


def test_undo_takes_back_the_reviewers_own_last_decision(tmp_path):
    ledger = ReviewLedger(tmp_path / "ledger.jsonl")
    decision(ledger, "ann", "a" * 16, "accept")
    decision(ledger, "ann", "b" * 16, "accept")
    decision(ledger, "ann", "b" * 16, "reject", reason="other")
    decision(ledger, "ben", "a" * 16, "reject", reason="other")
    undo = ledger.record({"reviewer": "ann", "decision": "undo"})
    assert (undo["undoes"], undo["pair_id"]) == (3, "b" * 16)
    state = ledger.decisions
    assert state.of_pair("b" * 16)["ann"]["decision"] == "accept"  # the earlier decision on it is live again
    assert state.of_pair("a" * 16)["ben"]["decision"] == "reject"
    ledger.record({"reviewer": "ann", "decision": "undo"})
    ledger.record({"reviewer": "ann", "decision": "undo"})
    with pytest.raises(ReviewError, match="ann has no decision to undo"):
        ledger.record({"reviewer": "ann", "decision": "undo"})
    ledger.close()
    assert Decisions.of(read_ledger_lines(tmp_path / "ledger.jsonl")).per_pair() == {"a" * 16: {"ben": state.of_pair("a" * 16)["ben"]}}


def test_kappa_and_wilson_match_textbook_values():
    table = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(table) == 0.4  # observed 0.7, chance 0.5
    assert cohen_kappa([("a", "a"), ("b", "b")]) == 1.0 and cohen_kappa([]) is None
    assert wilson(8, 10) == [0.4902, 0.9433]
    assert wilson(0, 10) == [0.0, 0.2775] and wilson(0, 0) is None


def test_precision_and_recall_count_only_the_random_sample(tmp_path):
    ledger = ReviewLedger(tmp_path / "ledger.jsonl")
    # sample: 4 flagged by pii (3 bad), 6 not flagged (1 bad); outside the sample: flagged and good (ignored)
    verdicts = ([("reject", ["pii"])] * 3 + [("accept", ["pii"])] + [("edit", [])] + [("accept", [])] * 5)
    for i, (kind, findings) in enumerate(verdicts):
        extra = {"messages": [], "field": "response"} if kind == "edit" else {}
        decision(ledger, "ann", f"{i:016x}", kind, sample=True, findings=findings, reason="other", **extra)
    decision(ledger, "ann", "f" * 16, "accept", findings=["pii"])
    decision(ledger, "ben", f"{0:016x}", "reject", reason="other")
    decision(ledger, "ben", f"{9:016x}", "reject", reason="other")
    ledger.close()
    summary = review_summary(Decisions.of(read_ledger_lines(tmp_path / "ledger.jsonl")).per_pair(),
                             {("qa", "free_text", "easy"): 20}, ["exact_dedup"])
    pii = next(c for c in summary["checks"] if c["check"] == "pii")
    assert (pii["sample"], pii["flagged"], pii["true_positive"], pii["human_bad"]) == (10, 4, 3, 5)
    assert (pii["precision"], pii["recall"]) == (0.75, 0.6)
    assert pii["precision_ci"] == wilson(3, 4) and pii["recall_ci"] == wilson(3, 5)
    never = next(c for c in summary["checks"] if c["check"] == "exact_dedup")
    assert (never["precision"], never["recall"]) == (None, 0.0)
    assert summary["coverage"] == [{"cell": ["qa", "free_text", "easy"], "rows": 20, "reviewed": 11, "share": 0.55}]
    assert summary["agreement"] == {"pairs": 2, "observed": 0.5, "kappa": 0.0}


def test_queue_puts_the_least_sure_first_then_hits_then_the_stratified_sample():
    assert reason_finding("near_dedup", "near_duplicate: cluster of 2 kept x; word 5-gram Jaccard 0.83 with it",
                          {"minhash": {"threshold": 0.8}}) == Finding(
        "near_dedup", "near_duplicate: cluster of 2 kept x; word 5-gram Jaccard 0.83 with it", 0.83, 0.8, True)
    assert reason_finding("semantic_dedup", "minilm cosine 0.962 with it (threshold 0.95)", {}).threshold == 0.95
    assert reason_finding("pii", "pii: email in user", {}).score is None
    generic = numeric_findings({"findings": {"judge": {"score": 6.5, "threshold": 7}}, "scores": {"relevance": [0.31, 0.3]}})
    assert [(f.check, f.score, f.threshold) for f in generic] == [("judge", 6.5, 7.0), ("relevance", 0.31, 0.3)]
    manifest = {"gate": {"relevance": {"threshold": 0.3}, "minhash": {"threshold": 0.8}},
                "checks": [{"name": "judge", "stats": {"threshold": 7}}, {"name": "pii", "stats": {}}]}
    assert release_thresholds(manifest) == {"relevance": 0.3, "minhash": 0.8, "judge": 7.0}
    bare = numeric_findings({"scores": {"judge": 6.9, "relevance": 0.9, "reward": 0.2}},
                            thresholds=release_thresholds(manifest))
    assert [(f.check, f.score, f.threshold) for f in bare] == [("judge", 6.9, 7.0), ("relevance", 0.9, 0.3)]

    def item(i: int, family: str, findings: list[Finding]) -> Item:
        return Item(pair(f"Question number {i} about {family}?", f"Answer {i}.") | {"task_family": family}, "kept",
                    findings)
    far, near, nearest = (Finding("judge", "", 9.0, 7.0), Finding("judge", "", 7.5, 7.0),
                          Finding("judge", "", 7.1, 7.0))
    hit = Finding("screening", "screening: flagged_ids", flagged=True)
    items = ([item(i, "qa", []) for i in range(30)] + [item(99, "qa", [far]), item(100, "qa", [near]),
                                                       item(101, "math", [nearest]), item(102, "qa", [hit])]
             + [item(200 + i, "math", []) for i in range(3)])
    queue = build_queue(items, sample_size=6, overlap=0.0, seed=1)
    assert [q.why for q in queue[:3]] == ["uncertain", "uncertain", "hit"]
    assert [q.findings for q in queue[:3]] == [[nearest], [near], [hit]]
    assert [q.flagged_by for q in queue[:3]] == [[], [], ["screening"]]
    assert far not in [f for q in queue if not q.sample for f in q.findings]  # a sure score is no reason to ask
    sample = [q for q in queue if q.sample]
    assert {q.cell[0] for q in sample} == {"qa", "math"} and len(sample) == 6  # proportional, one cell of each
    assert build_queue(items, sample_size=6, overlap=0.0, seed=1)[3].id == queue[3].id  # same seed, same queue
    assert all(q.want == 2 for q in build_queue(items, sample_size=6, overlap=1.0) if q.sample)


def test_reviewing_a_release_shows_kept_and_rejected_rows_with_their_findings(world, monkeypatch):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(world["root"].parent))
    run_gate([world["run"].path], world["spec"], root=world["root"])
    items, sources = load_items(["release-v1"])
    assert sources == [str(world["root"] / "release-v1")]
    by_status = {s: sorted(i.id for i in items if i.status == s) for s in ("kept", "rejected")}
    assert len(by_status["kept"]) == 6 and len(by_status["rejected"]) == 2
    placeholder = next(i for i in items if i.id == world["records"][6]["id"])
    assert placeholder.findings[0].check == "content_defects"


def test_gate_obeys_reject_edit_and_accept_and_protects_only_where_the_spec_says(world):
    records, ledger = world["records"], ReviewLedger(world["ledger"])
    decision(ledger, "ann", records[1]["id"], "reject", reason="wrong or unsupported answer", note="off by one")
    edited = [dict(m) for m in records[2]["messages"]]
    edited[-1]["content"] = "Shakespeare wrote it."
    decision(ledger, "ann", records[2]["id"], "edit", field="response", old_text=ANSWERS[2],
             new_text="Shakespeare wrote it.", messages=edited)
    decision(ledger, "ann", records[6]["id"], "accept")  # the placeholder: content_defects would reject it
    decision(ledger, "ann", records[7]["id"], "accept")  # the duplicate: exact_dedup is not protected against
    ledger.close()
    checks = build_checks(world["spec"], world["root"], world["ledger"])
    assert [c.name for c in checks][:2] == ["human_review", "schema"]
    kept, rejected, reports = run_checks(checks, rows_of(records))
    by_check = {r["name"]: (r["removed"], r["added"]) for r in reports}
    assert by_check["human_review"] == (2, 1) and by_check["content_defects"] == (0, 0)
    assert by_check["exact_dedup"] == (1, 0)
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons[records[1]["id"]].startswith("human_review: wrong or unsupported answer: off by one (ann, ")
    new_id = reasons[records[2]["id"]].split("replaced by ")[1].split(" ")[0]
    new = next(r.record for r in kept if r.id == new_id)
    assert new["messages"][-1]["content"] == "Shakespeare wrote it."
    assert {k: new["provenance"][k] for k in ("source", "original_id", "reviewer")} == {
        "source": "human-edited", "original_id": records[2]["id"], "reviewer": "ann"}
    assert records[6]["id"] in {r.id for r in kept}
    content = next(r for r in reports if r["name"] == "content_defects")
    assert content["stats"]["kept_by_human_accept"] == [records[6]["id"]]
    assert len(kept) + len(rejected) == len(records) + 1

    text = Path(world["spec"].path).read_text().replace("protect_from: [content_defects]", "protect_from: []")
    Path(world["spec"].path).write_text(text)
    plain = run_checks(  # the same ledger, nothing protected
build_checks(load_spec(world["spec"].path), world["root"], world["ledger"]), rows_of(records))
    assert records[6]["id"] in {r["id"] for r in plain[1] if r["check"] == "content_defects"}


def test_gate_without_a_ledger_file_is_one_clear_error(world, capsys, monkeypatch):
    from curator.cli import main
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(world["root"].parent))
    code = main(["gate", str(world["run"].path), "--spec", world["spec"].path, "--review-ledger",
                 str(world["ledger"])])
    assert code == 2
    assert f"{world['ledger']}: no review ledger there" in capsys.readouterr().err
    assert json.loads((world["run"].path / "run.json").read_text())["kind"] == "test"
