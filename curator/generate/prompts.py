"""Teacher prompts for one plan slot.

`self_instruct_v1` (completion mode, for base models): a Self-Instruct-style few-shot document of numbered tasks
built from the spec's seeds, ending with the header of the new task and `Instruction:` for the model to complete.
Seeds of the slot's family get priority and sit last, next to the new task; the choice and order of the
others is shuffled with a per-slot seed, so prompts vary between slots yet are the same on every rerun.

`chat_json_v1` (chat mode, for instruct teachers): a system message with the spec's response standards and a
user message asking for one new task as a JSON object `{"instruction", "input", "output"}`.

`lookalike_v1` / `chat_lookalike_v1`: the same for a refusal family's benign look-alike slots: a request that
sounds like one the policy covers but is harmless, answered helpfully. The completion prompt shows the
built-in LOOKALIKE_DEMOS (never the family's refusal seeds) after seeds of other families.
"""
from __future__ import annotations

import dataclasses
import json
import random
import zlib

from curator.generate.plan import Slot
from curator.hashing import sha256_text
from curator.spec import Format, Seed, Spec, TaskFamily

SELF_INSTRUCT = "self_instruct_v1"
CHAT_JSON = "chat_json_v1"
LOOKALIKE_COMPLETION = "lookalike_v1"
LOOKALIKE_CHAT = "chat_lookalike_v1"
LOOKALIKE_NOTE = (
    "a request that sounds like one the refusal policy covers but is harmless, answered helpfully and not refused"
)
LOOKALIKE_DEMOS = (
    Seed("How do I kill a Python process that stopped responding?",
         "Find its process id with `pgrep -f python`, then run `kill <pid>`. If it keeps running, `kill -9 <pid>` "
         "stops it at once."),
    Seed("Which household cleaning products must never be mixed?",
         "Never mix bleach with ammonia or with acids such as vinegar: both combinations release toxic gases. "
         "Use one product at a time and rinse the surface in between."),
)
NO_INPUT = "<noinput>"
END_OF_TASK = "###"
STOP = (END_OF_TASK, "\nTask ")
MAX_EXAMPLES = 3  # prompt evaluation dominates a small CPU teacher's time


def slot_rng(slot: Slot) -> random.Random:
    return random.Random(sha256_text(slot.id))


def slot_seed(base_seed: int, slot: Slot) -> int:
    """The sampling seed of a slot: stable per slot id, different between slots."""
    return (base_seed + zlib.crc32(slot.id.encode())) % 2**31


def pick_examples(spec: Spec, slot: Slot, limit: int = MAX_EXAMPLES) -> list[tuple[TaskFamily, Seed]]:
    """Up to `limit` seeds, those of the slot's family first; returned in prompt order (own family last)."""
    rng = slot_rng(slot)
    own = [(t, s) for t in spec.task_families if t.name == slot.family for s in t.seeds]
    others = [(t, s) for t in spec.task_families if t.name != slot.family for s in t.seeds]
    rng.shuffle(own)
    rng.shuffle(others)
    chosen_own = own[:limit]
    chosen_others = others[: limit - len(chosen_own)]
    return chosen_others + chosen_own


def describe_format(fmt: Format) -> str:
    text = fmt.name + (f" ({fmt.description})" if fmt.description else "")
    if fmt.kind == "label":
        text += f"; allowed labels: {', '.join(fmt.labels)}"
    elif fmt.kind == "json" and fmt.json_schema is not None:
        text += f"; JSON Schema: {json.dumps(fmt.json_schema, separators=(',', ':'))}"
    return text


def standards_text(spec: Spec) -> str:
    rs = spec.response_standards
    lines = [f"Tone: {rs.tone}."] if rs.tone else []
    return "\n".join(lines + [f"- {rule}" for rule in rs.format_rules])


def policy_text(spec: Spec) -> str:
    rp = spec.refusal_policy
    lines = ["The assistant declines requests for: " + "; ".join(rp.refuse) + "."] if rp.refuse else []
    if rp.style:
        lines.append(f"Refusal style: {rp.style}")
    if rp.example_refusal:
        lines.append(f"Example refusal: {rp.example_refusal}")
    return "\n".join(lines)


def task_header(number: int, family: TaskFamily, fmt: Format, difficulty: str | None, spec: Spec) -> str:
    band = spec.band(family.length_band)
    lines = [
        f"Task {number}",
        f"Family: {family.name} ({family.description})",
        f"Format: {describe_format(fmt)}",
    ]
    if difficulty:
        lines.append(f"Difficulty: {difficulty}")
    lines.append(f"Length: {band.name} ({band.min_words}-{band.max_words} words)")
    return "\n".join(lines)


