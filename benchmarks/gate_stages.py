"""Where the stream gate's first pass spends its CPU: microseconds per row of each stage, in this process.

The rows are the shared instruct mix as `curator import --format alpaca` makes them (as `gate_throughput.py`
builds them), each as the JSON text a run directory holds, in batches of the stream gate's size; the checks are
`gate_scale.py`'s dedup spec (schema, exact and MinHash dedup). One warm-up batch, then each stage on every batch,
CPU seconds (`time.process_time`) per row:

- `orjson`: `orjson.loads` of each line: the baseline, the floor any parse pays;
- `parse`: `curator.jsonl.loads` (orjson with the standard library's results);
- `schema`: the schema check (`SchemaCheck.run`);
- `normalize`: each message normalised once (`NormalizedMessages.of`);
- `exact_keys`, `near_keys`: the exact-dedup hashes and the MinHash LSH band keys from those texts;
- `spill`: the rows written to a Parquet spill;
- `first_pass`: `FirstPass.lines`, all of the above as the gate runs it in a worker process (its batch read from a
  run's pairs file as a byte range, Row objects, ledger columns, timings included).

Every stage runs twice: first with CPython's default garbage collector settings (the baseline), then with the
settings the gate's processes run with (`curator.gc_tuning.tune_for_batches`); the figures are the second run's,
the baseline's beside them (`default_gc_us_per_row`).

Also printed: the first pass's ceiling in rows/s on this machine's CPUs (one worker process each, nothing else)
and issue 15's budget: 20,000 rows/s on 2 CPUs leaves 100 µs of CPU a row for the whole gate. The last line is
one JSON object, also written to benchmarks/results/gate_stages.json.

    python benchmarks/gate_stages.py [--data PATH] [--rows 49152]
"""
from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import orjson

from curator.gate.check import Row
from curator.gate.line_spans import line_batches
from curator.gate.normalize import NormalizedMessages
from curator.gate.pipeline import build_checks
from curator.gate.stream import BATCH_ROWS, NARROWINGS, ExactKeys, FirstPass, NearKeys, Spill, is_row_local
from curator.gc_tuning import tune_for_batches
from curator.jsonl import loads
from curator.ordered_workers import cpu_count
from curator.rundir import PAIRS, RunDir
from curator.spec import load_spec
from gate_scale import OFF, SPEC
from gate_throughput import DEFAULT_DATA, import_rows

RESULTS = Path(__file__).parent / "results"
GOAL_ROWS_PER_S, GOAL_CPUS = 20_000, 2


def per_row(stage: Callable[[int, list[str]], object], batches: list[list[str]]) -> float:
    """CPU microseconds a row of `stage(k, lines)` over every batch, after one warm-up batch."""
    stage(0, batches[0])
    started = time.process_time()
    for k, lines in enumerate(batches):
        stage(k, lines)
    return (time.process_time() - started) / sum(map(len, batches)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=6 * BATCH_ROWS)
    args = ap.parse_args()
    records, _, _ = import_rows(args.data)
    records = (records * (-(-args.rows // len(records))))[:args.rows]
    texts = [json.dumps({**r, "task_family": "general"}, ensure_ascii=False) for r in records]  # the spec's family
    batches = [texts[k:k + BATCH_ROWS] for k in range(0, len(texts), BATCH_ROWS)]
    with tempfile.TemporaryDirectory(prefix="gate-stages-") as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(SPEC % "\n".join(f"  {name}: {{enabled: false}}" for name in OFF))
        checks = build_checks(load_spec(spec_path), Path(tmp) / "releases")
        lead = next(i for i, c in enumerate(checks) if not is_row_local(c))
        head, rest = checks[:lead], checks[lead:]
        narrowings = {i: NARROWINGS[type(c)](c) for i, c in enumerate(rest) if type(c) in NARROWINGS}
        exact, near = (next(n for n in narrowings.values() if isinstance(n, kind)) for kind in (ExactKeys, NearKeys))

        def rows(lines: list[str]) -> list[Row]:
            return [Row(record=loads(t), input="bench", line=i, order=i) for i, t in enumerate(lines)]

        run = Path(tmp) / "bench"
        run.mkdir()
        (run / PAIRS).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        spans = list(line_batches([RunDir(run)], BATCH_ROWS))
        parsed = [rows(lines) for lines in batches]
        normalized = [NormalizedMessages.of([r.record for r in batch]) for batch in parsed]
        spill = Spill(Path(tmp) / "spill.parquet")
        first = FirstPass(head, narrowings, Path(tmp))
        stages = {
            "orjson": lambda k, lines: [orjson.loads(t) for t in lines],
            "parse": lambda k, lines: [loads(t) for t in lines],
            "schema": lambda k, lines: [check.run(parsed[k]) for check in head],
            "normalize": lambda k, lines: NormalizedMessages.of([r.record for r in parsed[k]]),
            "exact_keys": lambda k, lines: exact.keys(parsed[k], normalized[k]),
            "near_keys": lambda k, lines: near.keys(parsed[k], normalized[k]),
            "spill": lambda k, lines: spill.write(parsed[k], lines),
            "first_pass": lambda k, lines: first.lines(k, k * BATCH_ROWS, spans[k]),
        }
        default_gc = {name: round(per_row(stage, batches), 1) for name, stage in stages.items()}
        tune_for_batches()
        us = {name: round(per_row(stage, batches), 1) for name, stage in stages.items()}
        gc.unfreeze()
        spill.close()
        kept = 0
        for batch in parsed:  # the rows every leading check keeps, each check given what the one before kept
            for check in head:
                batch = check.run(batch).kept
            kept += len(batch)
    cpus = cpu_count()
    result = {
        "rows": len(texts), "head_kept": kept, "batch_rows": BATCH_ROWS, "us_per_row": us,
        "default_gc_us_per_row": default_gc,
        "parts_us_per_row": round(sum(v for k, v in us.items() if k not in ("orjson", "first_pass")), 1),
        "cpus": cpus, "first_pass_ceiling_rows_per_s": round(cpus * 1e6 / us["first_pass"]),
        "goal_us_per_row_whole_gate": GOAL_CPUS * 1e6 / GOAL_ROWS_PER_S,
    }
    for name, value in us.items():
        print(f"{name:>11} {value:7.1f} µs/row (default collector: {default_gc[name]:.1f})")
    print(f"parts sum {result['parts_us_per_row']} µs/row; first pass ceiling on {cpus} CPUs: "
          f"{result['first_pass_ceiling_rows_per_s']:,} rows/s; issue 15's goal leaves "
          f"{result['goal_us_per_row_whole_gate']:.0f} µs/row for the whole gate")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gate_stages.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
