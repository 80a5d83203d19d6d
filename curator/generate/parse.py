"""Read a teacher reply into (instruction, input, output), or say why it goes to quarantine.

Reasons: `truncated` (stopped at max_tokens), `unparseable`, `empty_output`, `instruction_copies_seed`
(instruction + input at least 90% similar to a seed's), `refusal_off_policy` (a refusal-family response that does
not decline), and the shared format / length checks of `curator.formats` (`not_a_bullet_list: ...`,
`length_out_of_band: ...`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from curator.formats import format_problem, length_problem, parse_json_response
from curator.generate.plan import Slot
from curator.generate.prompts import END_OF_TASK, NO_INPUT
from curator.spec import Spec

COPY_SIMILARITY = 0.9
REFUSAL_MARKERS = (
    "i can't", "i can’t", "i cannot", "i can not", "i won't", "i won’t", "i will not", "i'm not able",
    "i am not able", "i'm unable", "i am unable", "i must decline", "i have to decline", "i'm sorry",
    "i am sorry", "sorry, but", "can't help", "cannot help", "not able to help",
)
_FIELD = re.compile(r"^(Input|Response):[ \t]*", re.M)
_NEXT_TASK = re.compile(r"^\s*(Task \d+|Family:|Instruction:)", re.M)


@dataclass(frozen=True)
class Fields:
    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class Problem:
    reason: str


def parse_completion(text: str) -> Fields | Problem:
    """Fields of a self-instruct completion (the text after the prompt's final `Instruction:`)."""
    body = text.split(END_OF_TASK, 1)[0]
    parts = _FIELD.split(body)
    instruction = parts[0].strip()
    found: dict[str, str] = {}
    for name, value in zip(parts[1::2], parts[2::2]):
        found.setdefault(name, value)
    if not instruction or "Response" not in found:
        return Problem("unparseable")
    output = _NEXT_TASK.split(found["Response"], 1)[0].strip()
    input_text = found.get("Input", "").strip()
    return Fields(instruction, "" if input_text == NO_INPUT else input_text, output)


def parse_chat(text: str) -> Fields | Problem:
    """Fields of a chat reply holding a JSON object (a ```json fence or prose around it is tolerated)."""
    try:
        value = parse_json_response(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        try:
            value = parse_json_response(text[start : end + 1]) if 0 <= start < end else None
        except ValueError:
            value = None
    if not isinstance(value, dict):
        return Problem("unparseable")
    instruction, input_text, output = value.get("instruction"), value.get("input") or "", value.get("output")
    if not isinstance(instruction, str) or not instruction.strip() or not isinstance(input_text, str):
        return Problem("unparseable")
    if not isinstance(output, str):
        return Problem("unparseable") if output is not None else Problem("empty_output")
    return Fields(instruction.strip(), input_text.strip(), output.strip())


def looks_like_refusal(text: str) -> bool:
    head = text.lower()[:200]
    return any(marker in head for marker in REFUSAL_MARKERS)


def copies_seed(fields: Fields, spec: Spec) -> bool:
    """Instruction + input at least COPY_SIMILARITY alike (difflib ratio) to a seed's; cheap upper bounds first."""
    matcher = SequenceMatcher(None, b=_normalise(f"{fields.instruction}\n{fields.input}"), autojunk=False)
    for seed in (s for t in spec.task_families for s in t.seeds):
        matcher.set_seq1(_normalise(f"{seed.instruction}\n{seed.input}"))
        if (matcher.real_quick_ratio() >= COPY_SIMILARITY and matcher.quick_ratio() >= COPY_SIMILARITY
                and matcher.ratio() >= COPY_SIMILARITY):
            return True
    return False


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def review(text: str, finish_reason: str | None, *, mode: str, spec: Spec, slot: Slot) -> Fields | Problem:
    """The reply's fields when it is a usable pair for `slot`, else the first quarantine reason found."""
    if finish_reason == "length":
        return Problem("truncated")
    parsed = parse_chat(text) if mode == "chat" else parse_completion(text)
    if isinstance(parsed, Problem):
        return parsed
    if not parsed.output:
        return Problem("empty_output")
    if copies_seed(parsed, spec):
        return Problem("instruction_copies_seed")
    if spec.family(slot.family).refusal and not looks_like_refusal(parsed.output):
        return Problem("refusal_off_policy")
    problem = format_problem(spec.format(slot.format), parsed.output) or length_problem(
        spec.band(slot.length_band), parsed.output
    )
    return Problem(problem) if problem else parsed
