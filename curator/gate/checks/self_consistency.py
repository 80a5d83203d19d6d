"""`self_consistency`: the teacher answers a pair's user turn again, `samples` times, and a pair whose final
answer disagrees with the teacher's majority is rejected.

Checked families: `gate.self_consistency.families`, by default those with a label or json format or named
reason, classify or extract. The samples are the `respond` strategy's request for the pair (same prompt
template and teacher as generation, curator/generate/requests.py) with seeds of their own, so each is its
own cache entry and a rerun pays nothing. The final answer of a response depends on the row's format:

- label: the response casefolded, without surrounding quotes and punctuation, when it is one of the labels;
- json: the (first) JSON object, canonical: keys sorted, arrays of scalars sorted (compared as sets);
- anything else (reason): the number after `####`, else after "the answer is", else the last number.

The row is kept when its answer is as common among the samples as the commonest one (a tie is kept and
counted); `row.scores["self_consistency"]` is the share of samples that agree with it. A row whose own answer
cannot be read, or whose samples have none, is kept unscored and counted.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from typing import Any

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.gate.teacher_calls import Endpoint, ask_all, response_cache_path
from curator.generate.parents import last_exchange
from curator.generate.parse import parse_response
from curator.generate.plan import RESPOND, Slot
from curator.generate.prompts import slot_seed
from curator.generate.requests import build_request
from curator.records import assistant_text
from curator.spec import SelfConsistencyConfig, Spec
from curator.teacher.client import TeacherRequest

NAMED_FAMILIES = ("reason", "classify", "extract")
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_HASHES = re.compile(rf"####\s*\$?({_NUMBER})")
_ANSWER_IS = re.compile(rf"answer is:?\s*\$?({_NUMBER})", re.I)
_ANY_NUMBER = re.compile(_NUMBER)


def default_families(spec: Spec) -> tuple[str, ...]:
    """Families with a checkable final answer: a label or json format, or a name in NAMED_FAMILIES."""
    kinds = {f.name: f.kind for f in spec.formats}
    return tuple(t.name for t in spec.task_families
                 if t.name in NAMED_FAMILIES or any(kinds[f] in ("label", "json") for f in t.formats))


def label_answer(text: str, labels: tuple[str, ...]) -> str | None:
    value = text.strip().strip("\"'`.!,;:").strip().casefold()
    return value if value in {label.casefold() for label in labels} else None


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        scalars = all(isinstance(v, (str, int, float, bool)) or v is None for v in items)
        return sorted(items, key=lambda v: json.dumps(v)) if scalars else items
    return value.strip() if isinstance(value, str) else value


def json_answer(text: str) -> str | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def number_answer(text: str) -> str | None:
    match = _HASHES.search(text) or _ANSWER_IS.search(text)
    found = match.group(1) if match else next(iter(_ANY_NUMBER.findall(text)[-1:]), None)
    if found is None:
        return None
    value = float(found.replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def final_answer(text: str, kind: str, labels: tuple[str, ...] = ()) -> str | None:
    """The final answer of a response for a format of `kind` (see the module docstring), or None."""
    if kind == "label":
        return label_answer(text, labels)
    if kind == "json":
        return json_answer(text)
    return number_answer(text)


class SelfConsistency:
    """The `self_consistency` check (see the module docstring)."""

    name = "self_consistency"

    def __init__(self, spec: Spec, config: SelfConsistencyConfig):
        self.spec = spec
        self.config = config
        self.families = set(config.families if config.families is not None else default_families(spec))

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "SelfConsistency":
        return cls(spec, spec.gate.self_consistency)

    def samples(self, row: Row) -> list[TeacherRequest]:
        """The teacher requests for the row's user turn, one per sample, each with its own seed."""
        record = row.record
        family = self.spec.family(record["task_family"])
        slot = Slot(family.name, record["format"], record["difficulty"], family.length_band, 0,
                    RESPOND, last_exchange(record["id"], row.origin, record["messages"]))
        request, _ = build_request(self.spec, slot)
        base = self.spec.teacher.sampling.seed
        return [dataclasses.replace(request, sampling={**request.sampling, "seed": slot_seed(base + i + 1, slot)})
                for i in range(self.config.samples)]

    def answer(self, record: dict, text: str) -> str | None:
        fmt = self.spec.format(record["format"])
        return final_answer(text, fmt.kind, fmt.labels)

    def run(self, rows: list[Row]) -> CheckResult:
        k = self.config.samples
        checked = [(r, a) for r in rows if r.record["task_family"] in self.families
                   and (a := self.answer(r.record, assistant_text(r.record))) is not None]
        requests = [req for row, _ in checked for req in self.samples(row)]
        replies, usage = ask_all(self.name, Endpoint.of_teacher(self.spec), requests,
                                 response_cache_path(self.config.cache))
        chat = self.spec.teacher.mode == "chat"
        rejected: list[Rejection] = []
        agreement: Counter[str] = Counter()
        ties = no_teacher_answer = 0
        for i, (row, answer) in enumerate(checked):
            texts = [r.text.strip() if chat else parse_response(r.text) for r in replies[i * k:(i + 1) * k]]
            votes = Counter(a for t in texts if (a := self.answer(row.record, t)) is not None)
            if not votes:
                no_teacher_answer += 1
                continue
            row.scores["self_consistency"] = votes[answer] / k
            agreement[f"{votes[answer]}/{k}"] += 1
            top = max(votes.values())
            if votes[answer] < top:
                majority = next(a for a, n in votes.most_common() if n == top)
                rejected.append(Rejection(
                    row, f"self_consistency:disagrees: answer {answer}, teacher majority {majority} ({top}/{k})"))
            elif sum(1 for n in votes.values() if n == top) > 1:
                ties += 1
        out = {id(x.row) for x in rejected}
        return CheckResult(
            kept=[r for r in rows if id(r) not in out],
            rejected=rejected,
            stats={
                "checked": len(rows), "removed": len(rejected), "compared": len(checked) - no_teacher_answer,
                "not_applicable": sum(1 for r in rows if r.record["task_family"] not in self.families),
                "no_answer": sum(1 for r in rows if r.record["task_family"] in self.families) - len(checked),
                "no_teacher_answer": no_teacher_answer, "ties_kept": ties, "samples": k,
                "agreement": dict(sorted(agreement.items())), **usage,
            },
        )
