"""`curator import`: human-written and public pairs into a run directory, the same form `generate` writes.

Formats:
  alpaca       {"instruction", "input", "output"} per row (JSONL, or one JSON array)
  sharegpt     {"conversations": [{"from": "system|human|gpt", "value"}]}
  openai-chat  {"messages": [{"role", "content"}]} (the OpenAI fine-tuning layout)
  jsonl        pair records in this project's schema; missing provenance is filled in

The input is a JSONL or JSON array file (gzip-compressed too, `.gz`), a Parquet file, or a Hugging Face
`datasets` directory written by `save_to_disk` (a table row's line is its row number).
A row's own `task_family`, `format`, `difficulty` fields win over the command-line defaults.
A row that cannot be read (invalid UTF-8, invalid JSON, nesting deeper than 64, a lone surrogate or NUL,
a wrong type) becomes a quarantine entry naming `file:line` (and the element of a JSON array file) and
the field; the rest of the file is still imported, and read = accepted + quarantined. A UTF-8 BOM is
skipped. An interrupted import resumes when the same command is run again.
"""
from __future__ import annotations

import argparse
import sys
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Callable

from rich.progress import Progress, TaskID

from curator.errors import CuratorError
from curator.hashing import sha256_file, sha256_text
from curator.import_reader import input_files, read_rows
from curator.paths import runs_root
from curator.records import build_messages, make_pair, now_iso, schema_errors
from curator.rundir import PAIRS, QUARANTINE, RunAppender, RunDir, RunLine, refuse_release_dir

WRITE_GROUP = 4096  # lines written, flushed and fsynced together
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
    """Import one file into run directory `out`; return the counts (read, accepted, quarantined).

    Rerunning it after an interruption (Ctrl-C, kill -9) resumes: rows already written are skipped, as each row
    of the file leaves exactly one line, in order, in pairs.jsonl or quarantine.jsonl."""
    path = Path(path)
    if fmt not in READERS:
        raise CuratorError(f"unknown import format {fmt!r}; choose one of {sorted(READERS)}")
    if not path.exists():
        raise CuratorError(f"{path}: no such file")
    refuse_release_dir(out)
    file_hash = input_sha256(path)
    run = RunDir(out)
    settings = {"path": str(path), "sha256": file_hash, "format": fmt, "source": source,
                "task_family": task_family, "pair_format": format_name, "difficulty": difficulty}
    if run.exists():
        meta = run.read_meta()
        there = meta.get("input") or {}
        if meta.get("kind") != "import" or any(there.get(k) != settings[k] for k in ("sha256", "format", "source")) or any(
                there.get(k, settings[k]) != settings[k] for k in ("task_family", "pair_format", "difficulty")):
            raise CuratorError(f"{out}: a run of another file or other settings is already there; pass another --out")
        if meta.get("status") == "complete":
            return meta["counts"]
        meta["resumed_at"] = [*meta.get("resumed_at", []), now_iso()]
    else:
        meta = {"kind": "import", "created_at": now_iso(), "input": settings}
    meta["status"] = "running"
    run.create(meta)  # cuts a torn last line left by a kill
    done = run.line_count(PAIRS) + run.line_count(QUARANTINE)
    reader = READERS[fmt]
    read, lines = 0, []
    with Progress(transient=True) as progress, run.appender() as writer:
        task = progress.add_task(f"importing {path.name}", total=None)
        for row in read_rows(path):
            read += 1
            if read <= done:
                continue
            if not lines:
                stamp = now_iso()  # one creation time per group of lines
            origin = f"{path}:{row.line}"
            reason, record = row.error, None
            if reason is None:
                reason, record = _to_record(row.value, reader, origin, fmt, task_family, format_name, difficulty,
                                            source, stamp)
            if record is not None:
                lines.append(RunLine.pair(record))
            else:
                element = "" if row.element is None or reason.startswith("element ") else f"element {row.element}: "
                lines.append(RunLine.quarantine(f"{origin}: {element}{reason}", row.raw if row.value is None
                                                else row.value, origin=origin))
            if len(lines) == WRITE_GROUP:
                _flush(writer, lines, progress, task)
        _flush(writer, lines, progress, task)
    counts = {"read": read, "accepted": run.line_count(PAIRS), "quarantined": run.line_count(QUARANTINE)}
    meta.update(status="complete", counts=counts, finished_at=now_iso())
    run.write_meta(meta)
    return counts


def _flush(writer: RunAppender, lines: list[RunLine], progress: Progress, task: TaskID) -> None:
    """Write a group of lines, then fsync. Each run of lines for one file is flushed before the next file's,
    so after a kill the lines on disk in both files are the first rows of the input, and a rerun resumes there."""
    for _, same_file in groupby(lines, key=attrgetter("file")):
        writer.write(*same_file)
    writer.sync()
    progress.advance(task, len(lines))
    lines.clear()


def input_sha256(path: Path) -> str:
    """sha256 of an import input: of the file, or of a `datasets` directory's files' hashes in order."""
    files = input_files(path)
    if files == [path]:
        return sha256_file(path)
    return sha256_text("\n".join(f"{f.name} {sha256_file(f)}" for f in files))


_OPTIONAL_TEXT = ("task_family", "format", "difficulty", "length_band")


def _to_record(row, reader, origin, fmt, task_family, format_name, difficulty, source,
               created_at) -> tuple[str | None, dict | None]:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}", None
    try:
        messages = reader(row)
        for key in _OPTIONAL_TEXT:
            _text(row, key, required=False)
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
        created_at=created_at,
    )
    if fmt == "jsonl" and isinstance(row.get("provenance"), dict):
        record["provenance"] = {**record["provenance"], **row["provenance"]}
    errors = schema_errors(record)
    if errors:
        return "; ".join(errors[:3]), None
    return None, record


def _run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    out = Path(args.out) if args.out else runs_root() / f"import-{path.stem}-{input_sha256(path)[:8] if path.exists() else 'missing'}"
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
    p.add_argument("file", help="JSONL or JSON array file (.gz too), Parquet file, or datasets save_to_disk directory")
    p.add_argument("--format", required=True, choices=sorted(READERS))
    p.add_argument("--out", help="run directory (default: data/runs/import-<name>-<sha8>)")
    p.add_argument("--task-family", default="general", help="task family for rows that name none")
    p.add_argument("--pair-format", default="free_text", help="response format for rows that name none")
    p.add_argument("--difficulty", default="medium", help="difficulty for rows that name none")
    p.add_argument("--source", default="imported", choices=["imported", "human"])
    p.add_argument("--strict", action="store_true", help="exit 1 when any row was quarantined")
    p.set_defaults(func=_run)
