"""The run's model card (`README.md`): what was trained on what, and, after `trainer eval`, how it scores."""
from __future__ import annotations

import json
from pathlib import Path

CARD_FILE = "README.md"
EVAL_MARKER = "<!-- trainer eval -->"


def _what(run: dict) -> str:
    artefacts = run["artefacts"]
    if not run["fit"]["steps"]:
        return "An export for an external trainer (no training here)"
    if "model" in artefacts:
        return "A fully fine-tuned copy"
    return "A LoRA adapter" + (" (also merged into the base weights)" if "merged" in artefacts else "")


def _loss_line(fit: dict) -> str:
    if fit["first_loss"] is None:
        return "not trained here"
    final = "n/a (resumed at its last step)" if fit["final_loss"] is None else f"{fit['final_loss']:.4f}"
    line = f"first {fit['first_loss']:.4f}, final {final}"
    if fit.get("final_eval_loss") is not None:
        line += f"; eval loss {fit['final_eval_loss']:.4f}"
    return line


_ARTEFACT_NOTES = {
    "adapter": "the LoRA adapter (peft)",
    "merged": "the adapter merged into the base weights (a plain transformers model)",
    "model": "the fully fine-tuned weights (a plain transformers model)",
    "tokenizer": "the tokenizer with its chat template",
    "dataset": "the release's splits as TRL conversational JSONL",
    "trl_config": "settings for an external TRL SFTTrainer (SFTConfig and LoraConfig arguments)",
    "chat_template": "the chat template to train with",
}


_TRAINING_FILES = """
- `metrics.jsonl`: one line per step (loss, lr, grad_norm, tokens, trained_tokens, slots, seconds)
- `batches.jsonl`: the ids of the records each rank trained on, per step
- `eval_loss.jsonl`: the eval-split loss every `eval_every` steps (when set)
- `checkpoints/`: the newest resumable checkpoints (when `save_every` is set): `trainer fit --resume <run dir>`
- `tensorboard/`: the same metrics for TensorBoard (when the `tensorboard` package is installed)"""


def _signature(run: dict) -> str:
    """Who signed the release's attestation, or the warning that it was accepted unsigned."""
    signature = run.get("signature") or {}
    if signature.get("allow_unsigned"):
        return "**NOT verified**: unsigned or untrusted signer, accepted with `--allow-unsigned`"
    return f"verified, trusted key `{signature.get('signer')}`" if signature.get("signer") else "not recorded"


_TEMPLATE_ORIGINS = {
    "model": "the base model's own chat template",
    "gemma": "Gemma's turn format (shipped with the trainer)",
}


def _template_line(run: dict) -> str:
    """Which chat template the run trained with (older runs, which did not record it, used Gemma's)."""
    template = run["fit"].get("chat_template") or {"origin": "gemma", "end_of_turn": "<end_of_turn>"}
    origin = template["origin"]
    name = _TEMPLATE_ORIGINS.get(origin) or f"TRL's training variant (`{origin.removeprefix('trl:')}`) of the base model's own chat template"
    if not run["fit"]["steps"]:
        return f"Chat template: {name}, with generation markers for assistant-only loss (answers end with `{template['end_of_turn']}`)."
    return (f"Loss is computed on assistant tokens only (each answer and its `{template['end_of_turn']}`), with {name}; "
            "the same template is saved with the tokenizer and used by `trainer eval`.")


