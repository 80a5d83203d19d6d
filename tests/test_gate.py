"""The quality gate on real run directories built from a slice of the real instruct mix, with planted faults."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curator.cli import main
from curator.errors import CuratorError
from curator.gate.check import Row
from curator.gate.checks.near_dedup import NearDedup
from curator.gate.checks.schema import SchemaCheck
from curator.gate import expectations
from curator.gate.expectations import ExpectationsConfig, evaluate
from curator.gate.minhash import choose_bands, jaccard, word_shingles
from curator.gate.normalize import normalize, pair_text
from curator.gate.checks.exact_dedup import ExactDedup
from curator.gate.pipeline import run_checks, run_gate
from curator.gate.split import eval_count, split
from curator.records import assistant_text, build_messages, make_pair, pair_id, user_text
from curator.release import store
from curator.release.store import read_split, verify_release
from curator.rundir import RunDir
from curator.spec import MinHashConfig, load_spec
from shared_data import mix_path

TEACHER = "gemma-3-270m"

SPEC = """
name: gate-test
description: Three families over real instruct-mix text.
difficulty_levels: [easy, medium, hard]
length_bands:
  - {name: any, min_words: 1, max_words: 400}
  - {name: short, min_words: 1, max_words: 3}
formats:
  - {name: free_text, kind: text}
  - {name: label, kind: label, labels: [positive, negative]}
  - name: json_entities
    kind: json
    json_schema:
      type: object
      required: [names]
      properties:
        names: {type: array, items: {type: string}}
        places: {type: array, items: {type: string}}
refusal_policy: {max_share: 0.2}
gate:
  exact_dedup: true
  minhash: {threshold: 0.8, num_perm: 128, ngram: 5}
  eval_fraction: 0.2
  min_train_rows: 5
  max_reject_share: 0.5
  mix_tolerance: 0.15
task_families:
  - {name: qa, share: 0.6, description: Word problems., formats: [free_text], length_band: any}
  - {name: classify, share: 0.3, description: Sentiment labels., formats: [label], length_band: short}
  - {name: extract, share: 0.1, description: Names and places as JSON., formats: [json_entities], length_band: any}
