"""Dedup keys of pairs on `curator.text_signals.normalize`: case, width, spacing and punctuation do not
make a pair new."""
from __future__ import annotations

from curator.hashing import sha256_text
from curator.records import assistant_text, user_text
from curator.text_signals import normalize


def text_key(text: str) -> str:
    """sha256 of the normalised text: equal for texts that differ only in case, spacing or punctuation."""
    return sha256_text(normalize(text))


def pair_text(record: dict) -> str:
    """The normalised user side and response of a pair, joined by one space: what near dedup shingles."""
    return " ".join(t for t in (normalize(user_text(record)), normalize(assistant_text(record))) if t)


def response_words(record: dict) -> frozenset[str]:
    """The distinct words of the normalised response (the template guard of near dedup compares these)."""
    return frozenset(normalize(assistant_text(record)).split())
