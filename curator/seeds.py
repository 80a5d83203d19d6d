"""`curator seeds --spec SPEC`: the spec's seed pairs as a run directory, ready for the gate.

Seeds are pairs written into the curriculum by hand. In a refusal family they are the refusal
coverage: requests the policy refuses, answered with a refusal in the policy's style (strategy
`seed:refuse`), and benign look-alikes (`lookalike: true`), answered normally (`seed:lookalike`),
which the refusal verifier, the judge and the coverage verdicts tell apart. Other families' seeds
become `seed` pairs. Writing the same spec's seeds again to the same directory is a no-op.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from curator.errors import CuratorError
from curator.paths import runs_root
from curator.records import build_messages, make_pair, now_iso
from curator.rundir import RunDir, refuse_release_dir
from curator.spec import Spec, load_spec

LOOKALIKE = "seed:lookalike"


def seed_pairs(spec: Spec) -> list[dict]:
    """One pair record per seed of the spec, in spec order."""
    pairs = []
    for family in spec.task_families:
        for k, seed in enumerate(family.seeds, 1):
            strategy = "seed" if not family.refusal else (LOOKALIKE if seed.lookalike else "seed:refuse")
            pairs.append(make_pair(
                build_messages(seed.instruction, seed.input, seed.output), task_family=family.name,
                format=seed.format or family.formats[0], difficulty=seed.difficulty or family.difficulties[0],
                length_band=family.length_band, source="human", strategy=strategy, spec_name=spec.name,
                spec_hash=spec.hash, origin=f"{spec.path}:task_families[{family.name}].seeds[{k - 1}]",
                plan_slot=f"{family.name}/seed/#{k}"))
    return pairs


def write_seeds(spec: Spec, out: Path) -> dict[str, int]:
    """Write the spec's seed pairs into run directory `out`; return the counts."""
    refuse_release_dir(out)
    run = RunDir(out)
    if run.exists():
        meta = run.read_meta()
        if meta.get("kind") != "seeds" or meta.get("spec_hash") != spec.hash:
            raise CuratorError(f"{out}: a run of something else is already there; pass another --out")
        if meta.get("status") == "complete":
            return meta["counts"]
    meta = {"kind": "seeds", "created_at": now_iso(), "spec": spec.path, "spec_hash": spec.hash, "status": "running"}
    run.create(meta)
    done = {p["provenance"].get("plan_slot") for p in run.pairs()}
    with run.appender() as writer:
        for pair in seed_pairs(spec):
            if pair["provenance"]["plan_slot"] not in done:
                writer.add_pair(pair)
    counts = {"accepted": sum(1 for _ in run.pairs())}
    meta.update(status="complete", counts=counts, finished_at=now_iso())
    run.write_meta(meta)
    return counts


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else runs_root() / f"seeds-{spec.name}-{spec.hash[:8]}"
    counts = write_seeds(spec, out)
    print(f"{out}: {counts['accepted']} seed pairs")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seeds", help="write the spec's seed pairs (refusals and look-alikes too) into a run directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", required=True)
    p.add_argument("--out", help="run directory (default: data/runs/seeds-<spec>-<hash8>)")
    p.set_defaults(func=_run)