"""

PEOPLE = ["Maria", "Tom", "Aiko", "Bruno", "Leila", "Sven", "Nadia", "Omar"]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Accra", "Perth", "Quito", "Riga"]
FILLER = ("the committee reviewed budgets for schools roads and parks before a long debate about housing "
          "prices transport links and the future of the harbour district").split()


def _mix_rows(source: str, keep, n: int) -> list[dict]:
    out = []
    with open(mix_path(), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["source"] == source and keep(row):
                out.append(row)
                if len(out) == n:
                    break
    return out


def qa_pair(instruction: str, output: str) -> dict:
    return make_pair(build_messages(instruction, "", output), task_family="qa", format="free_text",
                     difficulty="medium", source="synthetic", teacher_model=TEACHER)


def classify_pair(text: str, label: str) -> dict:
    return make_pair(build_messages("What sentiment does this review express?", text, label),
                     task_family="classify", format="label", difficulty="easy", source="imported")


def extract_pair(i: int, output: str | None = None) -> dict:
    rng = random.Random(i)
    names, places = rng.sample(PEOPLE, 2), rng.sample(PLACES, 2)
    story = " ".join(rng.sample(FILLER, len(FILLER)))
    text = f"{names[0]} met {names[1]} in {places[0]} and then {story} before they flew to {places[1]}."
    output = output or json.dumps({"names": names, "places": places})
    return make_pair(build_messages("Extract the people and places in the text as JSON.", text, output),
                     task_family="extract", format="json_entities", difficulty="medium", source="synthetic",
                     teacher_model=TEACHER)


def long_qa() -> list[dict]:
    """gsm8k word problems with at least 120 words of question plus answer: long enough for near-dup tests."""
    rows = _mix_rows("gsm8k", lambda r: len((r["instruction"] + " " + r["output"]).split()) >= 120, 30)
    return [qa_pair(r["instruction"], r["output"]) for r in rows]


def classify_rows(n: int) -> list[dict]:
    rows = _mix_rows("t0", lambda r: r["output"] in ("positive", "negative") and len(r["instruction"].split()) > 40, n)
    return [classify_pair(r["instruction"], r["output"]) for r in rows]


def change_words(text: str, positions: list[int]) -> str:
    words = text.split(" ")
    for p in positions:
        words[p] = words[p] + "x"
    return " ".join(words)


def word_set(record: dict, n: int = 5) -> set[int]:
    """The word n-gram hashes near dedup compares for a pair."""
    return word_shingles([pair_text(record)], n).set_of(0)


def read_run(path: Path) -> list[dict]:
    return list(RunDir(path).pairs())


def write_run(path: Path, records: list[dict]) -> RunDir:
    run = RunDir(path)
    run.create({"kind": "test", "status": "complete"})
    for r in records:
        run.add_pair(r)
    return run


@pytest.fixture()
def spec(tmp_path):
    p = tmp_path / "gate-test.yaml"
    p.write_text(SPEC)
    return load_spec(p)


@pytest.fixture()
def planted(tmp_path):
    """Run A: 30 qa, 15 classify, 5 extract, all distinct. Run B: one row of each planted kind."""
    qa, cls, ext = long_qa(), classify_rows(15), [extract_pair(i) for i in range(5)]
    base = qa + cls + ext
    original = qa[0]
    user, answer = user_text(original), assistant_text(original)
    exact = qa_pair("  " + user.upper().replace(" ", "   ") + " !!", answer.replace(".", " ."))
    longer = qa_pair(user_text(qa[3]), assistant_text(qa[3]) + " Checking the arithmetic once more gives the same result.")
    near = qa_pair(change_words(user_text(qa[1]), [3, 20]), assistant_text(qa[1]))
    n_words = len(user_text(qa[2]).split(" "))
    distinct = qa_pair(change_words(user_text(qa[2]), list(range(2, n_words, 7))), assistant_text(qa[2]))
    empty_answer = qa_pair("Name a prime number larger than one hundred.", "x")
    empty_answer["messages"][1]["content"] = ""
    empty_answer["id"] = "0" * 16
    unknown_family = make_pair(build_messages("Write a haiku about rain.", "", "Soft rain on the roof"),
                               task_family="poetry", format="free_text", difficulty="easy", source="human")
    bad_json = extract_pair(99, output='{"names": ["Maria", "Tom"]')
    run_b = [exact, longer, near, distinct, empty_answer, unknown_family, bad_json]
    a = write_run(tmp_path / "runs" / "a", base)
    b = write_run(tmp_path / "runs" / "b", run_b)
    return {
        "runs": [a.path, b.path], "qa": qa, "exact": exact, "longer": longer, "near": near,
        "distinct": distinct, "empty_answer": empty_answer, "unknown_family": unknown_family, "bad_json": bad_json,
    }


def _ledger(release: Path) -> dict[str, dict]:
    return {r["input"]: r for r in pl.read_parquet(release / "rejected.parquet").to_dicts()}


def test_normalize_ignores_case_width_spacing_and_punctuation():
    assert normalize("  Hello,   WORLD!!\tＦｕｌｌ—width “quotes” ") == "hello world full width quotes"
    assert normalize("Hello, world") == normalize("hello world") != normalize("hello there world")


def test_bands_are_explicit_and_catch_pairs_at_the_threshold():
    assert choose_bands(128, 0.8) == (16, 8)
    for num_perm in (32, 64, 256):
        bands, rows = choose_bands(num_perm, 0.8)
        assert bands * rows <= num_perm
        assert 1 - (1 - 0.8**rows) ** bands >= 0.9


def test_gate_finds_planted_faults_and_accounts_for_every_row(planted, spec, tmp_path):
    report = run_gate(planted["runs"], spec, root=tmp_path / "releases")
    assert report.certified, [v for v in report.manifest["verdicts"] if not v["passed"]]
    assert report.release.name == "release-v1"
    manifest = verify_release(report.release)
    counts = manifest["counts"]
    assert counts["input"] == 50 + 7
    assert counts["input"] == counts["kept"] + counts["rejected"] == counts["kept"] + sum(counts["removed"].values())
    assert counts["train"] + counts["eval"] == counts["kept"] == 51
    assert counts["removed"] == {"schema": 3, "content_defects": 0, "pii": 0, "decontamination": 0, "arithmetic": 0,
                                 "code_syntax": 0, "constraints": 0, "refusal_policy": 0, "labels": 0, "grounding": 0,
                                 "relevance": 0, "exact_dedup": 2, "near_dedup": 1, "screening": 0}

    train, evals = read_split(report.release, "train"), read_split(report.release, "eval")
    kept_ids = [r["id"] for r in train + evals]
    assert len(kept_ids) == len(set(kept_ids)) == 51
    ledger = _ledger(report.release)
    assert len(ledger) == 6
    by_id = {r["id"]: r for r in ledger.values()}

    b = f"{planted['runs'][1]}/pairs.jsonl"
    exact = ledger[f"{b}:1"]
    assert (exact["check"], exact["duplicate_of"]) == ("exact_dedup", planted["qa"][0]["id"])
    assert "same normalised pair" in exact["reason"]
    # the same prompt with a longer answer wins over the earlier, shorter one
    assert planted["longer"]["id"] in kept_ids and planted["qa"][3]["id"] not in kept_ids
    shorter = by_id[planted["qa"][3]["id"]]
    assert (shorter["check"], shorter["duplicate_of"]) == ("exact_dedup", planted["longer"]["id"])
    near = ledger[f"{b}:3"]
    assert (near["check"], near["duplicate_of"]) == ("near_dedup", planted["qa"][1]["id"])
    assert "Jaccard" in near["reason"]
    # a pair that shares much of its text but differs enough stays
    distinct_j = jaccard(word_set(planted["distinct"]), word_set(planted["qa"][2]))
    assert 0.2 < distinct_j < 0.8
    assert planted["distinct"]["id"] in kept_ids and planted["qa"][2]["id"] in kept_ids
    empty = ledger[f"{b}:5"]
    assert empty["check"] == "schema" and "messages[1].content" in empty["reason"]
    assert json.loads(empty["record"])["messages"][1]["content"] == ""
    assert ledger[f"{b}:6"]["reason"].startswith("spec: task_family: 'poetry'")
    assert ledger[f"{b}:7"]["reason"].startswith("format: json_entities: json_invalid")

    near_stats = next(c for c in manifest["checks"] if c["name"] == "near_dedup")["stats"]
    assert near_stats["word_verified_pairs"] == 1 and near_stats["clusters"] == 1 and near_stats["word_candidates"] >= 1
    removed_by_family = {c["name"]: c["removed_by_family"] for c in manifest["checks"]}
    assert removed_by_family == {"schema": {"qa": 1, "poetry": 1, "extract": 1}, "content_defects": {}, "pii": {},
                                 "decontamination": {},
                                 "arithmetic": {}, "code_syntax": {}, "constraints": {}, "refusal_policy": {}, "labels": {},
                                 "grounding": {}, "relevance": {},
                                 "exact_dedup": {"qa": 2}, "near_dedup": {"qa": 1}, "screening": {}}
    assert manifest["teacher_models"] == [TEACHER]
    assert [i["sha256"] for i in manifest["inputs"]] == [RunDir(p).file_hashes() for p in planted["runs"]]
    assert [i["rows_read"] for i in manifest["inputs"]] == [50, 7]
    assert manifest["spec"]["sha256"] == spec.hash and manifest["spec"]["name"] == "gate-test"
    by_family = counts["by_family"]
    kept_by_family = {f: n["train"] + n["eval"] for f, n in by_family.items()}
    assert kept_by_family == {"qa": 31, "classify": 15, "extract": 5, "poetry": 0}
    assert {f: n["input"] for f, n in by_family.items()} == {"qa": 35, "classify": 15, "extract": 6, "poetry": 1}
    assert by_family["classify"]["eval"] == eval_count(15, 0.2) == 3


def test_near_dedup_merges_only_candidates_verified_at_the_threshold():
    """Two edits of one long pair, both LSH candidates: J 0.82 is merged, J 0.76 is kept after verification."""
    original = long_qa()[0]
    n_words = len(user_text(original).split(" "))
    check = NearDedup(MinHashConfig(threshold=0.8, num_perm=128, ngram=5))
    for step, merged in ((16, True), (12, False)):
        edited = qa_pair(change_words(user_text(original), list(range(2, n_words, step))), assistant_text(original))
        j = jaccard(word_set(original), word_set(edited))
        assert (j >= 0.8) is merged
        result = check.run([Row(original, "run", 1, 0), Row(edited, "run", 2, 1)])
        assert result.stats["word_candidates"] == 1
        assert result.stats["word_verified_pairs"] == int(merged)
        assert [r.row.record["id"] for r in result.rejected] == ([edited["id"]] if merged else [])
        assert [r.duplicate_of for r in result.rejected] == ([original["id"]] if merged else [])


def test_a_duplicate_whose_keeper_a_later_check_removes_is_kept_as_the_final_keeper():
    """A is an exact duplicate of B (exact dedup keeps B); near dedup then removes B for C, a near duplicate
    with a longer answer: the ledger keeps A's direct keeper (B) and names C as the row that carries it."""
    b = long_qa()[0]
    a = qa_pair(user_text(b).upper(), assistant_text(b))
    n_words = len(user_text(b).split(" "))
    c = qa_pair(change_words(user_text(b), list(range(2, n_words, 40))), assistant_text(b) + " Done.")
    other = long_qa()[1]
    rows = [Row(r, "run", i + 1, i) for i, r in enumerate([b, a, c, other])]
    kept, ledger, _ = run_checks([ExactDedup(), NearDedup(MinHashConfig(threshold=0.8, num_perm=128, ngram=5))], rows)
    assert [r.id for r in kept] == [c["id"], other["id"]]
    assert [(e["id"], e["check"], e["duplicate_of"], e["kept_as"]) for e in ledger] == [
        (a["id"], "exact_dedup", b["id"], c["id"]),
        (b["id"], "near_dedup", c["id"], c["id"]),
    ]


