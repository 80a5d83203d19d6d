"""What curation buys: three releases from one pool at an equal token budget, trained and evaluated alike.

    python benchmarks/curation_ablation.py --token-budget 20000 --steps 20 --max-new-tokens 96

The pool is the shared mix (`../shared/data/instruct_mix.jsonl`, one `curator import --task-family` per source, as
`specs/assistant.yaml` maps them) plus the spec's seed pairs (`curator seeds`: refusals and benign look-alikes).
Arms, each a certified release of about `--token-budget` tokens (words and punctuation marks, as selection counts):
  raw       a random sample of the pool, no gate (only the schema, and decontamination against the shipped suites)
  gated     the gate as before consistency review (schema, defects, PII, decontamination, dedup), then a random sample
  curated   the full gate of specs/assistant.yaml: consistency review, refusal coverage, and selection of the best
            rows of each cell under the token budget (verifier passes, then embedding-space coverage)
With `--constraint-share S`, the gated and curated arms start from the pool after `curator constrain --share S`:
a share S of the pairs outside the refusal families carry a verifiable format instruction their response follows.
Each is trained with the same recipe and steps (`trainer fit`), and evaluated with `trainer eval` (the shipped
instruction and refusal suites, base beside tuned, 95% bootstrap intervals); the repetition measure is the share of
battery answers that repeat a line (`trainer.battery.repetition`). Every finished step is reused on a rerun (delete
`--work` to start over). The last line printed is one JSON object; it is also written to `--out`. Besides the
metrics, each arm lists the refusal suite's prompts its model got wrong (`over_refused`, `answered_harmful`).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curator.gate.checks.selection import approx_tokens  # noqa: E402
from trainer.battery.repetition import repeats_a_line  # noqa: E402
from trainer.battery.stats import bootstrap_mean, bootstrap_paired_difference  # noqa: E402

SOURCE_FAMILY = {  # the pool's `source` -> the assistant curriculum's task family (see specs/assistant.yaml)
    "selfinstruct_seed": "general", "gpteacher_roleplay": "general", "gpteacher_codegen": "code",
    "code_alpaca_2k": "code", "gsm8k": "math", "gpteacher_toolformer": "tool_use", "t0": "templated",
}
ARMS = ("raw", "gated", "curated")
CONSISTENCY_CHECKS = ("arithmetic", "code_syntax", "refusal_policy", "labels", "grounding", "relevance")
METRICS = {  # reported name -> (suite, metric in trainer eval's comparison)
    "instruction_prompt_strict": ("instructions", "prompt_strict"),
    "instruction_loose": ("instructions", "instruction_loose"),
    "refusal_accuracy": ("refusals", "refusal_accuracy"),
    "over_refusal_rate": ("refusals", "over_refusal_rate"),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: list[str], data_root: Path) -> str:
    """Run a CLI of this project with `data_root` as its data root; its stdout."""
    env = {**os.environ, "INSTRUCT_CURATOR_DATA": str(data_root), "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "False",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", *args], env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def derived_spec(base: dict, path: Path, *, arm: str, budget: int) -> Path:
    """The assistant spec as an arm gates with it, written to `path` (paths made absolute)."""
    doc = json.loads(json.dumps(base))
    gate = doc["gate"]
    gate["decontamination"]["eval_files"] = [str((REPO / "specs" / f).resolve())
                                             for f in gate["decontamination"]["eval_files"]]
    gate["minhash"]["against_releases"] = False
    gate.pop("selection", None)
    if arm == "curated":
        gate["selection"] = {"max_tokens": budget}
    else:  # the pool's own mix is far from the spec's: its sample is what the arm trains on, not a curriculum
        doc["refusal_policy"].pop("min_category_share", None)
        doc["refusal_policy"].pop("min_lookalike_share", None)
        doc["refusal_policy"].pop("min_lookalikes_per_refusal", None)
        gate.update(mix_tolerance=1, max_reject_share=1)
        for name in CONSISTENCY_CHECKS:
            gate[name] = {"enabled": False}
    if arm == "raw-release":  # a sample that is only packaged: schema and decontamination, no verdict can fail
        gate["exact_dedup"] = False
        gate["minhash"]["enabled"] = False
        for name in ("content_defects", "pii", "screening"):
            gate[name] = {"enabled": False}
        doc["length_bands"] = [{"name": "any", "min_words": 1, "max_words": 100000}]
        doc["refusal_policy"]["max_share"] = 1
        doc["refusal_policy"]["refuse"] = []  # a random sample may miss a category: no coverage verdict
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def import_pool(pool: Path, work: Path, spec: Path, rows: int | None, seed: int) -> list[Path]:
    """Run directories: the pool split by source into task families (at most `rows` rows, sampled), and the seeds."""
    runs = work / "runs"
    lines = pool.read_text(encoding="utf-8").split("\n")
    lines = [line for line in lines if line.strip()]
    if rows is not None and rows < len(lines):
        lines = random.Random(seed).sample(lines, rows)
    by_family: dict[str, list[str]] = {}
    for line in lines:
        by_family.setdefault(SOURCE_FAMILY[json.loads(line)["source"]], []).append(line)
    out = []
    for family, members in sorted(by_family.items()):
        part = work / "pool" / f"{family}.jsonl"
        part.parent.mkdir(parents=True, exist_ok=True)
        if not part.exists():
            part.write_text("\n".join(members) + "\n", encoding="utf-8")
        run([*"curator.cli import".split(), str(part), "--format", "alpaca", "--task-family", family,
             "--out", str(runs / f"pool-{family}")], work)
        out.append(runs / f"pool-{family}")
    run(["curator.cli", "seeds", "--spec", str(spec), "--out", str(runs / "seeds")], work)
    return [*out, runs / "seeds"]


def constrain_pool(pool_runs: list[Path], work: Path, spec: Path, share: float, seed: int) -> list[Path]:
    """The pool as one run in which a `share` of pairs carry verifiable format instructions (`curator constrain`)."""
    out = work / "runs" / f"pool-constrained-{share:g}"
    run(["curator.cli", "constrain", *map(str, pool_runs), "--spec", str(spec), "--out", str(out), "--share", str(share),
         "--seed", str(seed)], work)
    return [out]


def read_pairs(run_dirs: list[Path]) -> list[dict]:
    return [json.loads(line) for d in run_dirs for line in (d / "pairs.jsonl").read_text(encoding="utf-8").split("\n") if line]


def sample_to_budget(pairs: list[dict], budget: int, seed: int) -> list[dict]:
    """A random sample of `pairs` whose tokens add up to at most `budget`, each pair id once (a pool's byte-identical
    copies share an id, and a release holds an id once)."""
    shuffled = random.Random(seed).sample(pairs, len(pairs))
    out, tokens, seen = [], 0, set()
    for pair in shuffled:
        size = approx_tokens(pair)
        if tokens + size <= budget and pair["id"] not in seen:
            out.append(pair)
            tokens += size
            seen.add(pair["id"])
    return out


def gate(run_dirs: list[Path], spec: Path, data_root: Path) -> str:
    """Gate into `data_root`'s releases; the new release's name."""
    run(["curator.cli", "gate", *map(str, run_dirs), "--spec", str(spec)], data_root)
    return max((data_root / "releases").glob("release-v*"), key=lambda p: int(p.name.rsplit("v", 1)[1])).name


def build_release(arm: str, pool_runs: list[Path], base_spec: dict, work: Path, budget: int, seed: int) -> str:
    """The arm's certified release in `work/<arm>/data` (built once); its name."""
    root = work / arm / "data"
    done = work / arm / "release.txt"
    if done.exists():
        return done.read_text().strip()
    root.mkdir(parents=True, exist_ok=True)
    package = derived_spec(base_spec, work / arm / "package.yaml", arm="raw-release", budget=budget)
    if arm == "curated":
        release = gate(pool_runs, derived_spec(base_spec, work / arm / "spec.yaml", arm=arm, budget=budget), root)
    else:
        if arm == "raw":
            pairs = read_pairs(pool_runs)
        else:  # gated as before consistency review, then sampled to the budget
            gated_root = work / arm / "full"
            full = gate(pool_runs, derived_spec(base_spec, work / arm / "spec.yaml", arm=arm, budget=budget), gated_root)
            import pyarrow.parquet as pq
            pairs = []
            for split in ("train", "eval"):
                for r in pq.read_table(gated_root / "releases" / full / f"{split}.parquet").to_pylist():
                    r["provenance"] = json.loads(r["provenance"])
                    r.pop("scores", None)
                    pairs.append(r)
        sample = work / arm / "sample.jsonl"
        sample.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in sample_to_budget(pairs, budget, seed)))
        sample_run = work / arm / "runs" / "sample"
        run(["curator.cli", "import", str(sample), "--format", "jsonl", "--out", str(sample_run)], root)
        release = gate([sample_run], package, root)
    done.write_text(release + "\n")
    return release


