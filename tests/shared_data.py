"""The shared instruct mix (`../shared/data/instruct_mix.jsonl` beside the repository): real text for tests.

It is not part of the repository (its README asks not to copy it), so a fresh clone has no copy: tests
that need it skip, naming the file. `INSTRUCT_CURATOR_SHARED_MIX` points elsewhere (or at nothing, to
check the skips).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

MIX = Path(os.environ.get("INSTRUCT_CURATOR_SHARED_MIX")
           or Path(__file__).resolve().parents[2] / "shared" / "data" / "instruct_mix.jsonl")


def mix_path() -> Path:
    """The shared instruct mix; skips the calling test when it is absent."""
    if not MIX.is_file():
        pytest.skip(f"needs the shared instruct mix at {MIX} (../shared/data beside the repository, or "
                    "INSTRUCT_CURATOR_SHARED_MIX); a fresh clone has none")
    return MIX