def test_character_shingles_catch_respellings_that_word_shingles_miss():
    """A long pair with every 8th word of its question respelled: word 5-gram Jaccard 0.59, char 5-gram 0.86."""
    original = long_qa()[4]
    words = user_text(original).split(" ")
    respelled = qa_pair(" ".join(w + "s" if i % 8 == 5 else w for i, w in enumerate(words)), assistant_text(original))
    rows = [Row(original, "run", 1, 0), Row(respelled, "run", 2, 1)]
    assert jaccard(word_set(original), word_set(respelled)) < 0.65
    words_only = NearDedup(MinHashConfig()).run(rows)
    assert words_only.rejected == [] and "char_candidates" not in words_only.stats
    with_chars = NearDedup(MinHashConfig(char_ngram=5, char_threshold=0.8)).run(rows)
    assert [(r.row.record["id"], r.duplicate_of) for r in with_chars.rejected] == [(respelled["id"], original["id"])]
    assert with_chars.rejected[0].reason.endswith("char 5-gram Jaccard 0.86 with it")
    assert with_chars.stats["char_verified_pairs"] == 1 and with_chars.stats["word_verified_pairs"] == 0


def test_template_guard_keeps_one_template_filled_with_different_entities():
    """Same long template, different people and places: the texts are near duplicates, the answers are not."""
    story = " ".join(user_text(q) for q in long_qa()[6:9])

    def filled(names: list[str], places: list[str]) -> dict:
        text = f"{names[0]} met {names[1]} in {places[0]} and then {story} before they flew to {places[1]}."
        return make_pair(build_messages("Extract the people and places in the text as JSON.", text,
                                        json.dumps({"names": names, "places": places})),
                         task_family="extract", format="json_entities", difficulty="medium", source="synthetic")

    a, b = filled(["Maria", "Tom"], ["Lisbon", "Oslo"]), filled(["Aiko", "Sven"], ["Kyoto", "Lima"])
    assert jaccard(word_set(a), word_set(b)) >= 0.8
    rows = [Row(a, "run", 1, 0), Row(b, "run", 2, 1)]
    guarded = NearDedup(MinHashConfig()).run(rows)
    assert guarded.rejected == [] and guarded.stats["word_template_pairs"] == 1
    unguarded = NearDedup(MinHashConfig(response_threshold=None)).run(rows)
    assert len(unguarded.rejected) == 1 and unguarded.stats["word_template_pairs"] == 0
    same_answer = filled(["Maria", "Tom"], ["Lisbon", "Oslo"])
    same_answer["messages"][0]["content"] = "Please " + same_answer["messages"][0]["content"]
    same_answer["id"] = pair_id(same_answer["messages"])
    assert len(NearDedup(MinHashConfig()).run([rows[0], Row(same_answer, "run", 3, 2)]).rejected) == 1