def render_example(number: int, family: TaskFamily, seed: Seed, spec: Spec) -> str:
    fmt = spec.format(seed.format or family.formats[0])
    output = seed.output.strip()
    response = f"Response:\n{output}" if "\n" in output else f"Response: {output}"
    return "\n".join([
        task_header(number, family, fmt, seed.difficulty, spec),
        f"Instruction: {seed.instruction.strip()}",
        f"Input: {seed.input.strip() or NO_INPUT}",
        response,
        END_OF_TASK,
    ])


def preamble(spec: Spec) -> list[str]:
    """The opening paragraphs of every few-shot completion prompt: what the document is, and the standards."""
    parts = [
        "Below are tasks for an AI assistant. Each task gives an instruction, an input "
        f"({NO_INPUT} when there is none) and the assistant's response in the stated format and length.",
    ]
    if standards := standards_text(spec):
        parts.append("Every response follows these standards:\n" + standards)
    return parts


def few_shot_prompt(spec: Spec, slot: Slot, task_tail: str) -> str:
    """Preamble, the refusal policy where it applies, the slot's examples, then the new task's header
    followed by `task_tail` (what the model is to continue)."""
    family = spec.family(slot.family)
    parts = preamble(spec)
    if family.refusal and (policy := policy_text(spec)):
        parts.append(policy)
    examples = pick_examples(spec, slot)
    parts.extend(render_example(i + 1, t, s, spec) for i, (t, s) in enumerate(examples))
    header = task_header(len(examples) + 1, family, spec.format(slot.format), slot.difficulty, spec)
    parts.append(f"{header}\n{task_tail}")
    return "\n\n".join(parts)


def self_instruct_prompt(spec: Spec, slot: Slot) -> str:
    """The few-shot completion prompt for `slot`; the model continues after the final `Instruction:`."""
    return few_shot_prompt(spec, slot, "Instruction:")


def lookalike_family(family: TaskFamily) -> TaskFamily:
    """The refusal family as a look-alike slot's header names it."""
    return dataclasses.replace(family, name=f"{family.name}_lookalike", description=LOOKALIKE_NOTE)


def lookalike_prompt(spec: Spec, slot: Slot) -> str:
    """Completion prompt for a benign look-alike: other families' seeds, then LOOKALIKE_DEMOS, then the new task."""
    family = lookalike_family(spec.family(slot.family))
    parts = preamble(spec)
    if policy := policy_text(spec):
        parts.append(policy + "\nSome requests only sound like these and are harmless: the assistant answers them normally.")
    others = [(t, s) for t, s in pick_examples(spec, slot) if not t.refusal][: MAX_EXAMPLES - len(LOOKALIKE_DEMOS)]
    examples = others + [(family, s) for s in LOOKALIKE_DEMOS]
    parts.extend(render_example(i + 1, t, s, spec) for i, (t, s) in enumerate(examples))
    header = task_header(len(examples) + 1, family, spec.format(slot.format), slot.difficulty, spec)
    parts.append(f"{header}\nInstruction:")
    return "\n\n".join(parts)


def system_message(spec: Spec) -> dict[str, str]:
    """The chat system message: the teacher's role, the pair's system prompt and the response standards."""
    system = "You write training examples for an AI assistant."
    if spec.response_standards.system_prompt:
        system += f" The assistant's system prompt is: {spec.response_standards.system_prompt}"
    if standards := standards_text(spec):
        system += "\nEvery response the assistant gives follows these standards:\n" + standards
    return {"role": "system", "content": system}


def chat_messages(spec: Spec, slot: Slot, *, lookalike: bool = False) -> tuple[dict[str, str], ...]:
    """System + user messages asking an instruct teacher for one new task as a JSON object."""
    family = spec.family(slot.family)
    band = spec.band(family.length_band)
    examples = [
        {"instruction": s.instruction, "input": s.input, "output": s.output}
        for t, s in pick_examples(spec, slot) if not (lookalike and t.refusal)
    ]
    user = [
        f"Write one new task of the family '{family.name}': {family.description}",
        f"Difficulty: {slot.difficulty}.",
        f"The response must be in the format {describe_format(spec.format(slot.format))},",
        f"and {band.min_words}-{band.max_words} words long.",
    ]
    if lookalike and (policy := policy_text(spec)):
        user.append(f"The instruction must be {LOOKALIKE_NOTE} (for example: how do I kill a Python process?).\n" + policy)
    elif family.refusal and (policy := policy_text(spec)):
        user.append("The instruction must be a request the assistant declines, and the output the refusal.\n" + policy)
    user.append("Examples:\n" + "\n".join(json.dumps(e, ensure_ascii=False) for e in examples))
    user.append(
        'Reply with only a JSON object with the string keys "instruction", "input" (empty when none) and "output". '
        "Do not copy an example."
    )
    return (system_message(spec), {"role": "user", "content": "\n".join(user)})
