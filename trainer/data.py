"""Pair records to training batches: chat-template tokenisation, truncation, packing, seeded shuffling, sharding.

A batch is a few rows; with packing on, a row holds several conversations end to end (best-fit
decreasing into rows of `max_seq_len`). Conversations in one row stay apart without an attention
mask: their position ids restart at 0, and transformers builds the block-diagonal causal mask from
them (SDPA, eager), or runs variable-length flash attention over them (a padding-free single row).
Padding after the last conversation of a row is one more segment that carries no labels.
Targets are shifted within each conversation (the token each position predicts), so a row never
learns to predict the first token of the next conversation.
"""
from __future__ import annotations

import bisect
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


@dataclass(frozen=True)
class Example:
    record_id: str
    input_ids: list[int]
    targets: list[int]  # targets[t] = labels[t + 1]: the token position t learns to predict

    def __len__(self) -> int:
        return len(self.input_ids)


def shifted(record_id: str, conversation: TokenizedConversation) -> Example:
    """The conversation with its labels shifted left by one inside it (the last position predicts nothing)."""
    return Example(record_id, conversation.input_ids, conversation.labels[1:] + [IGNORE_INDEX])


def build_examples(
    records: list[dict], tokenizer: PreTrainedTokenizerBase, max_seq_len: int, split: str = "train"
) -> tuple[list[Example], DataStats]:
    """Tokenise each record, cut it to `max_seq_len`; a record whose answer is cut away entirely is dropped and counted."""
    stats = DataStats(records=len(records))
    examples = []
    for record in records:
        try:
            full = tokenize_conversation(tokenizer, record["messages"])
        except TemplateError as e:
            raise CuratorError(f"{split} record {record['id']}: cannot render with the chat template: {e}") from None
        if len(full.input_ids) > max_seq_len:
            stats.truncated += 1
            full = TokenizedConversation(full.input_ids[:max_seq_len], full.labels[:max_seq_len])
        example = shifted(record["id"], full)
        if all(t == IGNORE_INDEX for t in example.targets):
            stats.dropped_no_answer_tokens.append(record["id"])
            continue
        examples.append(example)
    stats.used = len(examples)
    if not examples:
        raise CuratorError(
            f"no {split} record has answer tokens within max_seq_len={max_seq_len} "
            f"({stats.records} records); raise --max-seq-len"
        )
    return examples, stats


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (rows, width)
    position_ids: torch.Tensor  # restart at 0 for every conversation and for the padding tail
    targets: torch.Tensor  # IGNORE_INDEX where nothing is learnt (prompts, last token, padding)
    record_ids: tuple[str, ...]
    tokens: int  # conversation tokens (no padding)

    @property
    def slots(self) -> int:
        return self.input_ids.numel()

    @property
    def trained_tokens(self) -> int:
        return int((self.targets != IGNORE_INDEX).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.position_ids.to(device), self.targets.to(device),
                     self.record_ids, self.tokens)


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices of `lengths` grouped into rows of at most `capacity` tokens.

    Ties in length keep their input order, so a shuffled input gives shuffled rows.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row index), sorted
    for i in order:
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            rows.append([i])
            room, row = capacity - lengths[i], len(rows) - 1
        else:
            room, row = free.pop(at)
            rows[row].append(i)
            room -= lengths[i]
        if room > 0:
            bisect.insort(free, (room, row))
    return rows


def collate(rows: list[list[Example]], pad_token_id: int, *, padding_free: bool = False) -> Batch:
    """Rows of examples to tensors: right-padded to the longest row, or one unpadded row (`padding_free`)."""
    if padding_free:
        rows = [[e for row in rows for e in row]]
    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    tokens = 0
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e)
            ids[r, at : at + n] = torch.tensor(e.input_ids)
            targets[r, at : at + n] = torch.tensor(e.targets)
            positions[r, at : at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(width - at)
        tokens += at
    record_ids = tuple(e.record_id for row in rows for e in row)
    return Batch(ids, positions, targets, record_ids, tokens)


class BatchPlan:
    """The endless, reproducible sequence of this rank's micro-batches, and where it stands (for resume).

    Epoch `e` shuffles the examples with a seed made of (`seed`, `e`), packs them into rows (or one
    example per row), shuffles the rows, and cuts them into global batches of `batch_size × world_size`
    rows; rank `r` takes rows `r, r + world_size, ...` of each (disjoint shards, like DistributedSampler).
    A last global batch shorter than that is skipped; with fewer rows than one global batch, every
    batch holds all of them (and ranks with no row of their own repeat the whole batch).
    """

    def __init__(self, examples: list[Example], *, batch_size: int, max_seq_len: int, packing: bool,
                 pad_token_id: int, seed: int, rank: int = 0, world_size: int = 1, padding_free: bool = False):
        self.examples, self.batch_size, self.max_seq_len, self.packing = examples, batch_size, max_seq_len, packing
        self.pad_token_id, self.seed, self.rank, self.world_size = pad_token_id, seed, rank, world_size
        self.padding_free = padding_free
        self.epoch, self.cursor = 0, 0
        self._rows = self._epoch_rows(0)

    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.examples), generator=generator).tolist()
        if not self.packing:
            return [[i] for i in order]
        packed = pack_rows([len(self.examples[i]) for i in order], self.max_seq_len)
        rows = [[order[j] for j in row] for row in packed]
        return [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]

    def packing_efficiency(self) -> float:
        """Conversation tokens / row slots over one epoch, each row `max_seq_len` wide."""
        tokens = sum(len(e) for e in self.examples)
        return round(tokens / (len(self._rows) * self.max_seq_len), 4)

    def next(self) -> Batch:
        size = min(self.batch_size * self.world_size, len(self._rows))
        if self.cursor + size > len(self._rows):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._rows = self._epoch_rows(self.epoch)
        chunk = self._rows[self.cursor : self.cursor + size]
        self.cursor += size
        mine = chunk[self.rank :: self.world_size] or chunk
        rows = [[self.examples[i] for i in row] for row in mine]
        return collate(rows, self.pad_token_id, padding_free=self.padding_free)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._rows = self._epoch_rows(self.epoch)


def fixed_batches(examples: list[Example], *, batch_size: int, max_seq_len: int, packing: bool,
                  pad_token_id: int, padding_free: bool = False) -> list[Batch]:
    """Every example once, in order (packed when `packing`): the eval-loss batches."""
    if packing:
        rows = [[examples[i] for i in row] for row in pack_rows([len(e) for e in examples], max_seq_len)]
    else:
        rows = [[e] for e in examples]
    return [collate(rows[i : i + batch_size], pad_token_id, padding_free=padding_free)
            for i in range(0, len(rows), batch_size)]
