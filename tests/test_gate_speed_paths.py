"""The gate's fast paths agree with the reference libraries: vectorised MinHash and numpy banding with
datasketch, the compiled pair schema with jsonschema, batch normalisation with `normalize`; on real text from the
shared instruct mix."""
from __future__ import annotations

import copy
import json
import random
from itertools import islice

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from curator.gate.compiled_schema import UnsupportedSchema, compile_schema
from curator.gate.minhash import (_word_tokens, candidate_pairs, char_shingles, input_hash32, jaccard, pair_jaccard,
                                  signatures, word_shingles, word_token_hash)
from curator.gate.checks.exact_dedup import pair_key, pair_keys, prompt_key, prompt_keys
from curator.gate.normalize import NormalizedMessages, normalize, normalize_all, pair_text, pair_texts
from curator.records import build_messages, make_pair, pair_validator, schema_errors
from curator.spec import load_schema
from shared_data import mix_path



def mix_texts(n: int, min_words: int = 60) -> list[str]:
    """Normalised instruction + output of the first n mix rows with at least min_words words."""
    out = []
    with open(mix_path(), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text = normalize(row["instruction"] + " " + row["output"])
            if len(text.split()) >= min_words:
                out.append(text)
                if len(out) == n:
                    return out
    raise AssertionError("not enough rows")


def edit(text: str, every: int, rng: random.Random) -> str:
    """Replace about one word in `every` with a new word."""
    words = text.split(" ")
    for i in range(rng.randrange(every), len(words), every):
        words[i] = f"w{rng.randrange(10**6)}"
    return " ".join(words)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return mix_texts(40)


def test_signatures_equal_datasketch_minhash_value_for_value(texts):
    shingles = word_shingles(texts, 5)
    sigs = signatures(shingles, 128, seed=1)
    for i in (0, 7, 39):
        reference = MinHash(num_perm=128, seed=1, hashfunc=int)
        reference.update_batch(input_hash32(shingles.of(i)).tolist())
        assert np.array_equal(reference.hashvalues, sigs[i])
    empty = signatures(word_shingles(["", texts[0]], 5), 128, seed=1)
    assert np.array_equal(empty[0], MinHash(num_perm=128, seed=1).hashvalues)


def test_jaccard_estimates_agree_with_datasketch_on_real_text(texts):
    """Pairs of a real text and an edit of it, at similarities from about 0.2 to 0.95."""
    rng = random.Random(5)
    originals = texts[:30]
    edited = [edit(t, every, rng) for t, every in zip(originals, [3, 5, 8, 12, 20, 40] * 5)]
    shingles = word_shingles(originals + edited, 5)
    sigs = signatures(shingles, 128, seed=1)
    n = len(originals)
    gaps = []
    for i in range(n):
        exact = jaccard(shingles.set_of(i), shingles.set_of(n + i))
        ours = float((sigs[i] == sigs[n + i]).mean())
        sketches = []
        for text in (originals[i], edited[i]):
            words = text.split()
            m = MinHash(num_perm=128, seed=1)  # datasketch's own hashing: sha1 of the UTF-8 shingle
            m.update_batch([" ".join(words[k:k + 5]).encode() for k in range(len(words) - 4)])
            sketches.append(m)
        theirs = sketches[0].jaccard(sketches[1])
        assert abs(ours - exact) < 0.15 and abs(theirs - exact) < 0.15, (i, exact, ours, theirs)
        gaps.append(abs(ours - theirs))
    assert np.mean(gaps) < 0.05  # both are unbiased estimates with the same spread


def test_numpy_banding_finds_the_same_candidates_as_datasketch_lsh(texts):
    rng = random.Random(9)
    corpus = texts + [edit(t, 60, rng) for t in texts[:20]] + [edit(t, 6, rng) for t in texts[20:]]
    sigs = signatures(word_shingles(corpus, 5), 128, seed=1)
    lsh = MinHashLSH(num_perm=128, params=(16, 8))
    sketches = [MinHash(num_perm=128, seed=1, hashvalues=s, scheme="affine32") for s in sigs]
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    expected = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    found = {tuple(p) for p in candidate_pairs(sigs, 16, 8).tolist()}
    assert found == expected
    assert len(found & {(i, 40 + i) for i in range(20)}) >= 15  # light edits (J about 0.9) are candidates


def test_pair_jaccard_equals_set_jaccard_on_candidates_short_and_empty_texts(texts):
    rng = random.Random(3)
    corpus = texts + [edit(t, 9, rng) for t in texts] + ["", "", "one", "one two", "one two three"]
    short = 2 * len(texts)
    for shingles in (word_shingles(corpus, 5), char_shingles(corpus, 5)):
        pairs = np.concatenate([candidate_pairs(signatures(shingles, 128, 1), 16, 8),
                                [[k, len(texts) + k] for k in range(len(texts))],  # each text and its edit
                                [[short + k, short + k + 1] for k in range(4)] + [[0, short]]])
        expected = [jaccard(shingles.set_of(i), shingles.set_of(j)) for i, j in pairs.tolist()]
        assert pair_jaccard(shingles, pairs, block=500).tolist() == expected  # several blocks
        assert sum(0 < score < 1 for score in expected) >= len(texts) // 2  # edited copies: partial overlaps


def test_batch_word_hashes_are_those_of_each_word_alone(texts):
    """The numpy hashing of every word of a batch at once gives each word's own hash: real text, non-ASCII words,
    an empty text, empty words (two spaces) and a word longer than any other."""
    batch = [*texts[:20], "", "naïve café 東京 😀", "a  b", "x" * 5000 + " y"]
    tokens, lengths = _word_tokens(batch)
    words = [w for t in batch if t for w in t.split(" ")]
    assert lengths.tolist() == [len(t.split(" ")) if t else 0 for t in batch]
    assert tokens.tolist() == [word_token_hash(w) for w in words]
    assert len(set(tokens.tolist())) == len(set(words))  # no two distinct words of the batch collide


def test_short_texts_are_one_shingle_and_empty_texts_none():
    shingles = word_shingles(["a b", "", "a b c d e f", "a b"], 5)
    assert np.diff(shingles.offsets).tolist() == [1, 0, 2, 1]
    assert shingles.set_of(0) == shingles.set_of(3) and not shingles.set_of(0) & shingles.set_of(2)
    chars = char_shingles(["abcdef", "abc", ""], 5)
    assert np.diff(chars.offsets).tolist() == [2, 1, 0]


def test_character_shingles_survive_spelling_changes_that_break_word_shingles(texts):
    text = texts[3]
    words = text.split(" ")
    respelled = " ".join(w + "s" if i % 12 == 0 else w for i, w in enumerate(words))
    word_j = jaccard(*(word_shingles([text, respelled], 5).set_of(i) for i in (0, 1)))
    char = char_shingles([text, respelled], 5)
    char_j = jaccard(char.set_of(0), char.set_of(1))
    assert word_j < 0.6 and char_j > 0.8


def _pair() -> dict:
    return make_pair(build_messages("Name a prime above 100.", "", "101 is prime."), task_family="qa",
                     format="free_text", difficulty="easy", source="synthetic", teacher_model="gemma-3-270m")


def broken_pair(mutate) -> dict:
    record = copy.deepcopy(_pair())
    mutate(record)
    return record


BROKEN = [
    lambda r: r.pop("id"),
    lambda r: r.update(id="XYZ"),
    lambda r: r.update(id=r["id"] + "\n"),
    lambda r: r.update(extra=1),
    lambda r: r.update(messages=r["messages"][:1]),
    lambda r: r["messages"][0].update(role="tool"),
    lambda r: r["messages"][0].update(content=""),
    lambda r: r["messages"][1].update(content=5),
    lambda r: r["messages"][1].update(role="user"),
    lambda r: r["messages"][0].update(name="x"),
    lambda r: r.update(messages="hi"),
    lambda r: r.update(task_family=""),
    lambda r: r.update(length_band=3),
    lambda r: r.update(length_band=None),
    lambda r: r["provenance"].update(source="scraped"),
    lambda r: r["provenance"].pop("created_at"),
    lambda r: r["provenance"].update(sampling=[1]),
    lambda r: r["provenance"].update(sampling={"temperature": 0.7}),
    lambda r: r["provenance"].update(unknown="x"),
    lambda r: r.update(provenance=None),
]


def test_compiled_pair_schema_agrees_with_jsonschema_on_real_and_broken_records():
    conforms = compile_schema(load_schema("pair"), pair_validator().format_checker)
    with open(mix_path(), encoding="utf-8") as f:
        real = [make_pair(build_messages(row["instruction"], row["input"], row["output"]), task_family="t",
                          format="free_text", difficulty="easy", source="imported", origin=f"mix:{n}")
                for n, row in zip(range(300), map(json.loads, f))]
    broken = [broken_pair(mutate) for mutate in BROKEN] + [None, [], "pair", {"messages": []}]
    verdicts = [(conforms(r), pair_validator().is_valid(r)) for r in real + broken]
    assert [not schema_errors(r) for r in real + broken] == [ok for ok, _ in verdicts]  # the fast path schema_errors takes
    assert all(fast == reference for fast, reference in verdicts), [i for i, (a, b) in enumerate(verdicts) if a != b]
    assert sum(not ok for ok, _ in verdicts[:len(real)]) > 0  # the mix has rows with an empty output
    # all broken but three: a null band, a sampling dict, an id with a trailing newline ("$" as re.search has it)
    assert sum(not ok for ok, _ in verdicts[len(real):]) >= len(broken) - 3
    with pytest.raises(UnsupportedSchema, match="oneOf"):
        compile_schema({"oneOf": [{"type": "string"}]})


def test_batch_normalisation_gives_normalize_text_for_ascii_unicode_and_real_text():
    rng = random.Random(5)
    ascii_ = [chr(c) for c in range(128)] + ["".join(rng.choices([chr(c) for c in range(128)], k=rng.randint(0, 40)))
                                            for _ in range(5000)]
    unicode_ = ["ﬁne ＦＵＬＬ Straße", "Ⅻ\u2003x\u00a0y", "caf\u00e9\u0301 « quoted »", "a\x1cb\x1dc\x1ed\x1fe", "\u3000 "]
    with open(mix_path(), encoding="utf-8") as f:
        real = [text for row in map(json.loads, f) for text in (row["instruction"], row["output"])]
    texts = ascii_ + unicode_ + real[:20000]
    assert normalize_all(texts) == [normalize(t) for t in texts]
    assert any(not t.isascii() for t in real[:20000])  # both paths ran on real text


def test_messages_normalised_once_give_the_keys_and_texts_of_the_joined_sides():
    """Exact dedup's pair and prompt keys and near dedup's texts from each message normalised once equal those of
    `normalize` on the joined sides: punctuation-only, empty and Unicode turns, a combining mark opening a turn."""
    tricky = [["Hello, world", "...", "ﬁne ＦＵＬＬ Straße", "\u0301accent", "!?", "x\x1cy"],
              ["", "Only an answer."], ["a\u00a0b", "caf\u00e9\u0301 « quoted »", "Ⅻ\u2003x"]]
    records = []
    for turns in tricky:
        roles = ["system"] + ["user", "assistant"] * len(turns)
        records.append({"messages": [{"role": r, "content": c} for r, c in zip(roles, ["Be brief.", *turns])]})
    with open(mix_path(), encoding="utf-8") as f:
        for row in map(json.loads, islice(f, 3000)):
            records.append({"messages": build_messages(row["instruction"], row.get("input", ""), row["output"])})
    normalized = NormalizedMessages.of(records)
    assert normalized.pair_texts() == pair_texts(records) == [pair_text(r) for r in records]
    assert pair_keys(normalized) == [pair_key(r) for r in records]
    assert prompt_keys(normalized) == [prompt_key(r) for r in records]
    some = [5, 0, 2]
    assert prompt_keys(normalized.subset(some)) == [prompt_key(records[i]) for i in some]
