"""Verifiable instructions, checked by code rather than by a judge (in the spirit of Google's IFEval).

Each checker has a registered id (`length:words`, `keywords:forbidden`, ...) and keyword arguments;
`build_instruction(id, kwargs)` validates them and returns an `Instruction` whose `check(response)`
says whether the response follows it. Counting rules, all documented here so a score can be audited:

- words: runs of letters/digits, inner apostrophes and hyphens kept (`don't`, `well-known` are one word);
- sentences: non-empty stretches ended by `.`, `!` or `?` followed by whitespace or the end (plus a
  trailing stretch without final punctuation); paragraphs: blocks separated by one or more blank lines;
- numbered list items: lines starting `1.` / `1)`; bullet items: lines starting `-`, `*` or `•` + space;
- sections: lines starting with the marker word and a number (`SECTION 1`), or, for the marker
  `markdown`, markdown headers (`# ...` to `###### ...`);
- postscript: a line starting with the marker (`P.S.`; dots and case optional) after some other text;
- placeholders: square-bracketed spans such as `[name]`;
- language: `curator.text_signals.detect_language` (script first, then stopword lists).

Scoring (`follows`) mirrors IFEval: STRICT checks the response as is; LOOSE also accepts the response
with its first line removed, its last line removed, or both, each with and without markdown emphasis
(`*`, `**`) stripped. A blank response (or blank variant) never follows anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from curator.text_signals import LANGUAGES, detect_language

RELATIONS = ("at_least", "at_most", "exactly")

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_NUMBERED_ITEM = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)
_BULLET_ITEM = re.compile(r"^\s*[-*•]\s+\S", re.MULTILINE)
_MARKDOWN_HEADER = re.compile(r"^\s*#{1,6}\s+\S", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def sentence_count(text: str) -> int:
    return sum(1 for s in _SENTENCE_END.split(text.strip()) if _WORD.search(s))


def paragraph_count(text: str) -> int:
    return sum(1 for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip())


def relation_holds(value: int, relation: str, n: int) -> bool:
    """`value` stands in `relation` (`at_least`, `at_most`, `exactly`) to `n`."""
    return {"at_least": value >= n, "at_most": value <= n, "exactly": value == n}[relation]


# --- the checkers: check(response, **kwargs) -> bool --------------------------------------------------

def _words(response: str, relation: str, n: int) -> bool:
    return relation_holds(word_count(response), relation, n)


def _sentences(response: str, relation: str, n: int) -> bool:
    return relation_holds(sentence_count(response), relation, n)


def _paragraphs(response: str, relation: str, n: int) -> bool:
    return relation_holds(paragraph_count(response), relation, n)


def _include_keywords(response: str, keywords: list[str]) -> bool:
    return all(re.search(rf"\b{re.escape(k)}\b", response, re.IGNORECASE) for k in keywords)


def _forbidden_words(response: str, keywords: list[str]) -> bool:
    return not any(re.search(rf"\b{re.escape(k)}\b", response, re.IGNORECASE) for k in keywords)


def _letter_frequency(response: str, letter: str, relation: str, n: int) -> bool:
    return relation_holds(response.lower().count(letter.lower()), relation, n)


def _lowercase(response: str) -> bool:
    return response == response.lower() and any(ch.isalpha() for ch in response)


def _uppercase(response: str) -> bool:
    return response == response.upper() and any(ch.isalpha() for ch in response)


def _starts_with(response: str, phrase: str) -> bool:
    return response.strip().lower().startswith(phrase.strip().lower())


def _ends_with(response: str, phrase: str) -> bool:
    return response.strip().lower().endswith(phrase.strip().lower())


def _quotation(response: str) -> bool:
    body = response.strip()
    return len(body) > 1 and ((body[0], body[-1]) in {('"', '"'), ("“", "”")})


def _numbered_list(response: str, n: int) -> bool:
    return len(_NUMBERED_ITEM.findall(response)) == n


def _bullet_list(response: str, n: int) -> bool:
    return len(_BULLET_ITEM.findall(response)) == n


def _sections(response: str, n: int, marker: str) -> bool:
    header = _MARKDOWN_HEADER if marker == "markdown" else re.compile(rf"^\s*{re.escape(marker)}\s+\d+", re.MULTILINE)
    return len(header.findall(response)) == n


def _postscript(response: str, marker: str) -> bool:
    letters = [re.escape(ch) for ch in marker if ch.isalnum()]
    pattern = re.compile(r"^\s*" + r"\.?\s?".join(letters) + r"\.?(?=\W|$)", re.MULTILINE | re.IGNORECASE)
    match = pattern.search(response)
    return bool(match) and bool(response[: match.start()].strip())


def _placeholders(response: str, n: int) -> bool:
    return len(_PLACEHOLDER.findall(response)) >= n


def _no_comma(response: str) -> bool:
    return "," not in response


def _response_language(response: str, language: str) -> bool:
    return detect_language(response) == language


@dataclass(frozen=True)
class Checker:
    """A registered instruction kind: its check function and the type of each keyword argument."""

    id: str
    check: Callable[..., bool]
    params: dict[str, type] = field(default_factory=dict)
    description: str = ""


REGISTRY: dict[str, Checker] = {
    c.id: c
    for c in (
        Checker("length:words", _words, {"relation": str, "n": int}, "word count at least / at most / exactly n"),
        Checker("length:sentences", _sentences, {"relation": str, "n": int}, "sentence count vs n"),
        Checker("length:paragraphs", _paragraphs, {"relation": str, "n": int}, "blank-line paragraphs vs n"),
        Checker("keywords:include", _include_keywords, {"keywords": list}, "every keyword appears (whole word)"),
        Checker("keywords:forbidden", _forbidden_words, {"keywords": list}, "no keyword appears (whole word)"),
        Checker("keywords:letter_frequency", _letter_frequency, {"letter": str, "relation": str, "n": int},
                "occurrences of a letter (any case) vs n"),
        Checker("case:lowercase", _lowercase, {}, "no capital letters"),
        Checker("case:uppercase", _uppercase, {}, "only capital letters"),
        Checker("startend:starts_with", _starts_with, {"phrase": str}, "starts with the phrase (any case)"),
        Checker("startend:ends_with", _ends_with, {"phrase": str}, "ends with the phrase (any case)"),
        Checker("startend:quotation", _quotation, {}, "wrapped in double quotes"),
        Checker("format:numbered_list", _numbered_list, {"n": int}, "exactly n numbered items"),
        Checker("format:bullet_list", _bullet_list, {"n": int}, "exactly n bullet items"),
        Checker("format:sections", _sections, {"n": int, "marker": str}, "exactly n section headers"),
        Checker("format:postscript", _postscript, {"marker": str}, "a postscript line after the body"),
        Checker("format:placeholders", _placeholders, {"n": int}, "at least n [placeholders]"),
        Checker("punctuation:no_comma", _no_comma, {}, "no commas"),
        Checker("language:response_language", _response_language, {"language": str}, "written in the language"),
    )
}


@dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: a registered checker id and its validated keyword arguments."""

    id: str
    kwargs: dict

    def check(self, response: str) -> bool:
        """True when `response` (as given, no loose variants) follows the instruction."""
        return bool(response.strip()) and REGISTRY[self.id].check(response, **self.kwargs)


