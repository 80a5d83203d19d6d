"""Test helpers: tiny Gemma-3- and Qwen2-shaped models with small BPE tokenizers, and certified fixture releases.

The tiny models are a real `Gemma3ForCausalLM` and `Qwen2ForCausalLM` (2 layers, hidden 64) saved as
normal Hugging Face directories, so `trainer fit --model DIR` and `trainer eval` run their real code
paths in milliseconds per step. The Qwen2 tokenizer carries Qwen 2.5's real chat template (as TRL
ships it), without generation markers. The fixture releases hold the seed pairs of
`specs/starter.yaml` (all six task families).
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from curator.records import build_messages, make_pair
from curator.release.store import Conclusion, write_release
from curator.spec import Spec, load_spec
from trainer.chat_template import REQUIRED_SPECIAL_TOKENS, install_chat_template

STARTER = Path(__file__).resolve().parents[1] / "specs" / "starter.yaml"
SPECIALS = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
assert sorted(SPECIALS) == sorted(REQUIRED_SPECIAL_TOKENS)

MULTI_TURN = [
    {"role": "system", "content": "Answer in as few words as you can."},
    {"role": "user", "content": "What is the capital of Norway?"},
    {"role": "assistant", "content": "Oslo."},
    {"role": "user", "content": "And of Portugal?"},
    {"role": "assistant", "content": "Lisbon, on the Tagus river."},
]


def starter_spec() -> Spec:
    return load_spec(STARTER)


def seed_pairs(spec: Spec) -> list[dict]:
    """One pair record per seed of every task family of `spec`."""
    pairs = []
    for family in spec.task_families:
        for seed in family.seeds:
            pairs.append(
                make_pair(
                    build_messages(seed.instruction, seed.input, seed.output),
                    task_family=family.name,
                    format=seed.format or family.formats[0],
                    difficulty=seed.difficulty or family.difficulties[0],
                    length_band=family.length_band,
                    source="human",
                    spec_name=spec.name,
                    spec_hash=spec.hash,
                )
            )
    return pairs


def write_fixture_release(root: Path, spec: Spec, *, train: list[dict], eval: list[dict], certified: bool = True) -> Path:
    """A release written by the real store, with the `spec` section the gate writes into manifests."""
    manifest = {
        "spec": {"name": spec.name, "path": spec.path, "sha256": spec.hash, "raw": spec.raw},
        "counts": {"train": len(train), "eval": len(eval)},
    }
    failed = [] if certified else ["min_train_rows"]
    return write_release(
        train=train, eval=eval, rejected=[], conclusion=Conclusion(manifest, failed), root=root
    )


def _corpus(pairs: list[dict]) -> list[str]:
    texts = [m["content"] for p in pairs for m in p["messages"]] + [m["content"] for m in MULTI_TURN]
    return texts + ["user", "model", "\n\n", "I can't help with that."]


def _bpe(texts: list[str], specials: list[str]) -> Tokenizer:
    """A byte-level BPE tokenizer (600 tokens) trained on `texts`, with `specials` as added tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return tok


def build_tiny_model(target: Path, pairs: list[dict]) -> Path:
    """Train a byte-level BPE tokenizer on the pairs' text, build a 2-layer Gemma 3, save both to `target`."""
    tok = _bpe(_corpus(pairs), SPECIALS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    install_chat_template(tokenizer)

    config = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=1024,
        sliding_window=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def build_tiny_qwen2(target: Path, pairs: list[dict], *, chat_template: bool = True) -> Path:
    """A 2-layer Qwen2 with a byte-level BPE tokenizer shaped like Qwen 2.5 base's: eos and pad
    `<|endoftext|>`, no bos, and (unless `chat_template=False`) Qwen 2.5's own chat template."""
    from trl.chat_template_utils import qwen2_5_chat_template

    tok = _bpe(_corpus(pairs) + ["system", "assistant", QWEN_SYSTEM], QWEN_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = qwen2_5_chat_template
    config = Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
