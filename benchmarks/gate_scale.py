"""Import and gate at scale: 0.5M, 1M, 2M rows built from the shared instruct mix, with planted duplicates.

Per size, an Alpaca JSONL input is built from the mix's rows (not timed):

- a fresh row: a mix row, its first copy as it is; every later copy has every 4th word of its instruction,
  input and output replaced by a word drawn from the mix's vocabulary (every word 5-gram changes, so
  copies are neither exact nor near duplicates of each other);
- `--exact-rate` (5%): an exact duplicate of an earlier fresh row: instruction upper-cased, spaces
  doubled, " !" appended (the same after normalisation);
- `--near-rate` (5%): a near duplicate of an earlier fresh row of 60+ words: one word of the instruction
  changed (word 5-gram Jaccard about 0.85-0.9, the same answer).

Then, each in its own process (`os.wait4` gives its peak RSS): `curator import --format alpaca`, and
`curator gate --engine stream` (the engine under test), with `--checks dedup` a spec switching off every
check but schema, exact and near dedup, with `--checks default` the spec's defaults (consistency checks,
relevance, screening). As the baseline in the same run, `--engine memory` gates the smallest size too
(unless --no-baseline). Planted duplicates found: planted rows rejected by exact_dedup or near_dedup
(ids as the importer makes them). The mix's own duplicates are not counted as planted.

The last line is one JSON object (also written to benchmarks/results/gate_scale.json): `sizes` (rows,
import_rows_per_s, gate_rows_per_s, import_peak_rss_gb, gate_peak_rss_gb, near_duplicate_recall,
exact_duplicate_recall, seconds per check), `gate_time_exponent` (the slope of log gate seconds over log
rows; null for one size) and `baseline` (the memory engine at the smallest size).

`--gate-baseline DIR` gates each size a second time with the code checked out in DIR (for instance `git worktree
add /tmp/before <commit>`), right after on the same run directory: its seconds, CPU seconds and peak RSS, and
whether its verdicts (kept, rejected, removed per check, certified) are the same.

`--repeats K` gates each size K times (with `--gate-baseline`, alternating with the baseline code): a 2-core virtual
machine's speed drifts by up to a fifth within the hour, so one run says little; `gate_seconds` is then the median,
`gate_seconds_runs` every run's.

`--import-only` measures import alone (no gate; results in benchmarks/results/import_scale.json), with
`--import-baseline DIR` also importing each input with the code checked out in DIR (for instance
`git worktree add /tmp/before <commit>`), right after, as the baseline in the same run.

    python benchmarks/gate_scale.py [--sizes 500000,1000000,2000000] [--checks dedup|default] [--data PATH]
        [--gate-baseline DIR] [--repeats K]
    python benchmarks/gate_scale.py --import-only --sizes 500000,1000000 [--import-baseline DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from curator.importers import READERS
from curator.records import pair_id

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "instruct_mix.jsonl"
RESULTS = Path(__file__).parent / "results"
SOURCES = 200_000  # earlier fresh rows a duplicate is drawn from (the first ones)
OFF = ("content_defects", "pii", "decontamination", "arithmetic", "code_syntax", "refusal_policy", "labels",
       "grounding", "relevance", "screening")
SPEC = """name: gate-scale
description: The shared instruct mix, replicated, as one general family.
difficulty_levels: [easy, medium, hard]
length_bands:
  - {name: any, min_words: 1, max_words: 100000}
formats:
  - {name: free_text, kind: text}
refusal_policy: {max_share: 0.5}
gate:
  exact_dedup: true
  minhash: {threshold: 0.8, num_perm: 128, ngram: 5, against_releases: false}
  eval_fraction: 0.01
  min_train_rows: 5
  max_reject_share: 0.9
%s
task_families:
  - {name: general, share: 1.0, description: Anything., formats: [free_text], length_band: any}
