"""Dedup keys of pairs on `curator.text_signals.normalize`: case, width, spacing and punctuation do not
make a pair new. `normalize_all` gives the same texts for a whole batch at once; `NormalizedMessages` normalises
each message of a batch once for every key built from it (exact dedup's pair and prompt keys, near dedup's
texts)."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from itertools import islice

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


@dataclass(frozen=True)
class NormalizedMessages:
    """The normalised content of every message of some records, each message normalised once (`of`).

    A side (the user turns, the assistant turns) is its messages' normalised contents joined by one space, empty
    ones left out: `normalize` of the turns joined by a newline, as `user_text` and `assistant_text` join them (a
    newline composes with nothing under NFKC and is a word break, so normalising the parts is normalising the
    whole)."""

    records: list[dict]
    contents: list[list[str]]  # per record, each message's normalised content

    @classmethod
    def of(cls, records: list[dict]) -> "NormalizedMessages":
        flat = iter(normalize_all([m["content"] for r in records for m in r["messages"]]))
        return cls(records, [list(islice(flat, len(r["messages"]))) for r in records])

    def subset(self, indices: list[int]) -> "NormalizedMessages":
        """The records at `indices`, in that order (nothing normalised again)."""
        return NormalizedMessages([self.records[i] for i in indices], [self.contents[i] for i in indices])

    def side(self, i: int, role: str) -> str:
        """Record i's `role` turns, normalised."""
        return " ".join(c for m, c in zip(self.records[i]["messages"], self.contents[i]) if m["role"] == role and c)

    def users(self) -> list[str]:
        """`normalize(user_text(r))` of each record."""
        return [self.side(i, "user") for i in range(len(self.records))]

    def pair_texts(self) -> list[str]:
        """`pair_text` of each record."""
        return [" ".join(t for t in (self.side(i, "user"), self.side(i, "assistant")) if t)
                for i in range(len(self.records))]


def pair_texts(records: list[dict]) -> list[str]:
    """`pair_text` of each record, normalised batch-wise (`NormalizedMessages`)."""
    return NormalizedMessages.of(records).pair_texts()


def response_words(record: dict) -> frozenset[str]:
    """The distinct words of the normalised response (the template guard of near dedup compares these)."""
    return frozenset(normalize(assistant_text(record)).split())
