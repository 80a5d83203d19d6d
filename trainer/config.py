"""Training configuration: dataclass defaults, then a YAML recipe (`--recipe`), then command-line overrides."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from curator.errors import CuratorError

RUN_FILE = "run.json"  # written into a run directory by `trainer fit` when it finishes: what was trained, `save()`'s report


@dataclass
class TrainConfig:
    dataset: str = "latest"
    model: str = "gemma-3-270m"
    backend: str = "sft"
    steps: int = 60
    batch_size: int = 4
    max_seq_len: int = 256
    lr: float = 2e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora: bool = True  # False: full fine-tuning of every weight
    merge: bool = False  # also write the adapter merged into the base weights (`merged/`)
    packing: bool = True  # several short conversations per row, kept apart by position ids
    loss_chunk_tokens: int = 512  # labelled positions projected through the LM head at once
    grad_accum: int = 1  # micro-batches per optimiser step
    gradient_checkpointing: bool = False
    save_every: int = 0  # steps between resumable checkpoints (0: none)
    eval_every: int = 0  # steps between eval-loss measurements (0: none)
    eval_pairs: int = 256  # eval split pairs used for the eval loss (the first N)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        """The config a run saved (`<run dir>/config.json`)."""
        try:
            return _from_mapping(json.loads(path.read_text()), str(path))
        except (OSError, json.JSONDecodeError) as e:
            raise CuratorError(f"{path}: cannot read run config: {e}") from None


_FIELDS = {f.name: f for f in fields(TrainConfig)}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _TYPES[_FIELDS[name].type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CuratorError(f"{where}: {name}: expected {kind.__name__}, got {value!r}")
    return value


def _from_mapping(doc: Any, where: str, base: TrainConfig | None = None) -> TrainConfig:
    if not isinstance(doc, dict):
        raise CuratorError(f"{where}: a training recipe is a mapping of settings")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise CuratorError(f"{where}: unknown setting(s) {unknown}; known: {sorted(_FIELDS)}")
    values = (base or TrainConfig()).as_dict()
    values.update({k: _coerce(k, v, where) for k, v in doc.items()})
    return TrainConfig(**values)


def _check(config: TrainConfig) -> TrainConfig:
    positive = ("steps", "batch_size", "max_seq_len", "lr", "lora_r", "lora_alpha", "grad_clip",
                "loss_chunk_tokens", "grad_accum", "eval_pairs")
    for name in positive:
        if getattr(config, name) <= 0:
            raise CuratorError(f"{name} must be > 0 (got {getattr(config, name)})")
    if not 0 <= config.lora_dropout < 1:
        raise CuratorError(f"lora_dropout must be in [0, 1) (got {config.lora_dropout})")
    if not 0 <= config.min_lr_ratio <= 1:
        raise CuratorError(f"min_lr_ratio must be in [0, 1] (got {config.min_lr_ratio})")
    for name in ("warmup_steps", "save_every", "eval_every"):
        if getattr(config, name) < 0:
            raise CuratorError(f"{name} must be >= 0 (got {getattr(config, name)})")
    if config.merge and not config.lora:
        raise CuratorError("--merge needs a LoRA run (a full fine-tune already writes whole weights)")
    return config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per TrainConfig field (`lora_r` -> `--lora-r`); unset flags leave the recipe's value."""
    parser.add_argument("--recipe", type=Path, help="YAML file of training settings (command-line flags win)")
    for name, f in _FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=f"default: {f.default}")
        else:
            parser.add_argument(flag, dest=name, type=_TYPES[f.type], default=None, help=f"default: {f.default}")


def overrides_given(args: argparse.Namespace) -> list[str]:
    """The settings named on the command line (or `--recipe`)."""
    given = [name for name in _FIELDS if getattr(args, name, None) is not None]
    return given + (["recipe"] if getattr(args, "recipe", None) is not None else [])


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the recipe named by `--recipe`, then every flag given on the command line."""
    config = TrainConfig()
    if args.recipe is not None:
        try:
            doc = yaml.safe_load(args.recipe.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise CuratorError(f"{args.recipe}: cannot read recipe: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise CuratorError(f"{args.recipe}: not valid YAML: {e}") from None
        config = _from_mapping(doc, str(args.recipe), config)
    overrides = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    return _check(_from_mapping(overrides, "command line", config))
