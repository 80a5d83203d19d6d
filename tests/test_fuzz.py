"""Fuzzing the importers and the spec loader (Hypothesis, bounded in examples and time per example).

Importers: no exception escapes, every non-blank line (every array element) lands exactly once in pairs or
quarantine, and memory stays bounded. Spec loader: a spec either loads or raises SpecError naming the file,
never anything else, within bounded memory.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curator.import_reader import BOM
from curator.importers import READERS, import_file
from curator.rundir import RunDir
from curator.spec import SpecError, load_spec

EXAMPLES = int(os.environ.get("CURATOR_FUZZ_EXAMPLES", "150"))  # per test; raise it for a longer campaign
MEMORY_BYTES = 64 << 20  # peak Python allocations per example
SECONDS = 15.0  # per example, measured under tracemalloc (which slows Python code ten-fold) on 2 shared cores
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\ud800", "a\udcffb", "\x00", "\ufeff", "", " ", "human", "gpt", "user", "assistant"]),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
turn = st.fixed_dictionaries({}, optional={"from": json_value, "value": json_value, "role": json_value,
                                           "content": json_value})
row = st.one_of(
    json_value,
    st.fixed_dictionaries({}, optional={"instruction": json_value, "input": json_value, "output": json_value,
                                        "task_family": json_value, "format": json_value, "difficulty": json_value}),
    st.fixed_dictionaries({}, optional={"conversations": st.lists(turn, max_size=4) | json_value,
                                        "messages": st.lists(turn, max_size=4) | json_value}),
)
line = st.one_of(
    row.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" ")),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def _import(data: bytes, fmt: str, name: str) -> RunDir:
    directory = Path(tempfile.mkdtemp(prefix="fuzz-import-"))
    src = directory / name
    src.write_bytes(data)
    tracemalloc.start()
    started = time.monotonic()
    try:
        import_file(src, fmt, directory / "run", task_family="general", format_name="free_text", difficulty="medium")
        assert tracemalloc.get_traced_memory()[1] < MEMORY_BYTES and time.monotonic() - started < SECONDS
    finally:
        tracemalloc.stop()
    return RunDir(directory / "run")


def _origin_lines(run: RunDir) -> list[int]:
    origins = [p["provenance"]["origin"] for p in run.pairs()] + [q["origin"] for q in run.quarantined()]
    return sorted(int(o.rsplit(":", 1)[1]) for o in origins)


@FUZZ
@given(lines=st.lists(line, max_size=12), fmt=st.sampled_from(sorted(READERS)), bom=st.booleans())
def test_jsonl_import_accounts_for_every_line(lines, fmt, bom):
    data = (BOM if bom else b"") + b"\n".join(lines)
    run = _import(data, fmt, "rows.jsonl")
    counts = run.read_meta()["counts"]
    assert counts["read"] == counts["accepted"] + counts["quarantined"]
    content = [n for n, text in enumerate(data.split(b"\n"), 1)
               if (text.removeprefix(BOM) if n == 1 else text).strip()]  # a BOM (given or drawn) starts line 1
    if data.removeprefix(BOM).lstrip()[:1] != b"[":  # otherwise it is read as an array file
        assert _origin_lines(run) == content


@FUZZ
@given(rows=st.lists(row, max_size=10), cut=st.integers(0, 10_000), splice=st.binary(max_size=4),
       fmt=st.sampled_from(sorted(READERS)))
def test_json_array_import_accounts_for_every_element(rows, cut, splice, fmt):
    text = json.dumps(rows, indent=1).encode()
    at = cut % (len(text) + 1)
    damaged = text[:at] + splice + text[at:] if splice else text
    run = _import(damaged, fmt, "rows.json")
    counts = run.read_meta()["counts"]
    assert counts["read"] == counts["accepted"] + counts["quarantined"]
    if not splice:
        assert counts["read"] == len(rows)


SPEC = """name: fuzz
target_pairs: 10
difficulty_levels: [medium]
length_bands: [{name: any, min_words: 1, max_words: 400}]
formats: [{name: free_text, kind: text}]
gate: {minhash: {num_perm: 128, ngram: 5}, eval_fraction: 0.1}
task_families:
  - {name: qa, share: 1.0, description: Questions., formats: [free_text], length_band: any}
"""
NUMBERS = ("10", "400", "1", "1.0", "128", "5", "0.1")
scalar = st.one_of(
    st.integers(-(10 ** 30), 10 ** 30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".nan", ".inf", "-.inf", "1e400", "1.0e+400", "~", "[]", "{}", "*a", "&a 1", "!!binary AA==",
                     '"\\ud800"', "'x'", "!!python/object:os.system ls"]),
)


def _load(text: str | bytes) -> None:
    path = Path(tempfile.mkdtemp(prefix="fuzz-spec-")) / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    tracemalloc.start()
    started = time.monotonic()
    try:
        load_spec(path)
    except SpecError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e).strip()
    finally:
        assert tracemalloc.get_traced_memory()[1] < MEMORY_BYTES and time.monotonic() - started < SECONDS
        tracemalloc.stop()


@FUZZ
@given(which=st.integers(0, 6), occurrence=st.integers(0, 3), value=scalar)
def test_spec_with_a_hostile_value_loads_or_names_the_problem(which, occurrence, value):
    parts = SPEC.split(NUMBERS[which])
    k = occurrence % max(1, len(parts) - 1)
    _load(NUMBERS[which].join(parts[:k + 1]) + value + NUMBERS[which].join(parts[k + 1:]) if len(parts) > 1 else SPEC)


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.integers(1, 300).map(lambda n: (b"a: " + b"[" * n + b"]" * n)),
                      st.integers(1, 12).map(lambda n: SPEC.encode() + b"x0: &a0 [1,1,1,1,1,1,1,1,1,1]\n" + b"".join(
                          b"x%d: &a%d [" % (i, i) + b",".join([b"*a%d" % (i - 1)] * 10) + b"]\n" for i in range(1, n)))))
def test_arbitrary_spec_bytes_load_or_name_the_problem(data):
    _load(data)
