"""Where runs and releases live: `<data root>/runs/` and `<data root>/releases/`.

The data root is `./data` unless `INSTRUCT_CURATOR_DATA` names another directory.
"""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    return Path(os.environ.get("INSTRUCT_CURATOR_DATA", "data"))


def runs_root() -> Path:
    return data_root() / "runs"


def releases_root() -> Path:
    return data_root() / "releases"
