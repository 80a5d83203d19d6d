"""Grounding verifier: extractions come from the input, summaries are shorter, rewrites differ.

The source of a pair is its user text after the first blank line (the `input` of an Alpaca pair);
a pair without one has no source and is skipped. Which families are which comes from
`gate.grounding` (by default: names starting with "extract", with "summar", and "rewrite",
"paraphrase", "rephrase" or "simplif"). Texts are compared normalised (`curator.gate.normalize`).

- `grounding:not_in_source` (extract families): every string value of a JSON response, or else every
  item of the response (lines, or comma / semicolon separated parts) and every quoted span ("..."),
  occurs in the user text.
- `grounding:not_shorter` (summary families): the summary has fewer words than its source.
- `grounding:unchanged` (rewrite families): the rewrite differs from its source.
"""
from __future__ import annotations

import json
import re
from collections import Counter

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import GroundingConfig, Spec
from curator.text_signals import normalize

QUOTED = re.compile(r"\"([^\"\n]{3,200})\"|“([^”\n]{3,200})”")
ITEM_SPLIT = re.compile(r"\n|;|,(?=\s)")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def source_of(user: str) -> str | None:
    """The part of the user text after the instruction (the first blank line), or None."""
    parts = user.split("\n\n", 1)
    return parts[1] if len(parts) == 2 and parts[1].strip() else None


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def extracted_items(response: str) -> list[str]:
    """The values an extraction claims: JSON string values, else its lines or list parts and its quoted spans."""
    try:
        return _strings(json.loads(response))
    except ValueError:
        return ([BULLET.sub("", part) for part in ITEM_SPLIT.split(response) if part.strip()]
                + [a or b for a, b in QUOTED.findall(response)])


def _family_kind(name: str, config: GroundingConfig) -> str | None:
    for kind, families, pattern in (("extract", config.extract_families, r"^extract"),
                                    ("summary", config.summary_families, r"summar"),
                                    ("rewrite", config.rewrite_families, r"rewrite|paraphras|rephras|simplif")):
        if name in families if families is not None else re.search(pattern, name):
            return kind
    return None


class Grounding:
    """Reject extractions not found in the input, summaries not shorter, rewrites unchanged."""

    name = "grounding"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    def __init__(self, config: GroundingConfig, families: tuple[str, ...]):
        self.kinds = {name: kind for name in families if (kind := _family_kind(name, config))}

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Grounding":
        return cls(spec.gate.grounding, tuple(t.name for t in spec.task_families))

    def problem(self, kind: str, record: dict) -> str | None:
        user, response = user_text(record), assistant_text(record)
        source = source_of(user)
        if kind == "extract":
            haystack = normalize(user)
            missing = [c for c in extracted_items(response) if normalize(c) and normalize(c) not in haystack]
            return f"grounding:not_in_source: {missing[0][:60]!r} does not occur in the input" if missing else None
        if source is None:
            return None
        if kind == "summary":
            n_summary, n_source = len(response.split()), len(source.split())
            if n_summary >= n_source:
                return f"grounding:not_shorter: the summary has {n_summary} words, its source {n_source}"
        elif normalize(response) == normalize(source):
            return "grounding:unchanged: the rewrite repeats its source"
        return None

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        checked: Counter[str] = Counter()
        found: Counter[str] = Counter()
        for row in rows:
            kind = self.kinds.get(row.record.get("task_family"))
            problem = self.problem(kind, row.record) if kind else None
            checked[kind or "not applicable"] += 1
            if problem:
                found[problem.split(":")[1]] += 1
                rejected.append(Rejection(row, problem))
            else:
                kept.append(row)
        stats = {"checked": len(rows), "by_kind": dict(checked), "found": dict(found), "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
