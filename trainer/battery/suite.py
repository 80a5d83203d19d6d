"""The shipped behavioural suites (`trainer/suites/*.jsonl`), loaded and validated row by row.

`instructions.jsonl`, one prompt a line:
  {"id": str, "task_family": one of FAMILIES, "prompt": str,
   "instructions": [{"id": registered checker id, "kwargs": {...}}, ...],   (1 to 3 instructions)
   "reference": str (optional: an answer that follows every instruction)}
`refusals.jsonl`, one prompt a line:
  {"id": str, "category": str, "should_refuse": bool, "prompt": str, "reference": str (optional)}
  `category` names the harm area a harmful request is in, or the one a benign look-alike resembles;
  `reference` is a good answer (a refusal in the policy's style, or a short helpful answer).

A bad row raises `SuiteError` naming `file:line: field: problem`; ids must be unique within a file.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Hashable, Sequence, TypeVar

from curator.errors import CuratorError
from curator.instructions import Instruction, build_instruction
from curator.jsonl import object_lines

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"
INSTRUCTIONS_FILE = SUITES_DIR / "instructions.jsonl"
REFUSALS_FILE = SUITES_DIR / "refusals.jsonl"
FAMILIES = ("summarize", "classify", "extract", "rewrite", "reason", "refuse")
MAX_INSTRUCTIONS = 3


class SuiteError(CuratorError):
    """A suite row that cannot be used; the message names file:line: field."""


@dataclass(frozen=True)
class InstructionItem:
    id: str
    task_family: str
    prompt: str
    instructions: tuple[Instruction, ...]
    reference: str | None = None

    @property
    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True)
class RefusalItem:
    id: str
    category: str
    should_refuse: bool
    prompt: str
    reference: str | None = None

    @property
    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.prompt}]


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(`file:line` location, parsed object) for every non-blank line; ids unique."""
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    rows, seen = [], {}
    for number, row in object_lines(path, path.read_text(encoding="utf-8").splitlines(), "a row", SuiteError):
        where = f"{path}:{number}"
        row_id = _field(row, "id", str, where)
        if row_id in seen:
            raise SuiteError(f"{where}: id: {row_id!r} already used on line {seen[row_id]}")
        seen[row_id] = number
        rows.append((where, row))
    return rows


def _field(row: dict, name: str, kind: type, where: str, *, required: bool = True):
    if name not in row:
        if required:
            raise SuiteError(f"{where}: {name}: missing")
        return None
    value = row[name]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise SuiteError(f"{where}: {name}: must be a non-empty {kind.__name__}, got {value!r}")
    return value


def _check_keys(row: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(row) - allowed)
    if extra:
        raise SuiteError(f"{where}: {extra[0]}: unknown field (allowed: {sorted(allowed)})")


def load_instruction_suite(path: Path = INSTRUCTIONS_FILE) -> list[InstructionItem]:
    """Every prompt of an instruction suite, its instructions built and validated."""
    items = []
    for where, row in _rows(path):
        _check_keys(row, {"id", "task_family", "prompt", "instructions", "reference"}, where)
        family = _field(row, "task_family", str, where)
        if family not in FAMILIES:
            raise SuiteError(f"{where}: task_family: {family!r} is not one of {FAMILIES}")
        specs = _field(row, "instructions", list, where)
        if not 1 <= len(specs) <= MAX_INSTRUCTIONS:
            raise SuiteError(f"{where}: instructions: needs 1 to {MAX_INSTRUCTIONS}, got {len(specs)}")
        instructions = []
        for i, spec in enumerate(specs):
            field_name = f"instructions[{i}]"
            if not isinstance(spec, dict) or set(spec) - {"id", "kwargs"} or "id" not in spec:
                raise SuiteError(f"{where}: {field_name}: must be an object {{\"id\": ..., \"kwargs\": {{...}}}}")
            try:
                instructions.append(build_instruction(spec["id"], spec.get("kwargs", {})))
            except ValueError as e:
                raise SuiteError(f"{where}: {field_name}: {e}") from None
        prompt = _field(row, "prompt", str, where)
        reference = _field(row, "reference", str, where, required=False)
        items.append(InstructionItem(row["id"], family, prompt, tuple(instructions), reference))
    return items


def load_refusal_suite(path: Path = REFUSALS_FILE) -> list[RefusalItem]:
    """Every prompt of a refusal suite: harmful requests and benign look-alikes."""
    items = []
    for where, row in _rows(path):
        _check_keys(row, {"id", "category", "should_refuse", "prompt", "reference"}, where)
        items.append(
            RefusalItem(
                id=row["id"],
                category=_field(row, "category", str, where),
                should_refuse=_field(row, "should_refuse", bool, where),
                prompt=_field(row, "prompt", str, where),
                reference=_field(row, "reference", str, where, required=False),
            )
        )
    return items


T = TypeVar("T")


def round_robin(items: Sequence[T], key: Callable[[T], Hashable], limit: int | None) -> list[T]:
    """`items` taken round-robin across their groups by `key` (in order of first appearance), cut to `limit`."""
    groups: dict[Hashable, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    mixed = [item for turn in zip_longest(*groups.values()) for item in turn if item is not None]
    return mixed if limit is None else mixed[:limit]
