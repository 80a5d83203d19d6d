"""Resumable checkpoints: `<run dir>/checkpoints/step-NNNNNNNN/state.pt`, written atomically.

A checkpoint holds the trainable weights, the optimiser and scheduler states, every rank's RNG
state, the data plan's position and the running totals: enough for `trainer fit --resume` to go on
exactly where the run stood. It is written into a hidden temporary directory, fsynced, then renamed
into place, so a kill at any moment leaves either the whole checkpoint or none; the newest
`KEEP` checkpoints are kept.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from curator.durable import fsync_dir

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "state.pt"
KEEP = 2


def save_checkpoint(run_dir: Path, step: int, state: dict) -> Path:
    """Write `state` as the checkpoint of `step`; drop all but the newest `KEEP`."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(exist_ok=True)
    for leftover in root.glob(".step-*.partial-*"):  # from a run killed while writing
        shutil.rmtree(leftover)
    final = root / f"step-{step:08d}"
    staging = root / f".step-{step:08d}.partial-{os.getpid()}"
    staging.mkdir()
    with open(staging / STATE_FILE, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.rename(staging, final)
    fsync_dir(root)
    for old in checkpoints(run_dir)[:-KEEP]:
        shutil.rmtree(old)
    return final


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())


def load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path / STATE_FILE, map_location=device, weights_only=True)
