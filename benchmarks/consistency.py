"""Consistency review on planted defects: how many meaning-level defects the gate catches, offline.

From the shared instruct mix, `--per-type` rows of each defect type are altered (each from its own
untouched row; the alteration knows nothing of the verifiers):

- `wrong_arithmetic`: a gsm8k answer with one stated result of an explicit `a op b = c` changed by
  1 to 9 (or the `<<...=c>>c` annotation and its copy);
- `swapped_answer`: a response of 8+ words replaced by the response of a row from another source;
- `benign_refused`: a response replaced by one of ten common refusals (the families must answer);
- `code_unparseable`: Python code (from codegen rows whose output parses) with one block colon removed;
- `conflicting_label`: a short-answer (3 words or fewer) t0 row copied with another answer of its
  source (the original stays in: one of the two must go);
- `ungrounded_extraction`: an extractive row (its answer occurs in its input; task family
  `extract`) answered with words that do not occur in its input.

Plus as many untouched rows, drawn from the rest. All go into one run directory; the spec gives each
source its own task family (extractive rows `extract`), mix and reject-share verdicts wide open.
Gated twice in this process: first as the baseline, the consistency checks switched off (which also
pays the imports), then with them on (defaults). A defect is caught when its row is rejected by any
check. `clean_rejected_share` is over the untouched rows the baseline keeps (an untouched row that
duplicates another is dedup's business, not a false positive); `untouched_rejected_share` over all.

The last line is one JSON object (also written to benchmarks/results/consistency.json):
`rows`, `caught_by_type`, `caught_overall`, `clean_rejected_share`, `seconds`, `rows_per_s`, with
the checks that caught each type, the checks that rejected clean rows, and the baseline's figures.

    python benchmarks/consistency.py [--data PATH] [--per-type 500] [--seed 0]
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from curator.gate.pipeline import run_gate  # noqa: E402
from curator.records import build_messages, make_pair, schema_errors  # noqa: E402
from curator.release.store import read_ledger  # noqa: E402
from curator.rundir import RunDir  # noqa: E402
from curator.spec import load_spec  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"
RESULTS = Path(__file__).parent / "results"
TYPES = ("wrong_arithmetic", "swapped_answer", "benign_refused", "code_unparseable", "conflicting_label",
         "ungrounded_extraction")
CONSISTENCY = ("arithmetic", "code_syntax", "refusal_policy", "labels", "grounding", "relevance")
REFUSALS = (
    "I'm sorry, but I can't help with that.", "I cannot provide that information.",
    "As an AI language model, I am unable to assist with this request.", "I'm afraid I can't do that.",
    "Unfortunately, I am not able to help with this request.", "I won't be able to help with that.",
    "Sorry, I cannot comply with this request.", "I must decline this request.",
    "I am not comfortable answering that.", "I apologize, but I cannot fulfill this request.",
)
EQUATION = re.compile(r"\d\s*[-+*/x×]\s*\$?\d[^=\n<>]*=\s*\$?(\d+)(?![\d.,])")
ANNOTATED = re.compile(r"<<([^<>=]+)=(\d+)>>(\d+)")


def user_of(row: dict) -> str:
    return (row["instruction"] + ("\n\n" + row["input"] if row["input"].strip() else "")).strip()


def wrong_arithmetic(row: dict, rng: random.Random) -> str | None:
    sites = list(EQUATION.finditer(row["output"]))
    annotated = list(ANNOTATED.finditer(row["output"]))
    if not sites and not annotated:
        return None
    out, k = row["output"], rng.randint(1, 9)
    if annotated and (not sites or rng.random() < 0.5):
        m = rng.choice(annotated)
        value = str(int(m.group(2)) + k)
        return out[:m.start()] + f"<<{m.group(1)}={value}>>{value}" + out[m.end():]
    m = rng.choice(sites)
    return out[:m.start(1)] + str(int(m.group(1)) + k) + out[m.end(1):]


def code_unparseable(row: dict, rng: random.Random) -> str | None:
    lines = row["output"].split("\n")
    colons = [i for i, line in enumerate(lines) if re.match(r"\s*(def|if|for|while|class|elif|else|try|with)\b.*:\s*$",
                                                             line)]
    if not colons:
        return None
    i = rng.choice(colons)
    lines[i] = lines[i].rstrip()[:-1]
    return "\n".join(lines)


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extractive(row: dict) -> bool:
    out = row["output"].strip()
    return (row["source"] == "t0" and 1 <= len(out.split()) <= 10 and len(out) >= 3
            and out in row["instruction"] + row["input"])


def plant(rows: list[dict], per_type: int, seed: int) -> tuple[list[tuple[dict, str, str | None]], int]:
    """(row, family, defect type or None for untouched) for every row of the planted set; and how many
    originals of conflicting labels were added (they are neither defects nor clean)."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    used: set[int] = set()
    out: list[tuple[dict, str, str | None]] = []

    def family(row: dict) -> str:
        return "extract" if extractive(row) else row["source"]

    def take(kind: str, eligible, alter) -> None:
        n = 0
        for i in order:
            if n == per_type:
                break
            row = rows[i]
            if i in used or not eligible(row):
                continue
            new = alter(row)
            if new is None or new == row["output"]:
                continue
            used.add(i)
            out.append(({**row, "output": new}, family(row), kind))
            n += 1

    long_rows = [i for i in order if len(rows[i]["output"].split()) >= 8]
    short_by_source: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r["source"] == "t0" and 1 <= len(r["output"].split()) <= 3:
            short_by_source[r["source"]].append(r["output"])

    take("wrong_arithmetic", lambda r: r["source"] == "gsm8k", lambda r: wrong_arithmetic(r, rng))
    take("swapped_answer", lambda r: len(r["output"].split()) >= 8 and not extractive(r),
         lambda r: next((rows[j]["output"] for j in (rng.choice(long_rows) for _ in range(50))
                         if rows[j]["source"] != r["source"]), None))
    take("benign_refused", lambda r: not extractive(r), lambda r: rng.choice(REFUSALS))
    take("code_unparseable", lambda r: r["source"] in ("gpteacher_codegen", "code_alpaca_2k")
         and re.search(r"\bpython\b", r["instruction"], re.I) and parses(r["output"]),
         lambda r: code_unparseable(r, rng))
    originals = []
    take("conflicting_label", lambda r: r["source"] == "t0" and 1 <= len(r["output"].split()) <= 3,
         lambda r: next((a for a in (rng.choice(short_by_source["t0"]) for _ in range(50))
                         if a.strip().lower() != r["output"].strip().lower()), None))
    for row, fam, kind in out:
        if kind == "conflicting_label":
            original = next(r for r in rows if r["id"] == row["id"])
            originals.append((original, fam, "conflict_original"))
    words = [w for r in rows[:5000] for w in r["input"].split() if w.isalpha() and len(w) > 4]
    take("ungrounded_extraction", extractive,
         lambda r: " ".join(w for w in rng.sample(words, len(r["output"].split()))
                            if w.lower() not in user_of(r).lower()) or None)
    clean = 0
    for i in order:
        if clean == per_type * len(TYPES):
            break
        if i not in used:
            used.add(i)
            out.append((rows[i], family(rows[i]), None))
            clean += 1
    out += originals
    rng.shuffle(out)
    return out, len(originals)