def test_rows_near_duplicating_an_earlier_release_are_rejected_against_it(planted, spec, tmp_path):
    """release-v1 from the planted runs; then a run with an edit of a released row, a new row, and a row
    only an uncertified release holds: only the edit is rejected, naming release-v1 and the row's id."""
    root = tmp_path / "releases"
    assert run_gate(planted["runs"], spec, root=root).certified
    extra = [qa_pair(r["instruction"], r["output"])
             for r in _mix_rows("gsm8k", lambda r: 80 <= len((r["instruction"] + " " + r["output"]).split()) < 120, 10)]
    only_in_uncertified = qa_pair(user_text(extra[0]), assistant_text(extra[0]))
    skewed = write_run(tmp_path / "runs" / "skewed", [only_in_uncertified] + classify_rows(20))
    assert not run_gate([skewed.path], spec, root=root).certified  # release-v2: all classify
    released = planted["qa"][5]
    edited = qa_pair(change_words(user_text(released), [4, 30]), assistant_text(released))
    assert 0.8 <= jaccard(word_set(released), word_set(edited)) < 1
    new = write_run(tmp_path / "runs" / "new", [edited, only_in_uncertified] + extra[1:])
    report = run_gate([new.path], spec, root=root)
    release_check = next(c for c in report.manifest["checks"] if c["name"] == "release_dedup")
    assert release_check["stats"]["releases"] == ["release-v1"]  # the uncertified release-v2 is not reference data
    assert (release_check["removed"], release_check["stats"]["near_removed"]) == (1, 1)
    assert release_check["removed_by_family"] == {"qa": 1}
    ledger = pl.read_parquet(report.release / "rejected.parquet").to_dicts()
    assert [(r["id"], r["check"], r["duplicate_of"]) for r in ledger] == [
        (edited["id"], "release_dedup", f"release-v1/{released['id']}")]
    assert "near duplicate of release-v1/" in ledger[0]["reason"] and "word 5-gram Jaccard" in ledger[0]["reason"]


