"""`judge`: an LLM scores each pair 1-10 against a rubric, with a one-line reason.

The rubric is built from the spec: the pair's task family (description), its format and length band, the
response standards (tone, format rules) and, for a refusal family, the refusal policy; the judge is asked
whether the response is correct and keeps to all of it. The judge is any OpenAI-compatible endpoint
(`gate.judge.base_url`; the embedded llama.cpp server with gemma-3-270m by default, which is far too small to
judge well: the default shows the mechanics, a real judge goes behind `base_url`).

Verdicts are parsed strictly: a JSON object with exactly `score` (an integer 1-10) and `reason` (a line with
at least one letter: a copied `...` is no reason), optionally in one code fence, or the two lines `Score: N` /
`Reason: ...`. In completion mode a GBNF grammar makes the server write the JSON shape, reason first (the
score then follows the judge's own words). A reply in neither shape is never guessed at: the row is
rejected as `judge:unparseable` (quarantined for a human). A row scored below `threshold` is rejected as
`judge:low_score`. Every parsed score lands in `row.scores["judge"]`, which ranks duplicates later.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.gate.teacher_calls import Endpoint, ask_all, response_cache_path
from curator.generate.plan import LOOKALIKE
from curator.generate.prompts import describe_format, policy_text, standards_text
from curator.spec import JudgeConfig, Spec
from curator.teacher.client import TeacherRequest

SPEAKERS = {"system": "System", "user": "User", "assistant": "Assistant"}
REASON_CHARS = 120
SHOWN_CHARS = 2500  # of the conversation and of the response each: the judge prompt fits a 2048-token context
VERDICT_GRAMMAR = (  # the verdict's JSON shape, reason first, for llama.cpp's /v1/completions
    'root ::= "{\\"reason\\": \\"" reason "\\", \\"score\\": " score "}"\n'
    f'reason ::= [A-Za-z] [^"\\\\\\x7F\\x00-\\x1F]{{0,{REASON_CHARS - 1}}}\n'
    'score ::= "10" | [1-9]\n'
)
ASK = ('Reply with only a JSON object {"reason": "<one short line: what is right or wrong>", '
       '"score": <an integer from 1 (unusable) to 10 (excellent)>}.')
_LETTER = re.compile(r"[^\W\d_]")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S)
_TEXT_VERDICT = re.compile(r"Score:[ \t]*(10|[1-9])(?:[ \t]*/[ \t]*10)?[ \t]*\n+[ \t]*Reason:[ \t]*(\S[^\n]*)", re.I)


@dataclass(frozen=True)
class Verdict:
    score: int
    reason: str


def parse_verdict(text: str) -> Verdict | None:
    """The judge's score and reason, or None when the reply is not exactly one of the accepted shapes."""
    body = text.strip()
    if fenced := _FENCE.fullmatch(body):
        body = fenced.group(1)
    if body.startswith("{"):
        try:
            obj = json.loads(body)
        except ValueError:
            return None
        if not isinstance(obj, dict) or set(obj) != {"score", "reason"}:
            return None
        score, reason = obj["score"], obj["reason"]
        if type(score) is not int or not 1 <= score <= 10 or not isinstance(reason, str) or not _LETTER.search(reason):
            return None
        return Verdict(score, " ".join(reason.split()))
    if (match := _TEXT_VERDICT.fullmatch(body)) and _LETTER.search(match.group(2)):
        return Verdict(int(match.group(1)), match.group(2).strip())
    return None


def rubric(spec: Spec, record: dict) -> str:
    """What a good response to this pair looks like: family, format, length, standards, and for a refusal family
    the policy (a benign look-alike, strategy `...:lookalike`, is to be answered, not refused)."""
    family = spec.family(record["task_family"])
    band = spec.band(family.length_band)  # the band the schema check measured the response against
    lines = [
        f"- Task family: {family.name} ({family.description})",
        f"- Format: {describe_format(spec.format(record['format']))}",
        f"- Length: {band.min_words}-{band.max_words} words",
        "- The response is correct: facts, arithmetic, labels and extracted values are right.",
    ]
    if standards := standards_text(spec):
        lines.append("- Response standards:\n" + standards)
    if family.refusal and (policy := policy_text(spec)):
        lookalike = str(record["provenance"].get("strategy", "")).endswith(f":{LOOKALIKE}")
        lines.append(("- The request only sounds like one the policy covers and is harmless; a good response "
                      "answers it and does not refuse.\n" if lookalike else
                      "- The request is one the policy says to decline; a good response is the refusal.\n") + policy)
    return "\n".join(lines)


