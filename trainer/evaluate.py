"""`trainer eval`: greedy answers of a base and a tuned model on a release's eval split and the battery, scored per family.

The answers come from a `Sides` source: in process (`in_process_sides`: a `trainer fit` run's base model and
base + adapter) or from served endpoints (`trainer.served`); `evaluate` scores and reports either the same way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from peft import PeftModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from curator.errors import CuratorError
from curator.jsonl import write_jsonl
from curator.text_signals import EvalIndex
from curator.records import user_text
from curator.release.store import read_split, resolve_release, verify_release
from curator.spec import Spec, SpecError, spec_from_dict
from trainer.battery import EVAL_SUITE, SUITES, compare, compare_items, run_battery, summarise
from trainer.battery.judge import judge_samples
from trainer.battery.preference import preference_rows
from trainer.battery.report_html import write_html
from trainer.battery.suite import load_instruction_suite, load_refusal_suite, round_robin
from trainer.chat_template import generation_prompt_ids, stop_token_ids
from trainer.config import RUN_FILE, TrainConfig
from trainer.models import load_model, load_tokenizer, pick_device, resolve_model
from trainer.scoring import METRICS, prompt_messages

if TYPE_CHECKING:
    from trainer.served import ServedModel

EVAL_FILE = "eval.json"
PREFERENCE_FILE = "preference.jsonl"  # TRL DPO rows: where tuning fell short, for the alignment stage
BATTERY_HTML = "battery.html"
LEAK_NGRAM = 13


def find_leaks(train: list[dict], eval_records: list[dict], suites: tuple[str, ...]) -> list[dict]:
    """Eval-split and battery prompts that share a word 13-gram (or are whole) with a train pair's user text."""
    index = EvalIndex(((r["id"], user_text(r)) for r in train), LEAK_NGRAM)
    prompts = [(f"eval:{r['id']}", user_text(r)) for r in eval_records]
    if "instructions" in suites:
        prompts += [(f"instructions:{i.id}", i.prompt) for i in load_instruction_suite()]
    if "refusals" in suites:
        prompts += [(f"refusals:{i.id}", i.prompt) for i in load_refusal_suite()]
    leaks = []
    for label, text in prompts:
        hits = index.hits(text, whole=True)
        if hits:
            leaks.append({"item": label, "train": index.item(hits[0]), "ngram": hits[0]})
    return leaks


def spec_from_manifest(manifest: dict, release: Path) -> Spec:
    """The curriculum a release was gated against, rebuilt from `manifest["spec"]["raw"]`."""
    raw = manifest.get("spec", {}).get("raw")
    if not isinstance(raw, dict):
        raise SpecError(f"{release / 'manifest.json'}: spec.raw is missing; cannot score formats without the spec")
    return spec_from_dict(raw, Path(manifest["spec"].get("path", release / "manifest.json")))


def interleave_families(records: list[dict], limit: int | None) -> list[dict]:
    """Records taken round-robin across task families (in order of first appearance), cut to `limit`."""
    return round_robin(records, lambda r: r["task_family"], limit)


@torch.inference_mode()
def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    progress: Progress,
    label: str,
) -> list[str]:
    """Greedy continuations of token-id prompts, left-padded in batches; special tokens dropped."""
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    device = next(model.parameters()).device
    answers: list[str] = []
    task = progress.add_task(label, total=len(prompts))
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        padded = tokenizer.pad({"input_ids": chunk}, padding_side="left", return_tensors="pt").to(device)
        out = model.generate(**padded, generation_config=config)
        new_tokens = out[:, padded["input_ids"].shape[1] :]
        answers += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        progress.advance(task, len(chunk))
    return answers


AnswerFn = Callable[[list[list[dict]], str], list[str]]
"""Batched greedy answers: (conversations, progress label) -> one answer each."""
Sides = Callable[[Progress], Iterator[tuple[str, AnswerFn]]]
"""The models to compare, in order ("base", then "tuned"; or "tuned" alone), each yielded once it is ready.

The scorer finishes with one side before it asks for the next, so a source may free one model before
loading the next."""


