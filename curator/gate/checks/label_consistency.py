"""Label verifier: the same question must not carry different labels.

Rows with a label answer are grouped by their normalised user text (`curator.gate.normalize`). A
label answer is the response of a row whose format is a `label` format, or any response of at most
`max_words` words (a short answer is a label in all but name: "positive", "yes", "Paris"). Within a
group whose rows give different normalised answers:

- the majority answer's rows are kept and the others rejected `labels:conflict`, naming the
  majority answer, its count and a row that carries it;
- with no majority (a tie), every row is rejected `labels:conflict_no_majority`: the set cannot say
  which label is right, and teaching both teaches noise.

That a `label` response is one of its format's labels is the schema check's format promise.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import Spec
from curator.text_signals import normalize


class LabelConsistency:
    """Reject minority labels of questions asked more than once with different answers."""

    name = "labels"

    def __init__(self, label_formats: frozenset[str], max_words: int = 3):
        self.label_formats = label_formats
        self.max_words = max_words

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "LabelConsistency":
        return cls(frozenset(f.name for f in spec.formats if f.kind == "label"), spec.gate.labels.max_words)

    def label_of(self, record: dict) -> str | None:
        answer = normalize(assistant_text(record))
        if record.get("format") in self.label_formats or 0 < len(answer.split()) <= self.max_words:
            return answer
        return None

    def run(self, rows: list[Row]) -> CheckResult:
        groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for i, row in enumerate(rows):
            label = self.label_of(row.record)
            if label is not None:
                groups[normalize(user_text(row.record))].append((i, label))
        reasons: dict[int, str] = {}
        conflicting = 0
        for members in groups.values():
            votes = Counter(label for _, label in members)
            if len(votes) < 2:
                continue
            conflicting += 1
            (top, n_top), (_, n_next) = votes.most_common(2)
            if n_top == n_next:
                for i, label in members:
                    reasons[i] = (f"labels:conflict_no_majority: {dict(votes)} for the same question")
                continue
            carrier = next(rows[i].id for i, label in members if label == top)
            for i, label in members:
                if label != top:
                    reasons[i] = (f"labels:conflict: answer {label!r}, but {n_top} of {len(members)} rows "
                                  f"with this question answer {top!r} (e.g. {carrier})")
        kept = [r for i, r in enumerate(rows) if i not in reasons]
        rejected = [Rejection(rows[i], reasons[i]) for i in sorted(reasons)]
        stats = {"checked": len(rows), "label_rows": sum(len(m) for m in groups.values()),
                 "conflicting_questions": conflicting, "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
