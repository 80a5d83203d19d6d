"""Judgements of text that every stage shares; stages import this module, it imports none of theirs.

- `normalize`: NFKC, casefold, punctuation to spaces, whitespace collapsed (dedup keys, term counts, n-grams).
- `is_refusal`: the one refusal detector (rules below).
- `LEXICONS`, `term_counts`, `gender_counts`, `counterfactual_key`: demographic terms (below).
- `STOPWORDS`, `stopword_counts`, `main_script`, `detect_language`: language by script, then stopwords.
- `ngrams`, `EvalIndex`: word n-grams of evaluation items (decontamination, leak reports).

`SIGNALS_VERSION` names the version of each rule set; the gate writes it into every release manifest,
so figures of old releases stay interpretable when the rules change.

Refusal (`is_refusal`): the first `REFUSAL_WINDOW` characters of a response (apostrophes normalised,
case ignored) hold a refusal construction:
- "I can't / cannot / won't / will not / am unable to / am not able to" (also "won't be able to")
  followed by a verb of helping or doing: help, assist, provide, do, comply, create, write, give,
  share, support, fulfil(l), generate, answer, produce, make, engage, participate, continue, offer;
- "I'm not going to", "I refuse", "I must decline / refuse", "I have to decline", "I'd rather not";
- "I'm sorry, but", "Sorry, but", "I apologise/apologize, but";
- "As an AI"; "I'm not comfortable", "I don't / do not feel comfortable"; "not something I can help".
A bare "I cannot stress enough", "he cannot swim" or "the sorry state" is not a refusal. Phrase rules
are cheap and auditable; they miss refusals worded otherwise (the evaluation battery can add an LLM
judge for that).

Demographic terms: small lexicons of single words (`LEXICONS`), matched on normalised words, for five
categories: gender, ethnicity, religion, nationality and age; counts are per group ("male", "female", ...).
Lexicon words are ambiguous ("black" the colour, "her" possessive or object), so counts are a screen, not a
measurement.

Language (`detect_language`): a text whose letters are mostly outside the Latin script is named by its main
script (`cyrillic`, `cjk`, ...); otherwise by the stopword list (`en`, `es`, `fr`, `de`, `pt`, `it`; lists
without the words English shares) with the most hits, `und` on a tie or without letters.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Iterable

REFUSAL_DETECTOR_VERSION = 1
LEXICON_VERSION = 1
LANGUAGE_DETECTOR_VERSION = 1
SIGNALS_VERSION = {"refusal_detector": REFUSAL_DETECTOR_VERSION, "demographic_lexicon": LEXICON_VERSION,
                   "language_detector": LANGUAGE_DETECTOR_VERSION}
NORMALIZE_CACHE = 1 << 18  # texts; two per pair, so about 130k pairs stay cached
REFUSAL_WINDOW = 300
_HELP_VERBS = (r"(?:help|assist|provide|do|comply|create|write|give|share|support|fulfil|fulfill|generate|answer|"
               r"produce|make|engage|participate|continue|offer)")
REFUSAL = re.compile(
    r"\bI\s*(?:can ?not|can't|won't|will not|am unable to|'m unable to|am not able to|'m not able to)\s+"
    r"(?:be able to\s+)?" + _HELP_VERBS + r"\b"
    r"|\bI(?:'m| am) not going to\b|\bI refuse\b|\bI must (?:decline|refuse)\b|\bI have to decline\b"
    r"|\bI(?:'d| would) rather not\b"
    r"|\b(?:I(?:'m| am)\s+)?sorry,?\s+but\b|\bI apologi[sz]e,?\s+but\b"
    r"|\bas an ai\b|\bI(?:'m| am) not comfortable\b|\bI (?:don't|do not) feel comfortable\b"
    r"|\bnot something I can help\b",
    re.IGNORECASE,
)


def is_refusal(response: str) -> bool:
    """Whether a response opens as a refusal (the rules in the module docstring)."""
    return bool(REFUSAL.search(response[:REFUSAL_WINDOW].replace("\u2019", "'")))


# ---------------------------------------------------------------- normalisation


class _PunctuationToSpace(dict):
    """`str.translate` table: every Unicode punctuation code point (category P*) to a space, every other to
    itself; filled as code points are met (building it whole walks 1.1M code points: about half a second)."""

    def __missing__(self, cp: int) -> str:
        char = chr(cp)
        self[cp] = " " if unicodedata.category(char).startswith("P") else char
        return self[cp]


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


@lru_cache(maxsize=NORMALIZE_CACHE)
def normalize(text: str) -> str:
    """NFKC, casefold, punctuation to spaces, whitespace runs collapsed to one space, ends stripped (memoised:
    the gate normalises the same messages several times)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(text.translate(_PUNCTUATION_TO_SPACE).split())


# ---------------------------------------------------------------- demographic terms

