"""Training throughput: the bundled `sft` backend against TRL's SFTTrainer, on the same model, data and settings.

Both trainers get the same real pairs (from `--data`, Alpaca layout, rendered with the trainer's
Gemma chat template), the same sequence length, LoRA settings (r, alpha, dropout, all linear
projections), rows per step, learning-rate schedule and number of steps; both learn on assistant
tokens only and both pack conversations into rows of `--seq-len` (TRL: its default "bfd" packing,
padding-free). Each run is a fresh subprocess, one after the other, so its peak RSS is its own
(`ru_maxrss` from `wait4`). Throughput is conversation tokens (no padding) per second of the timed
steps (the first step is a warm-up and is not timed when there are three or more). The machine
may be shared and noisy: `--tiny-repeats` / `--gemma-repeats` alternate pairs of runs; medians are reported.

    python benchmarks/train_throughput.py --models tiny,gemma

The last line of output is a JSON list, one object per model; it is also written to
`benchmarks/results/train_throughput.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.json"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl"  # beside the repo
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}


# -- inputs ----------------------------------------------------------------------------------------------

def load_records(path: Path, limit: int) -> list[dict]:
    """The first `limit` Alpaca rows of `path` as pair-shaped records (`id`, `messages`)."""
    from curator.records import build_messages

    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if len(records) == limit:
                break
            row = json.loads(line)
            messages = build_messages(row["instruction"], row.get("input", ""), row["output"])
            records.append({"id": f"{path.name}:{n + 1}", "messages": messages})
    return records


def build_tiny_model(target: Path, records: list[dict]) -> Path:
    """A 2-layer, hidden-64 Gemma 3 with a byte-level BPE tokenizer (4,096 tokens) trained on the records."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    from trainer.chat_template import REQUIRED_SPECIAL_TOKENS, install_chat_template

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [m["content"] for r in records for m in r["messages"]] + ["user", "model"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=4096, special_tokens=list(REQUIRED_SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    install_chat_template(tokenizer)
    config = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        sliding_window=512, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


# -- the two trainers (each in its own process) ----------------------------------------------------------

def _throughput(steps: list[dict]) -> dict:
    timed = steps[1:] if len(steps) >= 3 else steps
    seconds = sum(s["seconds"] for s in timed)
    return {
        "steps": len(steps),
        "timed_steps": len(timed),
        "tokens_per_s": round(sum(s["tokens"] for s in timed) / seconds, 2),
        "trained_tokens_per_s": round(sum(s["trained_tokens"] for s in timed) / seconds, 2)
        if all("trained_tokens" in s for s in timed) else None,
        "seconds_per_step": round(seconds / len(timed), 3),
        "final_loss": steps[-1]["loss"],
    }


def run_ours(args: argparse.Namespace, records: list[dict]) -> dict:
    from trainer.backends.sft import SFTBackend
    from trainer.config import TrainConfig
    from trainer.distributed import init_world

    config = TrainConfig(
        model=str(args.model_dir), steps=args.steps, batch_size=args.batch_size, max_seq_len=args.seq_len,
        lora_r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"], warmup_steps=1,
    )
    backend = SFTBackend()
    with tempfile.TemporaryDirectory() as run_dir:
        backend.prepare(config, records, [], Path(run_dir), world=init_world())
        steps: list[dict] = []
        result = backend.fit(steps.append)
    return {**_throughput(steps), "packing_efficiency": result.packing_efficiency}


def run_trl(args: argparse.Namespace, records: list[dict]) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from trainer.models import load_tokenizer

    class StepClock(TrainerCallback):
        def __init__(self):
            self.steps: list[dict] = []
            self.started = 0.0
            self.tokens_so_far = 0

        def on_step_begin(self, args, state, control, **kw):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.steps.append({"seconds": time.perf_counter() - self.started})

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs and self.steps:
                total = int(logs["num_tokens"])
                self.steps[-1].update(tokens=total - self.tokens_so_far, loss=logs.get("loss"))
                self.tokens_so_far = total

    tokenizer = load_tokenizer(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        max_length=args.seq_len, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=1,
        assistant_only_loss=True, packing=True, gradient_checkpointing=False, logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0, bf16=False,
    )
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules="all-linear", task_type="CAUSAL_LM")
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in records])
    clock = StepClock()
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora, callbacks=[clock])
    trainer.train()
    return _throughput(clock.steps)


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    records = [json.loads(line) for line in Path(args.data_file).read_text().splitlines()]
    result = (run_ours if args.child == "ours" else run_trl)(args, records)
    print(json.dumps(result))