def test_a_tampered_earlier_release_stops_the_gate(planted, spec, tmp_path):
    root = tmp_path / "releases"
    first = run_gate(planted["runs"], spec, root=root)
    train = first.release / "train.parquet"
    train.chmod(0o644)
    with open(train, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CuratorError, match="train.parquet: changed since release"):
        run_gate(planted["runs"][1:], spec, root=root)


def test_schema_check_names_the_field_or_rule_broken(spec):
    check = SchemaCheck(spec)
    good = classify_pair("The battery lasts all day and the screen is gorgeous.", "positive")
    assert check.problem(good) is None
    tampered = json.loads(json.dumps(good))
    tampered["messages"][1]["content"] = "negative"
    assert check.problem(tampered).startswith(f"schema: id: '{good['id']}' does not match its messages")
    blank_system = classify_pair("Fine.", "positive")
    blank_system["messages"].insert(0, {"role": "system", "content": "   "})
    assert check.problem(blank_system) == "schema: messages[0].content: only whitespace"
    missing = {k: v for k, v in good.items() if k != "format"}
    assert check.problem(missing) == "schema: (record): 'format' is a required property"
    hard = make_pair(good["messages"], task_family="classify", format="label", difficulty="expert", source="human")
    assert check.problem(hard).startswith("spec: difficulty: 'expert' is not in the spec")
    wordy = classify_pair("Fine.", "positive, because the reviewer liked it")
    assert check.problem(wordy).startswith("format: label: label_not_allowed")
    long_label = make_pair(build_messages("Fine.", "", "positive"), task_family="classify", format="free_text",
                           difficulty="easy", source="human")
    long_label["messages"][1]["content"] = "positive " * 4
    long_label["id"] = pair_id(long_label["messages"])
    assert check.problem(long_label) == "length: length_out_of_band: 4 words, band short is 1-3"


