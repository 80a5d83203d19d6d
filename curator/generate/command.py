"""`curator generate SPEC`: synthetic pairs from a curriculum spec through an OpenAI-compatible teacher.

The default run directory, `<data>/runs/<spec name>-<spec hash[:8]>`, is the same for the same spec, so rerunning
the command resumes: slots already accepted or quarantined are skipped, failed ones are retried, and replies
already paid for come from the response cache. Without a base URL (spec or `--base-url`) the embedded
gemma-3-270m server is started for the run and stopped at its end.

Strategies (`--strategy`, else the spec's `generation.strategy`, else self_instruct):
  self_instruct  new pairs per curriculum cell, as planned from the spec's shares
  respond        a new response for the user turn of every pair of --from RUN_DIR (`--responses-for RUN_DIR`)
  evol           a deepened (harder) and a widened (same family, new topic) pair per parent;
  evol:deepen    parents are the pairs of --from RUN_DIR, or the spec's seeds without it
  evol:widen
Pairs of respond / evol carry their parent's `<run dir>/pairs.jsonl:<line>` (or seed) in provenance.origin.
The default run directory of those strategies adds the strategy and a hash of the source to the name.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.table import Table

from curator.cli_support import positive_int
from curator.embedded_models import cache_dir
from curator.errors import CuratorError
from curator.generate.parents import run_sources, seed_sources
from curator.generate.plan import DEEPEN, RESPOND, SELF_INSTRUCT, WIDEN, Slot, parent_plan, plan
from curator.generate.runner import pending_slots, run_plan, session_record, summarize
from curator.hashing import sha256_text
from curator.paths import runs_root
from curator.records import now_iso
from curator.rundir import RunDir
from curator.spec import Spec, load_spec
from curator.teacher.client import ResponseCache, TeacherClient, TeacherError
from curator.teacher.embedded import embedded_teacher

PLACEHOLDER_API_KEY = "sk-no-key"  # for servers without auth (the embedded one, most local ones)
RESUME_KEYS = ("spec_hash", "planned_pairs", "teacher_model", "teacher_mode", "strategy", "source_run")
RESUME_DEFAULTS = {"strategy": SELF_INSTRUCT}  # runs made before strategies existed
STRATEGY_SLOTS = {RESPOND: (RESPOND,), "evol": (DEEPEN, WIDEN), DEEPEN: (DEEPEN,), WIDEN: (WIDEN,)}
STRATEGIES = (SELF_INSTRUCT, *STRATEGY_SLOTS)


@dataclasses.dataclass(frozen=True)
class Planned:
    """The slots of a run and what they were planned from."""

    strategy: str
    source_run: str | None  # the run directory parents come from (None: the curriculum, or the seeds for evol)
    slots: list[Slot]
    parents_repeated: int = 0  # source pairs skipped because an earlier pair had the same id


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate synthetic pairs from a curriculum spec", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="curriculum spec (YAML)")
    p.add_argument("--out", help="run directory (default: <data>/runs/<spec name>-<spec hash[:8]>)")
    p.add_argument("--pairs", type=positive_int, help="pairs to plan (default: the spec's target_pairs)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (default: spec, else embedded)")
    p.add_argument("--model", help="teacher model name (default: the spec's teacher.model)")
    p.add_argument("--max-in-flight", type=positive_int, help="concurrent teacher requests (default: the spec's)")
    p.add_argument("--cache", help="response cache file (default: <cache dir>/teacher-responses.sqlite)")
    p.add_argument("--strategy", choices=STRATEGIES, help="how pairs are made (default: the spec's generation.strategy)")
    p.add_argument("--from", dest="source_run", metavar="RUN_DIR",
                   help="run directory whose pairs respond / evol start from (default: the spec's generation.source_run)")
    p.add_argument("--responses-for", metavar="RUN_DIR", help="same as --strategy respond --from RUN_DIR")
    p.set_defaults(func=run)


def with_overrides(spec: Spec, args: argparse.Namespace) -> Spec:
    changes = {
        "base_url": args.base_url, "model": args.model, "max_in_flight": args.max_in_flight,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(spec, teacher=dataclasses.replace(spec.teacher, **changes)) if changes else spec


def make_plan(spec: Spec, args: argparse.Namespace) -> Planned:
    """The slots for the chosen strategy: the curriculum plan, or one slot per parent and rewrite."""
    strategy = RESPOND if args.responses_for else (args.strategy or spec.generation.strategy)
    if args.responses_for and args.strategy not in (None, RESPOND):
        raise CuratorError(f"--responses-for is the respond strategy; it cannot go with --strategy {args.strategy}")
    source = args.responses_for or args.source_run or spec.generation.source_run
    if strategy == SELF_INSTRUCT:
        if source:
            raise CuratorError(f"the self_instruct strategy plans from the spec; --from {source} needs --strategy respond or evol")
        return Planned(strategy, None, plan(spec, args.pairs))
    if strategy == RESPOND and not source:
        raise CuratorError("the respond strategy needs a run directory: --responses-for RUN_DIR (or generation.source_run)")
    source_run = str(Path(source).resolve()) if source else None
    sources = run_sources(spec, Path(source_run)) if source_run else seed_sources(spec)
    if not sources.items:
        raise CuratorError(f"{source_run or spec.path}: no pairs to start from")
    slots = parent_plan(spec, sources.items, STRATEGY_SLOTS[strategy], args.pairs)
    return Planned(strategy, source_run, slots, sources.duplicates)


def run_meta(spec: Spec, planned: Planned) -> dict[str, Any]:
    t = spec.teacher
    return {
        "kind": "generate",
        "spec_name": spec.name, "spec_path": spec.path, "spec_hash": spec.hash,
        "strategy": planned.strategy, "source_run": planned.source_run, "parents_repeated": planned.parents_repeated,
        "planned_pairs": len(planned.slots),
        "teacher_model": t.model, "teacher_mode": t.mode,
        "teacher": {
            "base_url": t.base_url or "embedded", "api_key_env": t.api_key_env, "max_in_flight": t.max_in_flight,
            "max_attempts": t.max_attempts, "timeout_s": t.timeout_s, "sampling": t.sampling.as_dict(),
        },
        "created_at": now_iso(),
        "sessions": [],
    }


def open_run(run_dir: RunDir, spec: Spec, planned: Planned) -> dict[str, Any]:
    """Create the run directory, or reopen it after checking it was made by the same spec, plan and teacher."""
    fresh = run_meta(spec, planned)
    if not run_dir.exists():
        run_dir.create(fresh)
        return fresh
    meta = run_dir.read_meta()
    if meta.get("kind") != "generate":
        raise CuratorError(f"{run_dir.meta_path}: not a generate run (kind {meta.get('kind')!r}); pick another --out")
    for key in RESUME_KEYS:
        there = meta.get(key, RESUME_DEFAULTS.get(key))
        if there != fresh[key]:
            raise CuratorError(
                f"{run_dir.meta_path}: {key} is {there!r} there but {fresh[key]!r} now; "
                "resume with the same spec, --pairs, --model, --strategy and --from, or pick another --out"
            )
    run_dir.create({**meta, "teacher": fresh["teacher"]})  # repairs torn tails, keeps history
    return run_dir.read_meta()


@contextmanager
def teacher_endpoint(spec: Spec, run_dir: RunDir) -> Iterator[tuple[str, str]]:
    """(base URL, API key): the spec's endpoint with the key from its env var, or the embedded server."""
    t = spec.teacher
    if t.base_url:
        yield t.base_url, os.environ.get(t.api_key_env) or PLACEHOLDER_API_KEY
        return
    with embedded_teacher(t.model, run_dir.path / "teacher-server.log") as base_url:
        yield base_url, PLACEHOLDER_API_KEY


