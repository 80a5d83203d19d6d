"""`trainer`: fine-tune a base model on a certified release (`fit`), score it against the base (`eval`)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curator import __version__
from curator.cli_support import positive_int, run_command
from curator.errors import CuratorError
from curator.paths import data_root
from curator.release.lineage import training_root
from curator.release.store import read_split, resolve_release, verify_attested
from trainer.config import RUN_FILE, TrainConfig, add_config_arguments, config_from_args, overrides_given

def _new_run_dir(out: Path | None, release: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = out or training_root() / f"{release}-{stamp}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CuratorError(f"{run_dir}: run directory exists and is not empty; pass another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _resume_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    run_dir: Path = args.resume
    if not (run_dir / "config.json").is_file():
        raise CuratorError(f"{run_dir}: not a trainer run directory (no config.json)")
    if (run_dir / RUN_FILE).exists():
        raise CuratorError(f"{run_dir}: the run finished already ({RUN_FILE} exists); nothing to resume")
    given = overrides_given(args) + (["out"] if args.out is not None else [])
    if given:
        raise CuratorError(f"--resume continues with the run's saved config; drop {sorted(given)}")
    return TrainConfig.load(run_dir / "config.json"), run_dir


def run_fit(args: argparse.Namespace) -> int:
    from trainer.backends.base import load_backend
    from trainer.distributed import init_world
    from trainer.model_card import write_card
    from trainer.models import resolve_model

    world = init_world()
    resuming = args.resume is not None
    config, run_dir = _resume_config(args) if resuming else (config_from_args(args), None)
    release = resolve_release(config.dataset)
    verified = verify_attested(release, allow_unsigned=args.allow_unsigned)
    manifest = verified.manifest
    certificate = json.loads((release / "certificate.json").read_text())
    train = read_split(release, "train")
    if not train:
        raise CuratorError(f"{release / 'train.parquet'}: the train split is empty")
    eval_records = read_split(release, "eval")
    backend = load_backend(config.backend)
    # Pin `latest` (or `v3`) to the release actually used, so `trainer eval` finds it again.
    config = replace(config, dataset=str(release) if Path(config.dataset).is_dir() else manifest["release"])

    console = Console(stderr=True, quiet=not world.is_main)
    if not resuming:
        run_dir = Path(world.broadcast(str(_new_run_dir(args.out, manifest["release"])) if world.is_main else None))
        if world.is_main:
            config.save(run_dir / "config.json")
    what = "resuming" if resuming else "training"
    console.print(f"{what} on {manifest['release']} ({len(train)} pairs, certified) into {run_dir}"
                  + (f" on {world.world_size} ranks" if world.distributed else ""))
    with console.status("loading model and data"):
        backend.prepare(config, train, eval_records, run_dir, world=world, resume=resuming)
    progress = Progress(
        TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), console=console, disable=not world.is_main,
    )
    with progress:
        task = progress.add_task("fit", total=config.steps, loss="")
        result = backend.fit(lambda row: progress.update(task, completed=row["step"], loss=f"loss {row['loss']:.4f}"))
    if len(set(result.weights_sha256_by_rank)) > 1:
        raise CuratorError(f"ranks ended with different weights ({result.weights_sha256_by_rank}); nothing saved")
    artefacts = backend.save()
    if not world.is_main:
        return 0

    spec = manifest.get("spec", {})
    run = {
        "run": run_dir.name,
        "release": manifest["release"],
        "release_path": str(release.resolve()),
        "manifest_sha256": certificate["manifest_sha256"],
        "signature": {"signer": verified.signer, "allow_unsigned": verified.signer is None},
        "spec": {"name": spec.get("name"), "sha256": spec.get("sha256")},
        "base_model": config.model,
        "base_model_dir": str(resolve_model(config.model)),
        "config": config.as_dict(),
        "fit": asdict(result),
        "artefacts": artefacts,
        "tool_version": __version__,
    }
    (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
    write_card(run_dir, run)
    if result.steps:
        console.print(
            f"done: {result.steps} steps, loss {result.first_loss:.4f} → {result.final_loss:.4f}, "
            f"{result.trained_tokens} trained tokens in {result.seconds} s"
        )
    else:
        console.print(f"done: exported {', '.join(artefacts)} for an external trainer")
    print(run_dir)
    return 0


def evals_root() -> Path:
    """`<data root>/evals/`: one directory per `trainer eval --endpoint` run."""
    return data_root() / "evals"


SERVED_ONLY = ("endpoint_model", "baseline_endpoint", "baseline_model", "out")


JUDGE_MAX_TOKENS = 8  # the judge replies with one number


def _judge(args: argparse.Namespace):
    """The optional LLM judge (a `trainer.served.ServedModel`, checked reachable), or None."""
    if args.judge_endpoint is None:
        if args.judge_model is not None:
            raise CuratorError("--judge-model needs --judge-endpoint URL")
        return None
    if args.judge_model is None:
        raise CuratorError("--judge-endpoint needs --judge-model NAME")
    from trainer.served import Endpoint, ServedModel

    judge = ServedModel(Endpoint(args.judge_endpoint, args.judge_model), prompt_format=args.judge_prompt_format,
                        max_new_tokens=JUDGE_MAX_TOKENS, seed=args.seed, max_in_flight=args.max_in_flight,
                        api_key_env=args.api_key_env)
    judge.check_reachable()
    return judge


def run_eval(args: argparse.Namespace) -> int:
    from trainer.evaluate import battery_table, judge_table, report_table

    judge = _judge(args)
    if args.endpoint is not None:
        report, eval_file = _eval_served(args, judge)
    else:
        report, eval_file = _eval_run(args, judge)
    out = Console()
    if not out.is_terminal:  # a log or a pipe: wide enough that the tables never wrap their headers
        out = Console(width=160)
    out.print(report_table(report))
    out.print(battery_table(report))
    if report["judge"] is not None:
        out.print(judge_table(report))
    if report["battery"]["comparison"] is None:
        Console(stderr=True).print("one side only (no --baseline-endpoint/--baseline-model): no base → tuned comparison")
    print(eval_file)
    return 0


def _eval_run(args: argparse.Namespace, judge) -> tuple[dict, Path]:
    from trainer.evaluate import EVAL_FILE, evaluate_run
    from trainer.model_card import append_eval

    given = [f"--{name.replace('_', '-')}" for name in SERVED_ONLY if getattr(args, name) is not None]
    if given:
        raise CuratorError(f"{', '.join(given)}: only with --endpoint (a served model), not with --model")
    run_dir = Path(args.model)
    if not (run_dir / "config.json").is_file():
        raise CuratorError(f"{run_dir}: not a trainer run directory (no config.json)")
    report = evaluate_run(
        run_dir,
        dataset=args.dataset,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        console=Console(stderr=True),
        suites=args.suites,
        suite_limit=args.suite_limit,
        judge=judge,
    )
    append_eval(run_dir, report)
    return report, run_dir / EVAL_FILE


def _eval_served(args: argparse.Namespace, judge) -> tuple[dict, Path]:
    from trainer.evaluate import EVAL_FILE, evaluate
    from trainer.served import Endpoint, ServedModel, served_sides

    if args.endpoint_model is None or args.dataset is None:
        raise CuratorError("--endpoint needs --endpoint-model NAME and --dataset RELEASE")
    tuned = Endpoint(args.endpoint, args.endpoint_model)
    base = None
    if args.baseline_endpoint is not None or args.baseline_model is not None:
        base = Endpoint(args.baseline_endpoint or args.endpoint, args.baseline_model or args.endpoint_model)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or evals_root() / f"{args.endpoint_model.replace('/', '_')}-{stamp}"
    if out.exists() and any(out.iterdir()):
        raise CuratorError(f"{out}: output directory exists and is not empty; pass another --out")

    def served(endpoint: Endpoint) -> ServedModel:
        model = ServedModel(endpoint, prompt_format=args.prompt_format, max_new_tokens=args.max_new_tokens,
                            seed=args.seed, max_in_flight=args.max_in_flight, api_key_env=args.api_key_env)
        model.check_reachable()
        return model

    tuned_model, base_model = served(tuned), (served(base) if base else None)
    generation = {"source": "served", "prompt_format": args.prompt_format, "temperature": 0, "seed": args.seed,
                  "tuned": tuned.describe(), "base": base.describe() if base else None}
    report = evaluate(
        args.dataset,
        served_sides(tuned_model, base_model),
        out_dir=out,
        about={"run": out.name, "base_model": base.model if base else None, "tuned_model": tuned.model,
               "generation": generation},
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        console=Console(stderr=True),
        suites=args.suites,
        suite_limit=args.suite_limit,
        judge=judge,
    )
    return report, out / EVAL_FILE


def run_backends(args: argparse.Namespace) -> int:
    from trainer.backends.base import available_backends

    for name, ep in sorted(available_backends().items()):
        print(f"{name}\t{ep.value}")
    return 0


def _suites(text: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n and n != "none")
    unknown = set(names) - {"instructions", "refusals"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown suite(s) {sorted(unknown)}; choose instructions, refusals or none")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"instruct-curator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = sub.add_parser(
        "fit", help="fine-tune a base model (LoRA or full) on a certified release's train split",
        epilog="Data parallel: torchrun --nproc_per_node N -m trainer.cli fit ... (gloo on CPU, NCCL on CUDA).",
    )
    add_config_arguments(fit)
    fit.add_argument("--out", type=Path, help="run directory (default: <data root>/training/<release>-<UTC time>)")
    fit.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a killed run from its newest checkpoint (with its saved config)")
    fit.add_argument("--allow-unsigned", action="store_true",
                     help="train on a release that is unsigned or signed by an untrusted key (the model card says so)")
    fit.set_defaults(func=run_fit)

    ev = sub.add_parser(
        "eval", help="score base vs tuned on a release's eval split and the battery, per task family",
        description="Score a `trainer fit` run in process (--model), or served models through an "
                    "OpenAI-compatible endpoint (--endpoint). Served: with --baseline-endpoint and/or "
                    "--baseline-model the baseline is the base side and the endpoint model the tuned side; "
                    "without, the endpoint model alone is scored (no comparison, no battery.html).",
    )
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a run directory written by `trainer fit` (generation in process)")
    source.add_argument("--endpoint", metavar="URL", help="an OpenAI-compatible base URL, e.g. http://host:8000/v1")
    ev.add_argument("--endpoint-model", metavar="NAME", help="the model name to ask at --endpoint (the tuned side)")
    ev.add_argument("--baseline-endpoint", metavar="URL", help="the baseline's endpoint (default: --endpoint)")
    ev.add_argument("--baseline-model", metavar="NAME", help="the baseline's model name (default: --endpoint-model)")
    ev.add_argument("--prompt-format", choices=("chat", "template"), default="chat",
                    help="served: chat = /v1/chat/completions with the server's chat template; template = "
                         "the trainer's Gemma template rendered here and sent to /v1/completions (default chat)")
    ev.add_argument("--seed", type=int, default=0, help="served: the seed sent with each request (default 0)")
    ev.add_argument("--max-in-flight", type=positive_int, default=4, help="served: concurrent requests (default 4)")
    ev.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                    help="served: environment variable holding the API key (default OPENAI_API_KEY; "
                         "a placeholder when unset); the key is never written")
    ev.add_argument("--out", type=Path,
                    help="served: output directory (default: <data root>/evals/<endpoint model>-<UTC time>)")
    ev.add_argument("--dataset", help="release to evaluate on (default with --model: the release the run trained on)")
    ev.add_argument("--limit", type=positive_int, help="at most N eval pairs, taken round-robin across families")
    ev.add_argument("--suite-limit", type=positive_int, metavar="N",
                    help="at most N prompts of each battery suite, taken round-robin across its families (instructions) "
                         "or categories and sides (refusals): a quicker, coarser look (default: every prompt)")
    ev.add_argument("--max-new-tokens", type=positive_int, default=128)
    ev.add_argument("--batch-size", type=positive_int, default=8, help="--model: generation batch size")
    ev.add_argument("--judge-endpoint", metavar="URL",
                    help="optional LLM-as-judge: rate each eval-split answer 1-10 with the model at URL "
                         "(reported apart from the verifiable scores)")
    ev.add_argument("--judge-model", metavar="NAME", help="the judge's model name (needed with --judge-endpoint)")
    ev.add_argument("--judge-prompt-format", choices=("chat", "template"), default="chat",
                    help="judge: chat completions, or our Gemma template on /v1/completions for a base model")
    ev.add_argument("--suites", type=_suites, default=("instructions", "refusals"),
                    help="shipped battery suites to run besides the eval split: instructions,refusals (default) or none")
    ev.set_defaults(func=run_eval)

    backends = sub.add_parser("backends", help="list the installed training backends")
    backends.set_defaults(func=run_backends)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command("trainer", args)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, end this rank's process group (a no-op otherwise)."""
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
