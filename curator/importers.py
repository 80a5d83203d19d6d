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
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from rich.progress import Progress

from curator.errors import CuratorError
from curator.hashing import sha256_file, sha256_text
from curator.import_reader import RawLine, RawRow, input_files, read_rows
from curator.import_rows import READERS, RowConverter
from curator.ordered_workers import cpu_count, ordered_map
from curator.paths import runs_root
from curator.records import now_iso
from curator.rundir import PAIRS, QUARANTINE, RunAppender, RunDir, RunLine, refuse_release_dir

WRITE_GROUP = 4096  # lines written, flushed and fsynced together; one task for a worker process
# Rows are parsed, built and checked in one worker process per CPU (2 on the reference machine): that is
# 20-25 µs of CPU a row, nearly the whole cost; this process reads the lines and writes, about 4 µs a row.
WORKERS = cpu_count()


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
    counts = {"accepted": run.line_count(PAIRS), "quarantined": run.line_count(QUARANTINE)}
    counts["read"] = done = counts["accepted"] + counts["quarantined"]
    groups = _groups(islice(read_rows(path), done, None), counts)
    convert = RowConverter(str(path), fmt, task_family, format_name, difficulty, source)
    with Progress(transient=True, auto_refresh=False) as progress, run.appender() as writer:
        task = progress.add_task(f"importing {path.name}", total=None)
        try:
            for runs in ordered_map(convert.lines, groups, WORKERS):
                _write(writer, runs, counts)
                progress.update(task, completed=counts["accepted"] + counts["quarantined"] - done, refresh=True)
        except BrokenProcessPool as e:
            raise CuratorError(f"{path}: a worker process died ({e}); rerun the same command to resume") from None
    meta.update(status="complete", counts=counts, finished_at=now_iso())
    run.write_meta(meta)
    return counts


def _groups(rows: Iterable[RawRow | RawLine], counts: dict[str, int]) -> Iterator[list[RawRow | RawLine]]:
    """The rows in groups of WRITE_GROUP, counted into counts["read"]."""
    while group := list(islice(rows, WRITE_GROUP)):
        counts["read"] += len(group)
        yield group


def _write(writer: RunAppender, runs: list[RunLine], counts: dict[str, int]) -> None:
    """Write a group's runs of lines (one file's each), counting the lines, then fsync. Each run is flushed before
    the next, so after a kill the lines on disk in both files are the first rows of the input, and a rerun resumes
    there."""
    for lines in runs:
        writer.write(lines)
        counts["accepted" if lines.file == PAIRS else "quarantined"] += lines.data.count(b"\n")
    writer.sync()


def input_sha256(path: Path) -> str:
    """sha256 of an import input: of the file, or of a `datasets` directory's files' hashes in order."""
    files = input_files(path)
    if files == [path]:
        return sha256_file(path)
    return sha256_text("\n".join(f"{f.name} {sha256_file(f)}" for f in files))


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
