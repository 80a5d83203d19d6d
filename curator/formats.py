"""Does a response keep the promise of its format and length band? One answer for generator, gate and eval."""
from __future__ import annotations

import json
import re

import jsonschema

from curator.spec import Format, LengthBand

_BULLET = re.compile(r"^\s*[-*•]\s+\S")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S")


def word_count(text: str) -> int:
    return len(text.split())


def parse_json_response(text: str) -> object:
    """The JSON value in a response, tolerating a ```json fence around it; raises ValueError."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fenced:
        body = fenced.group(1)
    return json.loads(body)


def _lines(body: str) -> list[str]:
    """The non-blank lines of a response."""
    return [ln for ln in body.splitlines() if ln.strip()]


def format_problem(fmt: Format, text: str) -> str | None:
    """None when `text` is a valid response in `fmt`, else a short reason (`json_invalid: ...`)."""
    body = text.strip()
    if not body:
        return "empty_response"
    if fmt.kind == "bullet_list":
        if not all(_BULLET.match(ln) for ln in _lines(body)):
            return "not_a_bullet_list: every line must start with '- '"
    elif fmt.kind == "numbered_list":
        if not all(_NUMBERED.match(ln) for ln in _lines(body)):
            return "not_a_numbered_list: every line must start with '1.'"
    elif fmt.kind == "label":
        label = body.strip(" .\"'").lower()
        if label not in {lab.lower() for lab in fmt.labels}:
            return f"label_not_allowed: {body[:40]!r} not in {list(fmt.labels)}"
    elif fmt.kind == "json":
        try:
            value = parse_json_response(body)
        except ValueError as e:
            return f"json_invalid: {e}"
        if fmt.json_schema is not None:
            err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(fmt.json_schema).iter_errors(value))
            if err is not None:
                return f"json_schema_violation: {err.message}"
    return None


def length_problem(band: LengthBand, text: str) -> str | None:
    """None when the response's word count lies in the band, else a reason."""
    n = word_count(text)
    if n < band.min_words or n > band.max_words:
        return f"length_out_of_band: {n} words, band {band.name} is {band.min_words}-{band.max_words}"
    return None