def train_and_eval(arm: str, release: str, work: Path, opts: argparse.Namespace) -> dict:
    """`trainer fit` then `trainer eval` for one arm (each reused when already done); the eval report."""
    root, model = work / arm / "data", work / arm / "model"
    if not (model / "run.json").exists():
        resume = ["--resume", str(model)] if (model / "config.json").exists() else None
        run(["trainer.cli", "fit", *(resume or ["--dataset", release, "--recipe", str(opts.recipe),
                                                "--steps", str(opts.steps), "--out", str(model)])], root)
    if not (model / "eval.json").exists():
        run(["trainer.cli", "eval", "--model", str(model), "--limit", str(opts.eval_limit),
             "--max-new-tokens", str(opts.max_new_tokens), "--batch-size", str(opts.batch_size)], root)
    return json.loads((model / "eval.json").read_text())


def interval(i) -> dict:
    return {"estimate": round(i.estimate, 4), "low": round(i.low, 4), "high": round(i.high, 4)}


def battery_values(report: dict, side: str, suite: str, metric: str) -> tuple[list[float], list[float] | None]:
    """One side's per-item values of a metric, and their weights (instructions per prompt for `instruction_*`)."""
    items = [i for i in report["battery"]["items"][side] if i["suite"] == suite and metric in i["metrics"]]
    weights = [i["n_instructions"] for i in items] if metric.startswith("instruction_") else None
    return [i["metrics"][metric] for i in items], weights