def test_split_is_stratified_deterministic_and_never_empties_a_family():
    records = [{"id": f"{i:016x}", "task_family": fam} for fam, n in (("a", 10), ("b", 2), ("c", 1)) for i in range(n * 100, n * 100 + n)]
    train, evals = split(records, 0.25)
    eval_families = [r["task_family"] for r in evals]
    assert eval_families.count("a") == 3 and eval_families.count("b") == 1 and "c" not in eval_families
    assert len(train) + len(evals) == len(records)
    shuffled = records[::-1]
    assert {r["id"] for r in split(shuffled, 0.25)[1]} == {r["id"] for r in evals}
    assert eval_count(5, 0.0) == 0 and eval_count(3, 0.99) == 2


def test_skewed_mix_gives_a_release_that_is_not_certified(tmp_path, spec, capsys):
    qa = long_qa()[:20]
    run = write_run(tmp_path / "runs" / "skewed", qa + classify_rows(2))
    assert main(["gate", str(run.path), "--spec", spec.path]) == 1
    out = capsys.readouterr().out
    assert "NOT certified" in out and "release-v1" in out
    release = Path(tmp_path / "data" / "releases" / "release-v1")
    certificate = json.loads((release / "certificate.json").read_text())
    assert certificate["verdict"] == "not_certified"
    assert set(certificate["failed_verdicts"]) == {"mix:qa", "mix:classify"}  # qa 0.91 > 0.75, classify 0.09 < 0.15
    manifest = verify_release(release, require_certified=False)
    assert manifest["certified"] is False
    verdicts = {v["name"]: v for v in manifest["verdicts"]}
    assert verdicts["mix:qa"] == {"name": "mix:qa", "passed": False, "observed": 0.9091, "expected": "0.6 ± 0.15",
                                  "expectation": "expect_column_mean_to_be_between"}
    assert verdicts["min_train_rows"]["observed"] == 17 and verdicts["unique_ids"]["passed"]
    assert "mix:qa" in out and "FAIL" in out


def test_expectations_fail_on_out_of_band_lengths_and_repeated_ids(spec):
    """The GX suite on rows the schema check would have stopped: a band's word counts, unique ids."""
    qa = long_qa()[:12]
    wordy = [classify_pair(f"Review number {i}: fine.", "positive and upbeat overall") for i in range(4)]
    kept = qa + classify_rows(2) + wordy + [qa[0]]
    verdicts = {v["name"]: v for v in evaluate(spec, kept=kept, train=kept, n_input=len(kept), n_rejected=0)}
    assert verdicts["length:short"]["passed"] is False
    assert verdicts["length:short"]["observed"] == {"unexpected": 4, "of": len(kept)}
    assert verdicts["length:short"]["examples"] == [4.0] * 4
    assert verdicts["length:any"]["passed"] and verdicts["known:format"]["passed"]
    assert verdicts["unique_ids"]["passed"] is False and verdicts["unique_ids"]["examples"] == [qa[0]["id"]] * 2
    lenient = evaluate(spec, kept=kept, train=kept, n_input=len(kept), n_rejected=0,
                       config=ExpectationsConfig(length_mostly=0.25))
    assert next(v for v in lenient if v["name"] == "length:short")["passed"]  # 2 of 6 classify rows in band


def test_the_suite_runs_in_its_own_process_and_here_once_that_process_dies(spec, monkeypatch):
    """great-expectations is imported and run in a process of its own (`start_suite_process`): the same verdicts
    as here; killed, the next evaluation runs here."""
    qa = long_qa()[:12]
    kept = qa + classify_rows(2) + [qa[0]]
    kept_columns_here = expectations.kept_columns(pl.Series([json.dumps(r) for r in kept]), frozenset())
    here = expectations._evaluate_columns(spec, kept_columns_here, np.ones(len(kept), dtype=bool), len(kept), 0, None)
    monkeypatch.setattr(expectations, "_SUITE_PROCESS", None)
    expectations.start_suite_process()
    pool = expectations._SUITE_PROCESS
    assert pool is not None
    try:
        assert evaluate(spec, kept=kept, train=kept, n_input=len(kept), n_rejected=0) == here
        (pid,) = pool._processes
        os.kill(pid, signal.SIGKILL)
        assert evaluate(spec, kept=kept, train=kept, n_input=len(kept), n_rejected=0) == here
        assert expectations._SUITE_PROCESS is None
        expectations._SUITE_PROCESS = pool  # known broken by now: the next evaluation does not even submit
        assert evaluate(spec, kept=kept, train=kept, n_input=len(kept), n_rejected=0) == here
        assert expectations._SUITE_PROCESS is None
    finally:
        pool.shutdown()


