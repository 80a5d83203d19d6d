"""`human_review`: the gate obeys the review ledger written by `curator review`.

Per pair, the live decisions of every reviewer give one verdict (`curator.review.stats.pair_verdict`):
- rejected: the row goes to the rejection ledger with the reviewer's reason, note, name and time;
- edited: the original goes to the ledger (`human_edited: replaced by <new id>`) and the edited pair enters
  as a new row with its own content id and provenance `source: human-edited`, `original_id`, `reviewer`,
  `reviewed_at` (the rest of the original provenance kept); it then meets every later check like any row;
- accepted: kept, and protected from removal by the checks the spec lists in `gate.human_review.protect_from`
  (`protect` wraps them), by no others.

The check runs first, so an edit is checked like any other pair. Its stats carry the release's review
section (`curator.review.stats.review_summary`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curator.errors import CuratorError
from curator.gate.check import Check, CheckResult, Rejection, Row
from curator.records import pair_id
from curator.review.ledger import Decisions, read_ledger_lines
from curator.review.stats import pair_verdict, review_summary
from curator.spec import Spec


def _cell(record: dict) -> tuple[str, str, str]:
    return (str(record.get("task_family")), str(record.get("format")), str(record.get("difficulty")))


def edited_record(record: dict, decision: dict) -> dict:
    """The pair as a reviewer edited it: their messages, a new content id, provenance naming the original."""
    messages = [{"role": m["role"], "content": m["content"]} for m in decision["messages"]]
    provenance = {**record.get("provenance", {}), "source": "human-edited", "original_id": record["id"],
                  "reviewer": decision["reviewer"], "reviewed_at": decision["time"], "created_at": decision["time"]}
    return {**record, "id": pair_id(messages), "messages": messages, "provenance": provenance}


def _who(decision: dict) -> str:
    return f"{decision['reviewer']}, {decision['time']}"


@dataclass
class _Protected:
    """A heuristic check whose rejections of pairs a person accepted are undone."""

    inner: Check
    accepted: frozenset[str]

    @property
    def name(self) -> str:
        return self.inner.name

    def run(self, rows: list[Row]) -> CheckResult:
        result = self.inner.run(rows)
        rescued = [r for r in result.rejected if r.row.id in self.accepted]
        if not rescued:
            return result
        kept = sorted(result.kept + [r.row for r in rescued], key=lambda row: row.order)
        stats = {**result.stats, "kept_by_human_accept": sorted(r.row.id for r in rescued)}
        return CheckResult(kept, [r for r in result.rejected if r.row.id not in self.accepted], stats, result.added)


class HumanReview:
    name = "human_review"
    rewrites_records = True  # an edit replaces a pair

    def __init__(self, ledger: Path, protect_from: tuple[str, ...] = ()):
        if not Path(ledger).is_file():
            raise CuratorError(f"{ledger}: no review ledger there (written by `curator review`)")
        self.ledger = Path(ledger)
        self.per_pair = Decisions.of(read_ledger_lines(self.ledger)).per_pair()
        self.verdicts = {pid: pair_verdict(d) for pid, d in self.per_pair.items() if d}
        self.protect_from = protect_from
        self.estimated: list[str] = []  # the automatic checks whose precision and recall the review estimates

    @classmethod
    def from_spec(cls, spec: Spec, ledger: str | Path | None = None) -> "HumanReview":
        """The check for the ledger given (a `--review-ledger` flag) or named by the spec's `gate.human_review`."""
        path = ledger or spec.gate.human_review.ledger
        if path is None:
            raise CuratorError("no review ledger: give --review-ledger or set gate.human_review.ledger in the spec")
        return cls(Path(path), spec.gate.human_review.protect_from)

    def protect(self, checks: list[Check]) -> list[Check]:
        """`checks` with those named in `protect_from` made to keep the pairs a person accepted; all of them get
        precision and recall estimates in the review section."""
        self.estimated = [c.name for c in checks]
        accepted = frozenset(pid for pid, v in self.verdicts.items() if v["decision"] == "accept")
        return [_Protected(c, accepted) if c.name in self.protect_from else c for c in checks]

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected, added = [], [], []
        cells: dict[tuple, int] = {}
        seen = set()
        for row in rows:
            if isinstance(row.record, dict):
                cells[_cell(row.record)] = cells.get(_cell(row.record), 0) + 1
            verdict = self.verdicts.get(row.id) if row.id else None
            if verdict is None or verdict["decision"] == "accept":
                kept.append(row)
            elif verdict["decision"] == "reject":
                note = f": {verdict['note']}" if verdict.get("note") else ""
                rejected.append(Rejection(row, f"human_review: {verdict['reason']}{note} ({_who(verdict)})"))
            else:
                new = Row(edited_record(row.record, verdict), row.input, row.line, row.order)
                rejected.append(Rejection(row, f"human_edited: replaced by {new.id} ({_who(verdict)})"))
                kept.append(new)
                added.append(new)
            if verdict is not None:
                seen.add(row.id)
        stats = {
            "ledger": str(self.ledger),
            "accepted": sum(1 for pid in seen if self.verdicts[pid]["decision"] == "accept"),
            "rejected": sum(1 for pid in seen if self.verdicts[pid]["decision"] == "reject"),
            "edited": len(added),
            "not_in_input": len(set(self.verdicts) - seen),
            "protect_from": list(self.protect_from),
            "review": review_summary(self.per_pair, cells, self.estimated),
        }
        return CheckResult(kept, rejected, stats, added)
