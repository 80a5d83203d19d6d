"""Strict reading of JSONL inputs whose every line must be a JSON object (evaluation sets, suites)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from curator.errors import CuratorError


def object_lines(path: Path, lines: list[str], what: str,
                 error: type[CuratorError] = CuratorError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of `path` (its `lines`); `error` naming `path:line` for a line
    that is not valid JSON or not a JSON object (`what` says what a line holds)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{number}: not valid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise error(f"{path}:{number}: {what} must be a JSON object")
        yield number, obj
