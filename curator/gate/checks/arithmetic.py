"""Arithmetic verifier: every explicit computation in a response is recomputed.

What counts as a computation (code blocks and code-like rows are left alone, see `prose_of`):

- GSM8K-style annotations `<<48/2=24>>`: the expression left of `=` is evaluated exactly as written.
- Equations in prose, `a op b ... = c`: for each `=` (not part of `==`, `<=`, `+=`, ...), the text
  back to the previous `=`, sentence end, colon, semicolon, comma or line start is reduced to its
  numbers, operators (+ - * / x × ÷ ^) and parentheses, words between them dropped ("7 family units *
  3 people = 21 people" is 7 * 3 = 21), and the longest well-formed arithmetic suffix is evaluated.
  `N% of M` is N/100 * M and `N%` alone N/100. The stated result is the first number after `=`
  (`$`, thousands commas and a trailing `%` allowed); "about", "approximately", "~" and "≈" mark an
  estimate, which is not checked. An equation needs at least one operator.
- The final answer ("The answer is X", "Answer: X", "#### X", the last one in the response) must
  equal the last equation's stated result, when the response has equations.

A stated result is right when it equals the computed value, or the computed value rounded to the
decimals the result was written with (10 / 3 = 3.33 is right), or, for a result written with a `%`,
a hundred times it. A response with one wrong computation is rejected, naming it.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from collections import Counter

from curator.gate.check import CheckResult, GateContext, Rejection, Row, mark_verified
from curator.records import assistant_text
from curator.spec import Spec

ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
FENCE = re.compile(r"```.*?(```|\Z)", re.DOTALL)
EQUALS = re.compile(r"(?<![=<>!+\-*/%])=(?!=)")
BOUNDARY = re.compile(r"[.!?](?:\s|$)|[:;\n]|,(?=\s)|\b(?:so|then|and|thus|therefore|because|since|which|is|are|was|"
                      r"were|has|had|gets?|makes?|costs?)\b", re.IGNORECASE)
NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
STATED = re.compile(r"\s*(about|approximately|approx\.?|around|roughly|nearly|~|≈)?\s*(-)?\s*[$€£]?\s*"
                    rf"({NUMBER})(\s*%)?", re.IGNORECASE)
TOKEN = re.compile(rf"(?P<num>{NUMBER})\s*(?P<pct>%)?(?P<of>\s*of(?=\s*[$€£]?\s*\.?\d))?"
                   r"|(?P<op>[+*×÷^]|(?<![A-Za-z])[-–−/](?![A-Za-z])|(?<=\d\s)[xX](?=\s+[$€£]?\.?\d))|(?P<par>[()])")
VARIABLE = re.compile(r"(?<![A-Za-z'’])(?![aI]\b)[A-Za-z](?![A-Za-z'’])|\d[A-Za-z]\b")
MULTIPLY_X = re.compile(r"(?<=\d)\s+[xX](?=\s+[$€£]?\.?\d)")
RESULT_TAIL = re.compile(r"\s*[-+*/×÷^xX(]\s*[$€£]?\s*[\w.(]")
FINAL = re.compile(r"(?:####|\bthe (?:final )?answer is|\bfinal answer:|\banswer:)\s*[$€£]?\s*(-?(?:"
                   + NUMBER + r"))", re.IGNORECASE)
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
       ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
LIST_MARKER = re.compile(r"^[ \t]*(?:[-*•]|\d{1,2}[.)])[ \t]+", re.MULTILINE)
CODE_LINE = re.compile(r"^\s*(def |class |import |from \S+ import|for .*:\s*$|if .*:\s*$|while .*:\s*$|return\b|"
                       r"print\(|#include|public |function |const |let |var |SELECT\b|\w+\s*\(.*\)\s*;?\s*$)",
                       re.MULTILINE)


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
        return OPS[type(node.op)](_value(node.operand))
    raise ValueError("not arithmetic")


def evaluate(expression: str) -> float | None:
    """The value of a plain arithmetic expression (numbers, + - * / ** and parentheses), or None."""
    try:
        return _value(ast.parse(expression.strip(), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _tokens(segment: str) -> list[str]:
    out = []
    for m in TOKEN.finditer(segment):
        if m.group("num"):
            value = _num(m.group("num"))
            if out and out[-1] == ")":
                out.append("*")  # 2(3 + 4): implicit multiplication
            out.append(f"({value!r}/100)" if m.group("pct") else repr(value))
            if m.group("of"):
                out.append("*")
        elif m.group("op"):
            out.append({"x": "*", "X": "*", "×": "*", "÷": "/", "^": "**", "–": "-", "−": "-"}.get(m.group("op"), m.group("op")))
        else:
            if m.group("par") == "(" and out and out[-1] not in ("+", "-", "*", "/", "**", "("):
                out.append("*")
            out.append(m.group("par"))
    return out


def expression_before(segment: str) -> tuple[str, float] | None:
    """The longest well-formed arithmetic suffix of a segment (with one operator or more) and its value."""
    tokens = _tokens(segment)
    if tokens and tokens[-1] == "*":  # a dangling "of" from "N% of =" is not an expression
        tokens.pop()
    for start in range(len(tokens)):
        part = tokens[start:]
        if not (part[0][0] == "(" or part[0][0].isdigit() or (start == 0 and part[0] == "-")):
            continue
        if not any(t in ("+", "-", "*", "/", "**") for t in part[1:]):
            return None
        value = evaluate(" ".join(part))
        if value is not None:
            return " ".join(part), value
    return None


def _decimals(number: str) -> int:
    return len(number.split(".")[1]) if "." in number else 0


def agrees(computed: float, stated: str, percent: bool = False, divides: bool = False) -> bool:
    """Whether a stated result (as written) is right for the computed value (see the module docstring)."""
    value = _num(stated)
    candidates = [computed, computed * 100] if percent else [computed]
    if divides and "." not in stated:  # 100 stickers / 3 friends = 33 each (with 1 left over)
        candidates += [math.floor(computed), math.ceil(computed)]
    tolerance = 1e-9 * max(1.0, abs(value))
    return any(abs(c - value) <= tolerance or abs(round(c, _decimals(stated)) - value) <= tolerance
               for c in candidates)


def prose_of(response: str) -> str | None:
    """The response without fenced code and list markers (a bullet's `-` or `*` is not an operator, an item's
    `2.` not a number); None when what is left reads as code (assignments are not sums)."""
    text = FENCE.sub("\n", response)
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and sum(bool(CODE_LINE.match(line)) for line in lines) >= max(2, len(lines) // 3):
        return None
    return LIST_MARKER.sub("", text)


def find_errors(response: str) -> tuple[int, list[str]]:
    """(computations checked, what is wrong with them) for one response."""
    checked, errors = 0, []
    for m in ANNOTATION.finditer(response):
        computed, stated = evaluate(m.group(1).replace("x", "*")), STATED.match(m.group(2))
        if computed is None or not stated or stated.group(1):
            continue
        checked += 1
        if not agrees(computed, stated.group(3), bool(stated.group(4))):
            errors.append(f"<<{m.group(1)}={m.group(2)}>> but it is {computed:g}")
    text = prose_of(ANNOTATION.sub(" ", response))
    if text is None:
        return checked, errors
    last_result: str | None = None
    starts = [0] + [m.end() for m in EQUALS.finditer(text)]
    for eq, start in zip(EQUALS.finditer(text), starts):
        segment = text[start:eq.start()]
        segment = segment[max((b.end() for b in BOUNDARY.finditer(segment)), default=0):]
        stated = STATED.match(text, eq.end())
        if not stated or stated.group(1) or VARIABLE.search(MULTIPLY_X.sub(" * ", segment)):
            continue
        if RESULT_TAIL.match(text, stated.end()):
            continue  # the right side is itself an expression: it is checked as the next equation's left side
        found = expression_before(segment)
        if not found:
            continue
        expression, computed = found
        number = ("-" if stated.group(2) else "") + stated.group(3)
        checked += 1
        last_result = number
        if not agrees(computed, number, bool(stated.group(4)), divides="/" in expression):
            errors.append(f"{expression} = {number} but it is {computed:g}")
    finals = FINAL.findall(text)
    if finals and last_result is not None:
        checked += 1
        if not agrees(_num(last_result), finals[-1]):
            errors.append(f"final answer {finals[-1]} but the last computed result is {last_result}")
    return checked, errors


class Arithmetic:
    """Reject responses with a wrong computation or a final answer that disagrees with the work."""

    name = "arithmetic"
    row_local = True  # a row's verdict depends on that row alone (curator.gate.stream runs it per batch)

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Arithmetic":
        return cls()

    def run(self, rows: list[Row]) -> CheckResult:
        kept, rejected = [], []
        computations, responses_with = 0, 0
        kinds: Counter[str] = Counter()
        for row in rows:
            checked, errors = find_errors(assistant_text(row.record))
            computations += checked
            responses_with += bool(checked)
            if errors:
                kind = "final_answer" if errors[0].startswith("final answer") else "wrong_result"
                kinds[kind] += 1
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                rejected.append(Rejection(row, f"arithmetic:{kind}: {errors[0]}{more}"))
            else:
                if checked:
                    mark_verified(row)
                kept.append(row)
        stats = {"checked": len(rows), "responses_with_computations": responses_with,
                 "computations": computations, "found": dict(kinds), "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
