"""Vectorised MinHash over whole corpora: shingle hashes, signatures and LSH candidate pairs in numpy.

Hash scheme (stable across runs, processes and machines; nothing depends on Python's `hash`):

- tokens: a word is the first 8 bytes of BLAKE2b over its UTF-8 bytes, read little-endian; a
  character is its code point. Texts are expected already normalised (`curator.gate.normalize`).
- shingle: the n tokens at a position folded as h = h * FOLD + token (mod 2^64, from h = 0), then
  the 64-bit MurmurHash3 finaliser. A text with 0 < L < n tokens is one shingle: its tokens padded
  with n - L zeros. A text with no tokens has no shingles (and the empty signature, all 2^32 - 1).
- MinHash: the 32-bit input hash of a shingle is the upper half of its 64-bit hash, then exactly
  datasketch 2.x's default "affine32" scheme: fmix32, then a_k * h + b_k (mod 2^32) with datasketch's
  own permutation parameters for (num_perm, seed). A signature here equals, value for value, the
  `hashvalues` of `datasketch.MinHash(num_perm, seed=seed, hashfunc=int)` updated with the same 32-bit
  shingle hashes, so signatures can go into a datasketch `MinHashLSH` or be compared with its sketches.
- exact Jaccard is computed on the sets of 64-bit shingle hashes (a false match needs a 64-bit collision).

Banding is done here with numpy rather than datasketch's `MinHashLSH`: for each band the rows' band
values are folded to one 64-bit key, sorted, and equal keys give candidate pairs. That is one sort per
band instead of a Python dict insert and lookup per row and band (about 5 s for 50k rows with
`MinHashLSH`, well under 1 s here). A key collision only adds a candidate, which verification drops.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow.compute as pc

FOLD = np.uint64(0x100000001B3)  # the 64-bit FNV prime, odd
MIN_RECALL_AT_THRESHOLD = 0.9
_CHUNK = 1 << 12  # shingles per block of the signature computation (num_perm x _CHUNK uint32, 2 MB: stays in cache)


@dataclass(frozen=True)
class Shingles:
    """The 64-bit shingle hashes of many texts, concatenated: text i owns values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len = texts + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def set_of(self, i: int) -> set[int]:
        return set(self.of(i).tolist())


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection), element-wise on a uint64 array."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch applies it before its affine32 permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=1 << 18)  # a batch repeats most words of the batches before it; a hash costs ~1.7 us here
def word_token_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _word_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes of all words of all texts, words per text); texts are normalised (single spaces).

    polars splits; Arrow's dictionary encoding finds the distinct words and where each word occurs in one pass;
    only the distinct words are hashed in Python.
    """
    series = pl.Series(texts, dtype=pl.String)
    present = series.str.len_bytes() > 0
    words = series.filter(present).str.split(" ")
    lengths = np.zeros(len(texts), dtype=np.int64)
    lengths[present.to_numpy()] = words.list.len().to_numpy()
    encoded = pc.dictionary_encode(words.explode().to_arrow())
    distinct = encoded.dictionary.to_pylist()
    hashes = np.fromiter(map(word_token_hash, distinct), dtype=np.uint64, count=len(distinct))
    return hashes[encoded.indices.to_numpy()], lengths


def _char_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(code points of all texts, characters per text)."""
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return codes, np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))


def _ngram_hashes(tokens: np.ndarray, lengths: np.ndarray, n: int) -> Shingles:
    """Fold every window of n tokens inside one text (short texts zero-padded to n) into a shingle hash."""
    tokens = np.asarray(tokens, dtype=np.uint64)
    padded = np.where(lengths == 0, 0, np.maximum(lengths, n))
    ends = np.cumsum(padded)
    if (padded == lengths).all():
        buf = tokens
    else:
        shift = np.repeat(ends - padded - (np.cumsum(lengths) - lengths), lengths)
        buf = np.zeros(int(ends[-1]), dtype=np.uint64)
        buf[np.arange(len(tokens)) + shift] = tokens
    windows = max(len(buf) - n + 1, 0)
    h = np.zeros(windows, dtype=np.uint64)
    for k in range(n):
        h = h * FOLD + buf[k:k + windows]
    # the last n - 1 windows of each text run into the next text
    valid = np.ones(windows, dtype=bool)
    last = ends[padded > 0]
    for k in range(1, n):
        crossing = last - k
        valid[crossing[crossing < windows]] = False
    counts = np.where(padded > 0, padded - n + 1, 0)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Shingles(fmix64(h[valid]), offsets)


def word_shingles(texts: list[str], n: int) -> Shingles:
    """Word n-gram hashes of normalised texts (split on whitespace)."""
    tokens, lengths = _word_tokens(texts)
    return _ngram_hashes(tokens, lengths, n)


def char_shingles(texts: list[str], n: int) -> Shingles:
    """Character n-gram hashes of normalised texts (spaces included)."""
    tokens, lengths = _char_tokens(texts)
    return _ngram_hashes(tokens, lengths, n)


