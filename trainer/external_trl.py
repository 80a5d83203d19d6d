"""Train an exported run (`trainer fit --backend export`) with TRL's SFTTrainer.

For what the bundled loop does not do, chiefly sharding a model across GPUs with FSDP:

    trainer fit --backend export --recipe my.yaml --out runs/x
    accelerate launch --config_file trainer/recipes/accelerate/fsdp2.yaml -m trainer.external_trl runs/x

It reads `trl_config.json`, `chat_template.jinja` and `dataset/` from the run directory and writes
TRL's output (checkpoints, the final adapter or model) under `<run dir>/trl/`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainer.backends.export import CHAT_TEMPLATE_FILE, TRL_CONFIG_FILE

OUTPUT_DIR = "trl"


def train_export(run_dir: Path) -> Path:
    """Run TRL on the export in `run_dir`; return the directory of the final weights."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from trainer.models import load_tokenizer

    settings = json.loads((run_dir / TRL_CONFIG_FILE).read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(Path(settings["model"]))
    tokenizer.chat_template = (run_dir / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    files = {"train": str(run_dir / settings["train_file"])}
    has_eval = (run_dir / settings["eval_file"]).stat().st_size > 0
    if has_eval:
        files["eval"] = str(run_dir / settings["eval_file"])
    data = load_dataset("json", data_files=files)
    sft = dict(settings["sft_config"])
    if not torch.cuda.is_available():
        sft.update(use_cpu=True, bf16=False)  # TRL defaults to bf16, which needs a GPU
    if not has_eval:
        sft.update(eval_strategy="no")
        sft.pop("eval_steps", None)
    args = SFTConfig(output_dir=str(run_dir / OUTPUT_DIR), report_to=[], **sft)
    lora = LoraConfig(**settings["lora_config"]) if settings["lora_config"] else None
    trainer = SFTTrainer(model=settings["model"], args=args, train_dataset=data["train"],
                         eval_dataset=data["eval"] if has_eval else None, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    final = run_dir / OUTPUT_DIR / "final"
    trainer.save_model(str(final))
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.external_trl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory written by `trainer fit --backend export`")
    args = parser.parse_args(argv)
    if not (args.run_dir / TRL_CONFIG_FILE).is_file():
        print(f"{args.run_dir}: no {TRL_CONFIG_FILE}; export it with `trainer fit --backend export`", file=sys.stderr)
        return 2
    print(train_export(args.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
