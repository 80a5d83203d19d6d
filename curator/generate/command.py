"""`curator generate SPEC`: synthetic pairs from a curriculum spec through an OpenAI-compatible teacher.

The default run directory, `<data>/runs/<spec name>-<spec hash[:8]>`, is the same for the same spec, so rerunning
the command resumes: slots already accepted or quarantined are skipped, failed ones are retried, and replies
already paid for come from the response cache. Without a base URL (spec or `--base-url`) the embedded
gemma-3-270m server is started for the run and stopped at its end.

Strategies (`--strategy`, else the spec's `generation.strategy`, else self_instruct):
  self_instruct  new pairs per curriculum cell, as planned from the spec's shares
  respond        a new response for the last user turn of every pair of --from RUN_DIR (`--responses-for RUN_DIR`),
                 with the turns before it as context; the pair keeps them
  evol           a deepened (harder) and a widened (same family, new topic) pair per parent;
  evol:deepen    parents are the pairs of --from RUN_DIR, or the spec's seeds without it
  evol:widen
A weighted mix (`--strategy-mix self_instruct=0.7,evol:deepen=0.3`, else the spec's `generation.strategies`)
gives each strategy its share of the pairs (--pairs, else target_pairs); the summary shows target and outcome
per strategy.
Pairs of respond / evol carry their parent's `<run dir>/pairs.jsonl:<line>` (or seed) in provenance.origin.
The default run directory of those strategies (and of a mix) adds the strategy and a hash of the source to the name.

--batch (or the spec's `teacher.batch`) sends the requests through the OpenAI Batch API (curator/generate/batch.py):
cheaper and asynchronous; rerunning the same command after a crash resumes polling the same batch.
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

import openai
from rich.console import Console
from rich.table import Table

from curator.cli_support import positive_float, positive_int
from curator.embedded_models import cache_dir
from curator.errors import CuratorError
from curator.generate.batch import Batcher, prefetch
from curator.generate.parents import run_sources, seed_sources
from curator.generate.plan import (
    PARENT_SLOTS, RESPOND, SELF_INSTRUCT, Slot, largest_remainder, mix_member, mixed_plan, parent_plan, plan,
)
from curator.generate.runner import SlotStates, pending_slots, run_plan, session_record, summarize
from curator.generate.workers import worker_count
from curator.hashing import sha256_json, sha256_text
from curator.paths import runs_root
from curator.records import now_iso
from curator.redact import has_credentials, redact
from curator.rundir import RunDir, refuse_release_dir
from curator.spec import STRATEGIES, Spec, load_spec, mix_problems
from curator.teacher.client import ResponseCache, TeacherClient, TeacherError
from curator.teacher.embedded import embedded_teacher

PLACEHOLDER_API_KEY = "sk-no-key"  # for servers without auth (the embedded one, most local ones)
RESUME_KEYS = ("spec_hash", "planned_pairs", "teacher_model", "teacher_mode", "strategy", "strategy_mix", "source_run")
RESUME_DEFAULTS = {"strategy": SELF_INSTRUCT}  # runs made before strategies existed
MIX = "mix"  # the strategy of a run planned from a weighted mix


@dataclasses.dataclass(frozen=True)
class Planned:
    """The slots of a run and what they were planned from."""

    strategy: str  # one of STRATEGIES, or MIX
    source_run: str | None  # the run directory parents come from (None: the curriculum, or the seeds for evol)
    slots: list[Slot]
    parents_repeated: int = 0  # source pairs skipped because an earlier pair had the same id
    mix: dict[str, float] = dataclasses.field(default_factory=dict)  # strategy -> share, for MIX
    targets: dict[str, int] = dataclasses.field(default_factory=dict)  # strategy -> pairs it should make, for MIX


def workers_setting(text: str) -> int | str:
    """An argparse type: `auto` or an integer >= 1."""
    return text if text == "auto" else positive_int(text)


def strategy_mix(text: str) -> dict[str, float]:
    """An argparse type: `self_instruct=0.7,evol:deepen=0.3` -> {strategy: share}, checked like the spec's."""
    mix: dict[str, float] = {}
    for item in text.split(","):
        name, sep, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = None
        if not sep or value is None or name.strip() in mix:
            raise argparse.ArgumentTypeError(f"{item!r}: expected distinct STRATEGY=SHARE items, e.g. self_instruct=0.7,evol:deepen=0.3")
        mix[name.strip()] = value
    if problems := mix_problems(mix):
        name, msg = problems[0]
        raise argparse.ArgumentTypeError(f"{name}: {msg}" if name else msg)
    return mix


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate synthetic pairs from a curriculum spec", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="curriculum spec (YAML)")
    p.add_argument("--out", help="run directory (default: <data>/runs/<spec name>-<spec hash[:8]>)")
    p.add_argument("--pairs", type=positive_int, help="pairs to plan (default: the spec's target_pairs)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (default: spec, else embedded)")
    p.add_argument("--model", help="teacher model name (default: the spec's teacher.model)")
    p.add_argument("--max-in-flight", type=positive_int, help="concurrent teacher requests (default: the spec's)")
    p.add_argument("--workers", type=workers_setting, metavar="N|auto",
                   help="processes sending requests, for teachers that answer faster than one can keep up with (default: the spec's; auto)")
    p.add_argument("--requests-per-minute", type=positive_float, metavar="RPM",
                   help="most teacher requests a minute, retries included (default: the spec's; none)")
    p.add_argument("--tokens-per-minute", type=positive_float, metavar="TPM",
                   help="most teacher tokens a minute, prompt plus max_tokens until the reply gives the usage (default: the spec's; none)")
    p.add_argument("--cache", help="response cache file (default: <cache dir>/teacher-responses.sqlite)")
    p.add_argument("--strategy", choices=STRATEGIES, help="how pairs are made (default: the spec's generation.strategy)")
    p.add_argument("--from", dest="source_run", metavar="RUN_DIR",
                   help="run directory whose pairs respond / evol start from (default: the spec's generation.source_run)")
    p.add_argument("--responses-for", metavar="RUN_DIR", help="same as --strategy respond --from RUN_DIR")
    p.add_argument("--strategy-mix", type=strategy_mix, metavar="S=SHARE,...",
                   help="a weighted mix of strategies, e.g. self_instruct=0.7,evol:deepen=0.3 (default: the spec's generation.strategies)")
    p.add_argument("--batch", action="store_true", default=None,
                   help="send the requests through the OpenAI Batch API, resumably (default: the spec's teacher.batch)")
    p.set_defaults(func=run)


