"""The gate's end stage reads the kept rows as JSON text in Arrow batches and decodes each once: the text-free
columns, the split and the release files it derives must be those of the records parsed in Python, byte for byte,
on awkward records."""
from __future__ import annotations

import hashlib
import json
import os
import random

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from curator.formats import word_count
from curator.gate import split
from curator.gate.kept_columns import WHITESPACE, kept_columns, piece_columns
from curator.gate.split import eval_count, eval_mask
from curator.records import assistant_text, build_messages, make_pair, user_text
from curator.ordered_workers import ordered_map
from curator.release import store
from curator.release.store import JSON_PAIRS, Conclusion, JsonBatch, read_split, verify_release, write_release

ODD_TEXTS = [" a\x1cb\u3000c ", "x\x1fy z\u200bq\t", "", "\u2028line\u2029 two\x85three",
             "caf\u00e9 \U0001f600 \"q\" \\ end"]


def awkward_records(nan: bool) -> list[dict]:
    """Pairs with odd whitespace and escapes, several turns or none, provenance numbers polars' JSON reader does not
    give back digit for digit (a 30-digit integer, floats, an exponent), a NaN (which it refuses) when `nan`, a
    missing length band, and scores."""
    out = []
    provenances = [{"z": 1, "a": {"y": None, "b": True}}, {"seed": 123456789012345678901234567890},
                   {"temperature": 0.7, "top_p": 1e-7, "origin": "input-200000.jsonl:5"},
                   {"score": float("nan") if nan else -2.5e300},
                   {"teacher_model": "m", "big": 18446744073709551615, "neg": -0}]
    for i, text in enumerate(ODD_TEXTS * 4):
        pair = make_pair(build_messages(f"Question {i}: {text}", text if i % 3 else "", f"{text} answer {i}"),
                         task_family=["qa", "chat"][i % 2], format="free_text", difficulty="easy", source="synthetic")
        pair["provenance"] = {**provenances[i % len(provenances)], "n": i}
        if i % 4 == 0:
            pair["messages"].append({"role": "assistant", "content": text + " more"})
        if i % 5 == 1:
            pair.pop("length_band", None)
        pair["scores"] = {"judge": i / 7, "relevance": 0.5} if i % 2 else {}
        out.append(pair)
    out.append({**out[0], "id": "no-turns", "messages": []})
    return out


def as_batches(records: list[dict], size: int) -> list[pa.RecordBatch]:
    texts = [json.dumps({k: v for k, v in r.items() if k != "scores"}, ensure_ascii=False) for r in records]
    scores = [json.dumps(r["scores"], sort_keys=True) if r.get("scores") else None for r in records]
    return [pa.record_batch([texts[i:i + size], scores[i:i + size]], schema=JSON_PAIRS)
            for i in range(0, len(records), size)]


def test_whitespace_is_what_python_splits_and_strips_at():
    assert WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if c.isspace())


@pytest.mark.parametrize("nan", [False, True])
def test_kept_columns_are_the_figures_of_the_parsed_records(nan):
    records = awkward_records(nan)
    columns = kept_columns(pa.concat_arrays([b.column("record") for b in as_batches(records, 7)]), frozenset())
    assert columns["id"].to_list() == [r["id"] for r in records]
    assert columns["user"].to_list() == [len(user_text(r)) for r in records]
    assert columns["response"].to_list() == [len(assistant_text(r)) for r in records]
    assert columns["response_words"].to_list() == [word_count(assistant_text(r)) for r in records]
    assert columns["shortest_message"].to_list() == [
        min((len(m["content"].strip()) for m in r["messages"]), default=0) for r in records]
    assert columns["teacher_model"].to_list() == [r["provenance"].get("teacher_model") for r in records]


def test_eval_mask_takes_each_familys_first_rows_by_sha256_of_the_id(monkeypatch):
    monkeypatch.setattr(split, "SLICE", 37)  # the ids hashed a slice at a time
    rng = random.Random(3)
    families = [rng.choice(["a", "b", "c"]) for _ in range(500)]
    ids = [str(rng.randrange(300)) for _ in range(500)]  # repeated ids: ties go by position
    mask = eval_mask(pl.Series(families), pl.Series(ids), 0.1)
    for family in "abc":
        members = [i for i, f in enumerate(families) if f == family]
        ordered = sorted(members, key=lambda i: (hashlib.sha256(ids[i].encode()).hexdigest(), i))
        first = set(ordered[:eval_count(len(members), 0.1)])
        assert {i for i in members if mask[i]} == first


def _pid(_: int) -> int:
    return os.getpid()


def test_workers_start_only_from_min_items():
    """Fewer items than `min_items` run in this process; from `min_items` on, in the workers."""
    assert set(ordered_map(_pid, range(3), 2, min_items=4)) == {os.getpid()}
    assert os.getpid() not in set(ordered_map(_pid, range(4), 2, min_items=4))


@pytest.mark.parametrize("nan", [False, True])
@pytest.mark.parametrize("write_batch", [store.WRITE_BATCH, 2])  # 2: row groups cut across the pieces
def test_pieces_decoded_once_give_the_files_of_the_parsed_records(tmp_path, nan, write_batch, monkeypatch):
    """Each piece decoded once (`piece_columns`: its release columns per split and its text-free columns); the
    release written from those is the release written from the parsed records, file for file."""
    monkeypatch.setattr(store, "WRITE_BATCH", write_batch)
    records = awkward_records(nan)
    is_eval = np.array([i % 6 == 0 for i in range(len(records))])
    common = {"rejected": [], "conclusion": Conclusion({}, [])}
    parsed = write_release(train=[r for r, e in zip(records, is_eval) if not e],
                           eval=[r for r, e in zip(records, is_eval) if e], root=tmp_path / "a", **common)
    batches = as_batches(records, 5)
    pieces = [piece_columns((JsonBatch(batch), is_eval[5 * k:5 * k + batch.num_rows]), frozenset())
              for k, batch in enumerate(batches)]
    whole = kept_columns(pa.concat_arrays([b.column("record") for b in batches]), frozenset())
    in_piece_order = np.concatenate([np.r_[np.flatnonzero(~is_eval[5 * k:5 * k + 5]),
                                           np.flatnonzero(is_eval[5 * k:5 * k + 5])] + 5 * k
                                     for k in range(len(batches))])
    assert pl.concat([columns for columns, _ in pieces]).equals(whole[in_piece_order])
    streamed = write_release(pairs=[pair for _, splits in pieces for pair in splits.items()],
                             root=tmp_path / "b", **common)
    files = [verify_release(path)["files"] for path in (parsed, streamed)]
    assert files[0] == files[1] and files[0]["eval.parquet"]["rows"] == int(is_eval.sum())
    back = read_split(streamed, "train")
    assert back[0]["provenance"]["seed"] == 123456789012345678901234567890
    assert [r["scores"] for r in back] == [r["scores"] for r, e in zip(records, is_eval) if not e]
