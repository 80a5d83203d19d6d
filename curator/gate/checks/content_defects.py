"""Content defects documented for Alpaca by the AlpacaDataCleaned project, each with its own reason.

The rules (first match names the reason; `stats["found"]` counts every defect seen):

- `defect:control_characters`: a C0/C1 control character other than tab, newline and carriage
  return, or U+FFFD (a decoding failure), in any message.
- `defect:empty_output`: the response is blank.
- `defect:placeholder_output`: the normalised response is a placeholder ("N/A", "none", "null",
  "<nooutput>", ...) or contains a `<noinput>`/`<nooutput>` marker; `defect:placeholder_input`: the
  user text holds such a marker.
- `defect:echoed_instruction`: the normalised response equals the normalised user text, or its
  first paragraph (the instruction), at three words or more.
- `defect:merged_instructions`: the user text embeds another prompt's header ("Instruction:" or
  "### Input:"/"### Response:" at a line start; a bare "Input:" is too common in examples), or its
  first paragraph holds two or more numbered lines ("1. ...", "2) ...") that are each a task: they
  open with a task verb or end with "?".
- `defect:absent_reference`: the response talks about an image, a file or attachment, a link or a
  video ("in the image", "the attached file", "this link", ...) that the user text never mentions
  (no URL, no word for that kind of thing).
- `defect:truncated_output`: an odd number of ``` fences; more opening than closing brackets of a
  kind (emoticons aside); or a response (not code) that ends on ",", ":", "(" or a dash, or, at 8+
  words, on a word that cannot end a sentence ("the", "and", "of", "with", ...). A missing final
  full stop alone is not flagged: terse Alpaca answers often lack one.
- `defect:wrong_language` (when `language` is "en"): among 20+ letters fewer than half are Latin,
  or among 8+ words (not code) English stopwords are under 10% of the words while those of Spanish,
  French, German, Portuguese or Italian (lists without words English shares) number 3+ and at least
  twice as many (scripts and stopword lists: `curator.text_signals`, which the evaluation's
  language detector uses too). Rows whose user text asks for a translation or names a language are exempt. A
  cheap heuristic: it catches responses in another script or a clearly other Latin-script
  language, not code-switching or short answers.

On the shared 51,750-row Alpaca mix these rules reject 1,195 rows: 1,148 blank outputs, 18 control
characters (cp1252 dashes decoded as C1 controls), 24 truncated, 2 placeholder inputs, 2 absent
references, 1 placeholder output.
"""
from __future__ import annotations

import re
from collections import Counter

from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import ContentDefectsConfig, Spec
from curator.text_signals import main_script, normalize, stopword_counts

PLACEHOLDERS = frozenset({
    "n a", "na", "none", "null", "nil", "noinput", "nooutput", "no input", "no output", "empty", "not applicable",
    "no answer", "no response", "tbd", "todo", "",
})
MARKER = re.compile(r"<\s*no\s*(input|output)\s*>", re.IGNORECASE)
PROMPT_HEADER = re.compile(r"^\s*((#+\s*)?instruction|#+\s*(input|output|response))\s*:", re.IGNORECASE | re.MULTILINE)
NUMBERED = re.compile(r"^\s*\d{1,2}\s*[.)]\s+(\S.*)$", re.MULTILINE)
TASK_VERBS = frozenset("""
write generate explain describe list give create translate summarize summarise classify find identify compose
suggest name provide rewrite edit convert calculate tell make design construct compare analyze analyse predict
determine outline propose develop draft answer evaluate choose select sort rank categorize categorise paraphrase
""".split())
URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|org|net|io|gov|edu)\b", re.IGNORECASE)
REFERENCES = {
    "image": (re.compile(r"\b(in|from|on) (the|this) (image|picture|photo|photograph|diagram|chart|screenshot)\b"
                         r"|\b(the|this) (image|picture|photo|photograph|screenshot) (shows|depicts|contains)\b", re.I),
              re.compile(r"image|picture|photo|diagram|chart|screenshot|graph|figure|\.(png|jpe?g|gif)\b|<img", re.I)),
    "file": (re.compile(r"\b(the|this) attached\b|\b(attached|uploaded) (file|document|spreadsheet|pdf)\b"
                        r"|\b(in|from) (the|this) (file|document|pdf|spreadsheet|attachment)\b", re.I),
             re.compile(r"attach|file|document|pdf|spreadsheet|upload|\.(csv|txt|docx?|xlsx?)\b", re.I)),
    "link": (re.compile(r"\bthis (link|url)\b|\bthe (provided|given|above|attached|shared) (link|url)\b"
                        r"|\bthe (link|url) (you|above) ", re.I),
             re.compile(r"link|url|web ?page|website|site|https?://|www\.", re.I)),
    "video": (re.compile(r"\b(in|from) (the|this) (video|clip|recording|audio)\b", re.I),
              re.compile(r"video|clip|recording|audio|youtube", re.I)),
}
BRACKETS = ("()", "[]", "{}")
DANGLING_END = (",", ":", "(", " -", "–", "—")
EMOTICON = re.compile(r"(?<!\S)[:;=]-?[()\[\]](?!\S)")
CODE_HINT = re.compile(
    r"```|[{};]\s*$|^\s*(def|class|import|return|for|if|#include|function|SELECT)\b|#!|</?\w+[^>]*>|\$\(|\w\(.*\)",
    re.MULTILINE)
OPEN_ENDED = frozenset("the a an and or of to with for that which is are was were by as from but because "
                       "their his her its our your my this these those".split())