# -- the comparison --------------------------------------------------------------------------------------

def measure(trainer: str, model_dir: Path, data_file: Path, steps: int, args: argparse.Namespace) -> dict:
    """Run one trainer in a fresh process; its result plus its peak RSS in GiB."""
    cmd = [sys.executable, __file__, "--child", trainer, "--model-dir", str(model_dir), "--data-file", str(data_file),
           "--steps", str(steps), "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
           "--threads", str(args.threads)]
    print(f"running {trainer} on {model_dir.name} ({steps} steps)", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{trainer} run failed (exit {os.waitstatus_to_exitcode(status)})")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def compare(name: str, model_dir: Path, data_file: Path, steps: int, repeats: int, args: argparse.Namespace) -> dict:
    """`repeats` alternating pairs of runs (ours, then TRL); medians of throughput, maxima of peak RSS."""
    ours, trl = [], []
    for _ in range(repeats):
        ours.append(measure("ours", model_dir, data_file, steps, args))
        trl.append(measure("trl", model_dir, data_file, steps, args))
    ours_tps = _median([r["tokens_per_s"] for r in ours])
    trl_tps = _median([r["tokens_per_s"] for r in trl])
    return {
        "model": name,
        "seq_len": args.seq_len,
        "batch_rows": args.batch_size,
        "steps": steps,
        "timed_steps": ours[0]["timed_steps"],
        "repeats": repeats,
        "lora": LORA,
        "ours_tokens_per_s": ours_tps,
        "trl_tokens_per_s": trl_tps,
        "ratio": round(ours_tps / trl_tps, 2),
        "ratios_per_repeat": [round(o["tokens_per_s"] / t["tokens_per_s"], 2) for o, t in zip(ours, trl)],
        "ours_trained_tokens_per_s": _median([r["trained_tokens_per_s"] for r in ours]),
        "ours_seconds_per_step": _median([r["seconds_per_step"] for r in ours]),
        "trl_seconds_per_step": _median([r["seconds_per_step"] for r in trl]),
        "ours_peak_rss_gb": max(r["peak_rss_gb"] for r in ours),
        "trl_peak_rss_gb": max(r["peak_rss_gb"] for r in trl),
        "packing_efficiency": ours[0]["packing_efficiency"],
        "ours_final_loss": ours[0]["final_loss"],
        "trl_final_loss": trl[0]["final_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,gemma", help="comma-separated: tiny, gemma")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Alpaca-layout JSONL of real pairs")
    parser.add_argument("--pairs", type=int, default=400, help="pairs taken from --data")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per optimiser step")
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--gemma-steps", type=int, default=4)
    parser.add_argument("--tiny-repeats", type=int, default=3, help="alternating ours/TRL run pairs (medians)")
    parser.add_argument("--gemma-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in each run")
    parser.add_argument("--child", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from trainer.models import resolve_model

    if not args.data.is_file():
        sys.exit(f"{args.data}: not found (the shared instruct mix beside the repository; --data PATH)")
    records = load_records(args.data, args.pairs)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "pairs.jsonl"
        data_file.write_text("".join(json.dumps(r) + "\n" for r in records))
        for name in args.models.split(","):
            if name == "tiny":
                results.append(compare("tiny", build_tiny_model(Path(tmp) / "tiny", records), data_file,
                                       args.tiny_steps, args.tiny_repeats, args))
            elif name == "gemma":
                results.append(compare("gemma-3-270m", resolve_model("gemma-3-270m"), data_file, args.gemma_steps,
                                       args.gemma_repeats, args))
            else:
                raise SystemExit(f"unknown model {name!r}: use tiny and/or gemma")
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
