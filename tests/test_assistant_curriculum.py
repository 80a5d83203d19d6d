"""The assistant curriculum: seed refusals and look-alikes, refusal coverage verdicts and datasheet words,
selection under a token budget (verifier passes, then embedding-space coverage with the real model2vec model)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from curator.cli import main as curator_main
from curator.gate.check import Row
from curator.gate.checks.selection import Selection, approx_tokens
from curator.gate.embeddings import model2vec_embedder
from curator.gate.expectations import evaluate
from curator.records import build_messages, make_pair
from curator.refusal_coverage import refusal_coverage
from curator.release.report import refusal_summary
from curator.seeds import seed_pairs
from curator.spec import SelectionConfig, load_spec

REPO = Path(__file__).resolve().parents[1]
ASSISTANT = REPO / "specs" / "assistant.yaml"
SUITES = [REPO / "trainer" / "suites" / "instructions.jsonl", REPO / "trainer" / "suites" / "refusals.jsonl"]


@pytest.fixture(scope="module")
def spec():
    return load_spec(ASSISTANT)


def row(instruction: str, output: str, *, family: str = "general", order: int = 0) -> Row:
    record = make_pair(build_messages(instruction, "", output), task_family=family, format="free_text",
                       difficulty="medium", source="human")
    return Row(record, "runs/fixture", order + 1, order)


def test_seeds_command_writes_refusals_and_lookalikes(spec, tmp_path, capsys):
    out = tmp_path / "seeds"
    assert curator_main(["seeds", "--spec", str(ASSISTANT), "--out", str(out)]) == 0
    assert curator_main(["seeds", "--spec", str(ASSISTANT), "--out", str(out)]) == 0  # again: nothing added
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert [p["id"] for p in pairs] == [p["id"] for p in seed_pairs(spec)]
    refusal_families = [t.name for t in spec.task_families if t.refusal]
    coverage = refusal_coverage(pairs, refusal_families)
    assert all(c["refusals"] >= 6 and c["lookalikes"] >= 3 for c in coverage.values()), coverage
    assert sum(c["refusals"] + c["lookalikes"] for c in coverage.values()) == len(pairs)


def test_seed_prompts_do_not_leak_the_shipped_suites(spec):
    from curator.gate.checks.decontaminate import Decontaminate, eval_texts_from_file

    texts = [t for path in SUITES for t in eval_texts_from_file(path)]
    check = Decontaminate(spec.gate.decontamination, texts)
    rows = [Row(p, "seeds", i + 1, i) for i, p in enumerate(seed_pairs(spec))]
    assert check.run(rows).rejected == []


def test_refusal_coverage_is_a_verdict(spec):
    pairs = seed_pairs(spec)
    verdicts = {v["name"]: v for v in evaluate(spec, kept=pairs, train=pairs, n_input=len(pairs), n_rejected=0)}
    coverage = {k: v for k, v in verdicts.items() if "coverage" in k}
    assert len(coverage) == 8 and all(v["passed"] for v in coverage.values()), coverage
    without = [p for p in pairs if not (p["task_family"] == "refuse_malware" and "lookalike" not in p["provenance"]["strategy"])]
    verdicts = {v["name"]: v for v in evaluate(spec, kept=without, train=without, n_input=len(pairs), n_rejected=0)}
    assert not verdicts["refusal_coverage:refuse_malware"]["passed"]
    assert verdicts["lookalike_coverage:refuse_malware"]["passed"] and verdicts["refusal_coverage:refuse_weapons"]["passed"]


def test_too_few_lookalikes_per_refusal_is_a_verdict(spec):
    pairs = seed_pairs(spec)
    verdicts = {v["name"]: v for v in evaluate(spec, kept=pairs, train=pairs, n_input=len(pairs), n_rejected=0)}
    balance = {k: v for k, v in verdicts.items() if k.startswith("lookalike_balance:")}
    assert len(balance) == 4 and all(v["passed"] for v in balance.values()), balance
    lookalikes = [p for p in pairs if p["task_family"] == "refuse_malware" and "lookalike" in p["provenance"]["strategy"]]
    fewer = [p for p in pairs if p not in lookalikes[: len(lookalikes) // 2]]
    verdicts = {v["name"]: v for v in evaluate(spec, kept=fewer, train=fewer, n_input=len(pairs), n_rejected=0)}
    assert not verdicts["lookalike_balance:refuse_malware"]["passed"]
    assert verdicts["lookalike_balance:refuse_weapons"]["passed"] and verdicts["lookalike_coverage:refuse_malware"]["passed"]


def test_datasheet_says_what_will_and_will_not_be_refused(spec):
    raw = spec.raw
    families = [t.name for t in spec.task_families if t.refusal]
    none = refusal_summary(SimpleNamespace(refusal_coverage=refusal_coverage([], families)), raw)
    assert "holds no refusal examples" in none and "will not refuse anything" in none
    some = refusal_summary(SimpleNamespace(refusal_coverage=refusal_coverage(seed_pairs(spec)[:9], families)), raw)
    assert "making, modifying or obtaining weapons and explosives (6 refusal examples; only 3 harmless look-alikes" in some
    assert "no refusal examples for malware" in some


def test_token_budget_keeps_verified_rows_then_covers_embedding_space():
    near = [row(f"Is the review of the film number {i} positive or negative? The film was fine.",  # longest answers:
                "Positive: the reviewer says the film was fine overall and would watch it again.", order=i) for i in range(6)]  # first by keep_rank
    distinct = [row(q, a, order=10 + i) for i, (q, a) in enumerate([
        ("Write a haiku about the sea.", "Waves fold into foam / the tide keeps its own counsel / gulls argue above"),
        ("List three prime numbers.", "2, 3 and 5."),
        ("Translate 'good morning' into Spanish.", "Buenos días."),
    ])]
    verified = row("What is 6 x 7?", "6 x 7 = 42. The answer is 42.", order=20)
    verified.scores["verified"] = 1
    rows = near + distinct + [verified]
    budget = sum(approx_tokens(r.record) for r in [verified, near[0], *distinct])
    result = Selection(SelectionConfig(max_tokens_per_cell=budget), embed=model2vec_embedder).run(rows)
    kept = {r.order for r in result.kept}
    assert verified.order in kept  # verifier passes first
    assert kept == {verified.order, near[0].order, *(r.order for r in distinct)}  # one of the template, then coverage
    assert len(result.kept) + len(result.rejected) == len(rows)
    assert result.stats["tokens"] <= budget and all(r.reason.startswith("selection:below_cut") for r in result.rejected)


def test_overall_budget_keeps_each_family_at_its_share_of_rows():
    short = [row(f"Label {i}?", "yes", family="templated", order=i) for i in range(40)]
    long = [row(f"Explain topic {i} in detail.", " ".join(["word"] * 60) + f" {i}.", family="general", order=100 + i)
            for i in range(40)]
    selection = Selection(SelectionConfig(max_tokens=1200), {"templated": 0.5, "general": 0.5})
    result = selection.run(short + long)
    kept = [r.record["task_family"] for r in result.kept]
    assert abs(kept.count("templated") - kept.count("general")) <= 2, kept
    assert result.stats["tokens"] <= 1200
