"""Semantic duplicates: rows whose user texts mean the same thing, by embedding cosine similarity.

What is embedded: the user text without its boilerplate, i.e. without the lines that occur in at least
`boilerplate_min_rows` rows of the batch (tool descriptions, option lists, prompt-template lines). Left in,
a long shared preamble dominates a sentence embedding: on the shared 51,750-row set the full MiniLM put
gpteacher_toolformer rows that share a tool description and ask different things at >= 0.95 (658 of
799 pairs in a 4,000-row sample). A text made only of such lines is embedded whole.

Backends (`gate.semantic_dedup.backend`):

- `minilm`: all-MiniLM-L6-v2 through sentence-transformers (length-sorted batches, its 256-token
  truncation). The reference; about 170 user texts/s on 2 CPU cores.
- `model2vec`: a static model distilled locally from that MiniLM directory with model2vec (token
  vectors, PCA to 256 dims, cached under `cache_dir()/model2vec`); about 10,000 texts/s. A static
  model averages token vectors, so texts sharing a template score high even when the part that differs
  is the whole question. With `verify` (the default) its pairs at or over `candidate_threshold` are
  re-scored by the full MiniLM, which embeds only the rows in candidate pairs, and only pairs the full
  model puts at or over `threshold` count: recall against the full model is bounded by the candidate
  stage, precision is the full model's. Each distinct text is embedded once.

Measured (benchmarks/semantic_dedup.py, quiet 2-core machine): on the 45,810 rows of the shared set that reach
this check in the gate, the verified route (candidates at 0.92) takes 145 s plus 4 s of model loading, and
finds 89% of the full MiniLM's 26,063 pairs at 0.95; the rows it removes (11,253) are all rows the full model
removes, 95% of them (11,885). The full MiniLM on every row takes 272 s; model2vec alone at 0.95 finds 79% of
the pairs at a precision of 0.45.

The search is exact (blocked matrix products of normalised embeddings) up to `approximate_above`
rows and a faiss IVF index (inner product, range search, nlist = sqrt(n), nprobe 16) past it.
Measured on the shared set's model2vec embeddings at 0.95 (2.1M pairs at 51,750 rows): exact 0.4 /
3.5 / 28 s and IVF 0.5 / 9.9 / 35 s at 10k / 25k / 51,750 rows, IVF recall >= 0.99999. Exact grows
as n^2 and IVF about as n^1.5, so the default switch-over is 100,000 rows. Pairs over the threshold are
joined into clusters (union-find); each cluster keeps one row by `keep_rank` and the others are
rejected naming it.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np

from curator.errors import missing_extra
from curator.gate.check import CheckResult, GateContext, Rejection, Row, keep_rank, progress
from curator.gate.embeddings import Embed, LoadEmbedder, load_embedder
from curator.records import user_text
from curator.spec import SemanticDedupConfig, Spec

BLOCK = 2048


def without_boilerplate(texts: list[str], min_rows: int) -> tuple[list[str], int]:
    """Each text without the lines (compared stripped) found in at least `min_rows` of the texts, and how
    many distinct lines that was; a text with nothing else stays whole. `min_rows` 0 leaves texts as they are."""
    if min_rows <= 0:
        return list(texts), 0
    lines = [[line.strip() for line in text.split("\n")] for text in texts]
    rows_with = Counter(line for row in lines for line in set(row) if line)
    shared = {line for line, n in rows_with.items() if n >= min_rows}
    if not shared:
        return list(texts), 0
    out = []
    for text, row in zip(texts, lines):
        own = [line for line in row if line and line not in shared]
        out.append("\n".join(own) if own else text)
    return out, len(shared)


def embed_distinct(embed: Embed, texts: list[str]) -> np.ndarray:
    """`embed(texts)`, embedding each distinct text once (boilerplate removal leaves many texts identical)."""
    position: dict[str, int] = {}
    inverse = np.array([position.setdefault(t, len(position)) for t in texts], dtype=np.int64)
    return embed(list(position))[inverse]


def exact_pairs(emb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, with cosine >= threshold, by blocked products of unit vectors."""
    rows_i, rows_j = [], []
    for start in progress(range(0, len(emb), BLOCK), "semantic dedup: search", total=-(-len(emb) // BLOCK)):
        sims = emb[start:start + BLOCK] @ emb[start:].T
        ii, jj = np.nonzero(sims >= threshold)
        ahead = jj > ii
        rows_i.append(ii[ahead] + start)
        rows_j.append(jj[ahead] + start)
    if not rows_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows_i).astype(np.int64), np.concatenate(rows_j).astype(np.int64)


def approximate_pairs(emb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j, with cosine >= threshold from a faiss IVF range search (may miss a few pairs)."""
    try:
        import faiss
    except ImportError as e:
        raise missing_extra("approximate semantic dedup (faiss)", "gate", e) from None

    n, dim = emb.shape
    nlist = max(1, int(np.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    index.train(emb[rng.choice(n, size=min(n, 64 * nlist), replace=False)])
    index.add(emb)
    index.nprobe = 16
    rows_i, rows_j = [], []
    for start in progress(range(0, n, BLOCK), "semantic dedup: search", total=-(-n // BLOCK)):
        lims, _, ids = index.range_search(emb[start:start + BLOCK], threshold)
        ii = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        ahead = ids > ii
        rows_i.append(ii[ahead])
        rows_j.append(ids[ahead])
    return np.concatenate(rows_i).astype(np.int64), np.concatenate(rows_j).astype(np.int64)


def similar_pairs(emb: np.ndarray, threshold: float, approximate_above: int) -> tuple[np.ndarray, np.ndarray]:
    if len(emb) > approximate_above:
        return approximate_pairs(emb, threshold)
    return exact_pairs(emb, threshold)


def clusters(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray) -> list[list[int]]:
    """Connected components of size >= 2 (union-find with path halving)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(pairs_i.tolist(), pairs_j.tolist()):
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


class SemanticDedup:
    name = "semantic_dedup"

    def __init__(self, config: SemanticDedupConfig, *, embed: Embed | None = None, verifier: Embed | None = None,
                 load: LoadEmbedder = load_embedder):
        """`embed`/`verifier` override the models the config names (to share one loaded model); the others are
        made by `load` when first needed (in this process by default; on Ray workers with `--engine ray`)."""
        self.config = config
        self._embed = embed
        self._verifier = verifier
        self._load = load

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "SemanticDedup":
        return cls(spec.gate.semantic_dedup, load=context.load_embedder if context else load_embedder)

    def _embedder(self) -> Embed:
        if self._embed is None:
            self._embed = self._load(self.config.backend)
        return self._embed

    def _verify_embedder(self) -> Embed:
        if self._verifier is None:
            self._verifier = self._load("minilm")
        return self._verifier

    def run(self, rows: list[Row]) -> CheckResult:
        cfg = self.config
        clock = time.perf_counter()
        texts, shared_lines = without_boilerplate([user_text(r.record) for r in rows], cfg.boilerplate_min_rows)
        verified = cfg.backend == "model2vec" and cfg.verify
        emb = embed_distinct(self._embedder(), texts)
        embed_s, clock = time.perf_counter() - clock, time.perf_counter()
        pi, pj = similar_pairs(emb, cfg.candidate_at if verified else cfg.threshold, cfg.approximate_above)
        search_s, clock = time.perf_counter() - clock, time.perf_counter()
        candidates = len(pi)
        involved = np.unique(np.concatenate([pi, pj]))
        scorer, scored, row_of = cfg.backend, emb, np.arange(len(rows))
        if verified and len(pi):
            scorer, scored = "MiniLM", embed_distinct(self._verify_embedder(), [texts[i] for i in involved])
            row_of = np.full(len(rows), -1)
            row_of[involved] = np.arange(len(involved))
            keep = np.einsum("ij,ij->i", scored[row_of[pi]], scored[row_of[pj]]) >= cfg.threshold
            pi, pj = pi[keep], pj[keep]
        verify_s = time.perf_counter() - clock
        dropped: dict[int, Rejection] = {}
        groups = clusters(len(rows), pi, pj)
        for members in groups:
            keep_i = min(members, key=lambda i: keep_rank(rows[i]))
            for i in members:
                if i == keep_i:
                    continue
                cosine = float(scored[row_of[i]] @ scored[row_of[keep_i]])
                linked = "" if cosine >= cfg.threshold else ", linked through the cluster"
                reason = (f"semantic_duplicate: cluster of {len(members)} kept {rows[keep_i].id}; "
                          f"{scorer} cosine {cosine:.3f} with it (threshold {cfg.threshold}{linked})")
                dropped[i] = Rejection(rows[i], reason, rows[keep_i].id)
        stats = {
            "checked": len(rows),
            "backend": cfg.backend,
            "verified_by_minilm": verified,
            "threshold": cfg.threshold,
            "candidate_threshold": cfg.candidate_at if verified else cfg.threshold,
            "boilerplate_lines": shared_lines,
            "search": "approximate" if len(rows) > cfg.approximate_above else "exact",
            "candidate_pairs": candidates,
            "rows_in_candidate_pairs": len(involved),
            "rows_verified": len(involved) if verified else 0,
            "texts_verified": len({texts[i] for i in involved}) if verified else 0,
            "pairs": len(pi),
            "clusters": len(groups),
            "removed": len(dropped),
            "seconds": {"embed": round(embed_s, 2), "search": round(search_s, 2), "verify": round(verify_s, 2)},
        }
        kept = [r for i, r in enumerate(rows) if i not in dropped]
        return CheckResult(kept, [dropped[i] for i in sorted(dropped)], stats)
