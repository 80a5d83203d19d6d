"""The bundled backend: supervised fine-tuning with LoRA, as one plain torch training loop.

`prepare` builds the components in this order: seed, device and dtype, tokenizer, data, base
model, LoRA adapter, AdamW, cosine schedule with warm-up. `fit` runs the loop (forward, finite-loss
check, backward, gradient clipping, step) and appends each step's metrics to `metrics.jsonl`.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedTokenizerBase, get_cosine_with_min_lr_schedule_with_warmup

from curator.errors import CuratorError
from trainer.backends.base import Backend, FitResult, StepCallback
from trainer.config import TrainConfig
from trainer.data import Batch, DataStats, batches, build_examples
from trainer.models import load_model, load_tokenizer, pick_device, pick_dtype, resolve_model

ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"


class TrainingError(CuratorError):
    """Training cannot go on (a non-finite loss)."""


class SFTBackend(Backend):
    """LoRA on every linear projection of a causal LM; loss on assistant tokens only."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    tokenizer: PreTrainedTokenizerBase
    data_stats: DataStats
    batches: Iterator[Batch]
    model: PeftModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def prepare(self, config: TrainConfig, train_records: list[dict], run_dir: Path) -> None:
        self.config, self.run_dir = config, run_dir
        torch.manual_seed(config.seed)
        self.device = pick_device()
        model_dir = resolve_model(config.model)

        self.tokenizer = load_tokenizer(model_dir)
        examples, self.data_stats = build_examples(train_records, self.tokenizer, config.max_seq_len)
        self.batches = batches(examples, config.batch_size, self.tokenizer.pad_token_id, config.seed)

        base = load_model(model_dir, self.device)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        self.model = get_peft_model(base, lora)  # adapter weights stay fp32 under a bf16 base

        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=config.steps,
            min_lr_rate=config.min_lr_ratio,
        )

    def fit(self, on_step: StepCallback) -> FitResult:
        config = self.config
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        losses: list[float] = []
        tokens = trained_tokens = 0
        started = time.perf_counter()
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as metrics:
            for step in range(1, config.steps + 1):
                step_started = time.perf_counter()
                batch = next(self.batches).to(self.device)
                loss = self.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels
                ).loss
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss is {value} at step {step} (lr {self.scheduler.get_last_lr()[0]:.3g}); "
                        f"the run stopped; metrics so far are in {self.run_dir / METRICS_FILE}; try a lower --lr"
                    )
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip).item()
                lr = self.scheduler.get_last_lr()[0]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)

                losses.append(value)
                tokens += batch.tokens
                trained_tokens += batch.trained_tokens
                row = {
                    "step": step,
                    "loss": value,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": batch.tokens,
                    "trained_tokens": batch.trained_tokens,
                    "seconds": round(time.perf_counter() - step_started, 4),
                }
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                on_step(row)
        return FitResult(
            steps=config.steps,
            first_loss=losses[0],
            final_loss=losses[-1],
            tokens=tokens,
            trained_tokens=trained_tokens,
            seconds=round(time.perf_counter() - started, 2),
            trainable_params=sum(p.numel() for p in trainable),
            device=str(self.device),
            dtype=str(pick_dtype(self.device)).removeprefix("torch."),
            data_stats=self.data_stats.as_dict(),
        )

    def save(self) -> dict[str, str]:
        self.model.save_pretrained(self.run_dir / ADAPTER_DIR)
        self.tokenizer.save_pretrained(self.run_dir / TOKENIZER_DIR)
        return {"adapter": ADAPTER_DIR, "tokenizer": TOKENIZER_DIR}