def with_overrides(spec: Spec, args: argparse.Namespace) -> Spec:
    changes = {
        "base_url": args.base_url, "model": args.model, "max_in_flight": args.max_in_flight, "batch": args.batch,
        "requests_per_minute": args.requests_per_minute, "tokens_per_minute": args.tokens_per_minute, "workers": args.workers,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.base_url is not None and has_credentials(args.base_url):
        raise CuratorError(f"--base-url {redact(args.base_url)} holds credentials (user:password@); put the key in "
                           f"${spec.teacher.api_key_env} instead (nothing is written with it)")
    return dataclasses.replace(spec, teacher=dataclasses.replace(spec.teacher, **changes)) if changes else spec


def chosen_strategy(spec: Spec, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """(strategy, mix): the command line's choice, else the spec's; the mix is empty unless the strategy is MIX."""
    if args.responses_for and (args.strategy not in (None, RESPOND) or args.strategy_mix):
        raise CuratorError("--responses-for is the respond strategy; it cannot go with --strategy or --strategy-mix")
    if args.strategy and args.strategy_mix:
        raise CuratorError("give either --strategy or --strategy-mix, not both")
    if args.responses_for:
        return RESPOND, {}
    if args.strategy_mix:
        return MIX, args.strategy_mix
    if args.strategy:
        return args.strategy, {}
    if spec.generation.strategies:
        return MIX, dict(spec.generation.strategies)
    return spec.generation.strategy, {}


def make_plan(spec: Spec, args: argparse.Namespace) -> Planned:
    """The slots for the chosen strategy: the curriculum plan, one slot per parent and rewrite, or a mix of them."""
    strategy, mix = chosen_strategy(spec, args)
    source = args.responses_for or args.source_run or spec.generation.source_run
    parent_strategies = [s for s in (mix or [strategy]) if s != SELF_INSTRUCT]
    if not parent_strategies and source:
        raise CuratorError(f"the self_instruct strategy plans from the spec; --from {source} needs --strategy respond or evol")
    if RESPOND in parent_strategies and not source:
        raise CuratorError("the respond strategy needs a run directory: --responses-for RUN_DIR (or generation.source_run)")
    source_run = str(Path(source).resolve()) if source else None
    sources, repeated = [], 0
    if parent_strategies:
        found = run_sources(spec, Path(source_run)) if source_run else seed_sources(spec)
        if not found.items:
            raise CuratorError(f"{source_run or spec.path}: no pairs to start from")
        sources, repeated = found.items, found.duplicates
    if mix:
        targets = largest_remainder(list(mix.items()), args.pairs or spec.target_pairs)
        return Planned(MIX, source_run, mixed_plan(spec, targets, sources), repeated, mix, targets)
    if strategy == SELF_INSTRUCT:
        return Planned(strategy, None, plan(spec, args.pairs))
    return Planned(strategy, source_run, parent_plan(spec, sources, PARENT_SLOTS[strategy], args.pairs), repeated)


def run_meta(spec: Spec, planned: Planned) -> dict[str, Any]:
    t = spec.teacher
    return {
        "kind": "generate",
        "spec_name": spec.name, "spec_path": spec.path, "spec_hash": spec.hash,
        "strategy": planned.strategy, "strategy_mix": planned.mix or None,
        "source_run": planned.source_run, "parents_repeated": planned.parents_repeated,
        "planned_pairs": len(planned.slots),
        "teacher_model": t.model, "teacher_mode": t.mode,
        "teacher": {
            "base_url": t.base_url or "embedded", "api_key_env": t.api_key_env, "max_in_flight": t.max_in_flight,
            "requests_per_minute": t.requests_per_minute, "tokens_per_minute": t.tokens_per_minute, "workers": t.workers,
            "max_attempts": t.max_attempts, "timeout_s": t.timeout_s, "sampling": t.sampling.as_dict(), "batch": t.batch,
        },
        "created_at": now_iso(),
        "status": "running",
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
                "resume with the same spec, --pairs, --model, --strategy (or --strategy-mix) and --from, or pick another --out"
            )
    run_dir.create({**meta, "teacher": fresh["teacher"], "status": "running"})  # repairs torn tails, keeps history
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


async def generate(spec: Spec, slots: list[Slot], client: TeacherClient, run_dir: RunDir, outcomes: Counter[str],
                   workers: int, batcher: Batcher | None = None) -> int:
    """Check the teacher answers, fetch the replies by batch when `batcher` is given, then run the plan in up to
    `workers` processes; `outcomes` counts what this session wrote. Returns the number of processes that ran it."""
    try:
        try:
            await client.check_reachable()
        except TeacherError as e:
            hint = f" (is ${spec.teacher.api_key_env} set?)" if "HTTP 401" in str(e) or "HTTP 403" in str(e) else ""
            raise CuratorError(f"{e}{hint}") from None
        if batcher is not None:  # the runner pass then answers from the cache only
            slots = await prefetch(spec, pending_slots(slots, run_dir), batcher, run_dir, outcomes)
        return await run_plan(spec, slots, client, run_dir, outcomes, workers=workers)
    finally:
        await client.close()
        if batcher is not None:
            await batcher.api.close()


def default_run_dir(spec: Spec, planned: Planned) -> Path:
    """`<data>/runs/<spec name>-<spec hash[:8]>` (plus `-<strategy>-<source hash[:8]>` for respond / evol, and
    `-mix-<hash[:8] of the mix and source>` for a mix): the same spec, strategy and source resume the same run."""
    name = f"{spec.name}-{spec.hash[:8]}"
    if planned.strategy == MIX:
        name += f"-{MIX}-{sha256_json([sorted(planned.mix.items()), planned.source_run or 'seeds'])[:8]}"
    elif planned.strategy != SELF_INSTRUCT:
        name += f"-{planned.strategy.replace(':', '-')}-{sha256_text(planned.source_run or 'seeds')[:8]}"
    return runs_root() / name


def run(args: argparse.Namespace) -> int:
    """Plan, (re)open the run directory, run the pending slots, write the summary; 1 when every attempt failed."""
    spec = with_overrides(load_spec(args.spec), args)
    planned = make_plan(spec, args)
    slots = planned.slots
    run_dir = RunDir(Path(args.out) if args.out else default_run_dir(spec, planned))
    refuse_release_dir(run_dir.path)
    meta = open_run(run_dir, spec, planned)
    started, started_at = time.monotonic(), now_iso()
    outcomes: Counter[str] = Counter()
    client: TeacherClient | None = None
    batcher: Batcher | None = None
    workers = 0
    try:
        if pending_slots(slots, run_dir):  # nothing pending: no teacher is started or asked
            t = spec.teacher
            with teacher_endpoint(spec, run_dir) as (base_url, api_key):
                cache = ResponseCache(args.cache or cache_dir() / "teacher-responses.sqlite")
                client = TeacherClient(base_url, api_key, max_in_flight=t.max_in_flight, max_attempts=t.max_attempts,
                                       timeout_s=t.timeout_s, requests_per_minute=t.requests_per_minute,
                                       tokens_per_minute=t.tokens_per_minute, cache=cache)
                if t.batch:
                    api = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=t.max_attempts - 1, timeout=t.timeout_s)
                    batcher = Batcher(api, base_url, cache, run_dir, t.mode, t.batch_poll_s, Console(stderr=True))
                workers = worker_count(t.workers, t.max_in_flight)  # what an interrupted session records
                try:
                    workers = asyncio.run(generate(spec, slots, client, run_dir, outcomes, workers, batcher))
                finally:
                    cache.close()
    finally:
        session = session_record(started, started_at, outcomes, client, workers)
        if batcher is not None:  # what the batches cost, in the live path's terms
            usage = Counter(session["usage"])
            usage.update(batcher.session.usage)
            session = {**session, "usage": dict(usage), "batches": batcher.session.batches}
        meta = write_summary(run_dir, meta, planned, session)
    print_summary(meta, run_dir)
    attempted = sum(outcomes.values())
    return 1 if attempted and outcomes["failed"] == attempted else 0


def strategy_summary(planned: Planned, states: SlotStates) -> list[dict[str, Any]]:
    """Per strategy of a mix, in the mix's order: its share, target and planned pairs, and each slot's latest
    outcome on disk (a list, so that run.json keeps the order its keys would lose)."""
    rows = {name: {"strategy": name, "share": share, "target": planned.targets[name], "planned": 0, "accepted": 0,
                   "quarantined": 0, "failed": 0}
            for name, share in planned.mix.items()}
    for slot in planned.slots:
        row = rows[mix_member(slot, planned.mix)]
        row["planned"] += 1
        for outcome, ids in (("accepted", states.accepted), ("quarantined", states.quarantined), ("failed", states.failed)):
            row[outcome] += slot.id in ids
    return list(rows.values())


def write_summary(run_dir: RunDir, meta: dict[str, Any], planned: Planned, session: dict[str, Any]) -> dict[str, Any]:
    """run.json: what made the run, per-session usage, totals, and counts per outcome, per cell and (for a mix)
    per strategy."""
    sessions = meta.get("sessions", []) + [session]
    usage: Counter[str] = Counter()
    for s in sessions:
        usage.update(s["usage"])
    states = SlotStates.read(run_dir)
    meta = {
        **meta, **summarize(planned.slots, states),
        **({"strategies": strategy_summary(planned, states)} if planned.mix else {}),
        "sessions": sessions,
        "usage": dict(usage),
        "elapsed_s": round(sum(s["elapsed_s"] for s in sessions), 3),
        "updated_at": now_iso(),
    }
    meta["status"] = "complete" if meta["counts"]["pending"] == 0 else "incomplete"
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
    if meta.get("strategies"):
        mix = Table(title="per strategy")
        for col in ("strategy", "share", "target", "planned", "accepted", "quarantined", "failed"):
            mix.add_column(col, justify="left" if col == "strategy" else "right")
        for row in meta["strategies"]:
            mix.add_row(row["strategy"], f"{row['share']:g}", *(str(row[k]) for k in ("target", "planned", "accepted", "quarantined", "failed")))
        console.print(mix)
    if meta.get("parents_repeated"):
        console.print(f"{meta['parents_repeated']} source pair(s) repeat an earlier pair's id: one slot for each id")
    last = meta["sessions"][-1]
    u = last["usage"]
    console.print(
        f"this session: {u.get('requests', 0)} requests ({u.get('retries', 0)} retries, {u.get('cache_hits', 0)} from cache), "
        f"{u.get('prompt_tokens', 0)}+{u.get('completion_tokens', 0)} tokens, {last['elapsed_s']:.1f}s"
        + (f", {last['workers']} worker processes" if last.get("workers", 0) > 1 else "")
        + (f", requests waited {u['rate_limited_s']:.1f}s in all for the rate limits" if u.get("rate_limited_s") else "")
    )
    for b in last.get("batches", []):
        console.print(f"batch {b['id']}: {b['status']}, {b['answered']} of {b['requests']} request(s) answered")
    if meta["quarantine_reasons"]:
        console.print("quarantined: " + ", ".join(f"{k} {v}" for k, v in meta["quarantine_reasons"].items()))
    if n["failed"]:
        console.print(f"[red]{n['failed']} slot(s) failed[/]; rerun the same command to retry them")
    if n["pending"]:
        console.print(f"{n['pending']} slot(s) not done yet; rerun the same command to resume")