async def generate(spec: Spec, slots: list[Slot], client: TeacherClient, run_dir: RunDir, outcomes: Counter[str]) -> None:
    """Check the teacher answers, then run the plan; `outcomes` counts what this session wrote."""
    try:
        try:
            await client.check_reachable()
        except TeacherError as e:
            hint = f" (is ${spec.teacher.api_key_env} set?)" if "HTTP 401" in str(e) or "HTTP 403" in str(e) else ""
            raise CuratorError(f"{e}{hint}") from None
        await run_plan(spec, slots, client, run_dir, outcomes)
    finally:
        await client.close()


def default_run_dir(spec: Spec, planned: Planned) -> Path:
    """`<data>/runs/<spec name>-<spec hash[:8]>` (plus `-<strategy>-<source hash[:8]>` for respond / evol):
    the same spec and source resume the same run."""
    name = f"{spec.name}-{spec.hash[:8]}"
    if planned.strategy != SELF_INSTRUCT:
        name += f"-{planned.strategy.replace(':', '-')}-{sha256_text(planned.source_run or 'seeds')[:8]}"
    return runs_root() / name


def run(args: argparse.Namespace) -> int:
    """Plan, (re)open the run directory, run the pending slots, write the summary; 1 when every attempt failed."""
    spec = with_overrides(load_spec(args.spec), args)
    planned = make_plan(spec, args)
    slots = planned.slots
    run_dir = RunDir(Path(args.out) if args.out else default_run_dir(spec, planned))
    meta = open_run(run_dir, spec, planned)
    started, started_at = time.monotonic(), now_iso()
    outcomes: Counter[str] = Counter()
    client: TeacherClient | None = None
    try:
        if pending_slots(slots, run_dir):  # nothing pending: no teacher is started or asked
            t = spec.teacher
            with teacher_endpoint(spec, run_dir) as (base_url, api_key):
                cache = ResponseCache(args.cache or cache_dir() / "teacher-responses.sqlite")
                client = TeacherClient(base_url, api_key, max_in_flight=t.max_in_flight, max_attempts=t.max_attempts,
                                       timeout_s=t.timeout_s, cache=cache)
                try:
                    asyncio.run(generate(spec, slots, client, run_dir, outcomes))
                finally:
                    cache.close()
    finally:
        meta = write_summary(run_dir, meta, slots, session_record(started, started_at, outcomes, client))
    print_summary(meta, run_dir)
    attempted = sum(outcomes.values())
    return 1 if attempted and outcomes["failed"] == attempted else 0


