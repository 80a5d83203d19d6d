"""Gate throughput on the shared 51,750-row instruct mix: the whole gate (no embeddings), each check, MinHash.

1. The Alpaca rows become pair records in memory exactly as `curator import --format alpaca` makes
   them (task family = the row's `source`); rows the importer would quarantine (empty output) are
   left out and counted. They go into one run directory in a temporary data root (written in one go:
   the importer's fsync per line would add about a minute and is not part of the gate).
2. `run_gate` in this process, first thing (so the great-expectations import is paid, as in a fresh
   CLI), timed: wall and CPU seconds, each phase and each check.
3. The same run gated again: every row is now in release-v1, so the `release_dedup` check does the
   work (exact keys and MinHash against 45k released rows); timed.
4. MinHash signatures, docs/s on all rows: the vectorised numpy MinHash (word 5-grams, 128 perms,
   shingling included) against datasketch's naive `MinHash().update` loop and `MinHash.bulk` on samples
   in the same process (their shingling included too); character 5-grams timed as well. Banding: numpy
   (`candidate_pairs`) against datasketch's `MinHashLSH` with the same 16 x 8 bands.
5. `curator gate` end to end as a subprocess (python start-up, imports, tables), unless --no-cli.

Prints figures; the last line is one JSON object, also written to benchmarks/results/gate_throughput.json.
Semantic-dedup fields come from benchmarks/results/semantic_dedup.json when it exists, else null.

    python benchmarks/gate_throughput.py [--data PATH] [--naive-sample 2000] [--bulk-sample 10000] [--no-cli]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from datasketch import MinHash, MinHashLSH  # noqa: E402

from curator.gate.minhash import candidate_pairs, char_shingles, signatures, word_shingles  # noqa: E402
from curator.gate.normalize import pair_text  # noqa: E402
from curator.gate.pipeline import GateReport, run_gate  # noqa: E402
from curator.records import build_messages, make_pair, schema_errors  # noqa: E402
from curator.rundir import RunDir  # noqa: E402
from curator.spec import load_spec  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"
RESULTS = Path(__file__).parent / "results"
NUM_PERM, NGRAM, SEED, BANDS, ROWS = 128, 5, 1, 16, 8
SEMANTIC_FIELDS = ("semantic_seconds", "semantic_recall_vs_full_model", "semantic_duplicates")


def import_rows(path: Path) -> tuple[list[dict], int, int]:
    """(pair records, lines read, lines the alpaca importer would quarantine)."""
    records, lines, quarantined = [], 0, 0
    with open(path, encoding="utf-8") as f:
        for lines, line in enumerate(f, 1):
            row = json.loads(line)
            record = make_pair(build_messages(row["instruction"], row.get("input") or "", row["output"]),
                               task_family=row["source"], format="free_text", difficulty="medium",
                               source="imported", strategy="import:alpaca", origin=f"{path}:{lines}")
            if schema_errors(record):
                quarantined += 1
            else:
                records.append(record)
    return records, lines, quarantined


def write_spec(path: Path, records: list[dict]) -> Path:
    """One family per source with its input share as target; a wide length band; strict mix tolerance."""
    counts = Counter(r["task_family"] for r in records)
    shares = {f: round(n / len(records), 4) for f, n in counts.most_common()}
    largest = next(iter(shares))
    shares[largest] = round(1 - sum(v for f, v in shares.items() if f != largest), 4)
    families = "\n".join(
        f"  - {{name: {f}, share: {s}, description: rows from {f}., formats: [free_text], "
        f"difficulties: [medium], length_band: any}}" for f, s in shares.items())
    path.write_text(f"""name: instruct-mix-bench
description: The shared instruct mix, one task family per source.
target_pairs: {len(records)}
difficulty_levels: [easy, medium, hard]
length_bands: [{{name: any, min_words: 1, max_words: 5000}}]
formats: [{{name: free_text, kind: text}}]
refusal_policy: {{max_share: 0.2}}
gate:
  exact_dedup: true
  minhash: {{enabled: true, threshold: 0.8, num_perm: {NUM_PERM}, ngram: {NGRAM}}}
  relevance: {{enabled: false}}  # embeddings: measured in benchmarks/consistency.py
  eval_fraction: 0.05
  min_train_rows: 1000
  max_reject_share: 0.5
  mix_tolerance: 0.05
