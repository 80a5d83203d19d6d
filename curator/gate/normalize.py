"""Text normalisation for duplicate detection: case, width, spacing and punctuation do not make a pair new."""
from __future__ import annotations

import sys
import unicodedata
from functools import lru_cache

from curator.hashing import sha256_text


@lru_cache(maxsize=1)
def _punctuation_to_space() -> dict[int, str]:
    """Translation table mapping every Unicode punctuation code point (category P*) to a space."""
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def normalize(text: str) -> str:
    """NFKC, casefold, punctuation to spaces, whitespace runs collapsed to one space, ends stripped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.translate(_punctuation_to_space()).split())


def text_key(text: str) -> str:
    """sha256 of the normalised text: equal for texts that differ only in case, spacing or punctuation."""
    return sha256_text(normalize(text))
