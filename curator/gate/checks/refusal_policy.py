"""Refusal verifier: a pair refuses exactly when the spec's refusal policy says it should.

Refusals are told by `curator.text_signals.is_refusal`, the project's one detector. Rules:

- `refusal_policy:over_refusal`: a refusal in a family the spec does not mark `refusal: true` (such
  a family must answer), or in a benign look-alike (provenance strategy `...:lookalike`).
- `refusal_policy:benign_refused`: a refusal in a refusal family of a request that names nothing the
  policy refuses: no harm term (`HARM_TERMS`, stems matched at word starts) and no distinctive word
  of the policy's `refuse` list (words of 5+ letters that are not `GENERIC`) occurs in the user text.
  The teacher was asked for a harmful request and wrote a harmless one ("Write a list of
  instructions to help your neighbour."); teaching its refusal teaches over-refusal.
- `refusal_policy:missing_refusal`: an answer, not a refusal, in a refusal family (not a look-alike):
  compliance with a request the policy says to refuse.
"""
from __future__ import annotations

import re
from collections import Counter

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import Spec
from curator.text_signals import REFUSAL_DETECTOR_VERSION, is_refusal

HARM_TERMS = tuple("""
weapon gun firearm rifle pistol ammunition bomb explosiv grenade detonat napalm poison toxin nerve agent
bioweapon anthrax ricin malware virus ransomware trojan keylogger spyware botnet ddos exploit hack phish
crack password steal stolen theft rob burglar shoplift kill murder assassin hurt harm injur attack assault
stab shoot threat harass stalk bully doxx dox blackmail extort kidnap torture abuse suicid self-harm
meth cocaine heroin fentanyl narcotic drug launder counterfeit fraud scam forge smuggl traffick terror
extremis racist slur hate
""".split())
GENERIC = frozenset("""
about against breaking computer computers content create detailed explain instructions information
making other others people person persons please request requests something systems things should
their there these those using which would write
""".split())
_WORD = re.compile(r"[a-z][a-z'-]+")


def policy_terms(spec: Spec) -> tuple[str, ...]:
    """Harm terms plus the distinctive words (5+ letters, not generic) of the policy's `refuse` list."""
    words = {w for item in spec.refusal_policy.refuse for w in _WORD.findall(item.lower())
             if len(w) >= 5 and w not in GENERIC}
    return HARM_TERMS + tuple(sorted(words))


def names_policy_harm(text: str, terms: tuple[str, ...]) -> bool:
    """Whether a word of the text starts with one of the terms."""
    return any(word.startswith(terms) for word in _WORD.findall(text.lower()))


class RefusalPolicy:
    """Reject over-refusals, refusals of harmless requests, and answers the policy says to refuse."""

    name = "refusal_policy"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    def __init__(self, refusal_families: frozenset[str], terms: tuple[str, ...]):
        self.refusal_families = refusal_families
        self.terms = terms

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "RefusalPolicy":
        return cls(frozenset(t.name for t in spec.task_families if t.refusal), policy_terms(spec))

    def problem(self, record: dict) -> str | None:
        refused = is_refusal(assistant_text(record))
        family = record.get("task_family")
        lookalike = str(record.get("provenance", {}).get("strategy", "")).endswith(":lookalike")
        if family not in self.refusal_families:
            return f"refusal_policy:over_refusal: a refusal in family {family!r}, which must answer" if refused else None
        if lookalike:
            return "refusal_policy:over_refusal: a benign look-alike was refused" if refused else None
        if not refused:
            return f"refusal_policy:missing_refusal: an answer in refusal family {family!r}"
        if not names_policy_harm(user_text(record), self.terms):
            return "refusal_policy:benign_refused: the request names nothing the refusal policy refuses"
        return None

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        found: Counter[str] = Counter()
        for row in rows:
            problem = self.problem(row.record)
            if problem:
                found[problem.split(":")[1]] += 1
                rejected.append(Rejection(row, problem))
            else:
                kept.append(row)
        stats = {"checked": len(rows), "detector_version": REFUSAL_DETECTOR_VERSION, "found": dict(found),
                 "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
