"""The kept rows' text-free columns, computed by polars from their release columns (`store.release_columns`, the
records' JSON decoded): what the split, the expectations and the manifest need (id, task family, format,
difficulty, text lengths, response words, refusal coverage, teacher model), a few dozen bytes a row, with no dict
per record. The end stage decodes each kept record once (`piece_columns`), for these columns and the release
writer both.

The figures are those of Python on the parsed record: lengths in code points of `user_text` and
`assistant_text` (turns joined by a newline), `len(text.split())` words, the shortest `content.strip()`.
"""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa

from curator.errors import CuratorError
from curator.refusal_coverage import coverage_kind
from curator.release.store import JSON_PAIRS, JsonPiece, release_columns

WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
             "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # what str.split() and str.strip() cut at (str.isspace)
_WORD = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]+"
_TEACHER = pl.Struct({"teacher_model": pl.String})
COLUMNS = {"id": pl.String, "task_family": pl.Categorical, "format": pl.Categorical, "difficulty": pl.Categorical,
           "user": pl.Int64, "response": pl.Int64, "shortest_message": pl.Int64, "response_words": pl.Int64,
           "coverage": pl.Categorical, "teacher_model": pl.Categorical}  # a few values each: 4 bytes a row


def _teacher_models(provenance: pl.Series) -> pl.Series:
    """`teacher_model` of each provenance (JSON text), null where it names none."""
    try:
        return provenance.str.json_decode(_TEACHER).struct.field("teacher_model")
    except pl.exceptions.ComputeError:  # polars' reader refuses NaN and Infinity, which `json` wrote
        models = [json.loads(p).get("teacher_model") for p in provenance]
        return pl.Series([m if isinstance(m, str) else None for m in models], dtype=pl.String)


def _joined_length(texts: pl.Expr) -> pl.Expr:
    """Code points of a list of texts joined by newlines."""
    return texts.list.eval(pl.element().str.len_chars()).list.sum() + (texts.list.len().cast(pl.Int64) - 1).clip(0)


def columns_of(release: pl.DataFrame, records: pl.Series, refusal_families: frozenset[str]) -> pl.DataFrame:
    """The columns of `COLUMNS` of some records, from their release columns (`release`) and, for `coverage`, their
    JSON text (`records`, in the same order): `coverage_kind` of the records in a refusal family, parsed for it."""
    role, content = pl.element().struct.field("role"), pl.element().struct.field("content")
    user = pl.col("messages").list.eval(content.filter(role == "user"))
    response = pl.col("messages").list.eval(content.filter(role == "assistant"))
    out = release.select(
        "id", "task_family", "format", "difficulty",
        user=_joined_length(user),
        response=_joined_length(response),
        shortest_message=pl.col("messages").list.eval(content.str.strip_chars(WHITESPACE).str.len_chars()).list.min()
        .fill_null(0),
        response_words=response.list.eval(pl.element().str.count_matches(_WORD)).list.sum(),
    ).with_columns(teacher_model=_teacher_models(release["provenance"]))
    coverage: list[str | None] = [None] * len(out)
    for i in out["task_family"].is_in(list(refusal_families)).fill_null(False).arg_true().to_list():
        coverage[i] = coverage_kind(json.loads(records[i]), refusal_families)
    return out.with_columns(coverage=pl.Series(coverage, dtype=pl.String)).select(
        [pl.col(name).cast(dtype) for name, dtype in COLUMNS.items()])


def kept_columns(records: pa.Array | pl.Series, refusal_families: frozenset[str]) -> pl.DataFrame:
    """The columns of `COLUMNS` of some records (JSON text, in order)."""
    records = pl.Series(records, dtype=pl.String)
    table = pa.table([records.to_arrow(), pa.nulls(len(records), pa.string())], schema=JSON_PAIRS)
    return columns_of(release_columns(table), records, refusal_families)


def piece_columns(job: tuple[JsonPiece, np.ndarray], refusal_families: frozenset[str]
                  ) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The records of a `store.JsonPiece` (read here) decoded once, given which of them go to eval: their release
    columns per split (`store.release_columns`; split before decoding: a frame filtered after would hold on to the
    whole piece's text), and the columns of `COLUMNS` of the train rows, then of the eval rows."""
    piece, to_eval = job
    table = piece.table()
    if table.num_rows != len(to_eval):
        raise CuratorError(f"kept rows: a piece of {table.num_rows} rows, {len(to_eval)} of them flagged")
    splits, columns = {}, []
    for split, mask in (("train", ~to_eval), ("eval", to_eval)):
        part = table.filter(pa.array(mask))
        splits[split] = release_columns(part)
        columns.append(columns_of(splits[split], pl.Series(part.column("record"), dtype=pl.String), refusal_families))
    return pl.concat(columns), splits


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)
