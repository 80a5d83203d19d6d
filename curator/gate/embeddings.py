"""The sentence embedders the gate's checks share (semantic dedup, relevance, selection), offline: the full
all-MiniLM-L6-v2 (the reference) and a model2vec static model distilled from it locally (thousands of texts a
second, no torch). Both return unit vectors, so a dot product is the cosine."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from curator.embedded_models import cache_dir, minilm_dir
from curator.errors import missing_extra

DISTILLED_NAME = "all-MiniLM-L6-v2-pca256"
Embed = Callable[[list[str]], np.ndarray]


def _normalised(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)


def minilm_embedder(batch_size: int = 64) -> Embed:
    """The full all-MiniLM-L6-v2 on CPU, offline; returns unit vectors."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise missing_extra("semantic dedup (MiniLM)", "gate", e) from None

    model = SentenceTransformer(str(minilm_dir()), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        return _normalised(model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                        show_progress_bar=len(texts) > 1000 and sys.stderr.isatty()))

    return embed


def distilled_model_dir() -> Path:
    """The model2vec model distilled from the local MiniLM (no download), built once and cached."""
    target = cache_dir() / "model2vec" / DISTILLED_NAME
    if (target / "model.safetensors").exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from model2vec.distill import distill
    except ImportError as e:
        raise missing_extra("distilling the model2vec backend", "gate", e) from None

    model = distill(model_name=str(minilm_dir()), device="cpu", pca_dims=256)
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model2vec_embedder() -> Embed:
    """The distilled static model; texts truncated to 256 tokens as MiniLM truncates them."""
    try:
        from model2vec import StaticModel
    except ImportError as e:
        raise missing_extra("semantic dedup (model2vec backend)", "gate", e) from None
    model = StaticModel.from_pretrained(str(distilled_model_dir()))

    def embed(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, model.dim), dtype=np.float32)
        return _normalised(model.encode(texts, max_length=256, batch_size=2048))

    return embed


EMBEDDERS: dict[str, Callable[[], Embed]] = {"minilm": minilm_embedder, "model2vec": model2vec_embedder}
LoadEmbedder = Callable[[str], Embed]  # a model by name (`EMBEDDERS`) as an `Embed`, wherever it runs


def load_embedder(backend: str) -> Embed:
    """The embedder named `backend` ("minilm", "model2vec"), loaded in this process."""
    return EMBEDDERS[backend]()
