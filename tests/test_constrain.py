"""`curator constrain` and the gate's constraints check: derived pairs follow the format instructions their user
turn adds (checked by the battery's own checkers), keep their input and meaning, and are copied once each,
resumably; the gate rejects pairs that break a constraint they record, in both engines."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from curator.cli import main
from curator.constrain import FOLLOWED, TRANSFORMS, constrained
from curator.errors import CuratorError
from curator.gate.pipeline import run_gate
from curator.instructions import build_instruction
from curator.records import build_messages, make_pair, pair_id, schema_errors
from curator.release.store import read_ledger, read_split
from curator.rundir import RunDir
from curator.spec import load_spec
from test_gate import write_run

REPO = Path(__file__).resolve().parents[1]
PROSE = ("The museum opens at nine. Tickets cost ten euros for adults and are free for children. "
         "Guided tours start every hour from the main hall.")
LINES = "Preheat the oven to 200 degrees.\nMix flour and butter.\nBake for twenty minutes."
CODE = "def add(a, b):\n    return a + b"


def pair(instruction: str, output: str, input_text: str = "", family: str = "summarize") -> dict:
    return make_pair(build_messages(instruction, input_text, output), task_family=family, format="free_text",
                     difficulty="easy", length_band="medium", source="human")


FIXTURES = [
    pair("Summarize the notice for a visitor.", PROSE, "The city museum, in the old town, opens its doors at nine "
         "every morning. Adult tickets are ten euros; children enter free. Guided tours leave the main hall hourly."),
    pair("Give the steps to bake a simple shortbread", LINES, family="rewrite"),
    pair("Classify the sentiment: positive or negative.", "positive", "I loved every minute of it.", family="classify"),
    pair("Write a Python function that adds two numbers.", CODE, family="extract"),
    pair("Explain why the sky is blue.", "Sunlight is scattered by air molecules, and blue light is scattered the "
         "most because of its short wavelength! That is why we see a blue sky during the day.", family="reason"),
]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(w in it for w in short)


def test_derived_pairs_follow_their_constraints_and_keep_input_and_meaning():
    seen: set[str] = set()
    for record in FIXTURES:
        user, response = record["messages"][0]["content"], record["messages"][1]["content"]
        for seed in range(150):
            derived = constrained(record, random.Random(seed))
            assert derived is not None
            assert schema_errors(derived) == []
            assert derived["provenance"]["derived_from"] == record["id"] != derived["id"]
            new_user, new_response = derived["messages"][0]["content"], derived["messages"][1]["content"]
            for c in derived["constraints"]:
                assert build_instruction(c["id"], c["kwargs"]).check(new_response), (c, new_response)
                seen.add(c["id"])
            # the input text after the instruction is untouched; the instruction only grew
            head, _, rest = user.partition("\n\n")
            assert new_user.startswith(head.rstrip(".")) and new_user.endswith(rest) and len(new_user) > len(user)
            # meaning kept: the original's words, in order, are all in the new response
            assert is_subsequence(words(response), words(new_response)), (response, new_response)
            if record["messages"][1]["content"] == CODE:
                assert new_response == CODE  # code is never reformatted, only given limits it already meets
    kinds = {t.__name__ for t in TRANSFORMS} | {f.__name__ for f in FOLLOWED}
    assert len(kinds) == 13
    assert seen == {"case:uppercase", "case:lowercase", "startend:quotation", "format:postscript",
                    "startend:ends_with", "format:bullet_list", "format:numbered_list", "format:sections",
                    "length:words", "length:sentences", "keywords:include", "keywords:forbidden",
                    "punctuation:no_comma"}


def test_a_pair_no_constraint_fits_is_left_alone():
    numbers = pair("What is 6 times 7?", "42", family="reason")
    outcomes = [constrained(numbers, random.Random(seed)) for seed in range(60)]
    assert None in outcomes  # capitals were drawn for a response without letters: the check refused them
    for derived in filter(None, outcomes):
        response = derived["messages"][-1]["content"]
        assert all(build_instruction(c["id"], c["kwargs"]).check(response) for c in derived["constraints"])
    every_filler = pair("Say it.", "very really basically actually simply obviously literally definitely", family="reason")
    assert all(c["id"] != "keywords:forbidden" or c["kwargs"]["keywords"]
               for seed in range(60) for c in (constrained(every_filler, random.Random(seed)) or {}).get("constraints", []))


def test_multi_turn_pairs_are_left_alone():
    record = make_pair([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
                        {"role": "user", "content": "Bye."}, {"role": "assistant", "content": "Goodbye."}],
                       task_family="summarize", format="free_text", difficulty="easy", source="human")
    assert constrained(record, random.Random(0)) is None


def pool(n: int) -> list[dict]:
    out = []
    for k in range(n):
        family = ("summarize", "rewrite", "refuse")[k % 3]
        text = f"Item {k} was delivered on day {k + 1}. It arrived in good order. The buyer left a review."
        out.append(pair(f"Summarize order note {k}.", text, family=family))
    return out


def without_time(record: dict) -> dict:
    """The record without its creation time (a derived pair is created when it is written)."""
    return {**record, "provenance": {k: v for k, v in record["provenance"].items() if k != "created_at"}}


def test_constrain_copies_every_pair_once_skips_refusals_and_resumes_after_a_crash(tmp_path):
    records = pool(60)
    write_run(tmp_path / "runs" / "pool", records)
    spec = REPO / "specs" / "starter.yaml"
    out = tmp_path / "runs" / "constrained"
    args = ["constrain", str(tmp_path / "runs" / "pool"), "--spec", str(spec), "--out", str(out), "--share", "0.5"]
    assert main(args) == 0
    full = (out / "pairs.jsonl").read_bytes()
    rows = [json.loads(line) for line in full.splitlines()]
    by_origin = {r["provenance"].get("derived_from") or r["id"]: r for r in rows}
    assert len(rows) == 60 and set(by_origin) == {r["id"] for r in records}
    derived = [r for r in rows if r.get("constraints")]
    assert 15 <= len(derived) <= 35  # half of the 40 pairs outside the refusal family, by seeded draws
    assert all(r["task_family"] != "refuse" for r in derived)
    assert all(by_origin[r["id"]] == r for r in records if r["task_family"] == "refuse")
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "complete" and meta["counts"]["constrained"] == len(derived)
    assert sum(v for k, v in meta["counts"].items() if ":" in k) == sum(len(r["constraints"]) for r in derived)

    # a crash after 25 rows, mid-line: the rerun writes the rest, the same rows, none twice
    lines = full.splitlines(keepends=True)
    (out / "pairs.jsonl").write_bytes(b"".join(lines[:25]) + lines[25][:40])
    (out / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    assert main(args) == 0
    resumed = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert [without_time(r) for r in resumed] == [without_time(r) for r in rows]
    with pytest.raises(CuratorError, match="a run of something else"):
        from curator.constrain import write_constrained
        write_constrained([RunDir(tmp_path / "runs" / "pool")], out, share=0.3, seed=0, skip_families=frozenset())


@pytest.mark.parametrize("engine", ["memory", "stream"])
def test_gate_rejects_pairs_that_break_their_constraints(tmp_path, engine):
    spec = load_spec(REPO / "specs" / "starter.yaml")
    base = pair("Summarize the notice.", PROSE, "The museum opens at nine; tickets are ten euros, children free, "
                "and tours leave the main hall every hour, all year round except on public holidays.")
    derived = [constrained(base, random.Random(seed)) for seed in range(3)]
    broken = json.loads(json.dumps(derived[0]))
    broken["constraints"] = [{"id": "case:uppercase", "kwargs": {}}]
    broken["messages"][1]["content"] = "Opens at nine, ten euros, free for children."
    broken["id"] = pair_id(broken["messages"])
    unknown = json.loads(json.dumps(derived[1]))
    unknown["constraints"] = [{"id": "format:haiku", "kwargs": {}}]
    run = write_run(tmp_path / "runs" / "c", [broken, unknown, derived[2]])
    report = run_gate([run.path], spec, root=tmp_path / "releases", engine=engine)
    ledger = {r["id"]: (r["check"], r["reason"]) for r in read_ledger(report.release)}
    assert ledger[broken["id"]] == ("constraints", "constraints:case:uppercase: not followed ({})")
    assert ledger[unknown["id"]][0] == "constraints" and "unknown instruction id 'format:haiku'" in ledger[unknown["id"]][1]
    assert derived[2]["id"] not in ledger
    kept = [r for part in ("train", "eval") for r in read_split(report.release, part)]
    assert [(r["id"], r["constraints"]) for r in kept] == [(derived[2]["id"], derived[2]["constraints"])]
    stats = next(c for c in report.manifest["checks"] if c["name"] == "constraints")
    assert stats["removed"] == 2
