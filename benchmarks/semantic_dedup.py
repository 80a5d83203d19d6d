"""Semantic dedup on the shared 51,750-row set, as the gate runs it, against the full MiniLM on every row.

1. The rows reach semantic dedup as in `curator gate`: imported as `curator import --format alpaca` makes
   them, then schema, content defects, PII, exact and MinHash near dedup (benchmarks/gate_throughput.py's
   spec); semantic dedup sees what they keep.
2. Fast route, timed end to end: `SemanticDedup` with the model2vec backend and MiniLM verification
   (boilerplate lines left out, static-model candidates at `--candidate-threshold`, MiniLM on the rows in
   candidate pairs, clustering). Model loading is timed apart.
3. Reference, timed in the same process: the full MiniLM on every row (the `minilm` backend's work). Its
   pairs at the threshold are the truth. Recall of the fast route = share of them among its candidates (a
   candidate is kept exactly when MiniLM puts it over the threshold); precision = share of the rows the
   fast route removes that the reference removes too (and the same share of the reference's removals, as
   a row-level recall). The unverified model2vec route's pairs are scored against the truth as well.
4. On a sample (`--sample`, 3,000 rows): the full MiniLM on the whole user text (boilerplate kept), to show
   what the boilerplate does to the pairs, by source.

Prints figures; the last line is one JSON object, also written to benchmarks/results/semantic_dedup.json.
Usage: python benchmarks/semantic_dedup.py [--data PATH] [--threshold T] [--candidate-threshold C] [--sample N]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402

from gate_throughput import import_rows, write_spec  # noqa: E402
from curator.gate.check import Row  # noqa: E402
from curator.gate.checks.semantic_dedup import SemanticDedup, exact_pairs, without_boilerplate  # noqa: E402
from curator.gate.embeddings import minilm_embedder, model2vec_embedder  # noqa: E402
from curator.gate.pipeline import build_checks  # noqa: E402
from curator.records import user_text  # noqa: E402
from curator.spec import SemanticDedupConfig, load_spec  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"
RESULT = Path(__file__).parent / "results" / "semantic_dedup.json"
EARLIER_CHECKS = ("schema", "content_defects", "pii", "exact_dedup", "near_dedup")


def rows_reaching_semantic_dedup(path: Path) -> tuple[list[Row], int]:
    """(rows the checks before semantic dedup keep, rows imported)."""
    records, _, _ = import_rows(path)
    rows = [Row(r, str(path), n + 1, n) for n, r in enumerate(records)]
    with tempfile.TemporaryDirectory() as tmp:
        spec = load_spec(write_spec(Path(tmp) / "spec.yaml", records))
        checks = [c for c in build_checks(spec, Path(tmp) / "releases") if c.name in EARLIER_CHECKS]
    kept = rows
    for check in checks:
        kept = check.run(kept).kept
    return kept, len(rows)


def pair_set(i: np.ndarray, j: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(i.tolist(), j.tolist()))


def scores(found: set, truth: set) -> tuple[float, float]:
    """(recall, precision) of `found` against `truth`."""
    hit = len(found & truth)
    return (hit / len(truth) if truth else 1.0), (hit / len(found) if found else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--candidate-threshold", type=float, default=None, help="default: the check's (threshold - 0.03)")
    ap.add_argument("--sample", type=int, default=3000, help="rows for the boilerplate comparison")
    args = ap.parse_args()

    rows, imported = rows_reaching_semantic_dedup(args.data)
    print(f"{imported} rows imported from {args.data}; {len(rows)} reach semantic dedup")

    started = time.perf_counter()
    minilm, model2vec = minilm_embedder(), model2vec_embedder()
    load_seconds = time.perf_counter() - started

    config = SemanticDedupConfig(enabled=True, backend="model2vec", threshold=args.threshold,
                                 candidate_threshold=args.candidate_threshold)
    started = time.perf_counter()
    fast = SemanticDedup(config, embed=model2vec, verifier=minilm).run(rows)
    fast_seconds = time.perf_counter() - started
    st = fast.stats
    print(f"fast route (model2vec candidates at {st['candidate_threshold']}, MiniLM-verified): {fast_seconds:.1f} s "
          f"(+{load_seconds:.1f} s model loading); stages {st['seconds']}; {st['boilerplate_lines']} boilerplate lines; "
          f"{st['candidate_pairs']} candidate pairs over {st['rows_in_candidate_pairs']} rows; {st['pairs']} pairs, "
          f"{st['clusters']} clusters, {st['removed']} rows removed")

    texts, _ = without_boilerplate([user_text(r.record) for r in rows], config.boilerplate_min_rows)
    started = time.perf_counter()
    full = minilm(texts)
    full_seconds = time.perf_counter() - started
    truth = pair_set(*exact_pairs(full, args.threshold))
    by_text = dict(zip(texts, full))
    reference = SemanticDedup(SemanticDedupConfig(enabled=True, backend="minilm", threshold=args.threshold),
                              embed=lambda distinct: np.stack([by_text[t] for t in distinct])).run(rows)
    ref_by_source = Counter(x.row.record["task_family"] for x in reference.rejected)
    print(f"reference, full MiniLM on all {len(rows)} rows: {full_seconds:.1f} s ({len(rows) / full_seconds:.0f} rows/s); "
          f"{len(truth)} pairs, {reference.stats['removed']} rows removed, by source: {dict(ref_by_source.most_common())}")

    static = model2vec(texts)
    candidates = pair_set(*exact_pairs(static, st["candidate_threshold"]))
    recall, _ = scores(candidates, truth)
    unverified_recall, unverified_precision = scores(pair_set(*exact_pairs(static, args.threshold)), truth)
    position = {id(r): n for n, r in enumerate(rows)}
    fast_removed = {position[id(x.row)] for x in fast.rejected}
    ref_removed = {position[id(x.row)] for x in reference.rejected}
    both = len(fast_removed & ref_removed)
    print(f"fast route: pair recall {recall:.3f} (reference pairs among its candidates; verification keeps exactly "
          f"the candidates MiniLM puts over {args.threshold}); rows removed by both {both} of {len(ref_removed)} "
          f"(reference) and {len(fast_removed)} (fast)")
    print(f"model2vec unverified at {args.threshold}: recall {unverified_recall:.3f}, precision {unverified_precision:.3f}")

    sample = sorted(random.Random(0).sample(range(len(rows)), min(args.sample, len(rows))))
    whole = minilm([user_text(rows[i].record) for i in sample])
    whole_pairs = {(sample[a], sample[b]) for a, b in pair_set(*exact_pairs(whole, args.threshold))}
    in_sample = set(sample)
    stripped_pairs = {(a, b) for a, b in truth if a in in_sample and b in in_sample}
    family = [r.record["task_family"] for r in rows]
    whole_only = Counter(family[a] for a, _ in whole_pairs - stripped_pairs)
    print(f"boilerplate, on {len(sample)} sampled rows: whole user text {len(whole_pairs)} pairs, without boilerplate "
          f"{len(stripped_pairs)}; pairs only with the whole text, by source: {dict(whole_only.most_common())}")

    result = {
        "rows": imported,
        "rows_reaching_semantic_dedup": len(rows),
        "threshold": args.threshold,
        "candidate_threshold": st["candidate_threshold"],
        "semantic_seconds": round(fast_seconds, 1),
        "semantic_model_load_seconds": round(load_seconds, 1),
        "semantic_stage_seconds": st["seconds"],
        "semantic_recall_vs_full_model": round(recall, 4),
        "semantic_precision_vs_full_model": round(both / len(fast_removed), 4) if fast_removed else 1.0,
        "semantic_removed_recall_vs_full_model": round(both / len(ref_removed), 4) if ref_removed else 1.0,
        "semantic_duplicates": st["removed"],
        "semantic_pairs": st["pairs"],
        "semantic_clusters": st["clusters"],
        "candidate_pairs": st["candidate_pairs"],
        "rows_verified": st["rows_verified"],
        "boilerplate_lines": st["boilerplate_lines"],
        "full_model_seconds": round(full_seconds, 1),
        "full_model_rows_per_s": round(len(rows) / full_seconds, 1),
        "full_model_pairs": len(truth),
        "full_model_duplicates": reference.stats["removed"],
        "full_model_duplicates_by_source": dict(ref_by_source.most_common()),
        "duplicates_removed_by_both": both,
        "model2vec_unverified_recall": round(unverified_recall, 4),
        "model2vec_unverified_precision": round(unverified_precision, 4),
        "sample_rows": len(sample),
        "sample_pairs_whole_text": len(whole_pairs),
        "sample_pairs_without_boilerplate": len(stripped_pairs),
        "sample_whole_text_only_pairs_by_source": dict(whole_only.most_common()),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
