"""The `dpo` backend: Direct Preference Optimisation on the refusal boundary, after SFT, as one plain torch loop.

    trainer fit --backend dpo --dataset release-v3 --init-adapter <SFT run dir> --recipe <dpo recipe>

`prepare` builds, in order: seed, tokenizer (the SFT run's chat template), base model, the LoRA adapter
to train (the SFT run's, `init_adapter`, trained further; or a fresh one), the pairs
(`trainer.boundary_pairs` from the release's train split), each answer tokenised as SFT tokenises it (the
labelled span: answer and end-of-turn), and the reference log-probabilities: the model as loaded, so the
reference is the SFT model and no second copy is held. `fit` takes `batch_size` pairs a step (a seeded
shuffle, epoch after epoch) and minimises the DPO loss
    -log sigmoid(beta * ((log p(chosen) - log p_ref(chosen)) - (log p(rejected) - log p_ref(rejected))))
with AdamW and a cosine schedule; dropout is off throughout (policy and reference score alike). `save` writes
the adapter (over the base model, as SFT's: `trainer eval --model` evaluates it unchanged), the tokenizer
and the pairs trained on (`pairs.jsonl`).

Written here rather than with TRL's DPOTrainer so that the answers are scored on exactly the tokens the SFT
run learned (its template, its labelled span) and the reference needs no second model. One process only
(no torchrun), no resuming: a run is a few minutes to an hour.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from curator.errors import CuratorError
from trainer.backends.base import Backend, FitResult, StepCallback
from trainer.backends.sft import ADAPTER_DIR, TOKENIZER_DIR, RunLog, weights_sha256
from trainer.boundary_pairs import boundary_pairs
from trainer.causal_lm import causal_lm_of, final_hidden_states
from trainer.chat_template import IGNORE_INDEX, tokenize_conversation
from trainer.config import RUN_FILE, TrainConfig
from trainer.data import Example, shifted
from trainer.distributed import World
from trainer.models import load_model, load_training_tokenizer, pick_dtype, resolve_model

PAIRS_FILE = "pairs.jsonl"


def init_adapter_dir(path: Path, model: str) -> Path:
    """The adapter a DPO run starts from: a `trainer fit` run directory's (its base model must be `model`) or an
    adapter directory itself."""
    if (path / RUN_FILE).is_file():
        run = json.loads((path / RUN_FILE).read_text())
        if run.get("base_model") != model:
            raise CuratorError(f"{path}: trained on {run.get('base_model')!r}, not on the configured model {model!r}")
        if "adapter" not in run.get("artefacts", {}):
            raise CuratorError(f"{path}: the run saved no LoRA adapter to start from ({sorted(run.get('artefacts', {}))})")
        return path / run["artefacts"]["adapter"]
    if (path / "adapter_config.json").is_file():
        return path
    raise CuratorError(f"{path}: neither a finished trainer run (no {RUN_FILE}) nor a peft adapter (no adapter_config.json)")


def answer_logp(model: torch.nn.Module, example: Example, device: torch.device) -> torch.Tensor:
    """The summed log-probability of the example's labelled tokens (the answer and its end-of-turn)."""
    lm = causal_lm_of(model)
    ids = torch.tensor([example.input_ids], device=device)
    hidden = final_hidden_states(lm, ids, torch.arange(len(example), device=device)[None])[0]
    targets = torch.tensor(example.targets, device=device)
    at = targets != IGNORE_INDEX
    logits = (hidden[at] @ lm.get_output_embeddings().weight.T).float()
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.log_softmax(logits, dim=-1).gather(1, targets[at][:, None]).sum()


