"""Where respond and evol slots start: the pairs of an existing run directory, or the spec's seeds.

A source pair keeps its curriculum cell when the spec knows its family and format; a pair of an unknown family
or format is a user error naming `pairs.jsonl:<line>` (re-import it with `--task-family` / `--pair-format`).
Pairs repeated in the source (same id) give one parent; the repeats are counted, not planned twice.
A multi-turn pair's parent is its last user turn, with the turns before it as context (system messages dropped:
the spec's system prompt heads every generated pair).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from curator.errors import CuratorError
from curator.generate.plan import Parent
from curator.spec import Spec


@dataclass(frozen=True)
class Source:
    """A parent and the curriculum cell its slots belong to."""

    parent: Parent
    family: str
    format: str
    difficulty: str
    length_band: str


@dataclass(frozen=True)
class Sources:
    items: list[Source]
    duplicates: int  # source pairs whose id repeated an earlier one


def split_user_turn(text: str) -> tuple[str, str]:
    """(instruction, input) of a user turn built by `build_messages`: the input follows the first blank line."""
    instruction, _, input_text = text.partition("\n\n")
    return instruction.strip(), input_text.strip()


def last_exchange(pair_id: str, origin: str, messages: list[dict]) -> Parent:
    """The parent of a pair: its last user turn, the assistant turn after it, and the turns before as context."""
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    if not users:
        raise CuratorError(f"{origin}: the pair has no user turn to start from")
    last = users[-1]
    instruction, input_text = split_user_turn(turns[last]["content"])
    answer = next((m["content"] for m in turns[last + 1:] if m["role"] == "assistant"), "")
    return Parent(pair_id, origin, instruction, input_text, answer, tuple(turns[:last]))


def run_sources(spec: Spec, run_dir: Path) -> Sources:
    """One source per distinct pair of `run_dir/pairs.jsonl`, in file order; origin `<file>:<line>`."""
    path = run_dir / "pairs.jsonl"
    if not path.is_file():
        raise CuratorError(f"{path}: no such file; --from needs a run directory (curator import or generate)")
    families = {t.name for t in spec.task_families}
    formats = {f.name for f in spec.formats}
    items: list[Source] = []
    seen: set[str] = set()
    duplicates = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.endswith("\n") or not line.strip():
                continue  # a torn final line or a blank one holds no pair
            record = json.loads(line)
            where = f"{path}:{line_no}"
            if record["task_family"] not in families:
                raise CuratorError(f"{where}: task_family {record['task_family']!r} is not in the spec; known: {sorted(families)}")
            if record["format"] not in formats:
                raise CuratorError(f"{where}: format {record['format']!r} is not in the spec; known: {sorted(formats)}")
            if record["id"] in seen:
                duplicates += 1
                continue
            seen.add(record["id"])
            family = spec.family(record["task_family"])
            band = record.get("length_band")
            items.append(Source(
                last_exchange(record["id"], where, record["messages"]),
                family.name, record["format"], record["difficulty"],
                band if band in {b.name for b in spec.length_bands} else family.length_band,
            ))
    return Sources(items, duplicates)


def seed_sources(spec: Spec) -> Sources:
    """One source per seed of the spec, in spec order; id `seed:<family>#<i>`."""
    items = [
        Source(
            Parent(f"seed:{t.name}#{i}", f"{spec.path}:task_families.{t.name}.seeds[{i}]", s.instruction.strip(),
                   s.input.strip(), s.output.strip()),
            t.name, s.format or t.formats[0], s.difficulty or t.difficulties[0], t.length_band,
        )
        for t in spec.task_families for i, s in enumerate(t.seeds)
    ]
    return Sources(items, 0)