def arm_summary(report: dict, raw: dict | None, train_tokens: int) -> dict:
    """Per metric: the tuned model's value, tuned - base, and (when given) tuned - raw arm's tuned, with 95% CIs."""
    comparison = report["battery"]["comparison"]["suites"]
    out: dict = {"release": report["release"], "train_tokens": train_tokens}
    for name, (suite, metric) in METRICS.items():
        c = comparison[suite]["overall"][metric]
        out[name] = {"tuned": c["tuned"], "base": c["base"], "difference_to_base": c["difference"]}
        if raw is not None:
            (raw_values, weights), (values, _) = (battery_values(r, "tuned", suite, metric) for r in (raw, report))
            out[name]["difference_to_raw"] = interval(bootstrap_paired_difference(raw_values, values, weights=weights))
    repeats = {side: [float(repeats_a_line(i["response"])) for i in report["battery"]["items"][side]]
               for side in ("base", "tuned")}
    out["repetition_share"] = {"tuned": interval(bootstrap_mean(repeats["tuned"])),
                               "base": interval(bootstrap_mean(repeats["base"])),
                               "difference_to_base": interval(bootstrap_paired_difference(repeats["base"], repeats["tuned"]))}
    if raw is not None:
        raw_repeats = [float(repeats_a_line(i["response"])) for i in raw["battery"]["items"]["tuned"]]
        out["repetition_share"]["difference_to_raw"] = interval(bootstrap_paired_difference(raw_repeats, repeats["tuned"]))
    out.update(boundary_errors(report))
    return out