def render_card(run: dict) -> str:
    """Markdown for a finished run; `run` is the content of the run's `run.json`."""
    fit, data, config = run["fit"], run["fit"]["data_stats"], run["config"]
    spec = run["spec"]
    lora = (f"r {config['lora_r']}, alpha {config['lora_alpha']}, dropout {config['lora_dropout']}, all linear projections"
            if config.get("lora", True) else "none (full fine-tuning)")
    files = "\n".join(f"- `{path}`: {_ARTEFACT_NOTES.get(name, name)}" for name, path in sorted(run["artefacts"].items()))
    packing = fit.get("packing_efficiency")
    return f"""---
base_model: {run["base_model"]}
library_name: {"peft" if "adapter" in run["artefacts"] else "transformers"}
tags: [sft, instruct-curator]
datasets: [{run["release"]}]
---
# {run["run"]}

{_what(run)} of **{run["base_model"]}**, by instruct-curator's `{config["backend"]}` backend
on the certified release **{run["release"]}**.

| | |
|---|---|
| Base model | `{run["base_model"]}` (loaded from `{run["base_model_dir"]}`) |
| Release | `{run["release"]}` ({data["records"]} train pairs) |
| Certificate: manifest sha256 | `{run["manifest_sha256"]}` |
| Signature | {_signature(run)} |
| Spec | `{spec["name"]}` (sha256 `{spec["sha256"]}`) |
| Steps | {fit["steps"]} × batch {config["batch_size"]} × up to {config["max_seq_len"]} tokens{"" if packing is None else f", packed ({packing:.0%} of row slots filled)"} |
| Loss | {_loss_line(fit)} |
| Tokens seen / trained on | {fit["tokens"]} / {fit["trained_tokens"]} |
| LoRA | {lora} ({fit["trainable_params"]:,} trainable parameters) |
| Device, dtype, ranks | {fit["device"]}, {fit["dtype"]}, {fit.get("world_size", 1)} |
| Time | {fit["seconds"]} s |

Train records: {data["records"]}; used {data["used"]}; truncated to max_seq_len {data["truncated"]};
dropped because truncation left no answer tokens {data["dropped_no_answer_tokens"]}.

{_template_line(run)}

## Files

{files}
- `config.json`: the resolved training settings
- `run.json`: this card's facts, machine-readable{_TRAINING_FILES if fit["steps"] else ""}

## Settings

```json
{json.dumps(config, indent=2, sort_keys=True)}
```
"""


def render_eval(report: dict) -> str:
    """Markdown section for an eval report (base vs tuned, per task family)."""
    metrics = report["metrics"]
    lines = [
        EVAL_MARKER,
        "## Evaluation",
        "",
        f"Greedy answers to {report['records']} pairs of the eval split of `{report['release']}` "
        f"(max {report['max_new_tokens']} new tokens); each cell is base → tuned, then tuned − base "
        "with its 95% bootstrap interval over prompts.",
        "",
        "| family | n | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    rows = list(report["families"].items()) + [("**all**", report["overall"])]
    for family, scores in rows:
        cells = [f"{scores['base'][m]:.2f} → {scores['tuned'][m]:.2f} ({scores['difference'][m]['estimate']:+.2f} "
                 f"[{scores['difference'][m]['low']:+.2f}, {scores['difference'][m]['high']:+.2f}])" for m in metrics]
        lines.append(f"| {family} | {scores['n']} | " + " | ".join(cells) + " |")
    lines += ["", "### Battery", "", "Shipped suites and format discipline; tuned − base with a 95% bootstrap CI over prompts.", "",
              "| suite | metric | n | base → tuned | difference |", "|---|---|---|---|---|"]
    for suite, parts in report["battery"]["comparison"]["suites"].items():
        for metric, c in parts["overall"].items():
            d = c["difference"]
            lines.append(f"| {suite} | {metric} | {c['n']} | {c['base']['estimate']:.2f} → {c['tuned']['estimate']:.2f} "
                         f"| {d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] |")
    if report.get("judge"):
        j = report["judge"]
        lines += ["", f"### LLM judge (`{j['model']['model']}`; 1-10, not a verifiable score)", ""]
        for side, r in j["sides"].items():
            mean = "-" if r["mean"] is None else f"{r['mean']['estimate']:.2f} [{r['mean']['low']:.2f}, {r['mean']['high']:.2f}]"
            lines.append(f"- {side}: {mean} over {r['scored']} answers ({r['unparseable']} unparseable replies)")
    if report["leaks"]:
        lines += ["", f"**{len(report['leaks'])} evaluation prompt(s) overlap the training data** (see `eval.json`, `leaks`)."]
    return "\n".join(lines) + "\n"


def write_card(run_dir: Path, run: dict) -> Path:
    path = run_dir / CARD_FILE
    path.write_text(render_card(run), encoding="utf-8")
    return path


def append_eval(run_dir: Path, report: dict) -> Path:
    """Add (or replace, on a re-run) the evaluation section at the end of the card."""
    path = run_dir / CARD_FILE
    card = path.read_text(encoding="utf-8").split(EVAL_MARKER)[0].rstrip("\n")
    path.write_text(card + "\n\n" + render_eval(report), encoding="utf-8")
    return path
