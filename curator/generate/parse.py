"""Read a teacher reply into (instruction, input, output), or say why it goes to quarantine.

Reasons: `truncated` (stopped at max_tokens), `unparseable`, `empty_output`, `instruction_copies_seed`
(instruction + input at least 90% similar to a seed's or a built-in demonstration's), `instruction_copies_parent`
(an evol rewrite that is its parent again), `refusal_off_policy` (a refusal-family response that does not
decline), `over_refusal` (a benign look-alike that is refused), and the shared format / length checks of
`curator.formats` (`not_a_bullet_list: ...`, `length_out_of_band: ...`).

A respond slot's reply is the response alone (the instruction is given); every other strategy's reply holds a
whole new task.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from curator.formats import format_problem, length_problem, parse_json_response
from curator.generate.evolve import EVOL_DEMOS
from curator.generate.plan import DEEPEN, LOOKALIKE, RESPOND, WIDEN, Slot
from curator.generate.prompts import END_OF_TASK, LOOKALIKE_DEMOS, NO_INPUT
from curator.spec import Spec
from curator.text_signals import is_refusal

COPY_SIMILARITY = 0.9
_FIELD = re.compile(r"^(Input|Response):[ \t]*", re.M)
_NEXT_TASK = re.compile(r"^\s*(Task \d+|Family:|Instruction:)", re.M)
_EVOL_LABEL = re.compile(r"^\s*(Original instruction|Original input|Rewrite):", re.M)  # an evol reply that restarts the frame


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
    if isinstance(output, (dict, list)):  # a structured-output reply holds the JSON response as a value
        output = json.dumps(output, ensure_ascii=False)
    if not isinstance(output, str):
        return Problem("unparseable") if output is not None else Problem("empty_output")
    return Fields(instruction.strip(), input_text.strip(), output.strip())


def parse_response(text: str) -> str:
    """A respond reply's response: the text up to the end-of-task mark or the next task's header
    (empty when the teacher only wrote the no-input marker)."""
    response = _NEXT_TASK.split(text.split(END_OF_TASK, 1)[0], 1)[0].strip()
    return "" if response == NO_INPUT else response


def copies_any(fields: Fields, originals: list[tuple[str, str]]) -> bool:
    """Instruction + input at least COPY_SIMILARITY alike (difflib ratio) to one of the (instruction, input)
    `originals`."""
    return _copies(fields, [_normalise(f"{instruction}\n{input_text}") for instruction, input_text in originals])


def _copies(fields: Fields, originals: list[str]) -> bool:
    """`copies_any` for originals already normalised; cheap upper bounds first."""
    matcher = SequenceMatcher(None, b=_normalise(f"{fields.instruction}\n{fields.input}"), autojunk=False)
    for original in originals:
        matcher.set_seq1(original)
        if (matcher.real_quick_ratio() >= COPY_SIMILARITY and matcher.quick_ratio() >= COPY_SIMILARITY
                and matcher.ratio() >= COPY_SIMILARITY):
            return True
    return False


_SEEDS: dict[tuple[str, str], list[str]] = {}  # (spec hash, strategy) -> normalised seeds and demonstrations


def copies_seed(fields: Fields, spec: Spec, slot: Slot) -> bool:
    """The new task copies a seed, or a built-in demonstration of the slot's template."""
    originals = _SEEDS.get((spec.hash, slot.strategy))
    if originals is None:
        pairs = [(s.instruction, s.input) for t in spec.task_families for s in t.seeds]
        if slot.strategy == LOOKALIKE:
            pairs += [(s.instruction, s.input) for s in LOOKALIKE_DEMOS]
        elif slot.strategy in (DEEPEN, WIDEN):
            pairs += [(d[3], d[4]) for d in EVOL_DEMOS]
        originals = _SEEDS[(spec.hash, slot.strategy)] = [_normalise(f"{i}\n{x}") for i, x in pairs]
    return _copies(fields, originals)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def review(text: str, finish_reason: str | None, *, mode: str, spec: Spec, slot: Slot) -> Fields | Problem:
    """The reply's fields when it is a usable pair for `slot`, else the first quarantine reason found."""
    if finish_reason == "length":
        return Problem("truncated")
    if slot.strategy == RESPOND:
        parsed = Fields(slot.parent.instruction, slot.parent.input, text.strip() if mode == "chat" else parse_response(text))
    else:
        parsed = parse_chat(text) if mode == "chat" else parse_completion(text)
    if isinstance(parsed, Problem):
        return parsed
    if slot.strategy in (DEEPEN, WIDEN) and _EVOL_LABEL.search(f"{parsed.instruction}\n{parsed.input}"):
        return Problem("unparseable")
    if not parsed.output:
        return Problem("empty_output")
    if slot.strategy != RESPOND and copies_seed(parsed, spec, slot):
        return Problem("instruction_copies_seed")
    if slot.parent is not None and slot.strategy != RESPOND and copies_any(parsed, [(slot.parent.instruction, slot.parent.input)]):
        return Problem("instruction_copies_parent")
    if slot.strategy == LOOKALIKE:
        if is_refusal(parsed.output):
            return Problem("over_refusal")
    elif spec.family(slot.family).refusal and not is_refusal(parsed.output):
        return Problem("refusal_off_policy")
    problem = format_problem(spec.format(slot.format), parsed.output) or length_problem(
        spec.band(slot.length_band), parsed.output
    )
    return Problem(problem) if problem else parsed
