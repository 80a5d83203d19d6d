"""The tuned model stops: `<end_of_turn>` is a target of every packed answer, and a model that learned it stops there.

Real tiny Gemma 3 (tests/tiny_model.py), the trainer's own tokenisation, packing and generation code.
"""
from pathlib import Path

import pytest
import torch
from rich.progress import Progress

from tiny_model import MULTI_TURN, build_tiny_model, seed_pairs, starter_spec
from trainer.chat_template import END_OF_TURN, IGNORE_INDEX, generation_prompt_ids, stop_token_ids, tokenize_conversation
from trainer.data import build_examples, fixed_batches
from trainer.evaluate import generate_answers
from trainer.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def pairs():
    return seed_pairs(starter_spec())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, pairs) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", pairs)


def test_every_packed_answer_ends_in_a_learned_end_of_turn(tiny_model, pairs):
    tokenizer = load_tokenizer(tiny_model)
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    records = [*pairs, {"id": "multi", "messages": MULTI_TURN}]
    examples, stats = build_examples(records, tokenizer, max_seq_len=512)
    assert stats.truncated == 0
    batches = fixed_batches(examples, batch_size=2, max_seq_len=512, packing=True, pad_token_id=tokenizer.pad_token_id)
    assert any(len(set(b.record_ids)) > len(b.input_ids) for b in batches)  # rows really hold several conversations
    answers = sum(1 for r in records for m in r["messages"] if m["role"] == "assistant")
    assert sum(int((b.targets == eot).sum()) for b in batches) == answers
    for b in batches:  # each learned <end_of_turn> is predicted at the position of the answer's last token
        rows, cols = (b.targets == eot).nonzero(as_tuple=True)
        assert (b.input_ids[rows, cols] != eot).all() and (b.input_ids[rows, cols + 1] == eot).all()
    assert eot in stop_token_ids(tokenizer)


def test_truncated_answer_has_no_end_of_turn_to_learn(tiny_model, pairs):
    """A conversation cut at max_seq_len trains on its answer's start only: it is counted, never a false stop."""
    tokenizer = load_tokenizer(tiny_model)
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    longest = max(pairs, key=lambda p: len(tokenize_conversation(tokenizer, p["messages"]).input_ids))
    full = len(tokenize_conversation(tokenizer, longest["messages"]).input_ids)
    examples, stats = build_examples([longest], tokenizer, max_seq_len=full - 3)
    assert stats.truncated == 1 and eot not in examples[0].targets


def test_a_model_that_learned_end_of_turn_stops_there(tiny_model):
    """Train the tiny model on one answer with the trainer's labels; greedy generation then stops at `<end_of_turn>`."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_model)
    model = load_model(tiny_model, torch.device("cpu"))
    conversation = tokenize_conversation(tokenizer, MULTI_TURN[1:3])  # "Oslo." and its <end_of_turn>
    ids = torch.tensor([conversation.input_ids])
    labels = torch.tensor([conversation.labels])
    assert (labels != IGNORE_INDEX).sum() >= 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    prompt = generation_prompt_ids(tokenizer, MULTI_TURN[1:2])
    max_new = 24
    with Progress(disable=True) as progress:
        [answer] = generate_answers(model, tokenizer, [prompt], max_new_tokens=max_new, batch_size=1,
                                    progress=progress, label="stop")
    assert answer == "Oslo."
    out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new, do_sample=False,
                         eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    new = out[0, len(prompt):].tolist()
    assert new[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN) and len(new) < max_new
