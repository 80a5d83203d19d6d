"""Generation strategies beyond Self-Instruct: respond (new responses for given instructions, multi-turn included),
Evol-Instruct deepen / widen, a weighted mix of strategies, benign refusal look-alikes and structured output;
against the real embedded gemma-3-270m server."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter

import jsonschema
import pytest

from curator.cli import main
from curator.generate.parents import run_sources, seed_sources
from curator.generate.parse import Fields, Problem, review
from curator.generate.plan import (
    DEEPEN, LOOKALIKE, RESPOND, SELF_INSTRUCT, WIDEN, Parent, Slot, largest_remainder, mixed_plan, parent_plan, plan,
)
from curator.generate.prompts import LOOKALIKE_DEMOS, lookalike_prompt, self_instruct_prompt
from curator.generate.requests import build_request
from curator.records import pair_id, schema_errors
from curator.rundir import RunDir
from curator.spec import SpecError, load_spec
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


MULTI_TURN_ROWS = [
    {"messages": [
        {"role": "user", "content": "Summarize the text in one sentence.\n\nThe bakery on Elm Street will close in May after "
         "forty years, because the owners are retiring and no buyer was found."},
        {"role": "assistant", "content": "The Elm Street bakery closes in May after forty years as its owners retire."},
        {"role": "user", "content": "Now summarize it in at most eight words."},
        {"role": "assistant", "content": "old answer"},
    ], "task_family": "summarize", "format": "free_text", "difficulty": "easy"},
    {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Rewrite the sentence to sound more polite.\n\nGive me the keys now."},
        {"role": "assistant", "content": "Could you give me the keys, please?"},
        {"role": "user", "content": "Rewrite it once more, even more politely."},
    ], "task_family": "rewrite", "format": "free_text", "difficulty": "easy"},  # ends with the user: the response is appended
    {"messages": [
        {"role": "user", "content": "Rewrite the sentence in the passive voice.\n\nThe committee approved the budget."},
        {"role": "assistant", "content": "The budget was approved by the committee."},
        {"role": "user", "content": "Now rewrite the original sentence in the future tense."},
        {"role": "assistant", "content": "old answer"},
    ], "task_family": "rewrite", "format": "free_text", "difficulty": "easy"},
]


@pytest.fixture(scope="module")
def imported_conversations(tmp_path_factory) -> RunDir:
    """Multi-turn conversations imported with `curator import --format openai-chat`."""
    directory = tmp_path_factory.mktemp("conversations")
    source = directory / "chats.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in MULTI_TURN_ROWS))
    assert main(["import", str(source), "--format", "openai-chat", "--out", str(directory / "run")]) == 0
    return RunDir(directory / "run")


def test_respond_requests_carry_the_earlier_turns(imported_conversations, tmp_path):
    sources = run_sources(SPEC, imported_conversations.path).items
    first = sources[0].parent
    assert (first.instruction, first.input, first.output) == ("Now summarize it in at most eight words.", "", "old answer")
    assert first.context == tuple(MULTI_TURN_ROWS[0]["messages"][:2])
    assert sources[1].parent.context == tuple(MULTI_TURN_ROWS[1]["messages"][1:3])  # system message dropped
    assert sources[1].parent.output == ""
    slot = parent_plan(SPEC, sources, (RESPOND,))[0]
    request, template = build_request(SPEC, slot)
    assert template == "respond_turns_v1"
    assert request.prompt.endswith(
        "Conversation so far:\nUser: Summarize the text in one sentence.\n\nThe bakery on Elm Street will close in May "
        "after forty years, because the owners are retiring and no buyer was found.\nAssistant: The Elm Street bakery "
        "closes in May after forty years as its owners retire.\nInstruction: Now summarize it in at most eight words.\n"
        "Input: <noinput>\nResponse:")
    chat = load_spec(write_spec(tmp_path, mode="chat"))
    request, template = build_request(chat, slot)
    assert template == "chat_respond_v1"
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "user"]
    assert list(request.messages[1:]) == MULTI_TURN_ROWS[0]["messages"][:3]
    single = parent_plan(SPEC, seed_sources(SPEC).items, (RESPOND,))[0]
    assert build_request(SPEC, single)[1] == "respond_v1"  # a single-turn parent keeps the plain template


def test_respond_to_multi_turn_pairs_keeps_the_conversation(teacher_url, imported_conversations, tmp_path):
    """Completion mode: the base gemma-3-270m rambles past any max_tokens in chat mode (its chat requests are
    checked above)."""
    spec = write_spec(tmp_path)
    out = tmp_path / "respond"
    assert main(["generate", str(spec), "--responses-for", str(imported_conversations.path), "--out", str(out),
                 "--base-url", teacher_url, "--cache", str(tmp_path / "cache.sqlite")]) == 0
    run = RunDir(out)
    counts = run.read_meta()["counts"]
    assert counts["planned"] == 3 == counts["accepted"] + counts["quarantined"] + counts["failed"]
    parents = {p["id"]: p for p in imported_conversations.pairs()}
    pairs = list(run.pairs())
    assert pairs, [q["reason"] for q in run.quarantined()]
    for pair in pairs:
        parent = parents[pair["provenance"]["plan_slot"].removeprefix("respond/")]
        turns = [m for m in parent["messages"] if m["role"] != "system"]
        last_user = max(i for i, m in enumerate(turns) if m["role"] == "user")
        assert pair["messages"][:-1] == turns[: last_user + 1]  # earlier turns and the answered user turn, unchanged
        assert pair["messages"][-1]["role"] == "assistant" and pair["messages"][-1]["content"] not in ("", "old answer")
        assert pair["id"] == pair_id(pair["messages"]) and schema_errors(pair) == []
        assert pair["provenance"]["prompt_template"] == "respond_turns_v1"


def test_largest_remainder_and_mixed_plan():
    assert largest_remainder([("a", 0.5), ("b", 0.5)], 3) == {"a": 2, "b": 1}  # a tie goes to the first listed
    counts = largest_remainder([(SELF_INSTRUCT, 0.7), (DEEPEN, 0.2), (WIDEN, 0.1)], 10)
    assert counts == {SELF_INSTRUCT: 7, DEEPEN: 2, WIDEN: 1}
    seeds = seed_sources(SPEC).items
    slots = mixed_plan(SPEC, counts, seeds)
    assert Counter(s.strategy for s in slots) == {SELF_INSTRUCT: 7, DEEPEN: 2, WIDEN: 1}
    assert [s.strategy for s in slots[:3]] == [SELF_INSTRUCT, DEEPEN, WIDEN]  # interleaved
    assert {s.id for s in slots if s.strategy == SELF_INSTRUCT} == {s.id for s in plan(SPEC, 7)}
    assert [s.id for s in slots if s.strategy == DEEPEN] == ["evol:deepen/seed:summarize#0", "evol:deepen/seed:summarize#1"]
    assert [s.id for s in mixed_plan(SPEC, counts, seeds)] == [s.id for s in slots]  # stable: the resume key
    assert len(mixed_plan(SPEC, {"evol": 1000}, seeds)) == 2 * len(seeds)  # parents run out


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


@pytest.mark.parametrize("generation,field,line_text,message", [
    ({"strategies": {"self_instruct": 0.7, "evol:deepen": 0.2}}, "generation.strategies", "strategies:",
     "shares must sum to 1 (they sum to 0.9)"),
    ({"strategies": {"self_instruct": 1.0, "evol:deepen": 0}}, "generation.strategies.evol:deepen", "evol:deepen", "must be > 0"),
    ({"strategies": {"self_instruct": 0.5, "magic": 0.5}}, "generation.strategies", "strategies:",
     "unknown field(s) ('magic' was unexpected)"),
    ({"strategies": {"evol": 0.5, "evol:widen": 0.5}}, "generation.strategies", "strategies:",
     "evol already holds evol:deepen and evol:widen; list either evol or those"),
    ({"strategy": "evol", "strategies": {"self_instruct": 1.0}}, "generation.strategies", "strategies:",
     "give either strategy or strategies, not both"),
])
def test_strategy_mix_errors_name_file_line_and_field(tmp_path, generation, field, line_text, message):
    path = write_spec(tmp_path, generation=generation)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(e.value) == f"{path}:{line_of(path, line_text)}: {field}: {message}"


@pytest.mark.parametrize("argv,message", [
    (["--strategy-mix", "self_instruct=0.7,evol:deepen=0.2"], "argument --strategy-mix: shares must sum to 1 (they sum to 0.9)"),
    (["--strategy-mix", "self_instruct=1,respond"], "argument --strategy-mix: 'respond': expected distinct STRATEGY=SHARE"),
    (["--strategy-mix", "self_instruct=0.5,magic=0.5"], "argument --strategy-mix: magic: unknown strategy"),
])
def test_strategy_mix_on_the_command_line_is_checked(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["generate", str(write_spec(tmp_path)), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_strategy_mix_conflicts_are_errors(tmp_path, capsys):
    spec = str(write_spec(tmp_path))
    assert main(["generate", spec, "--strategy-mix", "self_instruct=1", "--strategy", "evol"]) == 2
    assert "either --strategy or --strategy-mix" in capsys.readouterr().err
    assert main(["generate", spec, "--strategy-mix", "self_instruct=0.5,respond=0.5"]) == 2
    assert "needs a run directory" in capsys.readouterr().err


def test_strategy_mix_run_reports_target_and_outcome_per_strategy(teacher_url, tmp_path):
    spec = write_spec(tmp_path, generation={"strategies": {"self_instruct": 0.5, "evol:deepen": 0.5}})
    argv = ["generate", str(spec), "--pairs", "2", "--base-url", teacher_url, "--cache", str(tmp_path / "cache.sqlite")]
    assert main(argv) == 0
    [path] = (tmp_path / "data" / "runs").iterdir()
    assert "-mix-" in path.name
    run = RunDir(path)
    meta = run.read_meta()
    assert meta["strategy"] == "mix" and meta["strategy_mix"] == {"self_instruct": 0.5, "evol:deepen": 0.5}
    assert sorted(slots_on_disk(run) + [f["plan_slot"] for f in run.failed()]) == [
        "evol:deepen/seed:summarize#0", "summarize/free_text/easy/short/#0"]
    rows = meta["strategies"]
    assert [r["strategy"] for r in rows] == ["self_instruct", "evol:deepen"]  # the mix's order, not the alphabet's
    for row in rows:
        assert (row["share"], row["target"], row["planned"]) == (0.5, 1, 1)
        assert row["accepted"] + row["quarantined"] + row["failed"] == 1
    for outcome in ("accepted", "quarantined", "failed"):
        assert sum(r[outcome] for r in rows) == meta["counts"][outcome]
    assert main(argv) == 0  # resume: same mix, same slot ids, nothing pending
    assert run.read_meta()["sessions"][-1]["usage"] == {}
    other = ["generate", str(spec), "--pairs", "2", "--strategy-mix", "self_instruct=1", "--out", str(path)]
    assert main(other) == 2  # another mix does not resume this run
