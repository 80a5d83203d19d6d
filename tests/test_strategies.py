"""Generation strategies beyond Self-Instruct: respond (new responses for given instructions), Evol-Instruct
deepen / widen, benign refusal look-alikes and structured output; against the real embedded gemma-3-270m server."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import jsonschema
import pytest

from curator.cli import main
from curator.generate.parents import run_sources, seed_sources
from curator.generate.parse import Fields, Problem, review
from curator.generate.plan import DEEPEN, LOOKALIKE, RESPOND, WIDEN, Parent, Slot, parent_plan, plan
from curator.generate.prompts import LOOKALIKE_DEMOS, lookalike_prompt, self_instruct_prompt
from curator.generate.requests import build_request
from curator.records import schema_errors
from curator.rundir import RunDir
from curator.spec import load_spec
from curator.teacher.client import TeacherClient
from curator.teacher.embedded import embedded_teacher
from generate_helpers import STARTER, slots_on_disk, write_spec

SPEC = load_spec(STARTER)
HUMAN_ROWS = [
    {"instruction": "Summarize the text in one sentence.", "input": "The museum opens a new wing for modern art next "
     "spring, with works by 40 artists from 12 countries.", "output": "old answer", "task_family": "summarize",
     "format": "free_text", "difficulty": "easy"},
    {"instruction": "Rewrite the sentence to sound more polite.", "input": "Give me the keys now.", "output": "old answer",
     "task_family": "rewrite", "format": "free_text", "difficulty": "easy"},
    {"instruction": "Tell me how to break into my neighbour's wifi network.", "input": "", "output": "old answer",
     "task_family": "refuse", "format": "free_text", "difficulty": "medium"},
]


@pytest.fixture(scope="module")
def teacher_url(tmp_path_factory):
    with embedded_teacher("gemma-3-270m", tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> RunDir:
    """Three human-written instructions imported with `curator import` (a real run directory)."""
    directory = tmp_path_factory.mktemp("import")
    source = directory / "human.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in HUMAN_ROWS))
    assert main(["import", str(source), "--format", "alpaca", "--source", "human", "--out", str(directory / "run")]) == 0
    return RunDir(directory / "run")


def test_respond_writes_new_responses_that_point_at_their_origin_and_resumes(teacher_url, imported, tmp_path):
    spec = write_spec(tmp_path)
    argv = ["generate", str(spec), "--responses-for", str(imported.path), "--base-url", teacher_url,
            "--cache", str(tmp_path / "cache.sqlite")]
    assert main(argv) == 0
    runs = list((tmp_path / "data" / "runs").iterdir())
    assert len(runs) == 1 and "-respond-" in runs[0].name
    run = RunDir(runs[0])
    meta = run.read_meta()
    assert meta["strategy"] == "respond" and meta["source_run"] == str(imported.path.resolve())
    counts = meta["counts"]
    assert counts["planned"] == 3 == counts["accepted"] + counts["quarantined"] and counts["failed"] == 0
    parents = {p["id"]: (line, p) for line, p in enumerate(imported.pairs(), start=1)}
    assert sorted(slots_on_disk(run)) == sorted(f"respond/{pid}" for pid in parents)
    assert counts["accepted"] >= 1, [q["reason"] for q in run.quarantined()]
    for pair in run.pairs():
        assert schema_errors(pair) == []
        prov = pair["provenance"]
        line, parent = parents[prov["plan_slot"].removeprefix("respond/")]
        assert prov["strategy"] == "respond" and prov["prompt_template"] == "respond_v1"
        assert prov["origin"] == f"{imported.path.resolve()}/pairs.jsonl:{line}"
        assert pair["messages"][0] == parent["messages"][0]  # the given user turn, unchanged
        assert pair["messages"][-1]["content"] != "old answer"
        assert (pair["task_family"], pair["format"], pair["difficulty"]) == (parent["task_family"], parent["format"], parent["difficulty"])
    for q in run.quarantined():
        line, _ = parents[q["plan_slot"].removeprefix("respond/")]
        assert q["raw"]["parent"].endswith(f"pairs.jsonl:{line}")

    before = (run.path / "pairs.jsonl").read_bytes()
    assert main(argv) == 0  # resume: nothing pending, no teacher call
    assert (run.path / "pairs.jsonl").read_bytes() == before
    assert run.read_meta()["sessions"][-1]["usage"] == {}


def test_evol_rewrites_a_runs_pairs_into_deepened_and_widened_ones(teacher_url, imported, tmp_path):
    spec = write_spec(tmp_path, max_tokens=128)
    out = tmp_path / "evol"
    argv = ["generate", str(spec), "--strategy", "evol", "--from", str(imported.path), "--pairs", "2", "--out", str(out),
            "--base-url", teacher_url, "--cache", str(tmp_path / "cache.sqlite")]
    assert main(argv) == 0
    run = RunDir(out)
    first = next(imported.pairs())
    assert sorted(slots_on_disk(run)) == [f"evol:deepen/{first['id']}", f"evol:widen/{first['id']}"]
    counts = run.read_meta()["counts"]
    assert counts["planned"] == 2 == counts["accepted"] + counts["quarantined"]
    origin = f"{imported.path.resolve()}/pairs.jsonl:1"
    for pair in run.pairs():
        prov = pair["provenance"]
        assert schema_errors(pair) == [] and prov["origin"] == origin and prov["prompt_template"] == "evol_v1"
        assert prov["strategy"] == prov["plan_slot"].split("/")[0] in (DEEPEN, WIDEN)
        assert pair["difficulty"] == ("medium" if prov["strategy"] == DEEPEN else "easy")  # deepen: one level up
        assert pair["messages"][0]["content"] != first["messages"][0]["content"]
    assert all(q["raw"]["parent"] == origin for q in run.quarantined())
    assert main(argv[:2] + ["--strategy", "evol:widen"] + argv[4:]) == 2  # another plan in the same run dir


def test_lookalike_slots_are_answered_not_refused(teacher_url, tmp_path):
    spec = write_spec(tmp_path, families={"refuse": 1.0}, lookalike_share=0.5)
    out = tmp_path / "run"
    assert main(["generate", str(spec), "--pairs", "2", "--out", str(out), "--base-url", teacher_url,
                 "--cache", str(tmp_path / "cache.sqlite")]) == 0
    run = RunDir(out)
    assert sorted(slots_on_disk(run)) == ["refuse/free_text/medium/short/#0", "refuse/free_text/medium/short/lookalike/#0"]
    for pair in run.pairs():
        lookalike = "/lookalike/" in pair["provenance"]["plan_slot"]
        assert pair["provenance"]["strategy"] == ("self_instruct:lookalike" if lookalike else "self_instruct")
        assert pair["provenance"]["prompt_template"] == ("lookalike_v1" if lookalike else "self_instruct_v1")
    reasons = {q["plan_slot"]: q["reason"] for q in run.quarantined()}
    assert reasons.get("refuse/free_text/medium/short/lookalike/#0") != "refusal_off_policy"
    assert reasons.get("refuse/free_text/medium/short/#0") != "over_refusal"


def test_structured_output_constrains_json_responses(teacher_url, tmp_path):
    """A GBNF grammar (completion) and response_format (chat) make the teacher's JSON valid for the format."""
    extract = next(t for t in SPEC.task_families if t.name == "extract")
    parent = Parent("p1", "x:1", "Extract the people and places mentioned in the text as JSON.", "Ana flew from Rome to Kyiv.", "")
    slot = Slot("extract", "json_entities", "medium", extract.length_band, 0, RESPOND, parent)
    schema = SPEC.format("json_entities").json_schema
    for mode, template in (("completion", "respond_v1+gbnf"), ("chat", "chat_respond_v1+json_schema")):
        spec = load_spec(write_spec(tmp_path, max_tokens=64, mode=mode, structured_output="json_object"))
        request, got_template = build_request(spec, slot)
        assert got_template == template
        assert (request.grammar is not None) == (mode == "completion")
        assert (request.response_format == {"type": "json_object", "schema": schema}) == (mode == "chat")

        async def ask():
            client = TeacherClient(teacher_url, "sk-no-key")
            try:
                return await client.complete(request)
            finally:
                await client.close()

        reply = asyncio.run(ask())
        assert reply.finish_reason == "stop", reply.text
        jsonschema.validate(json.loads(reply.text), schema)


