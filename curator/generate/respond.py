"""Prompts for a new response to a given instruction (human-written or imported): the `respond` strategy.

The response answers the parent's last user turn; the turns before it (a multi-turn pair) are context, and the
produced pair keeps them, with the new response in place of the final assistant turn (`outcomes.run_slot`).

`respond_v1` (completion mode, base teachers): the Self-Instruct few-shot document (seeds of the slot's family
first, nearest the new task), then the given instruction and input under the slot's header, ending in `Response:`;
the model writes only the response. `respond_turns_v1` is the same with the earlier turns rendered as
`User:` / `Assistant:` lines under `Conversation so far:` before the instruction.

`chat_respond_v1` (chat mode): a system message with the standards, the format and length the response must
keep (and the refusal policy for a refusal family), then the earlier turns and the user turn exactly as the
pair has them.
"""
from __future__ import annotations

from curator.generate.plan import Parent, Slot
from curator.generate.prompts import (
    NO_INPUT, describe_format, few_shot_prompt, policy_text, system_message,
)
from curator.spec import Spec

RESPOND_COMPLETION = "respond_v1"
RESPOND_TURNS_COMPLETION = "respond_turns_v1"
RESPOND_CHAT = "chat_respond_v1"
SPEAKERS = {"user": "User", "assistant": "Assistant"}


def respond_prompt(spec: Spec, slot: Slot) -> str:
    """The few-shot completion prompt that ends in the given instruction (after any earlier turns) and `Response:`."""
    parent = slot.parent
    tail = f"Instruction: {parent.instruction}\nInput: {parent.input or NO_INPUT}\nResponse:"
    if parent.context:
        turns = "\n".join(f"{SPEAKERS[m['role']]}: {m['content'].strip()}" for m in parent.context)
        tail = f"Conversation so far:\n{turns}\n{tail}"
    return few_shot_prompt(spec, slot, tail)


def completion_template(parent: Parent) -> str:
    return RESPOND_TURNS_COMPLETION if parent.context else RESPOND_COMPLETION


def respond_messages(spec: Spec, slot: Slot, user_turn: str) -> tuple[dict[str, str], ...]:
    """System message with what the response must keep to, the earlier turns, then the pair's user turn verbatim."""
    family = spec.family(slot.family)
    band = spec.band(slot.length_band)
    system = system_message(spec)["content"].replace(
        "You write training examples for an AI assistant.", "You are the AI assistant; answer the user's request."
    )
    system += (f"\nRespond in the format {describe_format(spec.format(slot.format))}, "
               f"{band.min_words}-{band.max_words} words long, with the response only.")
    if family.refusal and (policy := policy_text(spec)):
        system += "\nThis request is one the policy says to decline: write the refusal.\n" + policy
    return ({"role": "system", "content": system}, *slot.parent.context, {"role": "user", "content": user_turn})
