"""Text normalisation for duplicate detection: case, width, spacing and punctuation do not make a pair new.

`normalize` is memoised (bounded): the gate's checks and its keep rule normalise the same messages
several times, and a cache hit costs one string hash.
"""
from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache

from curator.hashing import sha256_text
from curator.records import assistant_text, user_text

CACHE_SIZE = 1 << 18  # texts; two per pair, so about 130k pairs stay cached


@lru_cache(maxsize=1)
def _punctuation_to_space() -> dict[int, str]:
    """Translation table mapping every Unicode punctuation code point (category P*) to a space."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


@lru_cache(maxsize=CACHE_SIZE)
def normalize(text: str) -> str:
    """NFKC, casefold, punctuation to spaces, whitespace runs collapsed to one space, ends stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.translate(_punctuation_to_space()).split())


def text_key(text: str) -> str:
    """sha256 of the normalised text: equal for texts that differ only in case, spacing or punctuation."""
    return sha256_text(normalize(text))


def pair_text(record: dict) -> str:
    """The normalised user side and response of a pair, joined by one space: what near dedup shingles."""
    return " ".join(t for t in (normalize(user_text(record)), normalize(assistant_text(record))) if t)


def response_words(record: dict) -> frozenset[str]:
    """The distinct words of the normalised response (the template guard of near dedup compares these)."""
    return frozenset(normalize(assistant_text(record)).split())
