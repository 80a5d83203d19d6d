"""Schema check: the pair JSON Schema, the id, the spec's vocabulary, and the response's format and band."""
from __future__ import annotations

from collections import Counter

from curator.formats import format_problem, length_problem
from curator.gate.check import CheckResult, GateContext, Rejection, Row, progress
from curator.records import assistant_text, pair_id, schema_errors
from curator.spec import Spec


class SchemaCheck:
    """Rejects a record that breaks the pair schema, has a whitespace-only message, carries an id that
    does not match its messages, names a family, format or difficulty the spec does not know, or whose
    response breaks its format or its family's length band.

    The reason names the field: `schema: messages[1].content: '' should be non-empty`.
    """

    name = "schema"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "SchemaCheck":
        return cls(spec)

    def __init__(self, spec: Spec):
        self.spec = spec
        self.families = {t.name: t for t in spec.task_families}
        self.formats = {f.name: f for f in spec.formats}
        self.levels = set(spec.difficulty_levels)
        self.bands = {t.name: spec.band(t.length_band) for t in spec.task_families}  # looked up once, not per row

    def problem(self, record: object) -> str | None:
        """The first reason `record` cannot go into a release, or None."""
        errors = schema_errors(record)
        if errors:
            return "schema: " + "; ".join(errors)
        assert isinstance(record, dict)
        blank = [i for i, m in enumerate(record["messages"]) if not m["content"].strip()]
        if blank:
            return f"schema: messages[{blank[0]}].content: only whitespace"
        if record["id"] != pair_id(record["messages"]):
            return f"schema: id: {record['id']!r} does not match its messages (expected {pair_id(record['messages'])!r})"
        family = self.families.get(record["task_family"])
        if family is None:
            return f"spec: task_family: {record['task_family']!r} is not in the spec (known: {sorted(self.families)})"
        fmt = self.formats.get(record["format"])
        if fmt is None:
            return f"spec: format: {record['format']!r} is not in the spec (known: {sorted(self.formats)})"
        if record["difficulty"] not in self.levels:
            return f"spec: difficulty: {record['difficulty']!r} is not in the spec (known: {list(self.spec.difficulty_levels)})"
        response = assistant_text(record)
        bad_format = format_problem(fmt, response)
        if bad_format:
            return f"format: {fmt.name}: {bad_format}"
        bad_length = length_problem(self.bands[family.name], response)
        if bad_length:
            return f"length: {bad_length}"
        return None

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        by_kind: Counter[str] = Counter()
        for row in progress(rows, "schema check", total=len(rows)):
            reason = self.problem(row.record)
            if reason is None:
                kept.append(row)
            else:
                rejected.append(Rejection(row, reason))
                by_kind[reason.split(":", 1)[0]] += 1
        return CheckResult(kept, rejected, {"checked": len(rows), "removed": len(rejected), "by_kind": dict(by_kind)})
