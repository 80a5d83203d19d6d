"""`export_release`: a release's splits in the layouts other tools read.

  hf        a Hugging Face dataset repository: `data/{train,eval}.parquet` (the release's own files,
            byte for byte) and a `README.md` dataset card whose YAML `configs` names the splits, so
            `load_dataset(DIR)` or a push to the Hub works as is
  hf-disk   `DatasetDict.save_to_disk(DIR)`: reload with `datasets.load_from_disk(DIR)`
  openai    `{train,eval}.jsonl`, one `{"messages": [{"role", "content"}, ...]}` per line (fine-tuning API)
  trl       the same `{"messages": [...]}` JSONL: TRL's conversational format, which `SFTTrainer`
            renders with the tokenizer's chat template without conversion
  sharegpt  `{"id", "conversations": [{"from": "system"|"human"|"gpt", "value"}]}` per line
  alpaca    `{"instruction", "input", "output"}` per line, for single-turn pairs without a system
            message only; the whole user turn is the instruction (input is empty), so nothing is
            split on a guess. Other rows are skipped and counted with their reason.

Every export writes `export.json`: the release, its certificate hash, the format, rows written per
file and rows skipped per reason (written + skipped = rows of the split).
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from curator.errors import CuratorError, missing_extra
from curator.hashing import sha256_file
from curator.release.store import SPLITS, Release

FORMATS = ("hf", "hf-disk", "openai", "trl", "sharegpt", "alpaca")
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


@dataclass
class ExportResult:
    out: Path
    format: str
    written: dict[str, int] = field(default_factory=dict)  # file -> rows
    skipped: Counter = field(default_factory=Counter)  # reason -> rows


def _messages(record: dict) -> dict:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in record["messages"]]}


def _sharegpt(record: dict) -> dict:
    return {"id": record["id"],
            "conversations": [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in record["messages"]]}


def alpaca_skip_reason(record: dict) -> str | None:
    """Why a pair has no faithful Alpaca form, or None when it has one."""
    roles = [m["role"] for m in record["messages"]]
    if "system" in roles:
        return "has a system message (Alpaca has no system field)"
    if roles != ["user", "assistant"]:
        return f"multi-turn ({roles.count('user')} user turns; Alpaca holds one)"
    return None


def _alpaca(record: dict) -> dict | None:
    if alpaca_skip_reason(record):
        return None
    user, assistant = record["messages"]
    return {"instruction": user["content"], "input": "", "output": assistant["content"]}


JSONL_ROWS: dict[str, Callable[[dict], dict | None]] = {
    "openai": _messages, "trl": _messages, "sharegpt": _sharegpt, "alpaca": _alpaca,
}


def _write_jsonl(release: Release, fmt: str, result: ExportResult) -> None:
    to_row = JSONL_ROWS[fmt]
    for split in SPLITS:
        name, n = f"{split}.jsonl", 0
        with open(result.out / name, "w", encoding="utf-8") as f:
            for record in getattr(release, split):
                row = to_row(record)
                if row is None:
                    result.skipped[alpaca_skip_reason(record)] += 1
                    continue
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        result.written[name] = n


def hf_card_header() -> str:
    """YAML front matter that tells `datasets` and the Hub which file is which split."""
    files = "".join(f"  - split: {s}\n    path: data/{s}.parquet\n" for s in SPLITS)
    return f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}tags: [instruct-curator]\n---\n"


def _write_hf(release: Release, result: ExportResult) -> None:
    from curator.release.report import datasheet

    (result.out / "data").mkdir()
    for split in SPLITS:
        shutil.copyfile(release.path / f"{split}.parquet", result.out / "data" / f"{split}.parquet")
        result.written[f"data/{split}.parquet"] = len(getattr(release, split))
    (result.out / "README.md").write_text(hf_card_header() + "\n" + datasheet(release), encoding="utf-8")


def _write_hf_disk(release: Release, result: ExportResult) -> None:
    try:
        import datasets
        import pyarrow.parquet as pq
    except ImportError as e:
        raise missing_extra("--to hf-disk", "trl", e) from None
    splits = {s: datasets.Dataset(pq.read_table(release.path / f"{s}.parquet")) for s in SPLITS}
    datasets.DatasetDict(splits).save_to_disk(str(result.out))
    result.written.update({f"{s}/": len(d) for s, d in splits.items()})


def export_release(release: Release, fmt: str, out: Path) -> ExportResult:
    """Write `release` to `out` (a new or empty directory) in format `fmt`."""
    if fmt not in FORMATS:
        raise CuratorError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CuratorError(f"{out}: exists and is not an empty directory; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out, fmt)
    if fmt == "hf":
        _write_hf(release, result)
    elif fmt == "hf-disk":
        _write_hf_disk(release, result)
    else:
        _write_jsonl(release, fmt, result)
    rows = sum(len(getattr(release, s)) for s in SPLITS)
    if sum(result.written.values()) + sum(result.skipped.values()) != rows:
        raise CuratorError(f"export of {release.name}: {rows} rows in, {sum(result.written.values())} written + "
                           f"{sum(result.skipped.values())} skipped")
    summary = {
        "release": release.name,
        "release_path": str(release.path.resolve()),
        "manifest_sha256": release.certificate["manifest_sha256"],
        "certified": bool(release.manifest.get("certified")),
        "format": fmt,
        "written": result.written,
        "skipped": dict(result.skipped),
        "sha256": {n: sha256_file(out / n) for n in result.written if (out / n).is_file()},
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return result
