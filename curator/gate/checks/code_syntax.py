"""Code verifier: code in a response must parse.

Which code is checked:
- every fenced block (```lang ... ```); its language from the tag (aliases such as py, js, c++, sh),
  or, without a tag, guessed from the block (`guess_language`);
- a response with no fence that is evidently code: its first line opens like code and most of its
  lines read as code. Trailing prose paragraphs ("The function above ...") are left out.

The language of a block without a tag: the one the instruction asks for (the target of a
translation, "... to Ruby", else the one language it names); with no language named, guessed from
the code's signatures (`guess_language`); with several named and no target, not told. A named data
format (JSON, YAML) gives way to a programming language the code evidently is ("a Python script
that saves the result as JSON").

Parsers: Python with `ast`, JSON with `json`, YAML with PyYAML's safe loader, SQL with sqlglot, and
JavaScript, TypeScript, Java, C, C++ and Bash with tree-sitter grammars (a tree with an error node
does not parse). A block in any other language, or one whose language cannot be told, is skipped
and counted (`stats["skipped"]`), never guessed. Python blocks that are REPL transcripts (`>>>`) or
notebook magics are skipped too.
"""
from __future__ import annotations

import ast
import json
import re
import warnings
from collections import Counter
from functools import lru_cache
from typing import Callable

import yaml

from curator.gate.check import CheckResult, GateContext, Rejection, Row, mark_verified
from curator.records import assistant_text, user_text
from curator.spec import Spec

FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
ALIASES = {
    "py": "python", "python3": "python", "py3": "python", "python": "python",
    "js": "javascript", "javascript": "javascript", "node": "javascript", "jsx": "javascript",
    "ts": "typescript", "typescript": "typescript",
    "json": "json", "yaml": "yaml", "yml": "yaml",
    "sql": "sql", "mysql": "sql", "postgresql": "sql", "postgres": "sql", "sqlite": "sql",
    "java": "java", "c": "c", "cpp": "cpp", "c++": "cpp", "cc": "cpp",
    "bash": "bash", "sh": "bash", "shell": "bash", "zsh": "bash",
}
SIGNATURES: tuple[tuple[str, re.Pattern], ...] = (  # first match wins: the most specific first
    ("bash", re.compile(r"^#!/bin/(ba)?sh")),
    ("cpp", re.compile(r"#include\s*<(iostream|vector|string|map|algorithm|cmath)>|\bstd::|\bcout\s*<<|\bcin\s*>>")),
    ("c", re.compile(r"#include\s*<\w+\.h>|\bprintf\s*\(|\bint\s+main\s*\(")),
    ("java", re.compile(r"\bpublic\s+(static\s+|final\s+)*(class|void|int|String)\b|System\.out\.|import\s+java\.")),
    ("python", re.compile(r"^\s*(def \w+\s*\(|class \w+\s*[:(]|import \w+\s*$|from [\w.]+ import |"
                          r"if __name__|print\()", re.MULTILINE)),
    ("javascript", re.compile(r"\bfunction\s*\w*\s*\(|=>|console\.log|\b(const|let|var)\s+\w+\s*=|\brequire\(|"
                              r"document\.")),
    ("sql", re.compile(r"^\s*(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|"
                       r"ALTER\s+TABLE)\b", re.IGNORECASE | re.MULTILINE | re.DOTALL)),
)
LANGUAGE_NAMES = {  # how an instruction names a language -> our name for it (None: no parser here)
    "python": "python", "javascript": "javascript", "js": "javascript", "node.js": "javascript",
    "nodejs": "javascript", "typescript": "typescript", "java": "java", "c++": "cpp", "sql": "sql",
    "mysql": "sql", "postgresql": "sql", "bash": "bash", "shell": "bash", "json": "json", "yaml": "yaml",
    "c#": "csharp", "ruby": "ruby", "go": "go", "golang": "go", "php": "php", "rust": "rust", "swift": "swift",
    "kotlin": "kotlin", "scala": "scala", "perl": "perl", "haskell": "haskell", "r": "r", "matlab": "matlab",
    "lua": "lua", "dart": "dart", "html": "html", "css": "css", "c": "c",
}
_NAME = (r"(?<![\w.#+])(python|javascript|js|node\.?js|typescript|java|c\+\+|c#|mysql|postgresql|sql|bash|shell|"
         r"json|yaml|ruby|golang|php|rust|swift|kotlin|scala|perl|haskell|matlab|lua|dart|html|css)(?![\w+#])"
         r"|(?:\b(?:in|using|a|an|the|to|into)\s+)(C|R|Go)\b(?![+#])|\b(C|R|Go)\s+(?:program|code|function|language|"
         r"script|snippet|implementation|version)\b")
NAMED = re.compile(_NAME, re.IGNORECASE)
TARGET = re.compile(r"\b(?:to|into)\s+(?:an?\s+|the\s+)?(?:equivalent\s+)?(?:(?:code|program|function|"
                    r"implementation|version|script)\s+in\s+)?(?:" + _NAME + ")", re.IGNORECASE)
AMBIGUOUS = "ambiguous"
DATA_FORMATS = ("json", "yaml")
CODE_START = re.compile(
    r"^\s*(def |class |import |from \S+ import|async def |@\w|#include|#!|public |private |function |const |let |var |"
    r"SELECT |INSERT |UPDATE |CREATE |for\s*\(|while\s*\(|if\s*\(|print\(|console\.|\w+\s*=\s*\S|\w+\(.*\)\s*;?\s*$|"
    r"[{\[]\s*$)", re.IGNORECASE)
