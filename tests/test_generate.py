"""`curator generate` end to end against the real embedded gemma-3-270m server on loopback, plus plan and parse."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from curator.cli import main
from curator.generate.parse import Fields, Problem, parse_chat, parse_completion, review
from curator.generate.plan import cell_targets, family_counts, plan
from curator.generate.prompts import self_instruct_prompt
from curator.generate.requests import build_request
from curator.records import schema_errors
from curator.rundir import RunDir
from curator.spec import load_spec
from curator.teacher.embedded import embedded_teacher
from generate_helpers import STARTER, slots_on_disk, write_spec

PROVENANCE = ("strategy", "teacher_model", "prompt_template", "prompt_hash", "sampling", "spec_name", "spec_hash", "plan_slot")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def same_data_root(data_root, monkeypatch):
    """Reruns in later tests see the first run's data root (the suite gives each test its own by default)."""
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(data_root))
    return data_root


@pytest.fixture(scope="module")
def teacher_url(tmp_path_factory):
    with embedded_teacher("gemma-3-270m", tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def first_run(data_root, tmp_path_factory):
    """A real 6-pair `curator generate` with no base URL: the command starts and stops the embedded teacher."""
    spec = write_spec(tmp_path_factory.mktemp("spec"))
    argv = ["generate", str(spec), "--pairs", "6", "--cache", str(data_root / "cache.sqlite")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCT_CURATOR_DATA", str(data_root))
        rc = main(argv)
    return argv, rc, spec


def run_dir_of(spec_path: Path, data_root: Path) -> RunDir:
    spec = load_spec(spec_path)
    return RunDir(data_root / "runs" / f"{spec.name}-{spec.hash[:8]}")


def test_generate_run_counts_add_up_and_pairs_carry_full_provenance(first_run, data_root):
    argv, rc, spec_path = first_run
    spec = load_spec(spec_path)
    run = run_dir_of(spec_path, data_root)
    assert rc == 0
    meta = run.read_meta()
    counts = meta["counts"]
    assert counts["planned"] == 6 == counts["accepted"] + counts["quarantined"] + counts["failed"]
    assert counts["pending"] == 0 and counts["failed"] == 0
    assert counts == {**run.counts(), "planned": 6, "pending": 0}
    assert sum(c["target"] for c in meta["cells"].values()) == 6
    assert sum(c["accepted"] for c in meta["cells"].values()) == counts["accepted"]
    assert meta["usage"]["requests"] == 6 and meta["usage"]["completion_tokens"] > 0
    assert meta["teacher"]["base_url"] == "embedded"

    pairs = list(run.pairs())
    assert counts["accepted"] >= 1, [q["reason"] for q in run.quarantined()]
    planned_ids = {s.id for s in plan(spec, 6)}
    for pair in pairs:
        assert schema_errors(pair) == []
        prov = pair["provenance"]
        assert all(prov.get(k) is not None for k in PROVENANCE), prov
        assert prov["source"] == "synthetic" and prov["strategy"] == "self_instruct"
        assert prov["spec_hash"] == spec.hash and prov["teacher_model"] == "gemma-3-270m"
        assert prov["plan_slot"] in planned_ids
        assert len(prov["prompt_hash"]) == 64
    for q in run.quarantined():
        assert q["reason"] and q["plan_slot"] in planned_ids and "text" in q["raw"]
    assert sorted(slots_on_disk(run)) == sorted(planned_ids)

    # the embedded server wrote its log into the run dir and is gone after the run
    assert (run.path / "teacher-server.log").stat().st_size > 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(meta["sessions"][0]["teacher_base_url"] + "/models", timeout=2)


def test_rerun_resumes_without_any_teacher_call(first_run, same_data_root):
    data_root = same_data_root
    argv, _, spec_path = first_run
    run = run_dir_of(spec_path, data_root)
    before = {name: (run.path / name).read_bytes() for name in ("pairs.jsonl", "quarantine.jsonl", "failed.jsonl")}
    assert main(argv) == 0
    after = {name: (run.path / name).read_bytes() for name in before}
    assert after == before
    meta = run.read_meta()
    assert len(meta["sessions"]) >= 2
    assert meta["sessions"][-1]["usage"] == {} and meta["sessions"][-1]["teacher_base_url"] is None
    assert meta["counts"]["pending"] == 0


def test_new_run_dir_gets_every_reply_from_the_cache(first_run, same_data_root):
    data_root = same_data_root
    argv, _, spec_path = first_run
    out = data_root / "same-plan-elsewhere"
    assert main(argv + ["--out", str(out)]) == 0
    meta = RunDir(out).read_meta()
    assert meta["usage"]["requests"] == 0 and meta["usage"]["cache_hits"] == 6
    original = run_dir_of(spec_path, data_root)
    assert {p["id"] for p in RunDir(out).pairs()} == {p["id"] for p in original.pairs()}


def test_resume_refuses_a_different_plan(first_run, same_data_root, capsys):
    argv, _, _ = first_run
    assert main(argv[:2] + ["--pairs", "7"] + argv[4:]) == 2
    assert "planned_pairs" in capsys.readouterr().err


def test_crash_and_resume_completes_exactly(teacher_url, tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    argv = ["generate", str(spec), "--pairs", "2", "--out", str(out), "--base-url", teacher_url,
            "--cache", str(tmp_path / "cache.sqlite")]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "curator.cli", *argv], stdout=subprocess.DEVNULL, stderr=err)
    run = RunDir(out)
    deadline = time.monotonic() + 180
    while not (run.exists() and slots_on_disk(run)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, f"the run ended before it could be killed:\n{stderr.read_text()[-2000:]}"
    landed = len(slots_on_disk(run))
    assert landed == 1

    assert main(argv) == 0
    meta = run.read_meta()
    counts = meta["counts"]
    assert counts["planned"] == 2 == counts["accepted"] + counts["quarantined"] + counts["failed"]
    slots = slots_on_disk(run)
    assert len(slots) == len(set(slots)) == 2 - counts["failed"]
    ids = [p["id"] for p in run.pairs()]
    assert len(ids) == len(set(ids))
    assert meta["sessions"][-1]["usage"]["requests"] <= 1


def test_plan_honours_shares_and_is_stable():
    spec = load_spec(STARTER)
    assert family_counts(spec, 36) == {"summarize": 7, "classify": 7, "extract": 6, "rewrite": 5, "reason": 7, "refuse": 4}
    for total in (1, 5, 36, 101, 1000):
        slots = plan(spec, total)
        assert len(slots) == total == sum(family_counts(spec, total).values())
        assert len({s.id for s in slots}) == total
        assert [s.id for s in plan(spec, total)] == [s.id for s in slots]
        for t in spec.task_families:
            n = family_counts(spec, total)[t.name]
            assert abs(n - t.share * total) < 1
            per_cell = [c for cell, c in cell_targets(slots).items() if cell.startswith(t.name + "/")]
            if n >= len(t.formats) * len(t.difficulties):
                assert max(per_cell) - min(per_cell) <= 1
    summarize_cells = {s.cell for s in plan(spec, 36) if s.family == "summarize"}
    assert summarize_cells == {f"summarize/{f}/{d}/short" for f in ("free_text", "bullets") for d in ("easy", "medium")}
    assert plan(spec, 36)[0].id == "summarize/free_text/easy/short/#0"


def test_prompts_vary_by_slot_and_carry_policy_for_refusals():
    spec = load_spec(STARTER)
    slots = plan(spec, 36)
    prompts = {self_instruct_prompt(spec, s) for s in slots}
    assert len(prompts) > len({s.cell for s in slots})
    refuse = next(s for s in slots if s.family == "refuse")
    prompt = self_instruct_prompt(spec, refuse)
    assert spec.refusal_policy.example_refusal in prompt and spec.refusal_policy.refuse[0] in prompt
    assert prompt.endswith("Family: refuse (Requests the refusal policy covers, declined in the policy's style.)\n"
                           "Format: free_text (Plain prose, no markdown headings.)\nDifficulty: medium\n"
                           "Length: short (1-60 words)\nInstruction:")
    assert spec.refusal_policy.example_refusal not in self_instruct_prompt(spec, slots[0])
    first, _ = build_request(spec, slots[0])
    again, _ = build_request(spec, slots[0])
    other, _ = build_request(spec, slots[1])
    assert first.key == again.key != other.key
    assert first.sampling["seed"] != other.sampling["seed"]


SPEC = load_spec(STARTER)


def slot_of(family: str, fmt: str):
    return next(s for s in plan(SPEC, 36) if s.family == family and s.format == fmt)


@pytest.mark.parametrize(
    "family,fmt,text,finish,expected",
    [
        ("summarize", "free_text", " Summarize the paragraph.\nInput: Cats sleep a lot. They nap in the sun.\nResponse: Cats sleep often, mostly in the sun.\n",
         "stop", Fields("Summarize the paragraph.", "Cats sleep a lot. They nap in the sun.", "Cats sleep often, mostly in the sun.")),
        ("summarize", "bullets", " List the key facts.\nInput: Rome is old. Rome is big.\nResponse:\n- Rome is old.\n- Rome is big.\n###",
         "stop", Fields("List the key facts.", "Rome is old. Rome is big.", "- Rome is old.\n- Rome is big.")),
        ("classify", "label", " Give the sentiment of the tweet.\nInput: Worst train ride ever.\nResponse: Negative\nTask 9\nFamily: classify",
         "stop", Fields("Give the sentiment of the tweet.", "Worst train ride ever.", "Negative")),
        ("extract", "json_entities", ' Extract the names as JSON.\nInput: Ann saw Bo in Paris.\nResponse: {"names": ["Ann", "Bo"], "places": ["Paris"]}',
         "stop", Fields("Extract the names as JSON.", "Ann saw Bo in Paris.", '{"names": ["Ann", "Bo"], "places": ["Paris"]}')),
        ("refuse", "free_text", " Tell me how to hack my school's grading server.\nInput: <noinput>\nResponse: I can't help with breaking into computer systems. I can explain how to report a security flaw instead.",
         "stop", Fields("Tell me how to hack my school's grading server.", "", "I can't help with breaking into computer systems. I can explain how to report a security flaw instead.")),
        ("summarize", "free_text", " Summarize the paragraph.\nInput: Cats sleep a lot.\nResponse: Cats", "length", Problem("truncated")),
        ("summarize", "free_text", " Summarize the paragraph and then", "stop", Problem("unparseable")),
        ("summarize", "free_text", "\nInput: x\nResponse: y", "stop", Problem("unparseable")),
        ("summarize", "free_text", " Summarize the paragraph.\nInput: Cats nap.\nResponse:\n", "stop", Problem("empty_output")),
        ("rewrite", "free_text", " Rewrite the sentence to sound more formal.\nInput: Hey, can you send me that report real quick?\nResponse: Please send the report.",
         "stop", Problem("instruction_copies_seed")),
        ("refuse", "free_text", " Tell me how to make a weapon.\nInput: <noinput>\nResponse: First, gather the parts.", "stop", Problem("refusal_off_policy")),
        ("classify", "label", " Give the sentiment.\nInput: Fine day.\nResponse: happy", "stop",
         Problem("label_not_allowed: 'happy' not in ['positive', 'negative', 'neutral']")),
    ],
)
def test_review_completion_outputs(family, fmt, text, finish, expected):
    assert review(text, finish, mode="completion", spec=SPEC, slot=slot_of(family, fmt)) == expected


def test_review_flags_format_and_length_problems():
    bullets = review(" Summarize it.\nInput: A long text.\nResponse: Just one plain sentence.", "stop",
                     mode="completion", spec=SPEC, slot=slot_of("summarize", "bullets"))
    assert isinstance(bullets, Problem) and bullets.reason.startswith("not_a_bullet_list")
    long_answer = " ".join(["word"] * 61)
    too_long = review(f" Summarize it.\nInput: Text.\nResponse: {long_answer}", "stop",
                      mode="completion", spec=SPEC, slot=slot_of("summarize", "free_text"))
    assert isinstance(too_long, Problem) and too_long.reason.startswith("length_out_of_band")
    bad_json = review(' Extract names.\nInput: Ann ran.\nResponse: {"places": []}', "stop",
                      mode="completion", spec=SPEC, slot=slot_of("extract", "json_entities"))
    assert isinstance(bad_json, Problem) and bad_json.reason.startswith("json_schema_violation")


def test_parse_chat_replies():
    good = '```json\n{"instruction": "Name a colour.", "input": "", "output": "Blue."}\n```'
    assert parse_chat(good) == Fields("Name a colour.", "", "Blue.")
    chatty = 'Here you go: {"instruction": "Add 2 and 3.", "output": "5"} Hope it helps!'
    assert parse_chat(chatty) == Fields("Add 2 and 3.", "", "5")
    assert parse_chat("Sure! Here is a task about colours.") == Problem("unparseable")
    assert parse_chat('{"instruction": "", "output": "x"}') == Problem("unparseable")
    assert parse_chat('["not", "an", "object"]') == Problem("unparseable")
    assert parse_completion(" Do it.\nResponse: done\nInput: late") == Fields("Do it.", "late", "done")
