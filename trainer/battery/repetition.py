"""Looping: an answer that repeats one of its own lines (the tuned model's commonest failure to stop)."""
from __future__ import annotations

MIN_LINE_CHARS = 8  # shorter lines ("```", "-", "}") repeat in well-formed answers


def repeats_a_line(text: str) -> bool:
    """Whether a non-blank line of at least `MIN_LINE_CHARS` characters (compared stripped) occurs twice or more."""
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if len(line) < MIN_LINE_CHARS:
            continue
        if line in seen:
            return True
        seen.add(line)
    return False


def repetition_share(texts: list[str]) -> float:
    """Share of `texts` that repeat a line (0 for none)."""
    return sum(map(repeats_a_line, texts)) / len(texts) if texts else 0.0
