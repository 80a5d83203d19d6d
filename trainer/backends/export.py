"""A backend that trains nothing: it exports the release and the resolved settings for an external trainer.

`trainer fit --backend export` verifies the release as usual, then writes into the run directory:
`dataset/train.jsonl` and `dataset/eval.jsonl` in TRL's conversational format (one
`{"messages": [...]}` per line), `chat_template.jinja` (the template the bundled backend trains
with: `trainer.chat_template.training_chat_template`), and `trl_config.json`: the run's settings as
TRL `SFTConfig` and peft `LoraConfig` arguments.
"""
from __future__ import annotations

import json
from pathlib import Path

from trainer.backends.base import Backend, FitResult, StepCallback
from trainer.config import TrainConfig
from trainer.distributed import World

DATASET_DIR = "dataset"
TRL_CONFIG_FILE = "trl_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def trl_settings(config: TrainConfig, model_dir: str) -> dict:
    """TRL `SFTConfig` and peft `LoraConfig` keyword arguments equivalent to `config`."""
    sft = {
        "max_steps": config.steps,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "max_length": config.max_seq_len,
        "learning_rate": config.lr,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": config.min_lr_ratio},
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.grad_clip,
        "seed": config.seed,
        "packing": config.packing,
        "assistant_only_loss": True,
        "activation_checkpointing": config.gradient_checkpointing,
        "eval_strategy": "steps" if config.eval_every else "no",
        "save_strategy": "steps" if config.save_every else "no",
    }
    if config.eval_every:
        sft["eval_steps"] = config.eval_every
    if config.save_every:
        sft["save_steps"] = config.save_every
    lora = {
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": "all-linear",
        "task_type": "CAUSAL_LM",
    }
    return {
        "model": model_dir,
        "chat_template": CHAT_TEMPLATE_FILE,
        "train_file": f"{DATASET_DIR}/train.jsonl",
        "eval_file": f"{DATASET_DIR}/eval.jsonl",
        "sft_config": sft,
        "lora_config": lora if config.lora else None,
    }


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            messages = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


class ExportBackend(Backend):
    """Exports the release (TRL conversational JSONL) and the resolved settings; `fit` takes no step."""

    def prepare(self, config: TrainConfig, train_records: list[dict], eval_records: list[dict], run_dir: Path,
                *, world: World, resume: bool = False) -> None:
        from trainer.models import load_training_tokenizer, resolve_model

        self.config, self.train, self.eval, self.run_dir, self.world = config, train_records, eval_records, run_dir, world
        self.model_dir = resolve_model(config.model)
        self.chat_template = load_training_tokenizer(self.model_dir)[1]

    def fit(self, on_step: StepCallback) -> FitResult:
        return FitResult(
            steps=0, first_loss=None, final_loss=None, tokens=0, trained_tokens=0, seconds=0.0,
            trainable_params=0, device="none", dtype="none", world_size=self.world.world_size,
            data_stats={"records": len(self.train), "used": len(self.train), "truncated": 0,
                        "dropped_no_answer_tokens": 0, "dropped_ids": []},
            chat_template=self.chat_template.describe(),
        )

    def save(self) -> dict[str, str]:
        if not self.world.is_main:
            return {}
        dataset = self.run_dir / DATASET_DIR
        dataset.mkdir(exist_ok=True)
        _write_jsonl(dataset / "train.jsonl", self.train)
        _write_jsonl(dataset / "eval.jsonl", self.eval)
        (self.run_dir / CHAT_TEMPLATE_FILE).write_text(self.chat_template.text, encoding="utf-8")
        settings = trl_settings(self.config, str(self.model_dir))
        (self.run_dir / TRL_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        return {"dataset": DATASET_DIR, "trl_config": TRL_CONFIG_FILE, "chat_template": CHAT_TEMPLATE_FILE}
