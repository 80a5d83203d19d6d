"""The pair record: chat messages, curriculum cell and provenance (schema: `curator/schemas/pair.schema.json`)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

import jsonschema
import orjson

from curator.hashing import sha256_json
from curator.spec import load_schema

SOURCES = ("synthetic", "human", "imported", "human-edited")
QUALITY_SCORES = ("judge", "reward")  # per-row scores (`scores` column) that rank quality, first present wins


def pair_id(messages: list[dict]) -> str:
    """Content-derived id: the same conversation always gets the same id (sha256 of the canonical JSON)."""
    turns = [{"content": m["content"], "role": m["role"]} for m in messages]
    if all(isinstance(t["content"], str) and isinstance(t["role"], str) for t in turns):
        try:  # for strings alone orjson writes `canonical_json`'s text byte for byte, faster
            return hashlib.sha256(orjson.dumps(turns, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        except orjson.JSONEncodeError:  # a lone surrogate
            pass
    return sha256_json(turns)[:16]


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
    created_at: str | None = None,
    **provenance: Any,
) -> dict:
    """A pair record with its id and provenance (created now unless `created_at` is given); unknown provenance
    keys are rejected by the schema."""
    prov = {"source": source, "created_at": created_at or now_iso()}
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

