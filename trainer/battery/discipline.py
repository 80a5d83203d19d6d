"""Format discipline and task accuracy of one answer to one eval pair, where they can be checked.

`discipline_scores(answer, record, spec)` returns only the metrics that apply to the pair, each 0..1:

- `format_ok` (every pair): `curator.formats.format_problem` finds nothing: JSON parses and validates
  against the format's schema, a label is in the allowed set, list lines are list lines.
- `grounded` (JSON formats): every string in the answer's JSON occurs in the pair's user text
  (case and runs of whitespace ignored): an extraction invents nothing. 0 when the JSON does not parse.
- `label_accuracy` (label formats): the label equals the reference label (same normalisation as the
  format check: surrounding spaces, dots and quotes dropped, case ignored).
- `span_f1` (JSON formats): F1 between the sets of strings in the answer's and the reference's JSON.
- `arithmetic_ok` (families in `arithmetic_families`, default `reason`, whose reference holds a number):
  the last number in the answer equals the last number in the reference (thousands commas dropped).
"""
from __future__ import annotations

import re

from curator.formats import parse_json_response
from curator.records import user_text
from curator.spec import Spec
from trainer.scoring import format_ok, reference_answer

DISCIPLINE_METRICS = ("format_ok", "grounded", "label_accuracy", "span_f1", "arithmetic_ok")

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def normalise_label(text: str) -> str:
    return text.strip().strip(" .\"'").lower()


def json_strings(value: object) -> list[str]:
    """Every string leaf of a parsed JSON value, depth first (object keys excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def ungrounded(strings: list[str], source: str) -> list[str]:
    """The strings that do not occur in `source` (case and whitespace runs ignored)."""
    haystack = _norm(source)
    return [s for s in strings if _norm(s) not in haystack]


def set_f1(predicted: set[str], reference: set[str]) -> float:
    """F1 of two sets; 1.0 when both are empty."""
    if not predicted or not reference:
        return float(predicted == reference)
    hits = len(predicted & reference)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(reference)
    return 2 * precision * recall / (precision + recall)


def last_number(text: str) -> float | None:
    """The last number written in `text` (`1,250.5` reads as 1250.5), or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def arithmetic_match(answer: str, reference: str) -> bool:
    """The answer's last number equals the reference's (both must hold one)."""
    got, want = last_number(answer), last_number(reference)
    return got is not None and want is not None and abs(got - want) <= 1e-9 * max(1.0, abs(want))


def discipline_scores(
    answer: str, record: dict, spec: Spec, *, arithmetic_families: tuple[str, ...] = ("reason",)
) -> dict[str, float]:
    """The applicable metrics of the module docstring for `answer` to the eval pair `record`."""
    fmt = spec.format(record["format"])
    reference = reference_answer(record)
    scores = {"format_ok": format_ok(answer, record, spec)}
    if fmt.kind == "label":
        scores["label_accuracy"] = float(normalise_label(answer) == normalise_label(reference))
    if fmt.kind == "json":
        try:
            strings = json_strings(parse_json_response(answer))
        except ValueError:
            scores["grounded"] = scores["span_f1"] = 0.0
        else:
            scores["grounded"] = float(not ungrounded(strings, user_text(record)))
            wanted = {_norm(s) for s in json_strings(parse_json_response(reference))}
            scores["span_f1"] = set_f1({_norm(s) for s in strings}, wanted)
    if record["task_family"] in arithmetic_families and last_number(reference) is not None:
        scores["arithmetic_ok"] = float(arithmetic_match(answer, reference))
    return scores
