"""Optional LLM-as-judge for open-ended quality, kept apart from the verifiable scores.

A judge model behind an OpenAI-compatible endpoint rates each answer to the release's eval split
from 1 to 10 against the instruction and the reference answer (greedy, one number). Replies
without a number in range are counted as unparseable, never guessed. The figures go under
`report["judge"]`, never into the verifiable metrics: a judge has biases (length, style, its own
outputs) that code checks do not, and the embedded gemma-3-270m is far too small to judge well.
"""
from __future__ import annotations

import re
from typing import Callable

from trainer.battery.stats import bootstrap_mean, bootstrap_paired_difference

JUDGE_TEMPLATE = """You are grading an assistant's answer to an instruction.

Instruction:
{instruction}

Reference answer:
{reference}

Assistant's answer:
{answer}

Rate the assistant's answer from 1 (useless) to 10 (excellent) for correctness, helpfulness and how well it follows the instruction. Reply with the number only.
Score:"""

_SCORE = re.compile(r"\b(10|[1-9])\b")

Ask = Callable[[list[list[dict]], str], list[str]]
"""Batched judge calls: conversations and a progress label -> one reply each."""


def parse_score(reply: str) -> int | None:
    """The first whole number from 1 to 10 in the judge's reply, or None."""
    m = _SCORE.search(reply)
    return int(m.group(1)) if m else None


def judge_conversation(instruction: str, reference: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": JUDGE_TEMPLATE.format(instruction=instruction, reference=reference,
                                                               answer=answer or "(empty)")}]


def judge_samples(samples: list[dict], instructions: list[str], sides: list[str], ask: Ask) -> dict:
    """Score every side's answer of every sample; return per-side means (overall and per family), the
    unparseable counts, and with two sides the paired tuned − base difference with a bootstrap CI.

    Writes each verdict into `sample[side]["judge"]` (`{"score", "reply"}`).
    """
    out: dict = {"sides": {}, "difference": None}
    for side in sides:
        replies = ask([judge_conversation(ins, s["reference"], s[side]["answer"])
                       for ins, s in zip(instructions, samples)], f"judge {side}")
        scores = [parse_score(r) for r in replies]
        for s, reply, score in zip(samples, replies, scores):
            s[side]["judge"] = {"score": score, "reply": reply}
        parsed = [(s["task_family"], sc) for s, sc in zip(samples, scores) if sc is not None]
        families: dict[str, list[int]] = {}
        for family, sc in parsed:
            families.setdefault(family, []).append(sc)
        mean = bootstrap_mean([sc for _, sc in parsed]) if parsed else None
        out["sides"][side] = {
            "scored": len(parsed),
            "unparseable": len(scores) - len(parsed),
            "mean": None if mean is None else {"estimate": mean.estimate, "low": mean.low, "high": mean.high},
            "families": {f: sum(v) / len(v) for f, v in sorted(families.items())},
        }
    if {"base", "tuned"} <= set(sides):
        both = [(s["base"]["judge"]["score"], s["tuned"]["judge"]["score"]) for s in samples
                if s["base"]["judge"]["score"] is not None and s["tuned"]["judge"]["score"] is not None]
        if both:
            d = bootstrap_paired_difference([b for b, _ in both], [t for _, t in both])
            out["difference"] = {"n": len(both), "estimate": d.estimate, "low": d.low, "high": d.high}
    return out