def conversation(record: dict) -> tuple[str, str]:
    """The turns before the last assistant turn, rendered, and that last assistant turn (the response judged)."""
    messages = record["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    turns = "\n".join(f"{SPEAKERS[m['role']]}: {m['content'].strip()}" for m in messages[:last])
    return turns, messages[last]["content"].strip()


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters and a note of how many more the judge does not see."""
    return text if len(text) <= limit else f"{text[:limit]}\n[... {len(text) - limit} more characters not shown]"


def judge_request(spec: Spec, config: JudgeConfig, record: dict) -> TeacherRequest:
    """The judge's request for one pair: greedy, a GBNF grammar for the verdict in completion mode; long
    conversations and responses are cut to SHOWN_CHARS, saying so."""
    turns, response = conversation(record)
    task = (f"You review training data for an AI assistant. Rate the final response against this rubric:\n"
            f"{rubric(spec, record)}\n\nConversation:\n{shown(turns)}\n\nResponse to rate:\n{shown(response)}")
    sampling = {"temperature": 0.0, "top_p": 1.0, "max_tokens": config.max_tokens, "seed": 0}
    if config.mode == "chat":
        return TeacherRequest(model=config.model, sampling=sampling,
                              messages=({"role": "user", "content": f"{task}\n\n{ASK}"},))
    return TeacherRequest(model=config.model, sampling=sampling, prompt=f"{task}\n\n{ASK}\nVerdict:",
                          grammar=VERDICT_GRAMMAR)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class Judge:
    """The `judge` check (see the module docstring)."""

    name = "judge"

    def __init__(self, spec: Spec, config: JudgeConfig):
        self.spec = spec
        self.config = config
        self.endpoint = Endpoint(config.model, config.base_url, config.api_key_env, config.max_in_flight,
                                 requests_per_minute=config.requests_per_minute,
                                 tokens_per_minute=config.tokens_per_minute)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Judge":
        return cls(spec, spec.gate.judge)

    def run(self, rows: list[Row]) -> CheckResult:
        families = set(self.config.families)
        judged = [r for r in rows if not families or r.record["task_family"] in families]
        replies, usage = ask_all(self.name, self.endpoint,
                                 [judge_request(self.spec, self.config, r.record) for r in judged],
                                 response_cache_path(self.config.cache))
        rejected: list[Rejection] = []
        scores: Counter[int] = Counter()
        threshold = self.config.threshold
        for row, reply in zip(judged, replies):
            verdict = parse_verdict(reply.text)
            if verdict is None:
                rejected.append(Rejection(row, f"judge:unparseable: {_clip(reply.text) or '(empty reply)'}"))
                continue
            row.scores["judge"] = float(verdict.score)
            scores[verdict.score] += 1
            if verdict.score < threshold:
                rejected.append(Rejection(row, f"judge:low_score: {verdict.score}/10 < {threshold:g}: {verdict.reason}"))
        out = {id(x.row) for x in rejected}
        n_scored = sum(scores.values())
        return CheckResult(
            kept=[r for r in rows if id(r) not in out],
            rejected=rejected,
            stats={
                "checked": len(rows), "removed": len(rejected), "judged": len(judged),
                "skipped": len(rows) - len(judged), "unparseable": len(judged) - n_scored,
                "low_score": len(rejected) - (len(judged) - n_scored), "threshold": threshold,
                "histogram": {str(s): scores[s] for s in range(1, 11)},
                "mean": round(sum(s * n for s, n in scores.items()) / n_scored, 3) if n_scored else None,
                **usage,
            },
        )