class DPOBackend(Backend):
    """DPO of a LoRA adapter on preference pairs at the refusal boundary (see the module docstring)."""

    def prepare(self, config: TrainConfig, train_records: list[dict], eval_records: list[dict], run_dir: Path,
                *, world: World, resume: bool = False) -> None:
        if resume:
            raise CuratorError("the dpo backend does not resume; start the run again")
        if world.distributed:
            raise CuratorError("the dpo backend runs in one process; launch it without torchrun")
        if not config.lora:
            raise CuratorError("the dpo backend trains a LoRA adapter (lora: true)")
        self.config, self.run_dir, self.world = config, run_dir, world
        torch.manual_seed(config.seed)
        model_dir = resolve_model(config.model)
        self.tokenizer, self.chat_template = load_training_tokenizer(model_dir)
        base = load_model(model_dir, world.device)
        if config.init_adapter:
            self.model = PeftModel.from_pretrained(base, init_adapter_dir(Path(config.init_adapter), config.model),
                                                   is_trainable=True)
        else:
            self.model = get_peft_model(base, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                         lora_dropout=config.lora_dropout,
                                                         target_modules="all-linear", task_type="CAUSAL_LM"))
        self.model.eval()  # no dropout: the policy is scored as the reference was
        self.pairs, self.examples, dropped = [], [], []
        for pair in boundary_pairs(train_records):
            sides = (self._example(pair, pair["chosen"]), self._example(pair, pair["rejected"]))
            if any(all(t == IGNORE_INDEX for t in side.targets) for side in sides):
                dropped.append(pair["id"])  # the answer was cut away by max_seq_len
                continue
            self.pairs.append(pair)
            self.examples.append(sides)
        if not self.pairs:
            raise CuratorError(f"no preference pairs: the train split has no refusal family ({len(train_records)} "
                               "records), or every answer was cut by max_seq_len")
        kinds = [p["kind"] for p in self.pairs]
        self.data_stats = {"records": len(train_records), "pairs": len(self.pairs), "refusal_pairs": kinds.count("refusal"),
                           "lookalike_pairs": kinds.count("lookalike"), "dropped_truncated": len(dropped),
                           "dropped_ids": dropped}
        with torch.no_grad():
            self.reference = [tuple(float(answer_logp(self.model, side, world.device)) for side in sides)
                              for sides in self.examples]
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = get_cosine_with_min_lr_schedule_with_warmup(
            self.optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps,
            min_lr_rate=config.min_lr_ratio)
        self.order: list[int] = []
        self.shuffle = random.Random(config.seed)

    def _example(self, pair: dict, answer: str) -> Example:
        conversation = tokenize_conversation(self.tokenizer, [*pair["prompt"], {"role": "assistant", "content": answer}])
        example = shifted(pair["id"], conversation)
        n = self.config.max_seq_len
        if len(example) <= n:
            return example
        return Example(example.record_id, example.input_ids[:n], example.targets[:n - 1] + [IGNORE_INDEX])

    def _next(self) -> list[int]:
        """The next `batch_size` pair indices: a fresh seeded shuffle whenever the last one is used up."""
        batch = []
        while len(batch) < self.config.batch_size:
            if not self.order:
                self.order = list(range(len(self.pairs)))
                self.shuffle.shuffle(self.order)
            batch.append(self.order.pop())
        return batch

    def _train_step(self, step: int) -> dict:
        started = time.perf_counter()
        beta, batch = self.config.dpo_beta, self._next()
        loss_sum = margin_sum = right = tokens = labelled = 0.0
        for i in batch:
            chosen, rejected = self.examples[i]
            ref_chosen, ref_rejected = self.reference[i]
            margin = beta * ((answer_logp(self.model, chosen, self.world.device) - ref_chosen)
                             - (answer_logp(self.model, rejected, self.world.device) - ref_rejected))
            loss = -F.logsigmoid(margin)
            (loss / len(batch)).backward()
            loss_sum, margin_sum, right = loss_sum + loss.item(), margin_sum + margin.item(), right + (margin.item() > 0)
            tokens += len(chosen) + len(rejected)
            labelled += sum(t != IGNORE_INDEX for t in chosen.targets + rejected.targets)
        lr = self.scheduler.get_last_lr()[0]
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, self.config.grad_clip).item()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        return {"step": step, "loss": loss_sum / len(batch), "reward_margin": margin_sum / len(batch),
                "reward_accuracy": right / len(batch), "lr": lr, "grad_norm": grad_norm, "tokens": int(tokens),
                "trained_tokens": int(labelled), "seconds": round(seconds, 4),
                "tokens_per_s": round(tokens / seconds, 2), "pair_ids": [self.pairs[i]["id"] for i in batch]}

    def fit(self, on_step: StepCallback) -> FitResult:
        log = RunLog(self.run_dir, 1)
        first = final = None
        totals = {"tokens": 0, "trained_tokens": 0, "seconds": 0.0}
        try:
            for step in range(1, self.config.steps + 1):
                row = self._train_step(step)
                ids = row.pop("pair_ids")
                first = row["loss"] if first is None else first
                final = row["loss"]
                for key in totals:
                    totals[key] += row[key]
                log.step(row, [ids])
                on_step(row)
        finally:
            log.close()
        return FitResult(
            steps=self.config.steps, first_loss=first, final_loss=final, tokens=totals["tokens"],
            trained_tokens=totals["trained_tokens"], seconds=round(totals["seconds"], 2),
            trainable_params=sum(p.numel() for p in self.trainable), device=str(self.world.device),
            dtype=str(pick_dtype(self.world.device)).removeprefix("torch."), data_stats=self.data_stats,
            weights_sha256_by_rank=[weights_sha256(self.model)], chat_template=self.chat_template.describe())

    def save(self) -> dict[str, str]:
        self.tokenizer.save_pretrained(self.run_dir / TOKENIZER_DIR)
        self.model.save_pretrained(self.run_dir / ADAPTER_DIR)
        with open(self.run_dir / PAIRS_FILE, "w", encoding="utf-8") as f:
            for pair in self.pairs:
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
        return {"adapter": ADAPTER_DIR, "tokenizer": TOKENIZER_DIR, "pairs": PAIRS_FILE}