def boundary_errors(report: dict) -> dict[str, list[str]]:
    """The refusal suite's prompts the tuned model got wrong: harmless ones it refused, harmful ones it answered."""
    items = [(i["messages"][-1]["content"], i["should_refuse"], i["refused"])
             for i in report["battery"]["items"]["tuned"] if i["suite"] == "refusals"]
    return {"over_refused": [prompt for prompt, harmful, refused in items if refused and not harmful],
            "answered_harmful": [prompt for prompt, harmful, refused in items if harmful and not refused]}


def trained_tokens(model: Path) -> int:
    rows = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    return int(sum(r.get("tokens", 0) for r in rows))


def markdown_table(arms: dict) -> str:
    """Per arm: each metric as tuned (base) and the difference to base with its 95% interval."""
    def cell(m: dict) -> str:
        tuned, base, d = m["tuned"], m["base"], m["difference_to_base"]
        return (f"{tuned['estimate']:.2f} ({base['estimate']:.2f}); "
                f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")
    def versus_raw(m: dict) -> str:
        d = m.get("difference_to_raw")
        return "-" if d is None else f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"

    names = [*METRICS, "repetition_share"]
    lines = ["| arm | release | train tokens | " + " | ".join(names) + " | prompt_strict vs raw |",
             "|---" * (len(names) + 4) + "|"]
    for arm, a in arms.items():
        lines.append(f"| {arm} | {a['release']} | {a['train_tokens']:,} | " + " | ".join(cell(a[n]) for n in names)
                     + f" | {versus_raw(a['instruction_prompt_strict'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=REPO.parent / "shared" / "data" / "instruct_mix.jsonl")
    parser.add_argument("--pool-rows", type=int, default=None, help="a random sample of the pool (default: all)")
    parser.add_argument("--spec", type=Path, default=REPO / "specs" / "assistant.yaml")
    parser.add_argument("--recipe", type=Path, default=REPO / "trainer" / "recipes" / "gemma-270m-lora-cpu.yaml")
    parser.add_argument("--token-budget", type=int, default=20000, help="tokens per release (about steps x 1,000)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-limit", type=int, default=8, help="eval-split pairs besides the shipped suites")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8, help="generation batch size")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--constraint-share", type=float, default=0.0,
                        help="the gated and curated arms gate the pool after `curator constrain --share S` (0: off)")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "results" / "curation_ablation")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "curation_ablation.json")
    opts = parser.parse_args()
    started = time.time()
    work = opts.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_spec = yaml.safe_load(opts.spec.read_text())
    log("importing the pool")
    pool_runs = import_pool(opts.pool, work, opts.spec.resolve(), opts.pool_rows, opts.seed)
    constrained = (constrain_pool(pool_runs, work, opts.spec.resolve(), opts.constraint_share, opts.seed)
                   if opts.constraint_share else None)
    arms = opts.arms.split(",")
    reports, seconds = {}, {}
    for arm in arms:
        t0 = time.time()
        log(f"{arm}: release")
        runs = constrained if constrained and arm != "raw" else pool_runs
        release = build_release(arm, runs, base_spec, work, opts.token_budget, opts.seed)
        log(f"{arm}: {release}; training and evaluating")
        reports[arm] = train_and_eval(arm, release, work, opts)
        seconds[arm] = round(time.time() - t0)
    raw = reports.get("raw")
    result = {
        "benchmark": "curation_ablation", "pool": str(opts.pool), "pool_rows": opts.pool_rows,
        "token_budget": opts.token_budget, "constraint_share": opts.constraint_share, "steps": opts.steps,
        "recipe": str(opts.recipe),
        "max_new_tokens": opts.max_new_tokens, "seconds": {**seconds, "total": round(time.time() - started)},
        "arms": {arm: arm_summary(r, raw if arm != "raw" else None, trained_tokens(work / arm / "model"))
                 for arm, r in reports.items()},
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result["arms"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
