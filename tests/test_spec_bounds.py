"""Specs that would exhaust the machine are refused in file:line: field form, before anything is allocated."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from curator.cli import main
from curator.spec import MAX_SPEC_BYTES, SpecError, load_spec

BASE = """name: bounds
target_pairs: 10
difficulty_levels: [medium]
length_bands: [{name: any, min_words: 1, max_words: 400}]
formats: [{name: free_text, kind: text}]
task_families:
  - {name: qa, share: 1.0, description: Questions., formats: [free_text], length_band: any}
"""
LAUGHS = "".join(["lol: &a0 [x, x, x, x, x, x, x, x, x, x]\n"] + [
    f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10)])


@pytest.mark.parametrize("old, new, expected", [
    ("target_pairs: 10", "target_pairs: 50000000", ":2: target_pairs: must be <= 1000000"),
    ("share: 1.0", "share: .nan", ":7: task_families[0].share: must be a finite number (not .nan or .inf)"),
    ("share: 1.0", "share: -.inf", ":7: task_families[0].share: must be a finite number"),
    ("max_words: 400", "max_words: 1.0e+400", ":4: length_bands[0].max_words: must be a finite number"),
    ("max_words: 400", "max_words: 1e400", ":4: length_bands[0].max_words: '1e400' is not of type 'integer'"),
    ("max_words: 400", "max_words: 10000000", ":4: length_bands[0].max_words: must be <= 100000"),
    ("target_pairs: 10", "target_pairs: 10\ngate: {minhash: {num_perm: 1000000000000}}", ":3: gate.minhash.num_perm: must be <= 1024"),
    ("target_pairs: 10", "target_pairs: 10\ngate: {minhash: {num_perm: 1.0e+12}}", ":3: gate.minhash.num_perm: must be <= 1024"),
    ("target_pairs: 10", "target_pairs: 10\n" + LAUGHS, ": expands to more than 100000 YAML nodes (aliases?)"),
    ("name: bounds", "name: bounds\nx: " + "[" * 5000 + "]" * 5000, ": nested deeper than 64 levels"),
])
def test_a_bound_is_enforced_with_file_line_and_field(tmp_path, old, new, expected):
    path = tmp_path / "spec.yaml"
    path.write_text(BASE.replace(old, new, 1))
    started = time.monotonic()
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(e.value).startswith(f"{path}{expected}"), str(e.value)
    assert time.monotonic() - started < 10


def test_invalid_utf8_and_oversized_specs_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(BASE.replace("Questions.", "Caf\xe9 questions.").encode("latin-1"))
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "# " + "x" * MAX_SPEC_BYTES + "\n")
    control = tmp_path / "control.yaml"
    control.write_bytes(BASE.encode() + b"notes: \x00\n")
    for path, expected in ((bad, f"{bad}:7: not valid UTF-8 (byte "), (big, f"{big}: larger than {MAX_SPEC_BYTES} bytes"),
                           (control, f"{control}:8: not valid YAML: special characters are not allowed")):
        assert main(["gate", str(tmp_path), "--spec", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err


def test_the_shipped_bounds_still_admit_the_starter_spec():
    assert load_spec(Path(__file__).resolve().parents[1] / "specs" / "starter.yaml").target_pairs > 0
