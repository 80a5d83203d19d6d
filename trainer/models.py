"""Base models: the embedded gemma-3-270m (converted once from its GGUF) or any local Hugging Face directory."""
from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from curator import embedded_models
from curator.errors import CuratorError
from trainer.chat_template import ChatTemplate, install_chat_template, training_chat_template

EMBEDDED_GEMMA = embedded_models.GEMMA_NAME


def gemma_hf_dir() -> Path:
    """Where the converted gemma-3-270m lives: `<cache>/hf/gemma-3-270m`."""
    return embedded_models.cache_dir() / "hf" / EMBEDDED_GEMMA


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF into a Hugging Face directory (fp32 weights, tokenizer with the Gemma chat template).

    Built in a sibling temp directory and renamed into place under a lock, so a crash never leaves
    a half-written cache and two processes never convert at once.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        staging = target.parent / f".{target.name}.building-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            # A GGUF-loaded model refuses to save until its quantizer is detached; the weights are plain fp32 now.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(staging)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            install_chat_template(tokenizer).save_pretrained(staging)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def resolve_model(name_or_path: str) -> Path:
    """`gemma-3-270m` (converted from the embedded GGUF on first use) or a local Hugging Face model directory."""
    if name_or_path == EMBEDDED_GEMMA:
        target = gemma_hf_dir()
        return target if target.exists() else convert_gguf(embedded_models.gemma_gguf(), target)
    path = Path(name_or_path)
    if not (path / "config.json").is_file():
        raise CuratorError(
            f"model {name_or_path!r}: not {EMBEDDED_GEMMA!r} and not a Hugging Face model directory (no config.json)"
        )
    return path


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def training_attention(device: torch.device) -> str | None:
    """`flash_attention_2` on CUDA when the flash-attn package is installed; otherwise transformers' default (SDPA)."""
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def load_model(model_dir: Path, device: torch.device, attn_implementation: str | None = None) -> PreTrainedModel:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=pick_dtype(device), attn_implementation=attn_implementation)
    return model.to(device)


def load_training_tokenizer(model_dir: Path) -> tuple[PreTrainedTokenizerBase, ChatTemplate]:
    """The model's tokenizer with the chat template it trains and generates with installed, and that template
    (`trainer.chat_template.training_chat_template`: training and eval use the same one)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise CuratorError(f"tokenizer in {model_dir} has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of attention and loss
    template = training_chat_template(tokenizer, model_dir)
    tokenizer.chat_template = template.text
    return tokenizer, template


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """`load_training_tokenizer`'s tokenizer."""
    return load_training_tokenizer(model_dir)[0]
