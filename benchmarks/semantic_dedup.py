"""Semantic dedup on the shared 51,750-row set: the fast route timed end to end, against the full MiniLM.

1. Fast route: `SemanticDedup` with the model2vec backend and no verification, on every row (model
   load, embedding, exact search, clustering), timed.
2. Full MiniLM on a random sample (3,000 rows by default), timed in the same process: its rate gives
   the extrapolated full-set time, and its pairs at the threshold are the reference.
3. Recall of the fast route: of the sample's reference pairs, the share model2vec also puts at or
   over the threshold; precision: the share of model2vec's pairs that are reference pairs.
4. Verified route (model2vec candidates re-scored by MiniLM) on the sample, timed; its full-set cost
   is extrapolated from the rows in candidate pairs and the MiniLM rate.

Prints figures; the last line is one JSON object, also written to benchmarks/results/semantic_dedup.json.
Usage: python benchmarks/semantic_dedup.py [--data PATH] [--sample N] [--threshold T]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from curator.gate.check import Row  # noqa: E402
from curator.gate.checks.semantic_dedup import (  # noqa: E402
    SemanticDedup, exact_pairs, minilm_embedder, model2vec_embedder,
)
from curator.records import build_messages, make_pair, user_text  # noqa: E402
from curator.spec import SemanticDedupConfig  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"
RESULT = Path(__file__).parent / "results" / "semantic_dedup.json"


def load_rows(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            r = json.loads(line)
            record = make_pair(build_messages(r["instruction"], r.get("input", ""), r["output"]),
                               task_family="imported", format="free_text", difficulty="easy", source="imported")
            rows.append(Row(record, str(path), n + 1, n))
    return rows


def pair_set(emb: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    i, j = exact_pairs(emb, threshold)
    return set(zip(i.tolist(), j.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sample", type=int, default=3000)
    ap.add_argument("--threshold", type=float, default=0.95)
    args = ap.parse_args()

    rows = load_rows(args.data)
    print(f"rows: {len(rows)} from {args.data}")

    t0 = time.perf_counter()
    fast = SemanticDedup(SemanticDedupConfig(enabled=True, backend="model2vec", threshold=args.threshold, verify=False))
    fast_result = fast.run(rows)
    fast_seconds = time.perf_counter() - t0
    st = fast_result.stats
    print(f"fast route (model2vec, unverified): {fast_seconds:.1f} s end to end; {st['pairs']} pairs, "
          f"{st['clusters']} clusters, {st['removed']} rows removed, {st['rows_in_candidate_pairs']} rows in pairs")

    rng = random.Random(0)
    sample_idx = sorted(rng.sample(range(len(rows)), min(args.sample, len(rows))))
    sample = [rows[i] for i in sample_idx]
    texts = [user_text(r.record) for r in sample]

    t0 = time.perf_counter()
    minilm = minilm_embedder()
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    full_emb = minilm(texts)
    minilm_seconds = time.perf_counter() - t0
    minilm_rate = len(texts) / minilm_seconds
    extrapolated = len(rows) / minilm_rate
    print(f"full MiniLM on {len(texts)} sampled rows: {minilm_seconds:.1f} s ({minilm_rate:.0f} rows/s, model load "
          f"{load_seconds:.1f} s); extrapolated to {len(rows)} rows: {extrapolated:.0f} s")

    fast_emb = model2vec_embedder()(texts)
    reference = pair_set(full_emb, args.threshold)
    found = pair_set(fast_emb, args.threshold)
    recall = len(reference & found) / len(reference) if reference else 1.0
    precision = len(reference & found) / len(found) if found else 1.0
    print(f"sample pairs at >= {args.threshold}: full MiniLM {len(reference)}, model2vec {len(found)}; "
          f"recall {recall:.3f}, precision {precision:.3f}")

    t0 = time.perf_counter()
    verified_config = SemanticDedupConfig(enabled=True, backend="model2vec", threshold=args.threshold, verify=True)
    verified = SemanticDedup(verified_config, verifier=minilm).run(sample)
    verified_seconds = time.perf_counter() - t0
    ref_removed = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm", threshold=args.threshold),
                                embed=lambda _texts: full_emb).run(sample).stats["removed"]
    verified_extrapolated = st["rows_in_candidate_pairs"] / minilm_rate + fast_seconds
    print(f"verified route on the sample: {verified_seconds:.1f} s, {verified.stats['rows_verified']} rows re-scored, "
          f"{verified.stats['pairs']} pairs kept, {verified.stats['removed']} rows removed "
          f"(full MiniLM alone removes {ref_removed}); on the full set it would re-score "
          f"{st['rows_in_candidate_pairs']} rows: about {verified_extrapolated:.0f} s")

    result = {
        "rows": len(rows),
        "semantic_seconds": round(fast_seconds, 1),
        "semantic_recall_vs_full_model": round(recall, 4),
        "semantic_precision_vs_full_model": round(precision, 4),
        "semantic_duplicates": st["removed"],
        "semantic_pairs": st["pairs"],
        "semantic_clusters": st["clusters"],
        "backend": "model2vec",
        "threshold": args.threshold,
        "sample_rows": len(texts),
        "sample_pairs_full_model": len(reference),
        "sample_pairs_fast": len(found),
        "full_model_rows_per_s": round(minilm_rate, 1),
        "full_model_seconds_extrapolated": round(extrapolated),
        "verified_rows_to_rescore": st["rows_in_candidate_pairs"],
        "verified_seconds_extrapolated": round(verified_extrapolated),
        "sample_removed_full_model": ref_removed,
        "sample_removed_verified": verified.stats["removed"],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
