"""Dedup keys of pairs on `curator.text_signals.normalize`: case, width, spacing and punctuation do not
make a pair new. `normalize_all` gives the same texts for a whole batch at once."""
from __future__ import annotations

import unicodedata

from curator.hashing import sha256_text
from curator.records import assistant_text, user_text
from curator.text_signals import normalize

# ASCII punctuation (category P*) and whitespace to spaces: bytes.split() then splits as str.split() does (it
# does not split on \x1c-\x1f alone)
_BREAKS = bytes(c for c in range(128) if unicodedata.category(chr(c)).startswith("P") or chr(c).isspace())
_ASCII_TO_SPACE = bytes.maketrans(_BREAKS, b" " * len(_BREAKS))


def normalize_all(texts: list[str]) -> list[str]:
    """`normalize` of each text, faster for ASCII text (NFKC leaves it as it is, casefolding it is lower-casing):
    one bytes translation."""
    return [b" ".join(t.encode().lower().translate(_ASCII_TO_SPACE).split()).decode() if t.isascii()
            else normalize(t) for t in texts]


def text_key(text: str) -> str:
    """sha256 of the normalised text: equal for texts that differ only in case, spacing or punctuation."""
    return sha256_text(normalize(text))


def pair_text(record: dict) -> str:
    """The normalised user side and response of a pair, joined by one space: what near dedup shingles."""
    return " ".join(t for t in (normalize(user_text(record)), normalize(assistant_text(record))) if t)


def pair_texts(records: list[dict]) -> list[str]:
    """`pair_text` of each record, normalised batch-wise (`normalize_all`)."""
    users = normalize_all([user_text(r) for r in records])
    answers = normalize_all([assistant_text(r) for r in records])
    return [" ".join(t for t in pair if t) for pair in zip(users, answers)]


def response_words(record: dict) -> frozenset[str]:
    """The distinct words of the normalised response (the template guard of near dedup compares these)."""
    return frozenset(normalize(assistant_text(record)).split())
