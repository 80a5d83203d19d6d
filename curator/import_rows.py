"""Input rows to run lines: the four formats' readers, the pair record built from a row, its schema check, and
the quarantine entry (naming `file:line` and the field) for a row that cannot become a pair.

This is the per-row work of `curator import`, done in worker processes: it is kept free of per-row overhead. A
record built here is checked only for what a row can get wrong (`built_pair_conforms`); a row's own provenance
(the `jsonl` format) goes through the compiled pair schema. The quarantine reasons are jsonschema's messages.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable

from curator.import_reader import RawLine, RawRow, parse_line
from curator.records import SOURCES, build_messages, make_pair, now_iso, pair_conforms, schema_errors
from curator.rundir import RunLine

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class RowError(ValueError):
    """A row that cannot be turned into a pair; the message names the field."""


def _text(row: dict, key: str, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if required:
            raise RowError(f"field {key!r} is missing")
        return ""
    if not isinstance(row[key], str):
        raise RowError(f"field {key!r} must be a string, got {type(row[key]).__name__}")
    return row[key]


def _alpaca(row: dict) -> list[dict]:
    return build_messages(_text(row, "instruction"), _text(row, "input", required=False), _text(row, "output"))


def _sharegpt(row: dict) -> list[dict]:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise RowError("field 'conversations' must be a list")
    out = []
    for i, t in enumerate(turns):
        speaker = t.get("from") if isinstance(t, dict) else None
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise RowError(f"conversations[{i}].from: expected one of {sorted(SHAREGPT_ROLES)}")
        out.append({"role": role, "content": _text(t, "value")})
    return out


def _openai_chat(row: dict) -> list[dict]:
    msgs = row.get("messages")
    if not isinstance(msgs, list):
        raise RowError("field 'messages' must be a list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or m["role"] not in ("system", "user", "assistant"):
            raise RowError(f"messages[{i}].role: expected system, user or assistant")
        out.append({"role": m["role"], "content": _text(m, "content")})
    return out


READERS: dict[str, Callable[[dict], list[dict]]] = {
    "alpaca": _alpaca,
    "sharegpt": _sharegpt,
    "openai-chat": _openai_chat,
    "jsonl": _openai_chat,  # pair records carry `messages` like the OpenAI layout
}


CELL = ("task_family", "format", "difficulty")  # a pair's curriculum cell
_OPTIONAL_TEXT = (*CELL, "length_band")


@dataclass(frozen=True)
class RowConverter:
    """Turns input rows of one file into run lines: a pair, or a quarantine entry naming `file:line` and the field."""

    path: str
    fmt: str
    task_family: str
    format_name: str
    difficulty: str
    source: str

    def lines(self, rows: list[RawRow | RawLine]) -> list[RunLine]:
        """One line per row, in order (a JSONL line parsed first), each run of lines for the same file joined into
        one; the pairs share one creation time."""
        created_at = now_iso()
        lines = [self.line(row if isinstance(row, RawRow) else parse_line(*row), created_at) for row in rows]
        return [RunLine(file, b"".join(line.data for line in run)) for file, run in groupby(lines, key=itemgetter(0))]

    def line(self, row: RawRow, created_at: str) -> RunLine:
        origin = f"{self.path}:{row.line}"
        reason = row.error
        if reason is None:
            reason, line = self._pair(row.value, origin, created_at)
            if line is not None:
                return line
        element = "" if row.element is None or reason.startswith("element ") else f"element {row.element}: "
        return RunLine.quarantine(f"{origin}: {element}{reason}", row.raw if row.value is None else row.value,
                                  origin=origin)

    def _pair(self, row: Any, origin: str, created_at: str) -> tuple[str | None, RunLine | None]:
        """(None, the pair's line), or (why the row is quarantined, None)."""
        if not isinstance(row, dict):
            return f"expected a JSON object, got {type(row).__name__}", None
        try:
            messages = READERS[self.fmt](row)
            if not row.keys().isdisjoint(_OPTIONAL_TEXT):
                for key in _OPTIONAL_TEXT:
                    _text(row, key, required=False)
        except RowError as e:
            return str(e), None
        record = make_pair(
            messages,
            task_family=row.get("task_family") or self.task_family,
            format=row.get("format") or self.format_name,
            difficulty=row.get("difficulty") or self.difficulty,
            length_band=row.get("length_band"),
            source=self.source,
            strategy=f"import:{self.fmt}",
            origin=origin,
            created_at=created_at,
        )
        if self.fmt == "jsonl" and isinstance(row.get("provenance"), dict):
            record["provenance"] = {**record["provenance"], **row["provenance"]}
            valid, line = pair_conforms()(record), RunLine.pair
        else:
            valid, line = built_pair_conforms(record), RunLine.text_pair
        errors = [] if valid else schema_errors(record) if line is RunLine.pair else built_pair_errors(record)
        if errors:
            return "; ".join(errors[:3]), None
        return None, line(record)


def built_pair_conforms(record: dict) -> bool:
    """Whether a record built here from a row (provenance all this module's) conforms to the pair schema, testing
    only what a row can get wrong: the readers build the keys, roles and string contents, `make_pair` the id,
    timestamp and provenance; left are empty texts, too few turns, a missing user or assistant turn, and the
    source (agrees with `schema_errors`; a test runs both)."""
    messages = record["messages"]
    roles = set()
    for m in messages:
        if not m["content"]:
            return False
        roles.add(m["role"])
    for key in CELL:
        if not (isinstance(record[key], str) and record[key]):
            return False
    return len(messages) >= 2 and "user" in roles and "assistant" in roles and record["provenance"]["source"] in SOURCES



def built_pair_errors(record: dict) -> list[str]:
    """`schema_errors` of a record built here, which jsonschema takes about 0.7 ms to find. When the turns are
    well formed (two or more, a user's and an assistant's) and the cell fields strings, the only errors left are
    empty texts and the source, whose messages do not quote the texts: they are found once per pattern of empty
    fields, on a stand-in record."""
    messages = record["messages"]
    roles = tuple(m["role"] for m in messages)
    cell = tuple(record[k] for k in CELL)
    source = record["provenance"]["source"]
    if len(roles) < 2 or "user" not in roles or "assistant" not in roles or not all(
            isinstance(v, str) for v in (*cell, source)):
        return schema_errors(record)
    return _pattern_errors(roles, tuple(not m["content"] for m in messages), tuple(not v for v in cell), source)


@lru_cache(maxsize=4096)
def _pattern_errors(roles: tuple[str, ...], empty_turns: tuple[bool, ...], empty_cell: tuple[bool, ...],
                    source: str) -> list[str]:
    messages = [{"role": role, "content": "" if empty else "x"} for role, empty in zip(roles, empty_turns)]
    cell = {k: "" if empty else "x" for k, empty in zip(CELL, empty_cell)}
    return schema_errors(make_pair(messages, **cell, source=source, strategy="import:alpaca", origin="x:1"))