CODE_LINE = re.compile(r"[;{}()=\[\]:#]|^\s{2,}\S|^\s*(return|else|end|fi|done|import|from|def|class)\b")
PROSE = re.compile(r"^[A-Z][a-z]+(\s+[a-z'’-]+){3,}")
TREE_SITTER = {"javascript": "tree_sitter_javascript", "typescript": "tree_sitter_typescript",
               "java": "tree_sitter_java", "c": "tree_sitter_c", "cpp": "tree_sitter_cpp", "bash": "tree_sitter_bash"}


def _named(match: re.Match) -> str:
    name = next(g for g in match.groups() if g).lower().replace("node.js", "nodejs")
    return LANGUAGE_NAMES.get(name, name)


def instruction_language(instruction: str) -> str | None:
    """The language an instruction asks for: the target of a translation ("... to Ruby"), else the one
    language it names; `AMBIGUOUS` when it names several, None when it names none."""
    first = instruction.split("\n\n", 1)[0]
    target = TARGET.search(first)
    if target:
        return _named(target)
    named = {_named(m) for m in NAMED.finditer(first)}
    return named.pop() if len(named) == 1 else (AMBIGUOUS if named else None)


def guess_language(code: str) -> str | None:
    """The language a code block is evidently written in, by its signatures; None when it cannot be told."""
    stripped = code.strip()
    if stripped[:1] in "{[" and stripped[-1:] in "}]":
        try:
            json.loads(stripped)
            return "json"
        except ValueError:
            pass
    return next((lang for lang, sig in SIGNATURES if sig.search(code)), None)


def _python(code: str) -> str | None:
    if ">>>" in code or re.search(r"^\s*[%!]", code, re.MULTILINE):
        raise LookupError("REPL transcript or notebook magic")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences are warnings, not syntax errors
            ast.parse(code)
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:
        return str(e)
    return None


def _json(code: str) -> str | None:
    try:
        json.loads(code)
    except ValueError as e:
        return str(e)
    return None


def _yaml(code: str) -> str | None:
    try:
        yaml.safe_load(code)
    except yaml.YAMLError as e:
        return str(e).splitlines()[0]
    return None


def _sql(code: str) -> str | None:
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        sqlglot.parse(code)
    except SqlglotError as e:
        return str(e).splitlines()[0]
    return None


@lru_cache(maxsize=None)
def _tree_sitter_parser(language: str):
    import importlib

    from tree_sitter import Language, Parser

    module = importlib.import_module(TREE_SITTER[language])
    grammar = module.language_typescript() if language == "typescript" else module.language()
    return Parser(Language(grammar))


def _tree_sitter(language: str) -> Callable[[str], str | None]:
    def check(code: str) -> str | None:
        root = _tree_sitter_parser(language).parse(code.encode("utf-8", "surrogatepass")).root_node
        if not root.has_error:
            return None
        stack = [root]
        while stack:
            node = stack.pop()
            if node.is_error or node.is_missing:
                return f"line {node.start_point[0] + 1}: syntax error near {node.text[:30]!r}"
            stack.extend(reversed(node.children))
        return "syntax error"
    return check


PARSERS: dict[str, Callable[[str], str | None]] = {
    "python": _python, "json": _json, "yaml": _yaml, "sql": _sql,
    **{lang: _tree_sitter(lang) for lang in TREE_SITTER},
}


def code_blocks(response: str, instruction: str) -> list[tuple[str | None, str]]:
    """(language or None, code) for each piece of code in a response (see the module docstring)."""
    def language_of(code: str) -> str | None:
        asked, guessed = instruction_language(instruction), guess_language(code)
        if asked is None or (asked in DATA_FORMATS and guessed not in (None, *DATA_FORMATS)):
            return guessed  # "... save the result as JSON": the code is in the language it evidently is
        return None if asked == AMBIGUOUS else asked

    fenced = FENCE.findall(response)
    if fenced:  # a tag we have no parser for stays as written, and is skipped under its own name
        return [(ALIASES.get(tag.lower(), tag.lower()) if tag else language_of(code), code) for tag, code in fenced]
    paragraphs = re.split(r"\n\s*\n", response.strip())
    while len(paragraphs) > 1 and PROSE.match(paragraphs[-1].strip()):
        paragraphs.pop()
    code = "\n\n".join(paragraphs)
    lines = [line for line in code.splitlines() if line.strip()]
    if len(lines) < 2 or not CODE_START.match(lines[0]) or PROSE.match(lines[0]):
        return []
    if sum(bool(CODE_LINE.search(line)) for line in lines) < 0.6 * len(lines):
        return []
    return [(language_of(code), code)]


class CodeSyntax:
    """Reject responses whose code does not parse in its language."""

    name = "code_syntax"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "CodeSyntax":
        return cls()

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        parsed: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for row in rows:
            problem, verified = None, False
            for language, code in code_blocks(assistant_text(row.record), user_text(row.record)):
                if language not in PARSERS:
                    skipped[language or "unknown"] += 1
                    continue
                try:
                    error = PARSERS[language](code)
                except LookupError:
                    skipped[f"{language} (transcript)"] += 1
                    continue
                parsed[language] += 1
                verified = True
                if error and problem is None:
                    failed[language] += 1
                    problem = f"code_syntax:{language}: does not parse: {error}"
            if problem:
                rejected.append(Rejection(row, problem))
            else:
                if verified:
                    mark_verified(row)
                kept.append(row)
        stats = {"checked": len(rows), "parsed": dict(parsed), "failed": dict(failed), "skipped": dict(skipped),
                 "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
