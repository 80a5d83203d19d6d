"""Prompts for a new response to a given instruction (human-written or imported): the `respond` strategy.

`respond_v1` (completion mode, base teachers): the Self-Instruct few-shot document (seeds of the slot's family
first, nearest the new task), then the given instruction and input under the slot's header, ending in `Response:`;
the model writes only the response.

`chat_respond_v1` (chat mode): a system message with the standards, the format and length the response must
keep (and the refusal policy for a refusal family), then the user turn exactly as the pair has it.
"""
from __future__ import annotations

from curator.generate.plan import Slot
from curator.generate.prompts import (
    NO_INPUT, describe_format, few_shot_prompt, policy_text, system_message,
)
from curator.spec import Spec

RESPOND_COMPLETION = "respond_v1"
RESPOND_CHAT = "chat_respond_v1"


def respond_prompt(spec: Spec, slot: Slot) -> str:
    """The few-shot completion prompt that ends in the given instruction and `Response:`."""
    parent = slot.parent
    return few_shot_prompt(spec, slot, f"Instruction: {parent.instruction}\nInput: {parent.input or NO_INPUT}\nResponse:")


def respond_messages(spec: Spec, slot: Slot, user_turn: str) -> tuple[dict[str, str], ...]:
    """System message with what the response must keep to, then the pair's user turn verbatim."""
    family = spec.family(slot.family)
    band = spec.band(slot.length_band)
    system = system_message(spec)["content"].replace(
        "You write training examples for an AI assistant.", "You are the AI assistant; answer the user's request."
    )
    system += (f"\nRespond in the format {describe_format(spec.format(slot.format))}, "
               f"{band.min_words}-{band.max_words} words long, with the response only.")
    if family.refusal and (policy := policy_text(spec)):
        system += "\nThis request is one the policy says to decline: write the refusal.\n" + policy
    return ({"role": "system", "content": system}, {"role": "user", "content": user_turn})