"""


def _words(text: str) -> int:
    return len(text.split())


def _perturbed(row: dict, rng: random.Random, vocabulary: list[str]) -> dict:
    out = dict(row)
    for key in ("instruction", "input", "output"):
        words = row[key].split(" ")
        offset = rng.randrange(4)
        out[key] = " ".join(rng.choice(vocabulary) if i % 4 == offset else w for i, w in enumerate(words))
    return out


def usable(row: dict) -> bool:
    """Whether the importer and the schema check keep the row (non-empty instruction and output)."""
    return bool(row["output"].strip() and row["instruction"].strip())


def _pair_id(row: dict) -> str:
    return pair_id(READERS["alpaca"](row))


def build_input(base: list[dict], n: int, path: Path, exact_rate: float, near_rate: float, seed: int) -> dict:
    """Write n rows to `path`; return the ids of the planted exact and near duplicates."""
    rng = random.Random(seed)
    vocabulary = sorted({w for r in base[:5000] for w in r["output"].split()})
    fresh_ok: list[dict] = []
    long_ok: list[dict] = []
    planted = {"exact": [], "near": []}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            draw = rng.random()
            if draw < exact_rate and fresh_ok:
                src = rng.choice(fresh_ok)
                row = {**src, "instruction": "  ".join(src["instruction"].upper().split(" ")) + " !"}
                planted["exact"].append(_pair_id(row))
            elif draw < exact_rate + near_rate and long_ok:
                src = rng.choice(long_ok)
                words = src["instruction"].split(" ")
                k = len(words) // 2
                words[k] = words[k] + "q"
                row = {**src, "instruction": " ".join(words)}
                planted["near"].append(_pair_id(row))
            else:
                copy, src = divmod(i, len(base))
                row = base[src] if copy == 0 else _perturbed(base[src], rng, vocabulary)
                if usable(row) and len(fresh_ok) < SOURCES:
                    fresh_ok.append(row)
                if usable(row) and len(long_ok) < SOURCES and _words(row["instruction"]) >= 40 and _words(
                        row["instruction"] + " " + row["output"]) >= 60:
                    long_ok.append(row)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return planted


def busy_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, all CPUs together (/proc/stat; 0 where there is none)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def measured(command: list[str], env: dict, cwd: Path | None = None) -> tuple[float, float, int, float]:
    """Run `command`; (wall seconds, peak RSS in GB, exit status, CPU seconds). The peak RSS is the largest of the
    process and the descendants reaped below it (`wait4`); the CPU seconds are the whole machine's busy time while it
    ran, worker processes included wherever they were started (nothing else should run meanwhile)."""
    started, busy = time.perf_counter(), busy_seconds()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds, cpu = time.perf_counter() - started, busy_seconds() - busy
    err = proc.stderr.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024 / 1024, code, cpu


def gate(run: Path, spec: Path, engine: str, env: dict, planted: dict, tree: Path | None = None) -> dict:
    """Gate `run` with the code in `tree` (this checkout unless given); timings, counts and duplicate recall (the
    release is removed once read)."""
    data = Path(env["INSTRUCT_CURATOR_DATA"])
    before = set((data / "releases").glob("release-v*")) if (data / "releases").exists() else set()
    tree = tree or ROOT  # `python -m` finds the package in its working directory first
    seconds, rss, code, cpu = measured([sys.executable, "-m", "curator.cli", "gate", str(run), "--spec", str(spec),
                                        "--engine", engine], {**env, "PYTHONPATH": str(tree)}, tree)
    release = (set((data / "releases").glob("release-v*")) - before).pop()
    manifest = json.loads((release / "manifest.json").read_text())
    ledger = pl.read_parquet(release / "rejected.parquet", columns=["id", "check"])
    dedup = set(ledger.filter(pl.col("check").is_in(["exact_dedup", "near_dedup"]))["id"].to_list())
    subprocess.run(["chmod", "-R", "u+w", str(release)], check=True)  # releases are read-only
    subprocess.run(["rm", "-rf", str(release)], check=True)
    recall = {kind: (sum(i in dedup for i in ids) / len(ids) if ids else None) for kind, ids in planted.items()}
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gb": round(rss, 2),
            "certified": code == 0,
            "kept": manifest["counts"]["kept"], "rejected": manifest["counts"]["rejected"],
            "removed": manifest["counts"]["removed"], "phases": manifest["seconds"],
            "check_seconds": {c["name"]: c["seconds"] for c in manifest["checks"]},
            "near_duplicate_recall": recall["near"], "exact_duplicate_recall": recall["exact"]}


def repeated(run: Path, spec: Path, engine: str, env: dict, planted: dict, repeats: int, baseline: Path | None
             ) -> tuple[dict, dict | None]:
    """`gate` `repeats` times with this checkout and, when given, as often with the code in `baseline`, one after the
    other (this, baseline, this, ...): per code, its first run's counts and recall with the median seconds and CPU
    seconds, every run's seconds (`runs`) and the largest peak RSS. Every run must give the same verdicts."""
    trees = [None] if baseline is None else [None, baseline.resolve()]
    runs: dict = {tree: [] for tree in trees}
    for _ in range(repeats):
        for tree in trees:
            runs[tree].append(gate(run, spec, engine, env, planted, tree))
    out = []
    for tree in trees:
        first = runs[tree][0]
        if any(r[k] != first[k] for r in runs[tree] for k in ("kept", "rejected", "removed", "certified")):
            raise SystemExit(f"gate runs of {tree or ROOT} on {run} gave different verdicts")
        out.append({**first, "seconds": round(statistics.median(r["seconds"] for r in runs[tree]), 1),
                    "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs[tree]), 1),
                    "peak_rss_gb": max(r["peak_rss_gb"] for r in runs[tree]),
                    "runs": [r["seconds"] for r in runs[tree]]})
    return out[0], out[1] if baseline is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500000,1000000,2000000")
    ap.add_argument("--checks", choices=["dedup", "default"], default="dedup")
    ap.add_argument("--engine", default="stream", choices=["stream", "ray", "memory"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--exact-rate", type=float, default=0.05)
    ap.add_argument("--near-rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the memory engine on the smallest size")
    ap.add_argument("--import-only", action="store_true", help="measure import alone, no gate")
    ap.add_argument("--import-baseline", type=Path, help="with --import-only: a checkout of the code to compare with")
    ap.add_argument("--gate-baseline", type=Path, help="also gate each size with the code checked out here, right after")
    ap.add_argument("--repeats", type=int, default=1, help="gate each size this many times (and as often with "
                    "--gate-baseline, alternating); the median seconds count")
    args = ap.parse_args()
    if args.import_only:
        return import_only(args)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    results, baseline = [], None
    with tempfile.TemporaryDirectory(prefix="gate-scale-") as tmp:
        tmp = Path(tmp)
        spec = tmp / "spec.yaml"
        off = "\n".join(f"  {name}: {{enabled: false}}" for name in OFF) if args.checks == "dedup" else ""
        spec.write_text(SPEC % off)
        env = {**os.environ, "GX_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "INSTRUCT_CURATOR_DATA": str(tmp / "data")}
        for n in sizes:
            src = tmp / f"input-{n}.jsonl"
            planted = build_input(base, n, src, args.exact_rate, args.near_rate, args.seed)
            run = tmp / "data" / "runs" / f"scale-{n}"
            import_s, import_rss, _, _ = measured([sys.executable, "-m", "curator.cli", "import", str(src), "--format",
                                                "alpaca", "--out", str(run)], env)
            src.unlink()
            gated, code = repeated(run, spec, args.engine, env, planted, args.repeats, args.gate_baseline)
            entry = {"rows": n, "import_seconds": round(import_s, 1), "import_rows_per_s": round(n / import_s),
                     "import_peak_rss_gb": round(import_rss, 2), "gate_seconds": gated["seconds"],
                     "gate_rows_per_s": round(n / gated["seconds"]), "gate_seconds_runs": gated["runs"],
                     "gate_cpu_seconds": gated["cpu_seconds"], "gate_peak_rss_gb": gated["peak_rss_gb"],
                     "near_duplicate_recall": gated["near_duplicate_recall"],
                     "exact_duplicate_recall": gated["exact_duplicate_recall"],
                     "planted": {k: len(v) for k, v in planted.items()}, **{k: gated[k] for k in
                     ("kept", "rejected", "removed", "phases", "check_seconds", "certified")}}
            if code is not None:
                entry["baseline_code"] = {
                    "tree": str(args.gate_baseline), "gate_seconds": code["seconds"],
                    "gate_rows_per_s": round(n / code["seconds"]), "gate_seconds_runs": code["runs"],
                    "gate_cpu_seconds": code["cpu_seconds"], "gate_peak_rss_gb": code["peak_rss_gb"],
                    "check_seconds": code["check_seconds"],
                    "same_verdicts": all(code[k] == gated[k] for k in ("kept", "rejected", "removed", "certified"))}
            print(json.dumps(entry), flush=True)
            results.append(entry)
            if baseline is None and not args.no_baseline and args.engine != "memory":
                baseline = {"rows": n, "engine": "memory", **gate(run, spec, "memory", env, planted)}
                baseline["gate_rows_per_s"] = round(n / baseline["seconds"])
                print("baseline", json.dumps(baseline), flush=True)
            subprocess.run(["rm", "-rf", str(run)], check=True)
    exponent = None
    if len(results) > 1:
        exponent = round(float(np.polyfit(np.log([r["rows"] for r in results]),
                                          np.log([r["gate_seconds"] for r in results]), 1)[0]), 3)
    summary = {"engine": args.engine, "checks": args.checks, "sizes": results, "gate_time_exponent": exponent,
               "baseline": baseline}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"gate_scale{'' if args.checks == 'dedup' else '_' + args.checks}.json").write_text(
        json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def import_only(args: argparse.Namespace) -> None:
    """Per size: `curator import` of the built input, and of the same input with the baseline checkout."""
    base = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    results = []
    with tempfile.TemporaryDirectory(prefix="import-scale-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "INSTRUCT_CURATOR_DATA": str(tmp / "data")}
        trees = {"import": None, "baseline": args.import_baseline}
        for n in sorted(int(s) for s in args.sizes.split(",")):
            src = tmp / f"input-{n}.jsonl"
            build_input(base, n, src, args.exact_rate, args.near_rate, args.seed)
            entry = {"rows": n, "load_before": round(os.getloadavg()[0], 2)}
            for name, tree in trees.items():
                if name == "baseline" and tree is None:
                    continue
                run = tmp / "data" / "runs" / f"{name}-{n}"
                tree = tree or ROOT  # `python -m` finds the package in its working directory first
                seconds, rss, _, cpu = measured([sys.executable, "-m", "curator.cli", "import", str(src), "--format",
                                                 "alpaca", "--out", str(run)], {**env, "PYTHONPATH": str(tree)}, tree)
                counts = json.loads((run / "run.json").read_text())["counts"]
                entry[name] = {"seconds": round(seconds, 1), "rows_per_s": round(n / seconds),
                               "cpu_seconds": round(cpu, 1), "peak_rss_gb": round(rss, 2), **counts}
                subprocess.run(["rm", "-rf", str(run)], check=True)
            print(json.dumps(entry), flush=True)
            results.append(entry)
            src.unlink()
    summary = {"sizes": results, "cpus": len(os.sched_getaffinity(0))}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "import_scale.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