LEXICONS: dict[str, dict[str, frozenset[str]]] = {
    "gender": {
        "male": frozenset("he him his himself man men boy boys father fathers son sons brother brothers husband "
                          "husbands king kings mr gentleman gentlemen male males boyfriend uncle nephew grandfather "
                          "dad".split()),
        "female": frozenset("she her hers herself woman women girl girls mother mothers daughter daughters sister "
                            "sisters wife wives queen queens mrs ms lady ladies female females girlfriend aunt niece "
                            "grandmother mom".split()),
    },
    "ethnicity": {
        "black": frozenset("black blacks".split()),
        "white": frozenset("white whites caucasian caucasians".split()),
        "asian": frozenset("asian asians".split()),
        "hispanic": frozenset("hispanic hispanics latino latinos latina latinas".split()),
        "arab": frozenset("arab arabs".split()),
        "indigenous": frozenset("indigenous aboriginal".split()),
    },
    "religion": {
        "christian": frozenset("christian christians christianity catholic catholics protestant".split()),
        "muslim": frozenset("muslim muslims islam islamic".split()),
        "jewish": frozenset("jewish jew jews judaism".split()),
        "hindu": frozenset("hindu hindus hinduism".split()),
        "buddhist": frozenset("buddhist buddhists buddhism".split()),
        "sikh": frozenset("sikh sikhs sikhism".split()),
        "atheist": frozenset("atheist atheists atheism".split()),
    },
    "nationality": {
        name: frozenset({name}) for name in
        "american british chinese indian mexican russian german french japanese nigerian brazilian canadian "
        "italian spanish korean iranian pakistani irish australian egyptian".split()
    },
    "age": {
        "young": frozenset("young youth teen teens teenager teenagers child children kid kids millennial "
                           "millennials".split()),
        "old": frozenset("old elderly senior seniors retiree retirees boomer boomers aged".split()),
    },
}
GROUP_OF = {word: (category, group) for category, groups in LEXICONS.items()
            for group, words in groups.items() for word in words}


def term_counts(texts: Iterable[str]) -> dict[str, dict[str, int]]:
    """Mentions of each lexicon group in `texts`, per category: {"gender": {"male": 3, "female": 1}, ...}."""
    counts: dict[str, Counter[str]] = {category: Counter() for category in LEXICONS}
    for text in texts:
        for word in normalize(text).split():
            if word in GROUP_OF:
                category, group = GROUP_OF[word]
                counts[category][group] += 1
    return {category: {g: c.get(g, 0) for g in LEXICONS[category]} for category, c in counts.items()}


def gender_counts(texts: Iterable[str]) -> dict[str, int]:
    """Mentions of the male and female gender terms in `texts`."""
    return term_counts(texts)["gender"]


def counterfactual_key(text: str) -> tuple[str, bool]:
    """The text with each lexicon word replaced by its category; and whether any was replaced."""
    words = normalize(text).split()
    masked = [f"<{GROUP_OF[w][0]}>" if w in GROUP_OF else w for w in words]
    return " ".join(masked), masked != words


# ---------------------------------------------------------------- language

STOPWORDS = {
    "en": frozenset("the a an and or of to in is are was were be been it this that for on with as by at from not "
                    "but have has had you your i we they he she his her its our their can will would should".split()),
    "es": frozenset("el los las y del es que por para con una se su sus al lo como pero muy también".split()),
    "fr": frozenset("le les et ou des du est sont que pour avec une ne pas se sa ses au aux qui dans très".split()),
    "de": frozenset("der das und oder von zu im ist sind nicht mit ein eine einen dem den für auf ich sie".split()),
    "pt": frozenset("os ou do da dos das em são que para com um uma não se seu sua ao na".split()),
    "it": frozenset("il lo gli le di del della è sono che con una non si suo sua al nel molto".split()),
}
LANGUAGES = tuple(STOPWORDS)
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def stopword_counts(words: Iterable[str]) -> Counter[str]:
    """Hits of each language's stopword list among lower-cased `words` (every language present, 0 included)."""
    words = list(words)
    return Counter({lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()})


def main_script(text: str) -> tuple[str, int, int]:
    """(the script most letters belong to, letters in the Latin script, all letters); ("", 0, 0) without letters."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "", 0, 0
    scripts = Counter(unicodedata.name(ch, "UNKNOWN").split()[0] for ch in letters)
    return scripts.most_common(1)[0][0].lower(), scripts["LATIN"], len(letters)


def detect_language(text: str) -> str:
    """`en`, `es`, `fr`, `de`, `pt`, `it` by stopwords; for a mostly non-Latin text its main script,
    lower-cased (`cyrillic`, `cjk`, `arabic`, ...); `und` when undecided (no letters, or no stopword of
    any list, or a tie)."""
    script, latin, letters = main_script(text)
    if not letters:
        return "und"
    if latin * 2 < letters:
        return script
    counts = stopword_counts(w.lower() for w in _WORD.findall(text)).most_common(2)
    (best, best_n), (_, second_n) = counts[0], counts[1]
    return best if best_n > second_n else "und"


# ---------------------------------------------------------------- n-grams and the eval index


def ngrams(words: list[str], n: int) -> Iterable[str]:
    """Each run of `n` consecutive words, joined by one space."""
    return (" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


class EvalIndex:
    """Word n-grams of normalised evaluation items, each mapped to the first item (label) that has it.

    Items shorter than `n` words cannot share an n-gram; they match only a text that is exactly theirs."""

    def __init__(self, items: Iterable[tuple[str, str]], n: int):
        self.n = n
        self.grams: dict[str, str] = {}
        self.short: dict[str, str] = {}
        labels = set()
        for where, text in items:
            labels.add(where)
            words = normalize(text).split()
            if len(words) < n:
                self.short.setdefault(" ".join(words), where)
            for gram in ngrams(words, n):
                self.grams.setdefault(gram, where)
        self.items = len(labels)

    def hits(self, text: str, whole: bool = False) -> list[str]:
        """The shared n-grams of `text`, in text order. `whole`: also the text itself if a short item is it."""
        words = normalize(text).split()
        found = list(dict.fromkeys(gram for gram in ngrams(words, self.n) if gram in self.grams))
        if whole and " ".join(words) in self.short:
            found.append(" ".join(words))
        return found

    def item(self, gram: str) -> str:
        """The label of the first item holding `gram`."""
        return self.grams.get(gram) or self.short[gram]
