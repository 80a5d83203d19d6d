"""The bundled backend: supervised fine-tuning (LoRA or full), as one plain torch training loop.

`prepare` builds the components in this order: seed, tokenizer, base model (flash attention on CUDA
when installed), data plan (packed rows, this rank's shard), LoRA adapter (or every weight trainable),
gradient checkpointing, the loss module (DDP-wrapped under torchrun), AdamW, cosine schedule with
warm-up, then the newest checkpoint when resuming. `fit` runs the loop: `grad_accum` micro-batches
(forward to the final hidden states, cross-entropy at labelled positions only, backward), finite-loss
check, gradient clipping, step; every step's metrics go to `metrics.jsonl` (and TensorBoard when
installed), the records each rank trained on to `batches.jsonl`, a checkpoint every `save_every`
steps, the eval loss every `eval_every` steps to `eval_loss.jsonl`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_cosine_with_min_lr_schedule_with_warmup

from curator.errors import CuratorError
from trainer.backends.base import Backend, FitResult, StepCallback
from trainer.causal_lm import LabelledLoss, causal_lm_of
from trainer.chat_template import ChatTemplate
from trainer.checkpoint import checkpoints, load_checkpoint, save_checkpoint
from trainer.config import TrainConfig
from trainer.data import Batch, BatchPlan, DataStats, build_examples, fixed_batches
from trainer.distributed import World
from trainer.models import load_model, load_training_tokenizer, pick_dtype, resolve_model, training_attention

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
MERGED_DIR = "merged"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.jsonl"
EVAL_LOSS_FILE = "eval_loss.jsonl"
BATCHES_FILE = "batches.jsonl"
TENSORBOARD_DIR = "tensorboard"


class TrainingError(CuratorError):
    """Training cannot go on (a non-finite loss)."""


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the trainable parameters (names and bytes): equal on every rank after each step."""
    digest = hashlib.sha256()
    for name, p in model.named_parameters():
        if p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class RunLog:
    """Rank 0's record of a run: `metrics.jsonl`, `batches.jsonl`, `eval_loss.jsonl`, and TensorBoard when installed."""

    def __init__(self, run_dir: Path, first_step: int):
        self.metrics, self.batches, self.evals = (
            open(run_dir / name, "a", encoding="utf-8") for name in (METRICS_FILE, BATCHES_FILE, EVAL_LOSS_FILE)
        )
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            Console(stderr=True).print("TensorBoard logging off: the `tensorboard` package is not installed")
            self.tensorboard = None
        else:  # a resumed run drops the events logged after its checkpoint
            self.tensorboard = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=first_step)

    @staticmethod
    def _append(fh, row: dict) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()

    def step(self, row: dict, ids_by_rank: list[list[str]]) -> None:
        self._append(self.metrics, row)
        self._append(self.batches, {"step": row["step"], "ids_by_rank": ids_by_rank})
        if self.tensorboard is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["step"])

    def eval(self, step: int, loss: float) -> None:
        self._append(self.evals, {"step": step, "eval_loss": loss})
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("eval/loss", loss, step)

    def close(self) -> None:
        for fh in (self.metrics, self.batches, self.evals):
            fh.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the rows of steps up to `last_step` (a resumed run rewrites what came after its checkpoint)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line)["step"] <= last_step]
    staging = path.with_suffix(".partial")
    staging.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    staging.replace(path)