task_families:
{families}
""")
    return path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_gate(run: Path, spec_path: Path, root: Path) -> tuple[GateReport, float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    report = run_gate([run], load_spec(spec_path), root=root)
    return report, time.perf_counter() - wall, cpu_seconds() - cpu


def byte_shingles(text: str) -> list[bytes]:
    words = text.split()
    if len(words) <= NGRAM:
        return [" ".join(words).encode()] if words else []
    return [" ".join(words[i:i + NGRAM]).encode() for i in range(len(words) - NGRAM + 1)]


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def minhash_rates(texts: list[str], naive_sample: int, bulk_sample: int) -> dict:
    started = time.perf_counter()
    shingles = word_shingles(texts, NGRAM)
    sigs = signatures(shingles, NUM_PERM, SEED)
    vectorised = time.perf_counter() - started

    started = time.perf_counter()
    for text in texts[:naive_sample]:
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        for shingle in byte_shingles(text):
            m.update(shingle)
    naive = time.perf_counter() - started

    started = time.perf_counter()
    MinHash.bulk([byte_shingles(t) for t in texts[:bulk_sample]], num_perm=NUM_PERM, seed=SEED)
    bulk = time.perf_counter() - started

    started = time.perf_counter()
    signatures(char_shingles(texts, NGRAM), NUM_PERM, SEED)
    chars = time.perf_counter() - started

    started = time.perf_counter()
    ours = candidate_pairs(sigs, BANDS, ROWS)
    banding = time.perf_counter() - started
    sketches = [MinHash(num_perm=NUM_PERM, seed=SEED, hashvalues=s, scheme="affine32") for s in sigs]
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
    with lsh.insertion_session() as session:
        for i, m in enumerate(sketches):
            session.insert(i, m, check_duplication=False)
    theirs = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    datasketch_lsh = time.perf_counter() - started
    return {
        "minhash_docs_per_s": rate(len(texts), vectorised),
        "minhash_seconds": round(vectorised, 2),
        "naive_datasketch_docs_per_s": rate(naive_sample, naive),
        "bulk_datasketch_docs_per_s": rate(bulk_sample, bulk),
        "char_minhash_docs_per_s": rate(len(texts), chars),
        "numpy_banding_seconds": round(banding, 2),
        "datasketch_lsh_seconds": round(datasketch_lsh, 2),
        "lsh_candidates": len(ours),
        "lsh_candidates_same_as_datasketch": {tuple(p) for p in ours.tolist()} == theirs,
    }


def semantic_fields() -> dict:
    path = RESULTS / "semantic_dedup.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    return {k: found.get(k) for k in SEMANTIC_FIELDS}


def cli_seconds(run: Path, spec_path: Path, data_root: Path) -> float:
    env = {**os.environ, "INSTRUCT_CURATOR_DATA": str(data_root)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "curator.cli", "gate", str(run), "--spec", str(spec_path)],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"curator gate failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--naive-sample", type=int, default=2000)
    ap.add_argument("--bulk-sample", type=int, default=10000)
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end `curator gate` subprocess")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="gate-bench-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        records, lines, quarantined = import_rows(args.data)
        run = RunDir(tmp / "runs" / "instruct-mix")
        run.create({"kind": "import", "status": "complete", "input": {"path": str(args.data)}})
        with open(run.path / "pairs.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        spec_path = write_spec(tmp / "spec.yaml", records)
        print(f"{lines} lines, {len(records)} importable pairs, {quarantined} quarantined "
              f"(prepared in {time.perf_counter() - started:.1f} s)")

        report, gate_wall, gate_cpu = timed_gate(run.path, spec_path, tmp / "releases")
        manifest = report.manifest
        removed = manifest["counts"]["removed"]
        print(f"gate: {gate_wall:.1f} s wall, {gate_cpu:.1f} s CPU; phases {manifest['seconds']}; "
              f"certified={report.certified}")
        for c in manifest["checks"]:
            print(f"  {c['name']:<12} {c['seconds']:6.2f} s  removed {c['removed']:>5}  {c['stats']}")
        near = next(c["stats"] for c in manifest["checks"] if c["name"] == "near_dedup")

        again, again_wall, _ = timed_gate(run.path, spec_path, tmp / "releases")
        prior = next(c for c in again.manifest["checks"] if c["name"] == "release_dedup")
        print(f"gate again against release-v1: {again_wall:.1f} s; release_dedup {prior['seconds']:.2f} s, "
              f"removed {prior['removed']} of {again.manifest['counts']['input']}")

        rates = minhash_rates([pair_text(r) for r in records], args.naive_sample, args.bulk_sample)
        print(f"MinHash docs/s: vectorised {rates['minhash_docs_per_s']:,.0f}, naive datasketch "
              f"{rates['naive_datasketch_docs_per_s']:,.0f}, MinHash.bulk {rates['bulk_datasketch_docs_per_s']:,.0f}, "
              f"vectorised char 5-grams {rates['char_minhash_docs_per_s']:,.0f}")
        print(f"banding {BANDS}x{ROWS}: numpy {rates['numpy_banding_seconds']} s, datasketch MinHashLSH "
              f"{rates['datasketch_lsh_seconds']} s, {rates['lsh_candidates']} candidates, "
              f"same pairs: {rates['lsh_candidates_same_as_datasketch']}")

        cli = None if args.no_cli else round(cli_seconds(run.path, spec_path, tmp / "cli-data"), 2)
        if cli is not None:
            print(f"`curator gate` end to end (subprocess): {cli:.1f} s")

    result = {
        "rows": lines,
        "importable_rows": len(records),
        "gate_seconds_without_embeddings": round(gate_wall, 2),
        "gate_cpu_seconds": round(gate_cpu, 2),
        "cli_gate_seconds": cli,
        "phase_seconds": manifest["seconds"],
        "check_seconds": {c["name"]: c["seconds"] for c in manifest["checks"]},
        "exact_duplicates": removed.get("exact_dedup"),
        "near_duplicates": removed.get("near_dedup"),
        "near_candidates": near["word_candidates"],
        "near_verified_pairs": near["word_verified_pairs"],
        "near_template_pairs": near["word_template_pairs"],
        "near_clusters": near["clusters"],
        "kept": manifest["counts"]["kept"],
        "release_dedup_seconds": prior["seconds"],
        "release_duplicates": prior["removed"],
        **rates,
        **semantic_fields(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gate_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
