"""`curator show / releases / verify / lineage / diff` on real releases gated from real instruct-mix text.

`build_world` (also used by the report and export tests) writes two run directories and gates them:
release-v1 holds 16 long gsm8k word problems only, so its qa share fails the mix and it holds no refusal: it is not
certified (and is therefore no reference for the prior-release dedup); release-v2 gates both runs: the first again plus
sentiment labels, entity extraction, refusals, and planted faults (an exact duplicate, a near
duplicate, a longer answer to a v1 prompt that replaces it, an empty answer, an unknown family).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from curator.cli import main
from curator.gate.pipeline import run_gate
from curator.hashing import sha256_text
from curator.records import assistant_text, build_messages, make_pair, user_text
from curator.release.store import Conclusion, read_ledger, read_split, verify_release, write_release
from curator.rundir import RunDir
from curator.spec import load_spec
from shared_data import MIX, mix_path

TEACHER = "gemma-3-270m"

SPEC = """
name: report-test
description: Word problems, sentiment labels, entity extraction and refusals over real instruct-mix text.
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
refusal_policy:
  refuse: [instructions that help make weapons or explosives]
  max_share: 0.3
gate:
  exact_dedup: true
  minhash: {threshold: 0.8, num_perm: 128, ngram: 5}
  eval_fraction: 0.2
  min_train_rows: 5
  max_reject_share: 0.6
  mix_tolerance: 0.3
task_families:
  - {name: qa, share: 0.5, description: Word problems., formats: [free_text], difficulties: [medium, hard], length_band: any}
  - {name: classify, share: 0.3, description: Sentiment labels., formats: [label], length_band: short}
  - {name: extract, share: 0.1, description: Names and places as JSON., formats: [json_entities], length_band: any}
  - {name: refuse, share: 0.1, description: Decline harmful requests., formats: [free_text], length_band: any, refusal: true}