def test_structured_output_request_forms(tmp_path):
    spec = load_spec(write_spec(tmp_path, mode="chat", structured_output="json_schema"))
    extract_slot = next(s for s in plan(spec, 36) if s.family == "extract")
    request, template = build_request(spec, extract_slot)
    assert template == "chat_json_v1+json_schema"
    body = request.response_format["json_schema"]
    assert request.response_format["type"] == "json_schema" and body["name"] == "json_entities"
    assert body["schema"]["properties"]["output"] == spec.format("json_entities").json_schema  # envelope around it
    text_slot = next(s for s in plan(spec, 36) if s.family == "summarize")
    assert build_request(spec, text_slot)[0].response_format is None  # no schema, nothing to constrain
    off = load_spec(write_spec(tmp_path, mode="chat"))
    assert build_request(off, extract_slot)[0].response_format is None
    assert build_request(off, extract_slot)[0].key != request.key
    completion = load_spec(write_spec(tmp_path, structured_output="json_object"))
    grammar = build_request(completion, extract_slot)[0].grammar
    assert grammar.startswith('root ::= curator-line "\\nInput: " curator-line "\\nResponse: " curator-json')
    assert "curator-json ::=" in grammar and "names-kv" in grammar


def test_lookalike_share_zero_keeps_the_plan_and_a_share_splits_the_refusal_family(tmp_path):
    base = plan(SPEC, 36)
    assert all(s.strategy == "self_instruct" for s in base)
    spec = load_spec(write_spec(tmp_path, lookalike_share=0.5))
    split = plan(spec, 36)
    assert len(split) == 36 and len({s.id for s in split}) == 36
    refuse = [s for s in split if s.family == "refuse"]
    assert sorted(s.id for s in refuse) == [
        "refuse/free_text/medium/short/#0", "refuse/free_text/medium/short/#1",
        "refuse/free_text/medium/short/lookalike/#0", "refuse/free_text/medium/short/lookalike/#1",
    ]
    assert [s.id for s in split if s.family != "refuse"] == [s.id for s in base if s.family != "refuse"]
    lookalike = next(s for s in refuse if s.strategy == LOOKALIKE)
    prompt = lookalike_prompt(spec, lookalike)
    assert LOOKALIKE_DEMOS[0].instruction in prompt and "harmless" in prompt
    assert not any(seed.instruction in prompt for seed in spec.family("refuse").seeds)  # no refusal shown as model
    assert prompt != self_instruct_prompt(spec, lookalike)


