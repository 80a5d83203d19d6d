"""The kept rows' text-free columns, decoded by polars from the records' JSON: what the split, the expectations
and the manifest need (id, task family, format, difficulty, text lengths, response words, refusal coverage,
teacher model), a few dozen bytes a row, with no dict per record.

The figures are those of Python on the parsed record: lengths in code points of `user_text` and
`assistant_text` (turns joined by a newline), `len(text.split())` words, the shortest `content.strip()`.
"""
from __future__ import annotations

import json

import polars as pl
import pyarrow as pa

from curator.refusal_coverage import coverage_kind
from curator.release.store import JsonPiece

WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
             "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # what str.split() and str.strip() cut at (str.isspace)
_WORD = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]+"
_MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
FIELDS = {"id": pl.String, "task_family": pl.String, "format": pl.String, "difficulty": pl.String,
          "messages": _MESSAGES, "provenance": pl.Struct({"teacher_model": pl.String})}
COLUMNS = {"id": pl.String, "task_family": pl.Categorical, "format": pl.Categorical, "difficulty": pl.Categorical,
           "user": pl.Int64, "response": pl.Int64, "shortest_message": pl.Int64, "response_words": pl.Int64,
           "coverage": pl.Categorical, "teacher_model": pl.Categorical}  # a few values each: 4 bytes a row


def _decoded(records: pl.Series) -> pl.DataFrame:
    try:
        return records.str.json_decode(pl.Struct(FIELDS)).struct.unnest()
    except pl.exceptions.ComputeError:  # polars' reader refuses NaN and Infinity: the fields, parsed and written again
        picked = [json.dumps(_fields(json.loads(r))) for r in records]
        return pl.Series(picked, dtype=pl.String).str.json_decode(pl.Struct(FIELDS)).struct.unnest()


def _fields(record: dict) -> dict:
    provenance = record.get("provenance")
    model = provenance.get("teacher_model") if isinstance(provenance, dict) else None
    return {**{name: record.get(name) for name in FIELDS if name != "provenance"},
            "provenance": {"teacher_model": model if isinstance(model, str) else None}}


def _joined_length(texts: pl.Expr) -> pl.Expr:
    """Code points of a list of texts joined by newlines."""
    return texts.list.eval(pl.element().str.len_chars()).list.sum() + (texts.list.len().cast(pl.Int64) - 1).clip(0)


def kept_columns(records: pa.Array | pl.Series, refusal_families: frozenset[str]) -> pl.DataFrame:
    """Per record (JSON text, in order): the columns of `COLUMNS`; `coverage` is `coverage_kind` (the record
    parsed for it only in a refusal family)."""
    records = pl.Series(records, dtype=pl.String)
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")
    user = pl.col("messages").list.eval(content.filter(role == "user"))
    response = pl.col("messages").list.eval(content.filter(role == "assistant"))
    out = _decoded(records).select(
        "id", "task_family", "format", "difficulty",
        user=_joined_length(user),
        response=_joined_length(response),
        shortest_message=pl.col("messages").list.eval(content.str.strip_chars(WHITESPACE).str.len_chars()).list.min()
        .fill_null(0),
        response_words=response.list.eval(pl.element().str.count_matches(_WORD)).list.sum(),
        teacher_model=pl.col("provenance").struct.field("teacher_model"),
    )
    coverage: list[str | None] = [None] * len(out)
    for i in out["task_family"].is_in(list(refusal_families)).fill_null(False).arg_true().to_list():
        coverage[i] = coverage_kind(json.loads(records[i]), refusal_families)
    return out.with_columns(coverage=pl.Series(coverage, dtype=pl.String)).select(
        [pl.col(name).cast(dtype) for name, dtype in COLUMNS.items()])


def piece_columns(piece: JsonPiece, refusal_families: frozenset[str]) -> pl.DataFrame:
    """`kept_columns` of the records of a `store.JsonPiece` (read here)."""
    return kept_columns(piece.table().column("record"), refusal_families)


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)