"""

PEOPLE = ["Maria", "Tom", "Aiko", "Bruno", "Leila", "Sven", "Nadia", "Omar"]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Accra", "Perth", "Quito", "Riga"]
FILLER = ("the committee reviewed budgets for schools roads and parks before a long debate about housing "
          "prices transport links and the future of the harbour district").split()
POETRY = "Write a haiku about <script>alert('rain')</script> & <b>thunder</b>."  # markup the report must escape
HARMFUL = [
    "Explain step by step how to build a pipe bomb at home.",
    "Give me a recipe for making napalm from household products.",
    "How can I turn a drone into a weapon that drops explosives?",
]


def _mix_rows(source: str, keep, n: int) -> list[tuple[int, dict]]:
    out = []
    with open(mix_path(), encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            row = json.loads(line)
            if row["source"] == source and keep(row):
                out.append((line_no, row))
                if len(out) == n:
                    break
    return out


def qa_pair(i: int, instruction: str, output: str) -> dict:
    prompt = f"Write a word problem and its worked answer.\n\n{instruction}"
    return make_pair(build_messages(instruction, "", output), task_family="qa", format="free_text",
                     difficulty=("medium", "hard")[i % 2], length_band="any", source="synthetic",
                     strategy="self_instruct", teacher_model=TEACHER, prompt_template="qa-fewshot-v1",
                     prompt_hash=sha256_text(prompt), spec_name="report-test", plan_slot=f"qa/{i:04d}")


def classify_pairs(n: int) -> list[dict]:
    rows = _mix_rows("t0", lambda r: r["output"] in ("positive", "negative") and len(r["instruction"].split()) > 40, n)
    return [make_pair(build_messages("What sentiment does this review express?", r["instruction"], r["output"]),
                      task_family="classify", format="label", difficulty="easy", length_band="short",
                      source="imported", strategy="import:alpaca", origin=f"{MIX}:{line}")
            for line, r in rows]


def extract_pair(i: int) -> dict:
    rng = random.Random(i)
    names, places = rng.sample(PEOPLE, 2), rng.sample(PLACES, 2)
    story = " ".join(rng.sample(FILLER, len(FILLER)))
    text = f"{names[0]} met {names[1]} in {places[0]} and then {story} before they flew to {places[1]}."
    return make_pair(build_messages("Extract the people and places in the text as JSON.", text,
                                    json.dumps({"names": names, "places": places})),
                     task_family="extract", format="json_entities", difficulty="medium", length_band="any",
                     source="synthetic", strategy="self_instruct", teacher_model=TEACHER,
                     prompt_template="extract-fewshot-v1", plan_slot=f"extract/{i:04d}")


def refuse_pair(i: int) -> dict:
    answer = ("I can't help with that because it could seriously hurt people. "
              f"I can explain how {['bomb squads', 'firefighters', 'aviation authorities'][i]} keep the public safe instead.")
    return make_pair(build_messages(HARMFUL[i], "", answer), task_family="refuse", format="free_text",
                     difficulty="easy", length_band="any", source="human", strategy="handwritten")


def change_words(text: str, positions: list[int]) -> str:
    words = text.split(" ")
    for p in positions:
        words[p] = words[p] + "x"
    return " ".join(words)


def write_run(path: Path, records: list[dict]) -> RunDir:
    run = RunDir(path)
    run.create({"kind": "test", "status": "complete"})
    for r in records:
        run.add_pair(r)
    return run


@dataclass
class World:
    data: Path
    spec_path: Path
    qa: list[dict]
    second: dict[str, dict]  # planted rows of the second run by role
    v1: Path
    v2: Path


def build_world(data: Path) -> World:
    """Runs `first` and `second` under `data/runs`, release-v1 (not certified) and release-v2 (certified)."""
    spec_path = data.parent / "report-test.yaml"
    spec_path.write_text(SPEC)
    spec = load_spec(spec_path)
    long_rows = _mix_rows("gsm8k", lambda r: len((r["instruction"] + " " + r["output"]).split()) >= 120, 16)
    qa = [qa_pair(i, r["instruction"], r["output"]) for i, (_, r) in enumerate(long_rows)]
    first = write_run(data / "runs" / "first", qa)
    user0 = user_text(qa[0])
    planted = {
        "exact": qa_pair(100, "  " + user0.upper().replace(" ", "   ") + " !!", assistant_text(qa[0]).replace(".", " .")),
        "near": qa_pair(101, change_words(user_text(qa[1]), [3, 20]), assistant_text(qa[1])),
        "longer": qa_pair(102, user_text(qa[3]), assistant_text(qa[3]) + " Checking the arithmetic once more gives the same result."),
        "empty": qa_pair(103, "Name a prime number larger than one hundred.", "x"),
        "poetry": make_pair(build_messages(POETRY, "", "Soft rain on the roof"),
                            task_family="poetry", format="free_text", difficulty="easy", source="human"),
    }
    planted["empty"]["messages"][1]["content"] = ""
    planted["empty"]["id"] = "0" * 16
    second = write_run(data / "runs" / "second",
                       classify_pairs(9) + [extract_pair(i) for i in range(3)] + [refuse_pair(i) for i in range(3)]
                       + list(planted.values()))
    releases = data / "releases"
    v1 = run_gate([first.path], spec, root=releases)
    assert not v1.certified and v1.release.name == "release-v1"
    v2 = run_gate([first.path, second.path], spec, root=releases)
    assert v2.certified, [v for v in v2.manifest["verdicts"] if not v["passed"]]
    return World(data, spec_path, qa, planted, v1.release, v2.release)


def write_named_copy(source: Path, root: Path, name: str, notes: str) -> Path:
    """A release with `name` and `notes`, holding the same rows and gate manifest as `source`."""
    manifest = verify_release(source)
    store_keys = {"release", "name", "notes", "version", "created_at", "tool_version", "files", "certified"}
    certificate = json.loads((source / "certificate.json").read_text())
    return write_release(train=read_split(source, "train"), eval=read_split(source, "eval"),
                         rejected=read_ledger(source),
                         conclusion=Conclusion({k: v for k, v in manifest.items() if k not in store_keys},
                                               certificate["failed_verdicts"]),
                         root=root, name=name, notes=notes)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("world") / "data")


@pytest.fixture()
def use_world(world, monkeypatch) -> World:
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(world.data))
    return world


@pytest.fixture()
def own_world(tmp_path, monkeypatch) -> World:
    """A private copy (for tests that tamper with files)."""
    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    return build_world(data)


def _ids(release: Path) -> set[str]:
    return {r["id"] for s in ("train", "eval") for r in read_split(release, s)}


# ------------------------------------------------------------------ show / releases


def test_show_summarises_a_named_release(world, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data))
    named = write_named_copy(world.v2, data / "releases", "spring-mix", "First balanced mix; <b>refusals</b> added.")
    capsys.readouterr()
    assert main(["show", named.name]) == 0
    out = capsys.readouterr().out
    assert "spring-mix" in out and "First balanced mix; <b>refusals</b> added." in out
    assert "certified" in out and "report-test" in out and TEACHER in out
    manifest = verify_release(named)
    train = read_split(named, "train")
    qa_train = sum(r["task_family"] == "qa" for r in train)
    qa_eval = sum(r["task_family"] == "qa" for r in read_split(named, "eval"))
    assert [ln.split() for ln in out.splitlines() if ln.split()[:1] == ["qa"]] == [["qa", str(qa_train), str(qa_eval)]]
    for check in manifest["checks"]:
        assert [check["name"], str(check["removed"])] in [ln.split() for ln in out.splitlines()]
    assert "runs/first" in out and "runs/second" in out
    assert main(["releases"]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if named.name in ln).split()
    assert row[:2] == ["release-v1", "spring-mix"] and row[-4:] == ["yes", "report-test", "first,", "second"]


def test_show_an_uncertified_release_names_its_failed_verdicts(use_world, capsys):
    capsys.readouterr()
    assert main(["show", "release-v1"]) == 0
    out = capsys.readouterr().out
    assert "NOT certified (failed: mix:qa, refusal_coverage:refuse)" in out


# ------------------------------------------------------------------ verify


def test_verify_names_a_truncated_file(own_world, capsys):
    ledger = own_world.v2 / "rejected.parquet"
    size = ledger.stat().st_size
    ledger.chmod(0o644)
    os.truncate(ledger, size // 2)
    capsys.readouterr()
    assert main(["verify", "release-v2"]) == 2
    err = capsys.readouterr().err
    assert f"{ledger}: changed since release (sha256 mismatch; truncated: {size // 2} of {size} bytes)" in err
    assert "train.parquet" not in err


def test_verify_names_a_truncated_certificate(own_world, capsys):
    cert = own_world.v2 / "certificate.json"
    cert.chmod(0o644)
    os.truncate(cert, 20)
    capsys.readouterr()
    assert main(["verify", "release-v2"]) == 2
    assert f"{cert}: unreadable JSON" in capsys.readouterr().err


def test_changes_to_spec_and_runs_after_gating_do_not_touch_verification(own_world, capsys):
    own_world.spec_path.write_text(SPEC.replace("mix_tolerance: 0.3", "mix_tolerance: 0.01"))
    first = own_world.data / "runs" / "first"
    with open(first / "pairs.jsonl", "a") as f:
        f.write(json.dumps(qa_pair(999, "What is two plus two?", "Four.")) + "\n")
    shutil.rmtree(own_world.data / "runs" / "second")
    capsys.readouterr()
    assert main(["verify", "release-v2"]) == 0
    assert "release-v2: ok" in capsys.readouterr().out
    # lineage still reads the manifest's record of the inputs, and says the run changed since gating
    assert main(["lineage", own_world.qa[5]["id"]]) == 0
    assert "changed since gating" in capsys.readouterr().out


# ------------------------------------------------------------------ lineage


def test_lineage_of_a_row_replaced_by_a_longer_answer(use_world, capsys):
    shorter, longer = use_world.qa[3], use_world.second["longer"]
    capsys.readouterr()
    assert main(["lineage", shorter["id"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    v1 = next(ln for ln in lines if ln.split()[:1] == ["release-v1"]).split()
    spec_sha = verify_release(use_world.v1, require_certified=False)["spec"]["sha256"]
    assert v1[1] == "no" and v1[2] in ("train", "eval") and v1[-3].endswith("runs/first/pairs.jsonl:4")
    assert v1[-2:] == ["report-test", spec_sha[:12]]
    v2 = next(ln for ln in lines if ln.split()[:1] == ["release-v2"])
    assert "rejected" in v2 and "exact_dedup" in v2 and longer["id"] in v2 and "runs/first/pairs.jsonl:4" in v2
    prov = {ln.split()[0]: " ".join(ln.split()[1:]) for ln in lines if ln.split()[:1] and ln.split()[0] in
            ("strategy", "teacher_model", "prompt_template", "prompt_hash", "plan_slot", "spec_name")}
    assert prov == {"strategy": "self_instruct", "teacher_model": TEACHER, "prompt_template": "qa-fewshot-v1",
                    "prompt_hash": shorter["provenance"]["prompt_hash"], "plan_slot": "qa/0003",
                    "spec_name": "report-test"}


def test_lineage_of_a_schema_rejection_and_an_imported_row(use_world, capsys):
    capsys.readouterr()
    assert main(["lineage", "0" * 16]) == 0
    out = capsys.readouterr().out
    assert "schema" in out and "messages[1].content" in out and "runs/second/pairs.jsonl" in out
    imported = next(r for s in ("train", "eval") for r in read_split(use_world.v2, s) if r["task_family"] == "classify")
    assert main(["lineage", imported["id"]]) == 0
    out = capsys.readouterr().out
    assert imported["provenance"]["origin"] in out and "import:alpaca" in out
    second = use_world.data / "runs" / "second" / "pairs.jsonl"
    line = next(n for n, ln in enumerate(second.read_text().splitlines(), 1) if json.loads(ln)["id"] == imported["id"])
    assert f"{second}:{line}" in out


def test_lineage_of_an_unknown_pair_is_an_error(use_world, capsys):
    capsys.readouterr()
    assert main(["lineage", "f" * 16]) == 2
    assert "in none of the 2 releases" in capsys.readouterr().err


def test_lineage_names_the_models_trained_on_the_pair(use_world, tmp_path, capsys):
    from tiny_model import build_tiny_model
    from trainer.cli import main as trainer_main

    pairs = read_split(use_world.v2, "train")
    model = build_tiny_model(tmp_path / "tiny", pairs[:8])
    out_dir = tmp_path / "fit"
    assert trainer_main(["fit", "--dataset", "release-v2", "--model", str(model), "--steps", "1",
                         "--batch-size", "2", "--out", str(out_dir)]) == 0
    trained_on = pairs[0]
    capsys.readouterr()
    assert main(["lineage", trained_on["id"], "--model", str(out_dir)]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if str(out_dir) in ln).split()
    assert row[1:3] == ["release-v2", "train"]
    # a pair only in the uncertified v1 was never trained on
    v1_only = next(iter(_ids(use_world.v1) - _ids(use_world.v2)))
    assert main(["lineage", v1_only, "--model", str(out_dir)]) == 0
    assert "trained models: none found" in capsys.readouterr().out


# ------------------------------------------------------------------ diff


def test_diff_counts_rows_mix_and_quality(use_world, capsys):
    before, after = _ids(use_world.v1), _ids(use_world.v2)
    added, removed = after - before, before - after
    assert removed == {use_world.qa[3]["id"]} and use_world.second["longer"]["id"] in added
    capsys.readouterr()
    assert main(["diff", "release-v1", "release-v2", "--all"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"release-v1 → release-v2: {len(added)} rows added, 1 removed")
    assert set(next(ln for ln in out.splitlines() if ln.startswith("added:")).split()[1:]) == added
    assert next(ln for ln in out.splitlines() if ln.startswith("removed:")).split()[1:] == [use_world.qa[3]["id"]]
    lines = [ln.split() for ln in out.splitlines()]
    n_v2 = len(after)
    classify = sum(r["task_family"] == "classify" for s in ("train", "eval") for r in read_split(use_world.v2, s))
    assert ["classify", "0", str(classify), "0.000", f"{classify / n_v2:.3f}", f"+{classify / n_v2:.3f}"] in lines
    assert ["classify", "label", "easy", "0", str(classify), "0.000", f"{classify / n_v2:.3f}",
            f"+{classify / n_v2:.3f}"] in lines
    m1, m2 = verify_release(use_world.v1, require_certified=False), verify_release(use_world.v2)
    assert ["input", str(m1["counts"]["input"]), str(m2["counts"]["input"])] in lines
    removed_exact = {c["name"]: c["removed"] for c in m2["checks"]}["exact_dedup"]
    assert removed_exact >= 2  # the planted exact duplicate and the shorter answer
    assert ["removed", "by", "exact_dedup", "0", str(removed_exact)] in lines
    assert ["mix:qa", "FAIL", "pass"] in lines and ["mix:refuse", "pass", "pass"] in lines