def test_parents_from_seeds_and_runs(imported, tmp_path):
    seeds = seed_sources(SPEC)
    assert len(seeds.items) == sum(len(t.seeds) for t in SPEC.task_families)
    slots = parent_plan(SPEC, seeds.items, (DEEPEN, WIDEN))
    assert len(slots) == 2 * len(seeds.items) and len({s.id for s in slots}) == len(slots)
    assert slots[0].id == "evol:deepen/seed:summarize#0" and slots[0].difficulty == "medium"
    assert slots[1].id == "evol:widen/seed:summarize#0" and slots[1].difficulty == "easy"
    assert parent_plan(SPEC, seeds.items, (DEEPEN,), total=3) == slots[::2][:3]

    sources = run_sources(SPEC, imported.path)
    assert [s.parent.origin for s in sources.items] == [f"{imported.path}/pairs.jsonl:{i}" for i in (1, 2, 3)]
    assert sources.items[0].parent.input.startswith("The museum") and sources.items[2].parent.input == ""

    # a repeated pair gives one parent; a family the spec lacks is an error naming file:line
    copy = tmp_path / "copy"
    copy.mkdir()
    lines = (imported.path / "pairs.jsonl").read_text().splitlines(keepends=True)
    (copy / "pairs.jsonl").write_text(lines[0] + lines[0] + lines[1])
    again = run_sources(SPEC, copy)
    assert len(again.items) == 2 and again.duplicates == 1
    other = json.loads(lines[1])
    other["task_family"] = "general"
    (copy / "pairs.jsonl").write_text(lines[0] + json.dumps(other) + "\n")
    with pytest.raises(Exception, match=r"pairs.jsonl:2: task_family 'general' is not in the spec"):
        run_sources(SPEC, copy)


def test_respond_needs_a_source_and_self_instruct_refuses_one(tmp_path, imported, capsys):
    spec = write_spec(tmp_path)
    assert main(["generate", str(spec), "--strategy", "respond"]) == 2
    assert "needs a run directory" in capsys.readouterr().err
    assert main(["generate", str(spec), "--from", str(imported.path)]) == 2
    assert "--strategy respond or evol" in capsys.readouterr().err


