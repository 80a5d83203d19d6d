"""Pair records to training batches: chat-template tokenisation, truncation, seeded shuffling, padding."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from curator.errors import CuratorError
from trainer.chat_template import IGNORE_INDEX, TokenizedConversation, tokenize_conversation


@dataclass
class DataStats:
    """What happened to each train record on its way into a batch (the counts add up to `records`)."""

    records: int = 0
    used: int = 0
    truncated: int = 0
    dropped_no_answer_tokens: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "records": self.records,
            "used": self.used,
            "truncated": self.truncated,
            "dropped_no_answer_tokens": len(self.dropped_no_answer_tokens),
            "dropped_ids": self.dropped_no_answer_tokens,
        }


def build_examples(
    records: list[dict], tokenizer: PreTrainedTokenizerBase, max_seq_len: int
) -> tuple[list[TokenizedConversation], DataStats]:
    """Tokenise each record, cut it to `max_seq_len`; a record whose answer is cut away entirely is dropped and counted."""
    stats = DataStats(records=len(records))
    examples = []
    for record in records:
        try:
            full = tokenize_conversation(tokenizer, record["messages"])
        except TemplateError as e:
            raise CuratorError(f"train record {record['id']}: cannot render with the chat template: {e}") from None
        if len(full.input_ids) > max_seq_len:
            stats.truncated += 1
            full = TokenizedConversation(full.input_ids[:max_seq_len], full.labels[:max_seq_len])
        if full.trained_tokens == 0:
            stats.dropped_no_answer_tokens.append(record["id"])
            continue
        examples.append(full)
    stats.used = len(examples)
    if not examples:
        raise CuratorError(
            f"no train record has answer tokens within max_seq_len={max_seq_len} "
            f"({stats.records} records); raise --max-seq-len"
        )
    return examples, stats


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(examples: list[TokenizedConversation], pad_token_id: int) -> Batch:
    """Right-pad to the longest example; padding is masked out of attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return Batch(ids, mask, labels)


def batches(
    examples: list[TokenizedConversation], batch_size: int, pad_token_id: int, seed: int
) -> Iterator[Batch]:
    """Endless batches: each epoch is a fresh seeded permutation cut into `batch_size` slices.

    A last slice shorter than `batch_size` is skipped (the next permutation follows); with fewer
    examples than `batch_size`, every batch holds all of them.
    """
    generator = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(examples))
    while True:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order) - size + 1, size):
            yield collate([examples[i] for i in order[start : start + size]], pad_token_id)