def family_scores(eval_items: dict[str, list[dict]]) -> tuple[dict, dict]:
    """`METRICS` per task family and overall from each side's scored eval-split items (the battery's
    `discipline` suite): `{"n", side: {metric: mean}}`, and with base and tuned also `"difference"`:
    tuned − base per metric with its 95% bootstrap interval over prompts."""
    sides = list(eval_items)
    summaries = {side: summarise(items, METRICS) for side, items in eval_items.items()}
    paired = {"base", "tuned"} <= set(sides)
    compared = compare_items(eval_items["base"], eval_items["tuned"], METRICS) if paired else None

    def block(means: dict[str, dict], n: int, differences: dict | None) -> dict:
        out = {"n": n, **{side: {m: means[side][m] for m in METRICS} for side in sides}}
        if differences is not None:
            out["difference"] = {m: differences[m]["difference"] for m in METRICS}
        return out

    groups = summaries[sides[0]]["groups"]
    families = {
        g: block({s: summaries[s]["groups"][g] for s in sides}, groups[g]["n"], compared and compared["groups"][g])
        for g in groups
    }
    overall = block({s: summaries[s]["overall"] for s in sides}, summaries[sides[0]]["n"],
                    compared and compared["overall"])
    return families, overall


def trained_weights(run_dir: Path) -> tuple[TrainConfig, dict[str, Path]]:
    """A finished `trainer fit` run's config and the artefacts its backend reported at save time (`run.json`),
    as paths: `tokenizer` and `adapter` (peft, over the base model) or `model` (whole weights)."""
    if not (run_dir / RUN_FILE).is_file():
        raise CuratorError(f"{run_dir}: the run has not finished (no {RUN_FILE}); resume it with "
                           f"`trainer fit --resume {run_dir}`")
    run = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    artefacts = {name: run_dir / path for name, path in run["artefacts"].items()}
    if "tokenizer" not in artefacts or not ({"adapter", "model"} & set(artefacts)):
        raise CuratorError(f"{run_dir}: its backend saved no weights to evaluate ({', '.join(artefacts) or 'nothing'}); "
                           "an export is trained and evaluated elsewhere")
    return TrainConfig.load(run_dir / "config.json"), artefacts


def in_process_sides(config: TrainConfig, artefacts: dict[str, Path], *, max_new_tokens: int,
                     batch_size: int) -> Sides:
    """The base model and base + adapter (or the fully fine-tuned copy) of a `trainer fit` run, in this process."""

    def sides(progress: Progress) -> Iterator[tuple[str, AnswerFn]]:
        torch.manual_seed(config.seed)
        device = pick_device()
        tokenizer = load_tokenizer(artefacts["tokenizer"])

        def answerer(model: PreTrainedModel) -> AnswerFn:
            def answer(conversations: list[list[dict]], label: str) -> list[str]:
                ids = [generation_prompt_ids(tokenizer, c) for c in conversations]
                return generate_answers(model, tokenizer, ids, max_new_tokens=max_new_tokens,
                                        batch_size=batch_size, progress=progress, label=label)
            return answer

        base_model = load_model(resolve_model(config.model), device).eval()
        if "model" in artefacts:  # full fine-tuning: two whole models, one at a time
            yield "base", answerer(base_model)
            del base_model
            yield "tuned", answerer(load_model(artefacts["model"], device).eval())
        else:
            model = PeftModel.from_pretrained(base_model, artefacts["adapter"]).eval()
            with model.disable_adapter():
                yield "base", answerer(model)
            yield "tuned", answerer(model)

    return sides


def load_eval_release(dataset: str, *, limit: int | None) -> tuple[Path, dict, Spec, list[dict]]:
    """(release dir, verified manifest, its spec, eval records taken round-robin across families)."""
    release = resolve_release(dataset)
    manifest = verify_release(release)
    spec = spec_from_manifest(manifest, release)
    records = interleave_families(read_split(release, "eval"), limit)
    if not records:
        raise CuratorError(f"{release / 'eval.parquet'}: the eval split is empty")
    return release, manifest, spec, records