class SFTBackend(Backend):
    """LoRA on every linear projection of a causal LM (or full fine-tuning); loss on assistant tokens only."""

    config: TrainConfig
    run_dir: Path
    world: World
    tokenizer: PreTrainedTokenizerBase
    chat_template: ChatTemplate
    data_stats: DataStats
    plan: BatchPlan
    eval_batches: list[Batch]
    model: PreTrainedModel | PeftModel
    loss_module: torch.nn.Module
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def prepare(self, config: TrainConfig, train_records: list[dict], eval_records: list[dict], run_dir: Path,
                *, world: World, resume: bool = False) -> None:
        self.config, self.run_dir, self.world = config, run_dir, world
        torch.manual_seed(config.seed)  # the same LoRA initialisation on every rank
        model_dir = resolve_model(config.model)

        self.tokenizer, self.chat_template = load_training_tokenizer(model_dir)
        base = load_model(model_dir, world.device, attn_implementation=training_attention(world.device))
        # Flash attention takes packed conversations as one unpadded row (variable-length kernels).
        padding_free = base.config._attn_implementation.startswith("flash")
        examples, self.data_stats = build_examples(train_records, self.tokenizer, config.max_seq_len)
        self.plan = BatchPlan(
            examples, batch_size=config.batch_size, max_seq_len=config.max_seq_len, packing=config.packing,
            pad_token_id=self.tokenizer.pad_token_id, seed=config.seed, rank=world.rank,
            world_size=world.world_size, padding_free=padding_free,
        )
        self.eval_batches = []
        if config.eval_every and eval_records:
            eval_examples, _ = build_examples(eval_records[: config.eval_pairs], self.tokenizer,
                                              config.max_seq_len, split="eval")
            self.eval_batches = fixed_batches(
                eval_examples, batch_size=config.batch_size, max_seq_len=config.max_seq_len,
                packing=config.packing, pad_token_id=self.tokenizer.pad_token_id, padding_free=padding_free,
            )

        if config.lora:
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            )
            self.model = get_peft_model(base, lora)  # adapter weights stay fp32 under a bf16 base
        else:
            self.model = base
        if config.gradient_checkpointing:
            causal_lm_of(self.model).activation_checkpointing_enable({"use_reentrant": False})
        self.loss_module = LabelledLoss(self.model, config.loss_chunk_tokens)
        if world.distributed:
            self.loss_module = torch.nn.parallel.DistributedDataParallel(
                self.loss_module, device_ids=[world.device.index] if world.device.type == "cuda" else None
            )

        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay,
                                           fused=world.device.type == "cuda")  # the fused kernel on GPU
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=config.steps,
            min_lr_rate=config.min_lr_ratio,
        )
        torch.manual_seed(config.seed + world.rank)  # dropout differs across ranks, as their data does
        self.start_step, self.totals = 0, {"tokens": 0, "trained_tokens": 0, "seconds": 0.0, "first_loss": None}
        if resume:
            self._restore()

    # -- checkpoints ---------------------------------------------------------------------------------

    def _state(self, step: int) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state(self.world.device)
        return {
            "step": step,
            "trainable": {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng_by_rank": self.world.all_gather(rng),
            "plan": self.plan.state_dict(),
            "totals": dict(self.totals),
        }

    def _restore(self) -> None:
        found = checkpoints(self.run_dir)
        if not found:
            raise CuratorError(f"{self.run_dir}: no checkpoint to resume from (train with --save-every N)")
        state = load_checkpoint(found[-1], self.world.device)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rng = state["rng_by_rank"][self.world.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.world.device)
        self.plan.load_state_dict(state["plan"])
        self.start_step, self.totals = state["step"], state["totals"]
        if self.world.is_main:
            for name in (METRICS_FILE, EVAL_LOSS_FILE, BATCHES_FILE):
                _truncate_jsonl(self.run_dir / name, self.start_step)

    # -- the loop ------------------------------------------------------------------------------------

    def _micro_step(self, batch: Batch, scale: float, sync: bool) -> float:
        context = self.loss_module.no_sync() if self.world.distributed and not sync else contextlib.nullcontext()
        with context:
            loss = self.loss_module(batch.input_ids, batch.position_ids, batch.targets, scale)
            loss.backward()  # even when not finite: every rank must take part in the gradient all-reduce
        return loss.item()

    @torch.no_grad()
    def eval_loss(self) -> float:
        """Mean cross-entropy over the labelled tokens of the eval batches (the same on every rank)."""
        self.model.eval()
        total = labelled = 0.0
        for batch in self.eval_batches:
            batch = batch.to(self.world.device)
            total += float(self.loss_module(batch.input_ids, batch.position_ids, batch.targets, 1.0))
            labelled += batch.trained_tokens
        self.model.train()
        return total / labelled

    def _train_step(self, step: int) -> tuple[dict, list[list[str]]]:
        """One optimiser step over `grad_accum` micro-batches on every rank: its metrics row and the record ids per rank."""
        config, world = self.config, self.world
        started = time.perf_counter()
        micro = [self.plan.next().to(world.device) for _ in range(config.grad_accum)]
        # Every labelled token of the global batch weighs the same, whatever rank or micro-batch holds it.
        labelled = world.sum(sum(b.trained_tokens for b in micro))
        scale = world.world_size / labelled
        local = sum(self._micro_step(b, scale, sync=i == len(micro) - 1) for i, b in enumerate(micro))
        loss = world.sum(local) / world.world_size
        lr = self.scheduler.get_last_lr()[0]
        if not math.isfinite(loss):
            raise TrainingError(
                f"loss is {loss} at step {step} (lr {lr:.3g}); the run stopped; "
                f"metrics so far are in {self.run_dir / METRICS_FILE}; try a lower --lr"
            )
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, config.grad_clip).item()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        tokens = int(world.sum(sum(b.tokens for b in micro)))
        row = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": tokens,
            "trained_tokens": int(labelled),
            "slots": int(world.sum(sum(b.slots for b in micro))),
            "seconds": round(seconds, 4),
            "tokens_per_s": round(tokens / seconds, 2),
        }
        return row, world.all_gather([i for b in micro for i in b.record_ids])

    def fit(self, on_step: StepCallback) -> FitResult:
        config, world = self.config, self.world
        self.model.train()
        final_loss = eval_loss = None
        log = RunLog(self.run_dir, self.start_step + 1) if world.is_main else None
        try:
            for step in range(self.start_step + 1, config.steps + 1):
                row, ids_by_rank = self._train_step(step)
                final_loss = row["loss"]
                for key in ("tokens", "trained_tokens", "seconds"):
                    self.totals[key] += row[key]
                if self.totals["first_loss"] is None:
                    self.totals["first_loss"] = final_loss
                evaluate = bool(config.eval_every and self.eval_batches and step % config.eval_every == 0)
                if evaluate:
                    eval_loss = self.eval_loss()
                state = self._state(step) if config.save_every and step % config.save_every == 0 else None
                if log is not None:
                    log.step(row, ids_by_rank)
                    if evaluate:
                        log.eval(step, eval_loss)
                    if state is not None:
                        save_checkpoint(self.run_dir, step, state)
                world.barrier()
                on_step(row)
        finally:
            if log is not None:
                log.close()
        return FitResult(
            steps=config.steps,
            first_loss=self.totals["first_loss"],
            final_loss=final_loss,
            tokens=self.totals["tokens"],
            trained_tokens=self.totals["trained_tokens"],
            seconds=round(self.totals["seconds"], 2),
            trainable_params=sum(p.numel() for p in self.trainable),
            device=str(world.device),
            dtype=str(pick_dtype(world.device)).removeprefix("torch."),
            data_stats=self.data_stats.as_dict(),
            packing_efficiency=self.plan.packing_efficiency(),
            resumed_from_step=self.start_step or None,
            final_eval_loss=eval_loss,
            world_size=world.world_size,
            weights_sha256_by_rank=world.all_gather(weights_sha256(self.model)),
            chat_template=self.chat_template.describe(),
        )

    def save(self) -> dict[str, str]:
        if not self.world.is_main:
            return {}
        self.tokenizer.save_pretrained(self.run_dir / TOKENIZER_DIR)
        if not self.config.lora:
            self.model.save_pretrained(self.run_dir / MODEL_DIR)
            return {"model": MODEL_DIR, "tokenizer": TOKENIZER_DIR}
        self.model.save_pretrained(self.run_dir / ADAPTER_DIR)
        artefacts = {"adapter": ADAPTER_DIR, "tokenizer": TOKENIZER_DIR}
        if self.config.merge:
            merged = self.model.merge_and_unload()
            merged.save_pretrained(self.run_dir / MERGED_DIR)
            self.tokenizer.save_pretrained(self.run_dir / MERGED_DIR)
            artefacts["merged"] = MERGED_DIR
        return artefacts
