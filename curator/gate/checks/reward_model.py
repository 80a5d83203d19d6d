"""`reward_model`: a local reward / quality model scores each (instruction, response) pair.

Any Hugging Face sequence-classification directory (`AutoModelForSequenceClassification` + `AutoTokenizer`,
`gate.reward_model.path`), run on CPU without gradients in batches of `batch_size`, each pair encoded as the
tokenizer's text pair (user turns, assistant turns), truncated to `max_length` tokens. The score written to
`row.scores["reward"]`: with a one-label head, the logit (a reward, unbounded); with a two-label head, the
probability of label 1 (the positive class). Other heads are an error. With a `threshold`, rows scored below
it are rejected as `reward_model:low_score`. Needs torch and transformers (`pip install 'instruct-curator[train]'`).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curator.errors import CuratorError, missing_extra
from curator.gate.check import CheckResult, GateContext, Rejection, Row, progress
from curator.records import assistant_text, user_text
from curator.spec import RewardModelConfig, Spec

Scorer = Callable[[list[tuple[str, str]]], list[float]]


def load_scorer(path: Path, max_length: int) -> tuple[Scorer, str]:
    """A function scoring a batch of (instruction, response) pairs with the model at `path`, and what the
    score is (`logit` or `p(label 1)`)."""
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as e:
        raise missing_extra("gate.reward_model", "train", e) from None
    if not (path / "config.json").is_file():
        raise CuratorError(f"gate.reward_model.path: {path} is not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    labels = model.config.num_labels
    if labels not in (1, 2):
        raise CuratorError(f"gate.reward_model: {path} has a {labels}-label head; "
                           "a reward model has 1 label (a reward logit) or 2 (positive-class probability)")

    @torch.inference_mode()
    def score(pairs: list[tuple[str, str]]) -> list[float]:
        encoded = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
        logits = model(**encoded).logits.float()
        values = logits[:, 0] if labels == 1 else logits.softmax(-1)[:, 1]
        return values.tolist()

    return score, "logit" if labels == 1 else "p(label 1)"


class RewardModel:
    """The `reward_model` check (see the module docstring)."""

    name = "reward_model"

    def __init__(self, config: RewardModelConfig):
        if not config.path:
            raise CuratorError("gate.reward_model: an enabled reward model needs path (a model directory)")
        self.config = config

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "RewardModel":
        return cls(spec.gate.reward_model)

    def run(self, rows: list[Row]) -> CheckResult:
        score, meaning = load_scorer(Path(self.config.path), self.config.max_length)
        size = self.config.batch_size
        batches = range(0, len(rows), size)
        for start in progress(batches, "reward model", total=len(batches)):
            batch = rows[start:start + size]
            for row, value in zip(batch, score([(user_text(r.record), assistant_text(r.record)) for r in batch])):
                row.scores["reward"] = round(value, 6)
        threshold = self.config.threshold
        low = [r for r in rows if threshold is not None and r.scores["reward"] < threshold]
        out = {id(r) for r in low}
        values = sorted(r.scores["reward"] for r in rows)
        return CheckResult(
            kept=[r for r in rows if id(r) not in out],
            rejected=[Rejection(r, f"reward_model:low_score: {r.scores['reward']:.4g} < {threshold:g}") for r in low],
            stats={
                "checked": len(rows), "removed": len(low), "score": meaning, "threshold": threshold,
                "min": values[0] if values else None, "median": values[len(values) // 2] if values else None,
                "max": values[-1] if values else None,
            },
        )
