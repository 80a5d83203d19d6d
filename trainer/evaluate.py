"""`trainer eval`: greedy answers of the base model and of base + adapter on a release's eval split, scored per family."""
from __future__ import annotations

import json
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

import torch
from peft import PeftModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from curator.errors import CuratorError
from curator.gate.checks.decontaminate import EvalIndex
from curator.records import user_text
from curator.release.store import read_split, resolve_release, verify_release
from curator.spec import Spec, SpecError, spec_from_dict
from trainer.backends.sft import ADAPTER_DIR, MODEL_DIR, TOKENIZER_DIR
from trainer.battery import SUITES, compare, run_battery
from trainer.battery.preference import preference_rows, write_dpo_jsonl
from trainer.battery.report_html import write_html
from trainer.battery.suite import load_instruction_suite, load_refusal_suite
from trainer.chat_template import generation_prompt_ids, stop_token_ids
from trainer.config import TrainConfig
from trainer.models import load_model, load_tokenizer, pick_device, resolve_model
from trainer.scoring import METRICS, reference_answer, score_answer

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
    by_family: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_family[r["task_family"]].append(r)
    mixed = [r for group in zip_longest(*by_family.values()) for r in group if r is not None]
    return mixed if limit is None else mixed[:limit]


def prompt_messages(record: dict) -> list[dict]:
    """The conversation up to (not including) its last assistant turn."""
    messages = record["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


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


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: round(sum(r[m] for r in rows) / len(rows), 4) for m in METRICS}


