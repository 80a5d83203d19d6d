"""Evol-Instruct prompts: a parent pair rewritten into a harder task (`evol:deepen`) or a new task of the same
family on another topic (`evol:widen`), with the response, in one teacher call.

`evol_v1` (completion mode, base teachers): a few-shot document of rewrites (EVOL_DEMOS: original task, the
rewrite asked for, the new instruction, input and response), then the parent under the slot's header and the
rewrite asked for, ending in `Instruction:`; the reply parses like a Self-Instruct one. A deepen slot's rewrite
is one of DEEPEN_METHODS, picked per slot (stable across reruns).

`chat_evol_v1` (chat mode): the parent as JSON and the rewrite asked for; the reply is one JSON object
`{"instruction", "input", "output"}`.
"""
from __future__ import annotations

import json

from curator.generate.plan import DEEPEN, Slot
from curator.generate.prompts import (
    END_OF_TASK, NO_INPUT, describe_format, policy_text, preamble, slot_rng, system_message, task_header,
)
from curator.spec import Spec

EVOL_COMPLETION = "evol_v1"
EVOL_CHAT = "chat_evol_v1"
DEEPEN_METHODS = (
    "make it harder by adding one more constraint or requirement",
    "make it harder by requiring more reasoning steps",
    "make it harder by replacing general concepts with more specific ones",
)
WIDEN_METHOD = "write a new, different task of the same family and format, on another topic"
EVOL_DEMOS = (
    ("Summarize the text.",
     "The library will close for renovation from June to August; books can be returned at the town hall.",
     DEEPEN_METHODS[0],
     "Summarize the text in one sentence of at most 15 words, keeping both months.",
     "The library will close for renovation from June to August; books can be returned at the town hall.",
     "The library closes for renovation from June to August; return books at the town hall."),
    ("Solve the problem.", "A ticket costs 4 dollars. How much do 3 tickets cost?",
     DEEPEN_METHODS[1],
     "Solve the problem and show each step.",
     "A ticket costs 4 dollars, and groups of 3 or more get 25% off the total. How much do 3 tickets cost?",
     "Without the discount, 3 tickets cost 3 x 4 = 12 dollars. The discount is 25% of 12 = 3 dollars, so they "
     "cost 12 - 3 = 9 dollars. The answer is 9 dollars."),
    ("Classify the sentiment of the review as positive, negative or neutral.", "Great food, friendly staff.",
     WIDEN_METHOD,
     "Classify the sentiment of the tweet as positive, negative or neutral.", "My flight got cancelled again.",
     "negative"),
)


def rewrite_asked(slot: Slot) -> str:
    """What the teacher is asked to do with the parent: a deepen method (stable per slot) or the widen one."""
    return slot_rng(slot).choice(DEEPEN_METHODS) if slot.strategy == DEEPEN else WIDEN_METHOD


def render_demo(number: int, demo: tuple[str, ...]) -> str:
    instruction, input_text, method, new_instruction, new_input, response = demo
    return "\n".join([
        f"Task {number}",
        f"Original instruction: {instruction}",
        f"Original input: {input_text or NO_INPUT}",
        f"Rewrite: {method}",
        f"Instruction: {new_instruction}",
        f"Input: {new_input or NO_INPUT}",
        f"Response: {response}",
        END_OF_TASK,
    ])


def evol_prompt(spec: Spec, slot: Slot) -> str:
    """The few-shot completion prompt for an evol slot; the model continues after the final `Instruction:`."""
    family = spec.family(slot.family)
    parts = preamble(spec)
    parts.append("Each task below rewrites an original task as asked, then gives the new task's response.")
    if family.refusal and (policy := policy_text(spec)):
        parts.append(policy)
    parts.extend(render_demo(i + 1, d) for i, d in enumerate(EVOL_DEMOS))
    header = task_header(len(EVOL_DEMOS) + 1, family, spec.format(slot.format), slot.difficulty, spec)
    parent = slot.parent
    parts.append("\n".join([
        header,
        f"Original instruction: {parent.instruction}",
        f"Original input: {parent.input or NO_INPUT}",
        f"Rewrite: {rewrite_asked(slot)}",
        "Instruction:",
    ]))
    return "\n\n".join(parts)


def evol_messages(spec: Spec, slot: Slot) -> tuple[dict[str, str], ...]:
    """System + user messages asking an instruct teacher for the rewritten task as a JSON object."""
    family = spec.family(slot.family)
    band = spec.band(slot.length_band)
    parent = slot.parent
    original = {"instruction": parent.instruction, "input": parent.input, "output": parent.output}
    user = [
        f"Original task of the family '{family.name}' ({family.description}):",
        json.dumps(original, ensure_ascii=False),
        f"Rewrite it: {rewrite_asked(slot)}. Difficulty: {slot.difficulty}.",
        f"The new response must be in the format {describe_format(spec.format(slot.format))},",
        f"and {band.min_words}-{band.max_words} words long.",
    ]
    if family.refusal and (policy := policy_text(spec)):
        user.append("The new instruction must be a request the assistant declines, and the output the refusal.\n" + policy)
    user.append('Reply with only a JSON object with the string keys "instruction", "input" (empty when none) and "output".')
    return (system_message(spec), {"role": "user", "content": "\n".join(user)})
