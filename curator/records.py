"""The pair record: chat messages, curriculum cell and provenance (schema: `curator/schemas/pair.schema.json`)."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

import jsonschema

from curator.hashing import sha256_json
from curator.spec import load_schema

SOURCES = ("synthetic", "human", "imported", "human-edited")
QUALITY_SCORES = ("judge", "reward")  # per-row scores (`scores` column) that rank quality, first present wins


def pair_id(messages: list[dict]) -> str:
    """Content-derived id: the same conversation always gets the same id."""
    return sha256_json([{"role": m["role"], "content": m["content"]} for m in messages])[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_messages(instruction: str, input_text: str, output: str, system: str = "") -> list[dict]:
    """Alpaca-style fields to chat messages; the input follows the instruction after a blank line."""
    user = instruction.strip()
    if input_text and input_text.strip():
        user = f"{user}\n\n{input_text.strip()}"
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": output.strip()}]


def make_pair(
    messages: list[dict],
    *,
    task_family: str,
    format: str,
    difficulty: str,
    source: str,
    length_band: str | None = None,
    **provenance: Any,
) -> dict:
    """A pair record with its id and provenance; unknown provenance keys are rejected by the schema."""
    prov = {"source": source, "created_at": now_iso()}
    prov.update(provenance)
    return {
        "id": pair_id(messages),
        "messages": messages,
        "task_family": task_family,
        "format": format,
        "difficulty": difficulty,
        "length_band": length_band,
        "provenance": prov,
    }


@lru_cache(maxsize=1)
def pair_validator() -> jsonschema.Draft202012Validator:
    schema = load_schema("pair")
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@lru_cache(maxsize=1)
def pair_conforms() -> Callable[[Any], bool]:
    """The pair schema compiled to a fast yes/no test (`curator.gate.compiled_schema`); agrees with jsonschema."""
    from curator.gate.compiled_schema import compile_schema
    return compile_schema(load_schema("pair"), pair_validator().format_checker)


def schema_errors(record: Any) -> list[str]:
    """Every way a record breaks the pair schema, as `path: message` strings (empty when valid).

    The compiled test answers first; jsonschema runs only for records it rejects, for the messages."""
    if pair_conforms()(record):
        return []
    out = []
    for e in pair_validator().iter_errors(record):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".")
        out.append(f"{path or '(record)'}: {e.message}")
    return out


def user_text(record: dict) -> str:
    """All user turns, joined: the 'instruction + input' side of a pair."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")


def assistant_text(record: dict) -> str:
    """All assistant turns, joined: the response side of a pair."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")