def evaluate(
    dataset: str,
    sides: Sides,
    *,
    out_dir: Path,
    about: dict,
    limit: int | None,
    max_new_tokens: int,
    console: Console,
    suites: tuple[str, ...] = SUITES,
    suite_limit: int | None = None,
    judge: ServedModel | None = None,
) -> dict:
    """Generate with each side, score, write `eval.json`, `battery.html` and `preference.jsonl` into `out_dir`.

    Besides the release's eval split, each side answers the shipped battery `suites` (verifiable
    instructions, refusals); every prompt is first checked for n-gram overlap with the release's train
    split, and leaks are reported in `report["leaks"]`; `suite_limit` asks at most that many prompts of each suite
    (`run_battery`). `about` (run name, models) heads the report.
    With two sides, `report["battery"]["comparison"]` holds tuned − base with bootstrap CIs; with one,
    it is None and `battery.html` is not written. DPO rows pair failures with the base's passing
    answers, or with the references when there is no base.
    """
    release, manifest, spec, records = load_eval_release(dataset, limit=limit)
    leaks = find_leaks(read_split(release, "train"), records, suites)
    for leak in leaks:
        console.print(f"[yellow]leak:[/] {leak['item']} shares a 13-gram with train pair {leak['train']}: \"{leak['ngram']}\"")

    answers: dict[str, list[str]] = {}
    batteries: dict[str, dict] = {}
    with Progress(console=console, transient=True) as progress:
        for side, answer in sides(progress):
            answers[side] = answer([prompt_messages(r) for r in records], side)
            batteries[side] = run_battery(lambda c, ask=answer, label=f"battery {side}": ask(c, label), include=suites,
                                          suite_limit=suite_limit, eval_records=records, spec=spec,
                                          eval_answers=answers[side])
            del answer  # let a source free this side's model before it loads the next
    names = list(answers)
    eval_items = {side: [i for i in batteries[side]["items"] if i["suite"] == EVAL_SUITE] for side in names}
    samples = [
        {
            "id": r["id"],
            "task_family": r["task_family"],
            "format": r["format"],
            "reference": eval_items[names[0]][k]["reference"],
            **{side: {"answer": eval_items[side][k]["response"],
                      "scores": {m: eval_items[side][k]["metrics"][m] for m in METRICS}} for side in names},
        }
        for k, r in enumerate(records)
    ]
    families, overall = family_scores(eval_items)
    judged = None
    if judge is not None:  # optional, open-ended quality: reported apart from the verifiable scores
        with Progress(console=console, transient=True) as progress:
            judged = judge_samples(samples, [user_text(r) for r in records], names,
                                   lambda conversations, label: judge.answer(conversations, progress, label))
        judged["model"] = judge.endpoint.describe()
    paired = "base" in batteries and "tuned" in batteries
    comparison = compare(batteries["base"], batteries["tuned"]) if paired else None
    report = {
        **about,
        "release": manifest["release"],
        "sides": names,
        "records": len(records),
        "limit": limit,
        "max_new_tokens": max_new_tokens,
        "metrics": list(METRICS),
        "families": families,
        "overall": overall,
        "samples": samples,
        "leaks": leaks,
        "judge": judged,
        "battery": {
            "suites": list(suites),
            "suite_limit": suite_limit,
            **{side: batteries[side]["suites"] for side in names},
            "comparison": comparison,
            "items": {side: batteries[side]["items"] for side in names},
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(preference_rows(batteries[names[-1]], batteries.get("base") if paired else None),
                    out_dir / PREFERENCE_FILE)
    if comparison is not None:
        write_html(comparison, out_dir / BATTERY_HTML, title=f"{about['run']} on {manifest['release']}",
                   tuned=batteries["tuned"])
    (out_dir / EVAL_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def evaluate_run(
    run_dir: Path,
    *,
    dataset: str | None,
    limit: int | None,
    max_new_tokens: int,
    batch_size: int,
    console: Console,
    suites: tuple[str, ...] = SUITES,
    suite_limit: int | None = None,
    judge: ServedModel | None = None,
) -> dict:
    """`evaluate` a `trainer fit` run in process: base vs tuned, report written into `run_dir`."""
    config, artefacts = trained_weights(run_dir)
    return evaluate(
        dataset or config.dataset,
        in_process_sides(config, artefacts, max_new_tokens=max_new_tokens, batch_size=batch_size),
        out_dir=run_dir,
        about={"run": run_dir.name, "base_model": config.model},
        limit=limit,
        max_new_tokens=max_new_tokens,
        console=console,
        suites=suites,
        suite_limit=suite_limit,
        judge=judge,
    )


def _side_title(report: dict) -> str:
    return "base → tuned" if len(report["sides"]) == 2 else report["sides"][0]


def report_table(report: dict) -> Table:
    """Base vs tuned (or the one side scored), one row per task family and one for all."""
    table = Table(title=f"{report['run']} on {report['release']} eval ({report['records']} pairs): {_side_title(report)}")
    table.add_column("family")
    table.add_column("n", justify="right")
    for m in report["metrics"]:
        table.add_column(m, justify="right")
    rows = list(report["families"].items()) + [("all", report["overall"])]
    for family, scores in rows:
        cells = []
        for m in report["metrics"]:
            if len(report["sides"]) == 1:
                cells.append(f"{scores[report['sides'][0]][m]:.2f}")
                continue
            b, t, d = scores["base"][m], scores["tuned"][m], scores["difference"][m]
            colour = "green" if d["low"] > 0 else "red" if d["high"] < 0 else "white"  # the interval excludes 0
            cells.append(f"{b:.2f} → [{colour}]{t:.2f}[/]\n[dim]{d['estimate']:+.2f}\n[{d['low']:+.2f},{d['high']:+.2f}][/]")
        table.add_row(family, str(scores["n"]), *cells, end_section=family == rows[-2][0])
    return table


def battery_table(report: dict) -> Table:
    """The battery's overall metrics per suite: base → tuned, and tuned − base with its 95% bootstrap CI.

    With one side only, its overall metrics per suite (no comparison)."""
    battery = report["battery"]
    if battery["comparison"] is None:
        side = report["sides"][0]
        table = Table(title=f"battery: {side} (one side scored, no comparison)")
        for col in ("suite", "metric", "n", side):
            table.add_column(col, justify="left" if col in ("suite", "metric") else "right")
        for suite, summary in battery[side].items():
            for metric, value in summary["overall"].items():
                table.add_row(suite, metric, str(summary["n"]), f"{value:.2f}")
        return table
    table = Table(title="battery: base → tuned, difference [95% bootstrap CI over prompts]")
    for col in ("suite", "metric", "n", "base → tuned", "difference"):
        table.add_column(col, justify="left" if col in ("suite", "metric") else "right")
    for suite, parts in battery["comparison"]["suites"].items():
        for metric, c in parts["overall"].items():
            d = c["difference"]
            better = -d["estimate"] if c["lower_is_better"] else d["estimate"]
            significant = d["low"] > 0 or d["high"] < 0
            colour = ("green" if better > 0 else "red") if significant else "white"
            table.add_row(suite, metric, str(c["n"]), f"{c['base']['estimate']:.2f} → {c['tuned']['estimate']:.2f}",
                          f"[{colour}]{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}][/]")
    return table


def judge_table(report: dict) -> Table:
    """The optional judge's 1-10 ratings per side (not a verifiable score)."""
    j = report["judge"]
    table = Table(title=f"LLM judge {j['model']['model']} (1-10; not verifiable, reported apart)")
    for col in ("side", "scored", "unparseable", "mean [95% CI]"):
        table.add_column(col, justify="left" if col == "side" else "right")
    for side, r in j["sides"].items():
        m = r["mean"]
        table.add_row(side, str(r["scored"]), str(r["unparseable"]),
                      "-" if m is None else f"{m['estimate']:.2f} [{m['low']:.2f}, {m['high']:.2f}]")
    if j["difference"]:
        d = j["difference"]
        table.add_row("tuned − base", str(d["n"]), "", f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]")
    return table