def build_instruction(instruction_id: str, kwargs: dict | None = None) -> Instruction:
    """An `Instruction`, or ValueError naming what is wrong (unknown id, missing/extra/mistyped kwarg)."""
    if instruction_id not in REGISTRY:
        raise ValueError(f"unknown instruction id {instruction_id!r}; known: {sorted(REGISTRY)}")
    params = REGISTRY[instruction_id].params
    kwargs = dict(kwargs or {})
    if set(kwargs) != set(params):
        raise ValueError(f"{instruction_id} takes kwargs {sorted(params)}, got {sorted(kwargs)}")
    for name, kind in params.items():
        value = kwargs[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{instruction_id}: kwarg {name!r} must be {kind.__name__}, got {value!r}")
    if "relation" in kwargs and kwargs["relation"] not in RELATIONS:
        raise ValueError(f"{instruction_id}: relation must be one of {RELATIONS}, got {kwargs['relation']!r}")
    if "n" in kwargs and kwargs["n"] < 0:
        raise ValueError(f"{instruction_id}: n must be >= 0, got {kwargs['n']}")
    if "keywords" in kwargs and not (kwargs["keywords"] and all(isinstance(k, str) and k for k in kwargs["keywords"])):
        raise ValueError(f"{instruction_id}: keywords must be a non-empty list of non-empty strings")
    if "letter" in kwargs and not (len(kwargs["letter"]) == 1 and kwargs["letter"].isalpha()):
        raise ValueError(f"{instruction_id}: letter must be a single letter, got {kwargs['letter']!r}")
    if "language" in kwargs and kwargs["language"] not in LANGUAGES:
        raise ValueError(f"{instruction_id}: language must be one of {LANGUAGES}, got {kwargs['language']!r}")
    for name in ("phrase", "marker"):
        if name in kwargs and not kwargs[name].strip():
            raise ValueError(f"{instruction_id}: {name} must not be blank")
    return Instruction(instruction_id, kwargs)


def loose_variants(response: str) -> list[str]:
    """The response, without its first line, without its last, without both; each also with `*` removed."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    variants = [response, *cut]
    return variants + [v.replace("*", "") for v in variants]


@dataclass(frozen=True)
class Followed:
    """Per instruction of one prompt, whether the response follows it, strictly and loosely."""

    strict: tuple[bool, ...]
    loose: tuple[bool, ...]


def follows(instructions: list[Instruction], response: str) -> Followed:
    """Strict and loose verdicts for every instruction of one prompt (see the module docstring)."""
    variants = loose_variants(response)
    return Followed(
        strict=tuple(i.check(response) for i in instructions),
        loose=tuple(any(i.check(v) for v in variants) for i in instructions),
    )