def summarise(samples: list[dict]) -> tuple[dict, dict]:
    """Mean of each metric per family and overall, for base and tuned."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_family[s["task_family"]].append(s)

    def block(group: list[dict]) -> dict:
        return {
            "n": len(group),
            "base": _means([s["base"]["scores"] for s in group]),
            "tuned": _means([s["tuned"]["scores"] for s in group]),
        }

    return {f: block(g) for f, g in sorted(by_family.items())}, block(samples)


def evaluate_run(
    run_dir: Path,
    *,
    dataset: str | None,
    limit: int | None,
    max_new_tokens: int,
    batch_size: int,
    console: Console,
    suites: tuple[str, ...] = SUITES,
) -> dict:
    """Generate, score and return the report (also written to `<run_dir>/eval.json`).

    Besides the release's eval split, the model answers the shipped battery `suites`
    (verifiable instructions, refusals); every prompt is first checked for n-gram overlap with
    the release's train split, and leaks are reported in `report["leaks"]`.
    """
    config = TrainConfig.load(run_dir / "config.json")
    if not ((run_dir / ADAPTER_DIR).is_dir() or (run_dir / MODEL_DIR).is_dir()):
        raise CuratorError(f"{run_dir}: no trained weights ({ADAPTER_DIR}/ or {MODEL_DIR}/); was it trained here?")
    release = resolve_release(dataset or config.dataset)
    manifest = verify_release(release)
    spec = spec_from_manifest(manifest, release)
    records = interleave_families(read_split(release, "eval"), limit)
    if not records:
        raise CuratorError(f"{release / 'eval.parquet'}: the eval split is empty")
    leaks = find_leaks(read_split(release, "train"), records, suites)
    for leak in leaks:
        console.print(f"[yellow]leak:[/] {leak['item']} shares a 13-gram with train pair {leak['train']}: \"{leak['ngram']}\"")

    torch.manual_seed(config.seed)
    device = pick_device()
    tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    prompts = [generation_prompt_ids(tokenizer, prompt_messages(r)) for r in records]
    base_model = load_model(resolve_model(config.model), device).eval()
    with Progress(console=console, transient=True) as progress:
        def answers(model: PreTrainedModel, label: str) -> list[str]:
            return generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                    batch_size=batch_size, progress=progress, label=label)

        def battery(model: PreTrainedModel, label: str, eval_answers: list[str]) -> dict:
            def generate(conversations: list[list[dict]]) -> list[str]:
                ids = [generation_prompt_ids(tokenizer, c) for c in conversations]
                return generate_answers(model, tokenizer, ids, max_new_tokens=max_new_tokens,
                                        batch_size=batch_size, progress=progress, label=f"battery {label}")
            return run_battery(generate, include=suites, eval_records=records, spec=spec, eval_answers=eval_answers)

        if (run_dir / MODEL_DIR).is_dir():  # full fine-tuning: two whole models
            base = answers(base_model, "base")
            base_battery = battery(base_model, "base", base)
            del base_model
            tuned_model = load_model(run_dir / MODEL_DIR, device).eval()
            tuned = answers(tuned_model, "tuned")
            tuned_battery = battery(tuned_model, "tuned", tuned)
        else:
            model = PeftModel.from_pretrained(base_model, run_dir / ADAPTER_DIR).eval()
            with model.disable_adapter():
                base = answers(model, "base")
                base_battery = battery(model, "base", base)
            tuned = answers(model, "tuned")
            tuned_battery = battery(model, "tuned", tuned)

    samples = [
        {
            "id": r["id"],
            "task_family": r["task_family"],
            "format": r["format"],
            "reference": reference_answer(r),
            "base": {"answer": b, "scores": score_answer(b, r, spec)},
            "tuned": {"answer": t, "scores": score_answer(t, r, spec)},
        }
        for r, b, t in zip(records, base, tuned)
    ]
    families, overall = summarise(samples)
    comparison = compare(base_battery, tuned_battery)
    report = {
        "run": run_dir.name,
        "release": manifest["release"],
        "base_model": config.model,
        "records": len(records),
        "limit": limit,
        "max_new_tokens": max_new_tokens,
        "metrics": list(METRICS),
        "families": families,
        "overall": overall,
        "samples": samples,
        "leaks": leaks,
        "battery": {
            "suites": list(suites),
            "base": base_battery["suites"],
            "tuned": tuned_battery["suites"],
            "comparison": comparison,
            "items": {"base": base_battery["items"], "tuned": tuned_battery["items"]},
        },
    }
    write_dpo_jsonl(preference_rows(tuned_battery, base_battery), run_dir / PREFERENCE_FILE)
    write_html(comparison, run_dir / BATTERY_HTML, title=f"{run_dir.name} on {manifest['release']}", tuned=tuned_battery)
    (run_dir / EVAL_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def report_table(report: dict) -> Table:
    """Base vs tuned, one row per task family and one for all."""
    table = Table(title=f"{report['run']} on {report['release']} eval ({report['records']} pairs): base → tuned")
    table.add_column("family")
    table.add_column("n", justify="right")
    for m in report["metrics"]:
        table.add_column(m, justify="right")
    rows = list(report["families"].items()) + [("all", report["overall"])]
    for family, scores in rows:
        cells = []
        for m in report["metrics"]:
            b, t = scores["base"][m], scores["tuned"][m]
            colour = "green" if t > b else "red" if t < b else "white"
            cells.append(f"{b:.2f} → [{colour}]{t:.2f}[/]")
        table.add_row(family, str(scores["n"]), *cells, end_section=family == rows[-2][0])
    return table


def battery_table(report: dict) -> Table:
    """The battery's overall metrics per suite: base → tuned, and tuned − base with its 95% bootstrap CI."""
    table = Table(title="battery: base → tuned, difference [95% bootstrap CI over prompts]")
    for col in ("suite", "metric", "n", "base → tuned", "difference"):
        table.add_column(col, justify="left" if col in ("suite", "metric") else "right")
    for suite, parts in report["battery"]["comparison"]["suites"].items():
        for metric, c in parts["overall"].items():
            d = c["difference"]
            better = -d["estimate"] if c["lower_is_better"] else d["estimate"]
            significant = d["low"] > 0 or d["high"] < 0
            colour = ("green" if better > 0 else "red") if significant else "white"
            table.add_row(suite, metric, str(c["n"]), f"{c['base']['estimate']:.2f} → {c['tuned']['estimate']:.2f}",
                          f"[{colour}]{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}][/]")
    return table
