"""Near duplicates: MinHash + LSH on word n-grams of the normalised pair, every candidate verified.

Each row's text is its normalised user side and response; its shingles are the word n-grams (a text
shorter than n words is one shingle). Signatures come from datasketch's `MinHash.generator` and go
into a `MinHashLSH` with explicit banding (see `choose_bands`; datasketch's own choice for 0.8 misses
pairs). Every candidate pair is then checked by exact Jaccard on the shingle sets and only pairs at or
above the threshold are joined into clusters (union-find); each cluster keeps one row by `keep_rank`
and the others are rejected naming it as `duplicate_of`.
"""
from __future__ import annotations

from collections import defaultdict

from datasketch import MinHash, MinHashLSH

from curator.gate.check import CheckResult, Rejection, Row, keep_rank, progress
from curator.gate.normalize import normalize
from curator.records import assistant_text, user_text

MIN_RECALL_AT_THRESHOLD = 0.9
SEED = 1


def choose_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (fewest candidates) for which a pair at exactly
    the threshold still becomes a candidate with probability >= MIN_RECALL_AT_THRESHOLD.

    For 128 permutations and 0.8 this gives 16 bands x 8 rows (0.95 at J = 0.8, 0.994 at J = 0.85).
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= MIN_RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


def shingles(text: str, n: int) -> frozenset[bytes]:
    """Word n-grams of the normalised text, as UTF-8 bytes; empty when the text has no words."""
    words = normalize(text).split()
    if len(words) <= n:
        return frozenset([" ".join(words).encode()]) if words else frozenset()
    return frozenset(" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


class NearDedup:
    name = "near_dedup"

    def __init__(self, *, threshold: float, num_perm: int, ngram: int):
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.bands, self.rows_per_band = choose_bands(num_perm, threshold)

    def run(self, rows: list[Row]) -> CheckResult:
        sets = [
            shingles(user_text(r.record) + "\n" + assistant_text(r.record), self.ngram)
            for r in progress(rows, "near dedup: shingles", total=len(rows))
        ]
        indexed = [i for i, s in enumerate(sets) if s]
        signatures = MinHash.generator((sets[i] for i in indexed), num_perm=self.num_perm, seed=SEED)
        lsh = MinHashLSH(num_perm=self.num_perm, params=(self.bands, self.rows_per_band))
        with lsh.insertion_session() as session:
            sigs = {}
            for i, sig in zip(indexed, progress(signatures, "near dedup: MinHash", total=len(indexed))):
                session.insert(i, sig, check_duplication=False)
                sigs[i] = sig
        candidates = {
            (min(i, j), max(i, j))
            for i in progress(indexed, "near dedup: LSH query", total=len(indexed))
            for j in lsh.query(sigs[i])
            if j != i
        }
        uf = _UnionFind(len(rows))
        verified = 0
        for i, j in candidates:
            if jaccard(sets[i], sets[j]) >= self.threshold:
                uf.union(i, j)
                verified += 1
        clusters: dict[int, list[int]] = defaultdict(list)
        for i in range(len(rows)):
            clusters[uf.find(i)].append(i)
        dropped: dict[int, Rejection] = {}
        n_clusters = 0
        for members in clusters.values():
            if len(members) < 2:
                continue
            n_clusters += 1
            keep = min(members, key=lambda i: keep_rank(rows[i]))
            for i in members:
                if i != keep:
                    j = jaccard(sets[i], sets[keep])
                    reason = (f"near_duplicate: cluster of {len(members)} kept {rows[keep].id}; "
                              f"word {self.ngram}-gram Jaccard {j:.2f} with it")
                    dropped[i] = Rejection(rows[i], reason, rows[keep].id)
        stats = {
            "checked": len(rows),
            "bands": self.bands,
            "rows_per_band": self.rows_per_band,
            "candidates": len(candidates),
            "verified_pairs": verified,
            "clusters": n_clusters,
            "removed": len(dropped),
        }
        kept = [r for i, r in enumerate(rows) if i not in dropped]
        return CheckResult(kept, [dropped[i] for i in sorted(dropped)], stats)