LANGUAGE_MENTION = re.compile(
    r"translat|\b(english|spanish|french|german|portuguese|italian|chinese|japanese|korean|russian|arabic|hindi|"
    r"dutch|latin|greek|turkish|polish|swedish|language)\b", re.IGNORECASE)
# Unicode category Cc (U+0000-001F, U+007F-009F) less tab, newline and carriage return; plus U+FFFD
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def control_characters(texts: list[str]) -> str | None:
    for text in texts:
        if m := CONTROL.search(text):
            return f"U+{ord(m.group()):04X} in the text"
    return None


def placeholder_output(response: str) -> str | None:
    if MARKER.search(response):
        return f"response holds the marker {MARKER.search(response).group(0)!r}"
    if normalize(response) in PLACEHOLDERS:
        return f"response is {response.strip()!r}"
    return None


def echoed_instruction(user: str, response: str) -> str | None:
    said = normalize(response)
    if len(said.split()) < 3:
        return None
    instruction = user.split("\n\n", 1)[0]
    if said in (normalize(user), normalize(instruction)):
        return "response repeats the user text"
    return None


def merged_instructions(user: str) -> str | None:
    header = PROMPT_HEADER.search(user)
    if header:
        return f"user text embeds a prompt header {header.group(0).strip()!r}"
    instruction = user.split("\n\n", 1)[0]
    items = NUMBERED.findall(instruction)
    tasks = [t for t in items if t.strip().endswith("?") or t.split()[0].lower().strip(",:") in TASK_VERBS]
    if len(items) >= 2 and len(tasks) == len(items):
        return f"{len(items)} numbered tasks in one instruction"
    return None


def absent_reference(user: str, response: str) -> str | None:
    for kind, (claim, present) in REFERENCES.items():
        match = claim.search(response)
        if match and not present.search(user) and not (kind == "link" and URL.search(user)):
            return f"response refers to {match.group(0)!r} but the user text has no {kind}"
    return None


def truncated_output(response: str) -> str | None:
    text = response.rstrip()
    if text.count("```") % 2:
        return "unclosed code fence"
    plain = EMOTICON.sub("", text)
    for pair in BRACKETS:
        if plain.count(pair[0]) > plain.count(pair[1]):
            return f"unclosed {pair[0]!r}"
    if len(plain.split()) >= 3 and plain.rstrip().endswith(DANGLING_END) and not CODE_HINT.search(text):
        return f"ends on {plain.rstrip()[-1:]!r}"
    last_word = text.split()[-1].lower() if text else ""
    if len(text.split()) >= 8 and last_word in OPEN_ENDED and not CODE_HINT.search(text):
        return f"ends mid-sentence on {last_word!r}"
    return None


def wrong_language(user: str, response: str, language: str) -> str | None:
    if LANGUAGE_MENTION.search(user):
        return None
    if not response.isascii():  # ASCII letters are all Latin
        _, latin, letters = main_script(response)
        if letters >= 20 and latin / letters < 0.5:
            return f"{latin}/{letters} letters are Latin"
    words = re.findall(r"[^\W\d_]+", response.lower())
    if len([w for w in words if len(w) > 1]) < 8 or CODE_HINT.search(response):
        return None
    counts = stopword_counts(words)
    best, best_count = counts.most_common(1)[0]
    if (counts[language] / len(words) < 0.1 and best != language and best_count >= 3
            and best_count >= 2 * counts[language]):
        return f"stopwords look {best!r}, not {language!r} ({best_count} vs {counts[language]} of {len(words)} words)"
    return None


def defects(record: dict, language: str | None) -> list[tuple[str, str]]:
    """Every (kind, detail) defect of a record, in the order the module docstring lists them."""
    user, response = user_text(record), assistant_text(record)
    found: list[tuple[str, str | None]] = [
        ("control_characters", control_characters([m["content"] for m in record["messages"]])),
        ("empty_output", "response is blank" if not response.strip() else None),
    ]
    if response.strip():
        found += [
            ("placeholder_output", placeholder_output(response)),
            ("placeholder_input", f"user text holds {MARKER.search(user).group(0)!r}" if MARKER.search(user) else None),
            ("echoed_instruction", echoed_instruction(user, response)),
            ("merged_instructions", merged_instructions(user)),
            ("absent_reference", absent_reference(user, response)),
            ("truncated_output", truncated_output(response)),
            ("wrong_language", wrong_language(user, response, language) if language else None),
        ]
    return [(kind, detail) for kind, detail in found if detail]


class ContentDefects:
    name = "content_defects"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    def __init__(self, config: ContentDefectsConfig):
        self.config = config

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "ContentDefects":
        return cls(spec.gate.content_defects)

    def run(self, rows: list[Row]) -> CheckResult:
        kept: list[Row] = []
        rejected: list[Rejection] = []
        found: Counter[str] = Counter()
        for row in rows:
            hits = defects(row.record, self.config.language)
            found.update(kind for kind, _ in hits)
            if hits:
                kind, detail = hits[0]
                rejected.append(Rejection(row, f"defect:{kind}: {detail}"))
            else:
                kept.append(row)
        stats = {
            "checked": len(rows),
            "found": {kind: found.get(kind, 0) for kind in (
                "control_characters", "empty_output", "placeholder_output", "placeholder_input", "echoed_instruction",
                "merged_instructions", "absent_reference", "truncated_output", "wrong_language")},
            "language": self.config.language,
            "removed": len(rejected),
        }
        return CheckResult(kept, rejected, stats)