def write_inputs(tmp: Path, planted: list[tuple[dict, str, str | None]]) -> tuple[Path, dict[str, str | None], Path]:
    records, kind_of = [], {}
    for row, family, kind in planted:
        record = make_pair(build_messages(row["instruction"], row["input"], row["output"]), task_family=family,
                           format="free_text", difficulty="medium", source="imported", strategy="import:alpaca",
                           origin=f"instruct_mix:{row['id']}")
        if schema_errors(record) or record["id"] in kind_of:
            continue
        records.append(record)
        kind_of[record["id"]] = kind
    run = RunDir(tmp / "runs" / "planted")
    run.create({"kind": "import", "status": "complete"})
    with open(run.path / "pairs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    families = Counter(r["task_family"] for r in records)
    shares = {f: round(n / len(records), 6) for f, n in families.items()}
    largest = max(shares, key=shares.get)
    shares[largest] = round(1 - sum(v for f, v in shares.items() if f != largest), 6)
    spec = tmp / "spec.yaml"
    spec.write_text("name: consistency-bench\ndescription: planted defects.\ndifficulty_levels: [medium]\n"
                    "length_bands: [{name: any, min_words: 1, max_words: 5000}]\n"
                    "formats: [{name: free_text, kind: text}]\nrefusal_policy: {max_share: 1.0}\n"
                    "gate: {eval_fraction: 0.05, max_reject_share: 1.0, mix_tolerance: 1.0}\n"
                    "task_families:\n" + "\n".join(
                        f"  - {{name: {f}, share: {s}, description: {f}., formats: [free_text], length_band: any}}"
                        for f, s in shares.items()) + "\n")
    return run.path, kind_of, spec


def baseline_spec(spec: Path) -> Path:
    off = ", ".join(f"{c}: {{enabled: false}}" for c in CONSISTENCY)
    path = spec.with_name("baseline.yaml")
    path.write_text(spec.read_text().replace("gate: {", "gate: {" + off + ", "))
    return path


def score(release: Path, kind_of: dict[str, str | None], baseline_rejected: set[str]) -> dict:
    """Caught shares per defect type; `clean_rejected_share` over the untouched rows the baseline gate
    keeps (an untouched row that duplicates another is the dedup's business, not a false positive of
    consistency review); `untouched_rejected_share` over all untouched rows."""
    rejected = {r["id"]: r["check"] for r in read_ledger(release)}
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    caught_by: dict[str, Counter] = defaultdict(Counter)
    clean_by: Counter = Counter()
    for pid, kind in kind_of.items():
        key = kind or ("clean" if pid not in baseline_rejected else "untouched_duplicate")
        by_type[key][1] += 1
        if pid in rejected:
            by_type[key][0] += 1
            (clean_by if key == "clean" else caught_by[key])[rejected[pid]] += 1
    share = {k: round(c / n, 4) for k, (c, n) in by_type.items() if k in TYPES}
    defects = [by_type[t] for t in TYPES]
    untouched = [by_type[k] for k in ("clean", "untouched_duplicate")]
    return {
        "caught_by_type": share,
        "caught_overall": round(sum(c for c, _ in defects) / max(1, sum(n for _, n in defects)), 4),
        "clean_rejected_share": round(by_type["clean"][0] / max(1, by_type["clean"][1]), 4),
        "untouched_rejected_share": round(sum(c for c, _ in untouched) / max(1, sum(n for _, n in untouched)), 4),
        "planted_by_type": {k: n for k, (_, n) in by_type.items()},
        "caught_by_check": {k: dict(v) for k, v in caught_by.items()},
        "clean_rejected_by_check": dict(clean_by),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--per-type", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (the shared instruct mix; --data PATH)")
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")]
    planted, originals = plant(rows, args.per_type, args.seed)
    with tempfile.TemporaryDirectory(prefix="consistency-bench-") as tmp:
        tmp = Path(tmp)
        run, kind_of, spec = write_inputs(tmp, planted)
        print(f"{len(kind_of)} rows: {dict(Counter(k or 'clean' for k in kind_of.values()))}")
        started = time.perf_counter()
        base = run_gate([run], load_spec(baseline_spec(spec)), root=tmp / "baseline")
        base_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report = run_gate([run], load_spec(spec), root=tmp / "releases")
        seconds = time.perf_counter() - started
        base_rejected = {r["id"] for r in read_ledger(base.release)}
        baseline = {**score(base.release, kind_of, set()), "seconds": round(base_seconds, 2)}
        result = {"rows": len(kind_of), **score(report.release, kind_of, base_rejected), "seconds": round(seconds, 2),
                  "phase_seconds": report.manifest["seconds"],
                  "rows_per_s": round(len(kind_of) / seconds, 1),
                  "check_seconds": {c["name"]: c["seconds"] for c in report.manifest["checks"]},
                  "conflict_originals": originals, "baseline": baseline}
    print(f"baseline (consistency checks off, imports paid): {base_seconds:.1f} s, caught overall "
          f"{baseline['caught_overall']:.1%}, clean rejected {baseline['clean_rejected_share']:.2%}")
    print(f"consistency review on: {seconds:.1f} s ({result['rows_per_s']:,.0f} rows/s), caught overall "
          f"{result['caught_overall']:.1%}, clean rejected {result['clean_rejected_share']:.2%} (of untouched rows "
          f"the baseline keeps; of all untouched rows {result['untouched_rejected_share']:.2%})")
    for kind in TYPES:
        print(f"  {kind:<22} caught {result['caught_by_type'].get(kind, 0):6.1%}  by {result['caught_by_check'].get(kind, {})}")
    print(f"  clean rows rejected by: {result['clean_rejected_by_check']}")
    print(f"  seconds per check: {result['check_seconds']}; phases {result['phase_seconds']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "consistency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