def test_a_gate_loads_the_libraries_of_the_checks_it_runs_only(tmp_path):
    """Building the checks of a spec without teacher checks loads no teacher client (openai); datasketch waits for
    the first MinHash signature: a second of start-up on this machine, in every gate."""
    (tmp_path / "spec.yaml").write_text(SPEC)
    code = ("import sys; from pathlib import Path; from curator.gate.pipeline import build_checks; "
            "from curator.spec import load_spec; "
            f"checks = build_checks(load_spec({str(tmp_path / 'spec.yaml')!r}), Path({str(tmp_path)!r})); "
            "print(sorted(c.name for c in checks), 'openai' in sys.modules, 'datasketch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["False", "False"] and "'near_dedup'" in out


def test_cli_exits_0_on_a_certified_release(planted, spec, capsys):
    assert main(["gate", *map(str, planted["runs"]), "--spec", spec.path]) == 0
    out = capsys.readouterr().out
    assert "certified" in out and "near_dedup" in out and "mix:extract" in out


def test_two_gate_runs_make_two_releases_and_never_overwrite(planted, spec, tmp_path):
    """Gating run A again: release-v1 stays byte for byte; release-v2 re-admits none of what v1 holds."""
    root = tmp_path / "releases"
    first = run_gate(planted["runs"], spec, root=root)
    before = {p.name: p.read_bytes() for p in first.release.iterdir()}
    second = run_gate(planted["runs"][:1], spec, root=root)
    assert (first.release.name, second.release.name) == ("release-v1", "release-v2")
    assert {p.name: p.read_bytes() for p in first.release.iterdir()} == before
    manifest = verify_release(second.release, require_certified=False)
    assert manifest["counts"]["input"] == 50 and manifest["counts"]["kept"] == 0
    assert manifest["counts"]["removed"]["release_dedup"] == 50
    certificate = json.loads((second.release / "certificate.json").read_text())
    assert not second.certified and "min_train_rows" in certificate["failed_verdicts"]
    in_v1 = {r["id"] for r in read_split(first.release, "train") + read_split(first.release, "eval")}
    ledger = pl.read_parquet(second.release / "rejected.parquet").to_dicts()
    # rows v1 kept are named as themselves; rows v1 dropped as duplicates match what v1 kept instead
    assert all(r["duplicate_of"].startswith("release-v1/") and r["duplicate_of"][len("release-v1/"):] in in_v1
               for r in ledger)
    dropped_in_v1 = {planted["qa"][3]["id"]: planted["longer"]["id"]}  # same prompt, v1 kept the longer answer
    assert {r["id"]: r["duplicate_of"] for r in ledger} == {
        r["id"]: f"release-v1/{dropped_in_v1.get(r['id'], r['id'])}" for r in read_run(planted["runs"][0])}
    assert next(r for r in ledger if r["id"] == planted["qa"][3]["id"])["reason"].startswith(
        "release_duplicate: same normalised prompt as release-v1/")


def test_a_build_that_fails_midway_leaves_nothing_behind(planted, spec, tmp_path, monkeypatch):
    root = tmp_path / "releases"
    real_write = store._write_parquets
    calls = []

    def write_then_fail(staging, frames, schemas):
        calls.append(staging)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(staging, frames, schemas)

    monkeypatch.setattr(store, "_write_parquets", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        run_gate(planted["runs"], spec, root=root)
    assert len(calls) == 2
    assert [p.name for p in root.iterdir() if p.name != ".lock"] == []


def test_a_directory_without_run_json_is_named(tmp_path, spec):
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(CuratorError, match="not-a-run: not a run directory"):
        run_gate([tmp_path / "not-a-run"], spec, root=tmp_path / "releases")


def test_a_corrupt_pairs_line_is_named(tmp_path, spec):
    run = write_run(tmp_path / "runs" / "corrupt", [extract_pair(1)])
    with open(run.path / "pairs.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(CuratorError, match=r"corrupt/pairs.jsonl:2: not valid JSON"):
        run_gate([run.path], spec, root=tmp_path / "releases")
    assert not (tmp_path / "releases").exists()
