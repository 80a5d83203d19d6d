"""The exact teacher request for a plan slot: the template its strategy and the teacher mode call for, plus
structured output where the spec turns it on (`teacher.structured_output`) and the slot's format has a JSON Schema.

Structured output, chat mode: `response_format` with the format's schema (respond slots, whose reply is the
response) or with the `{"instruction", "input", "output"}` envelope whose output is that schema (slots that
write the instruction too); `json_schema` sends the OpenAI form, `json_object` the llama-cpp-python form
(`{"type": "json_object", "schema": ...}`, the only one that server accepts). Completion mode: a GBNF grammar
(llama.cpp's converter) for the response, after one-line instruction and input fields where the teacher writes
those too. The template id then ends in `+json_schema` or `+gbnf`. Every reply is still reviewed in full.
"""
from __future__ import annotations

import json
import re

from curator.errors import CuratorError
from curator.generate import evolve, prompts, respond
from curator.generate.plan import DEEPEN, LOOKALIKE, RESPOND, WIDEN, Slot
from curator.records import build_messages
from curator.spec import Spec
from curator.teacher.client import TeacherRequest

ENVELOPE_FIELDS = ("instruction", "input", "output")


def user_turn(slot: Slot) -> str:
    """The (last) user message of the slot's parent pair, as `build_messages` writes it."""
    messages = build_messages(slot.parent.instruction, slot.parent.input, "-")
    return next(m["content"] for m in messages if m["role"] == "user")


def envelope(schema: dict) -> dict:
    """A JSON Schema for a whole new task whose output is a value of `schema`."""
    return {
        "type": "object", "required": list(ENVELOPE_FIELDS),
        "properties": {"instruction": {"type": "string"}, "input": {"type": "string"}, "output": schema},
    }


def response_format(style: str, name: str, schema: dict) -> dict:
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64], "schema": schema}}
    return {"type": "json_object", "schema": schema}


def gbnf(format_name: str, schema: dict, *, response_only: bool) -> str:
    """A GBNF grammar for a completion: the JSON response alone, or instruction, input and JSON response."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # loads llama.cpp's native library: only when asked

    try:
        rules = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter raises assorted errors on schema features it lacks
        raise CuratorError(
            f"formats.{format_name}.json_schema: llama.cpp cannot turn it into a GBNF grammar ({e}); "
            "set teacher.structured_output: off"
        ) from None
    rules = re.sub(r"^root ::=", "curator-json ::=", rules, flags=re.M)
    if re.search(r"\broot\b", rules):
        raise CuratorError(f"formats.{format_name}.json_schema: a recursive schema has no GBNF grammar here; "
                           "set teacher.structured_output: off")
    root = ('root ::= " "? curator-json' if response_only
            else 'root ::= curator-line "\\nInput: " curator-line "\\nResponse: " curator-json')
    return f"{root}\ncurator-line ::= [^\\n]+\n{rules}"


def build_request(spec: Spec, slot: Slot) -> tuple[TeacherRequest, str]:
    """The exact teacher request for `slot` under its strategy and the spec's teacher mode, and its template id."""
    teacher = spec.teacher
    sampling = {**teacher.sampling.as_dict(), "seed": prompts.slot_seed(teacher.sampling.seed, slot)}
    chat = teacher.mode == "chat"
    if slot.strategy == RESPOND:
        text, template = ((respond.respond_messages(spec, slot, user_turn(slot)), respond.RESPOND_CHAT) if chat
                          else (respond.respond_prompt(spec, slot), respond.completion_template(slot.parent)))
    elif slot.strategy in (DEEPEN, WIDEN):
        text, template = ((evolve.evol_messages(spec, slot), evolve.EVOL_CHAT) if chat
                          else (evolve.evol_prompt(spec, slot), evolve.EVOL_COMPLETION))
    elif slot.strategy == LOOKALIKE:
        text, template = ((prompts.chat_messages(spec, slot, lookalike=True), prompts.LOOKALIKE_CHAT) if chat
                          else (prompts.lookalike_prompt(spec, slot), prompts.LOOKALIKE_COMPLETION))
    else:
        text, template = ((prompts.chat_messages(spec, slot), prompts.CHAT_JSON) if chat
                          else (prompts.self_instruct_prompt(spec, slot), prompts.SELF_INSTRUCT))
    fmt = spec.format(slot.format)
    constrained = teacher.structured_output != "off" and fmt.kind == "json" and fmt.json_schema is not None
    if chat:
        structured = None
        if constrained:
            schema = fmt.json_schema if slot.strategy == RESPOND else envelope(fmt.json_schema)
            structured = response_format(teacher.structured_output, fmt.name, schema)
            template += "+json_schema"
        return TeacherRequest(model=teacher.model, sampling=sampling, messages=text, response_format=structured), template
    grammar = None
    if constrained:
        grammar = gbnf(fmt.name, fmt.json_schema, response_only=slot.strategy == RESPOND)
        template += "+gbnf"
    return TeacherRequest(model=teacher.model, sampling=sampling, prompt=text, stop=prompts.STOP, grammar=grammar), template