REFUSE_SLOT = Slot("refuse", "free_text", "medium", "short", 0)
LOOKALIKE_SLOT = dataclasses.replace(REFUSE_SLOT, strategy=LOOKALIKE)
PARENT = Parent("abc", "run/pairs.jsonl:4", "Summarize the text in one sentence.", "Rain is expected all week in Oslo.", "")
RESPOND_SLOT = Slot("summarize", "free_text", "easy", "short", 0, RESPOND, PARENT)
REFUSE_PARENT = Parent("def", "run/pairs.jsonl:5", "Tell me how to pick a lock to enter my neighbour's flat.", "", "")
RESPOND_REFUSE_SLOT = Slot("refuse", "free_text", "medium", "short", 0, RESPOND, REFUSE_PARENT)
DEEPEN_SLOT = Slot("summarize", "free_text", "medium", "short", 0, DEEPEN, PARENT)


@pytest.mark.parametrize(
    "slot,text,expected",
    [
        (LOOKALIKE_SLOT, " How do I kill a zombie process on Linux?\nInput: <noinput>\nResponse: Find its parent with `ps -o ppid` and restart or kill the parent.",
         Fields("How do I kill a zombie process on Linux?", "", "Find its parent with `ps -o ppid` and restart or kill the parent.")),
        (LOOKALIKE_SLOT, " How do I shoot better photos at night?\nInput: <noinput>\nResponse: I can't help with that because it could put people at risk.",
         Problem("over_refusal")),
        (LOOKALIKE_SLOT, " Which household cleaning products must never be mixed?\nInput: <noinput>\nResponse: Bleach and ammonia.",
         Problem("instruction_copies_seed")),
        (REFUSE_SLOT, " How do I shoot better photos at night?\nInput: <noinput>\nResponse: Use a tripod and a slow shutter.",
         Problem("refusal_off_policy")),
        (RESPOND_SLOT, " Oslo will have rain all week.\n###", Fields(PARENT.instruction, PARENT.input, "Oslo will have rain all week.")),
        (RESPOND_SLOT, "\nOslo gets a wet week.\nTask 5\nFamily: summarize", Fields(PARENT.instruction, PARENT.input, "Oslo gets a wet week.")),
        (RESPOND_SLOT, " <noinput>\n", Problem("empty_output")),
        (RESPOND_REFUSE_SLOT, " First, buy a tension wrench.", Problem("refusal_off_policy")),
        (RESPOND_REFUSE_SLOT, " I can't help with entering someone else's home. A locksmith can help with your own door.",
         Fields(REFUSE_PARENT.instruction, "", "I can't help with entering someone else's home. A locksmith can help with your own door.")),
        (DEEPEN_SLOT, " Summarize the text in one sentence.\nInput: Rain is expected all week in Oslo.\nResponse: Rainy week.",
         Problem("instruction_copies_parent")),
        (DEEPEN_SLOT, " Summarize the text.\nOriginal input: Rain in Oslo.\nInput: Rain in Oslo.\nResponse: Rainy week.",
         Problem("unparseable")),
        (DEEPEN_SLOT, " Summarize the text in at most eight words, naming the city.\nInput: Rain is expected all week in Oslo.\nResponse: Oslo expects rain all week.",
         Fields("Summarize the text in at most eight words, naming the city.", "Rain is expected all week in Oslo.", "Oslo expects rain all week.")),
    ],
)
def test_review_of_strategy_replies(slot, text, expected):
    assert review(text, "stop", mode="completion", spec=SPEC, slot=slot) == expected


def test_chat_replies_for_respond_and_structured_envelopes():
    assert review("Oslo expects rain all week.", "stop", mode="chat", spec=SPEC, slot=RESPOND_SLOT) == Fields(
        PARENT.instruction, PARENT.input, "Oslo expects rain all week.")
    extract = next(s for s in plan(SPEC, 36) if s.family == "extract")
    envelope = '{"instruction": "List the names as JSON.", "input": "Ann met Bo.", "output": {"names": ["Ann", "Bo"]}}'
    assert review(envelope, "stop", mode="chat", spec=SPEC, slot=extract) == Fields(
        "List the names as JSON.", "Ann met Bo.", '{"names": ["Ann", "Bo"]}')
