"""`curator import`: human-written and public pairs into a run directory, the same form `generate` writes.

Formats:
  alpaca       {"instruction", "input", "output"} per row (JSONL, or one JSON array)
  sharegpt     {"conversations": [{"from": "system|human|gpt", "value"}]}
  openai-chat  {"messages": [{"role", "content"}]} (the OpenAI fine-tuning layout)
  jsonl        pair records in this project's schema; missing provenance is filled in

A row's own `task_family`, `format`, `difficulty` fields win over the command-line defaults.
A row that cannot be read becomes a quarantine entry naming `file:line` and the field; the rest
of the file is still imported, and read = accepted + quarantined.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.progress import Progress

from curator.errors import CuratorError
from curator.hashing import sha256_file
from curator.paths import runs_root
from curator.records import build_messages, make_pair, now_iso, schema_errors
from curator.rundir import RunDir

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
        role = SHAREGPT_ROLES.get(t.get("from")) if isinstance(t, dict) else None
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
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise RowError(f"messages[{i}].role: expected system, user or assistant")
        out.append({"role": m["role"], "content": _text(m, "content")})
    return out


READERS: dict[str, Callable[[dict], list[dict]]] = {
    "alpaca": _alpaca,
    "sharegpt": _sharegpt,
    "openai-chat": _openai_chat,
    "jsonl": _openai_chat,  # pair records carry `messages` like the OpenAI layout
}


def _rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, parsed row or raw text, parse error or None) for JSONL or a JSON array file."""
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
    if head == "[":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CuratorError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        for i, row in enumerate(data):
            yield i + 1, row, None  # element index stands in for the line
        return
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line), None
            except json.JSONDecodeError as e:
                yield n, line.rstrip("\n"), f"invalid JSON at column {e.colno}: {e.msg}"


def import_file(
    path: str | Path,
    fmt: str,
    out: Path,
    *,
    task_family: str,
    format_name: str,
    difficulty: str,
    source: str = "imported",
) -> dict[str, int]:
    """Import one file into run directory `out`; return the counts (read, accepted, quarantined)."""
    path = Path(path)
    if fmt not in READERS:
        raise CuratorError(f"unknown import format {fmt!r}; choose one of {sorted(READERS)}")
    if not path.is_file():
        raise CuratorError(f"{path}: no such file")
    file_hash = sha256_file(path)
    run = RunDir(out)
    if run.exists():
        meta = run.read_meta()
        if meta.get("input", {}).get("sha256") == file_hash and meta.get("status") == "complete":
            return meta["counts"]
        raise CuratorError(f"{out}: a different or unfinished run is already there; pass another --out")
    meta = {
        "kind": "import",
        "created_at": now_iso(),
        "status": "running",
        "input": {"path": str(path), "sha256": file_hash, "format": fmt, "source": source},
    }
    run.create(meta)
    reader = READERS[fmt]
    counts = {"read": 0, "accepted": 0, "quarantined": 0}
    with Progress(transient=True) as progress:
        task = progress.add_task(f"importing {path.name}", total=None)
        for line, row, parse_error in _rows(path):
            counts["read"] += 1
            origin = f"{path}:{line}"
            reason = parse_error
            if reason is None:
                reason, record = _to_record(row, reader, origin, fmt, task_family, format_name, difficulty, source)
            if reason is None:
                run.add_pair(record)
                counts["accepted"] += 1
            else:
                run.add_quarantine(f"{origin}: {reason}", row, origin=origin)
                counts["quarantined"] += 1
            progress.advance(task)
    meta.update(status="complete", counts=counts, finished_at=now_iso())
    run.write_meta(meta)
    return counts


def _to_record(row, reader, origin, fmt, task_family, format_name, difficulty, source) -> tuple[str | None, dict | None]:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}", None
    try:
        messages = reader(row)
    except RowError as e:
        return str(e), None
    record = make_pair(
        messages,
        task_family=row.get("task_family") or task_family,
        format=row.get("format") or format_name,
        difficulty=row.get("difficulty") or difficulty,
        length_band=row.get("length_band"),
        source=source,
        strategy=f"import:{fmt}",
        origin=origin,
    )
    if fmt == "jsonl" and isinstance(row.get("provenance"), dict):
        record["provenance"] = {**record["provenance"], **row["provenance"]}
    errors = schema_errors(record)
    if errors:
        return "; ".join(errors[:3]), None
    return None, record


def _run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    out = Path(args.out) if args.out else runs_root() / f"import-{path.stem}-{sha256_file(path)[:8] if path.is_file() else 'missing'}"
    counts = import_file(
        path, args.format, out, task_family=args.task_family, format_name=args.pair_format,
        difficulty=args.difficulty, source=args.source,
    )
    run = RunDir(out)
    for i, q in enumerate(run.quarantined()):
        if i == 10:
            print(f"... and {counts['quarantined'] - 10} more in {out / 'quarantine.jsonl'}", file=sys.stderr)
            break
        print(f"curator: quarantined {q['reason']}", file=sys.stderr)
    print(f"{out}: read {counts['read']}, accepted {counts['accepted']}, quarantined {counts['quarantined']}")
    return 1 if args.strict and counts["quarantined"] else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import human-written or public pairs into a run directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="JSONL file, or a JSON array file")
    p.add_argument("--format", required=True, choices=sorted(READERS))
    p.add_argument("--out", help="run directory (default: data/runs/import-<name>-<sha8>)")
    p.add_argument("--task-family", default="general", help="task family for rows that name none")
    p.add_argument("--pair-format", default="free_text", help="response format for rows that name none")
    p.add_argument("--difficulty", default="medium", help="difficulty for rows that name none")
    p.add_argument("--source", default="imported", choices=["imported", "human"])
    p.add_argument("--strict", action="store_true", help="exit 1 when any row was quarantined")
    p.set_defaults(func=_run)