def input_hash32(values: np.ndarray) -> np.ndarray:
    """The 32-bit hash a shingle contributes to MinHash: the upper half of its 64-bit hash."""
    return (values >> np.uint64(32)).astype(np.uint32)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a, b) for (num_perm, seed), uint32 each (datasketch imported
    here, on first use: its import loads much of scipy, 0.3 s)."""
    from datasketch import MinHash
    a, b = (p.astype(np.uint32) for p in MinHash(num_perm=num_perm, seed=seed).permutations)
    a.flags.writeable = b.flags.writeable = False  # cached: shared by every caller
    return a, b


def signatures(shingles: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one uint32 row of num_perm values per text (see the module doc for the scheme)."""
    a, b = permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    hv = fmix32(input_hash32(shingles.values))
    out = np.full((len(shingles), num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    counts = np.diff(shingles.offsets)
    docs = np.flatnonzero(counts)
    buffer = np.empty((num_perm, _CHUNK), dtype=np.uint32)  # reused: a fresh array per block costs page faults
    start = 0
    while start < len(docs):
        # a block of whole texts holding about _CHUNK shingles (at least one text)
        first = shingles.offsets[docs[start]]
        stop = max(int(np.searchsorted(shingles.offsets[docs + 1], first + _CHUNK, side="right")), start + 1)
        block = docs[start:stop]
        lo, hi = first, shingles.offsets[block[-1] + 1]
        permuted = buffer[:, :hi - lo] if hi - lo <= _CHUNK else np.empty((num_perm, hi - lo), dtype=np.uint32)
        np.multiply(a, hv[lo:hi], out=permuted)  # (num_perm, shingles in block), wrapping mod 2^32
        permuted += b
        out[block] = np.minimum.reduceat(permuted, shingles.offsets[block] - lo, axis=1).T
        start = stop
    return out


def choose_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band): the most rows per band (fewest candidates) for which a pair at exactly
    the threshold still becomes a candidate with probability >= MIN_RECALL_AT_THRESHOLD.

    For 128 permutations and 0.8 this gives 16 bands x 8 rows (0.95 at J = 0.8, 0.994 at J = 0.85);
    datasketch's own choice (9 x 13) catches a pair at 0.8 only about 40% of the time.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= MIN_RECALL_AT_THRESHOLD:
            best = (bands, rows)
    return best


def band_key(sigs: np.ndarray, band: int, rows: int) -> np.ndarray:
    """Each signature's values in one band folded to one 64-bit key (equal bands, equal keys)."""
    key = np.zeros(len(sigs), dtype=np.uint64)
    for col in sigs[:, band * rows:(band + 1) * rows].T:
        key = key * FOLD + col.astype(np.uint64)
    return key


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Sorted unique (i, j), i < j, of rows sharing all values of at least one band; shape (k, 2)."""
    n = len(sigs)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    codes = []
    for band in range(bands):
        key = band_key(sigs, band, rows)
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        # run_end[p]: one past the last position of the run of equal keys that p belongs to
        boundaries = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        run_ends = np.append(boundaries, n)
        run_end = np.repeat(run_ends, np.diff(np.concatenate(([0], run_ends))))
        active = np.flatnonzero(run_end - np.arange(n) > 1)
        step = 1
        while len(active):
            i, j = order[active], order[active + step]
            codes.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
            step += 1
            active = active[run_end[active] - active > step]
    if not codes:
        return np.zeros((0, 2), dtype=np.int64)
    unique = _distinct_sorted(np.concatenate(codes))
    return np.stack([unique // n, unique % n], axis=1)


def _ranks(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value's rank among the distinct values (0, 1, ...), and how many distinct values there are."""
    order = np.argsort(values)
    ordered = values[order]
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.concatenate(([0], np.cumsum(ordered[1:] != ordered[:-1])))
    return rank, int(rank.max(initial=-1)) + 1


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def pair_jaccard(shingles: Shingles, pairs: np.ndarray, block: int = 1 << 18) -> np.ndarray:
    """Exact Jaccard of the shingle sets of each pair (i, j) of `pairs` (shape (k, 2)), as `jaccard` gives it.

    Each text's distinct shingles are numbered (ranks among all values); per pair both sets are tagged with the
    pair's number and sorted together, so a shingle in both sits twice in a row. About `block` shingles at a time."""
    out = np.zeros(len(pairs), dtype=np.float64)
    if not len(pairs):
        return out
    texts = np.repeat(np.arange(len(shingles), dtype=np.int64), np.diff(shingles.offsets))
    rank, distinct = _ranks(shingles.values)
    keys = _distinct_sorted(texts * distinct + rank)  # one per (text, distinct shingle)
    ranks = keys % distinct
    sizes = np.bincount(keys // distinct, minlength=len(shingles))
    starts = np.cumsum(sizes) - sizes
    per_pair = sizes[pairs[:, 0]] + sizes[pairs[:, 1]]
    ends = np.cumsum(per_pair)
    first = 0
    while first < len(pairs):
        last = max(int(np.searchsorted(ends, ends[first] - per_pair[first] + block, side="right")), first + 1)
        members = pairs[first:last].ravel()  # left, right, left, right, ...
        counts = sizes[members]
        owner = np.repeat(np.arange(len(members)) // 2, counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        tagged = np.sort(owner * distinct + ranks[np.repeat(starts[members], counts) + within])
        twice = tagged[1:][tagged[1:] == tagged[:-1]] // distinct
        common = np.bincount(twice, minlength=last - first)
        union = per_pair[first:last] - common
        out[first:last] = np.divide(common, union, out=np.zeros(last - first), where=union > 0)
        first = last
    return out


def jaccard(a: set | frozenset, b: set | frozenset) -> float:
    if not a and not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)