def write_summary(run_dir: RunDir, meta: dict[str, Any], slots: list[Slot], session: dict[str, Any]) -> dict[str, Any]:
    """run.json: what made the run, per-session usage, totals, and counts per outcome and per cell."""
    sessions = meta.get("sessions", []) + [session]
    usage: Counter[str] = Counter()
    for s in sessions:
        usage.update(s["usage"])
    meta = {
        **meta, **summarize(slots, run_dir),
        "sessions": sessions,
        "usage": dict(usage),
        "elapsed_s": round(sum(s["elapsed_s"] for s in sessions), 3),
        "updated_at": now_iso(),
    }
    run_dir.write_meta(meta)
    return meta


def print_summary(meta: dict[str, Any], run_dir: RunDir) -> None:
    table = Table(title=f"curator generate ({meta.get('strategy', SELF_INSTRUCT)}): {meta['spec_name']} -> {run_dir.path}")
    for col in ("cell", "target", "accepted", "quarantined", "failed"):
        table.add_column(col, justify="left" if col == "cell" else "right")
    for cell, c in meta["cells"].items():
        table.add_row(cell, str(c["target"]), str(c["accepted"]), str(c["quarantined"]), str(c["failed"]))
    n = meta["counts"]
    table.add_row("total", str(n["planned"]), str(n["accepted"]), str(n["quarantined"]), str(n["failed"]), style="bold")
    console = Console()
    console.print(table)
    if meta.get("parents_repeated"):
        console.print(f"{meta['parents_repeated']} source pair(s) repeat an earlier pair's id: one slot for each id")
    last = meta["sessions"][-1]
    u = last["usage"]
    console.print(
        f"this session: {u.get('requests', 0)} requests ({u.get('retries', 0)} retries, {u.get('cache_hits', 0)} from cache), "
        f"{u.get('prompt_tokens', 0)}+{u.get('completion_tokens', 0)} tokens, {last['elapsed_s']:.1f}s"
    )
    if meta["quarantine_reasons"]:
        console.print("quarantined: " + ", ".join(f"{k} {v}" for k, v in meta["quarantine_reasons"].items()))
    if n["failed"]:
        console.print(f"[red]{n['failed']} slot(s) failed[/]; rerun the same command to retry them")
    if n["pending"]:
        console.print(f"{n['pending']} slot(s) not done yet; rerun the same command to resume")
