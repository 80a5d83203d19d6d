"""`curator import` of gzip JSONL, Parquet and `datasets.save_to_disk` inputs: the same pairs and quarantines as
the JSONL file they were made from, lines numbered by row, and a resumed import that loses nothing."""
import gzip
import json
from pathlib import Path

import datasets
import polars as pl
import pytest

from curator.cli import main
from curator.rundir import RunDir

ROWS = [
    {"instruction": "Say hello.", "input": "", "output": "Hello."},
    {"instruction": "Name a colour.", "input": "", "output": ""},  # empty output: quarantined
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
    {"instruction": "Lone \ud800 surrogate", "input": "", "output": "x"},  # quarantined as a bad character
]


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))


def _inputs(tmp_path: Path) -> dict[str, Path]:
    text = "".join(json.dumps(r) + "\n" for r in ROWS)
    plain = tmp_path / "rows.jsonl"
    plain.write_text(text)
    gz = tmp_path / "rows.jsonl.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    table = [{k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if "\ud800" in v else v
              for k, v in r.items()} for r in ROWS]
    table[4]["instruction"] = "Lone \x00 NUL"  # a table cannot hold a lone surrogate; a NUL is quarantined alike
    parquet = tmp_path / "rows.parquet"
    pl.DataFrame(table).write_parquet(parquet, row_group_size=2)
    saved = tmp_path / "rows_dataset"
    datasets.Dataset.from_list(table).save_to_disk(str(saved))
    return {"jsonl": plain, "gz": gz, "parquet": parquet, "dataset": saved}


def _import(src: Path, out: Path) -> RunDir:
    assert main(["import", str(src), "--format", "alpaca", "--out", str(out)]) == 0
    return RunDir(out)


def test_gzip_parquet_and_saved_dataset_give_the_jsonl_pairs(tmp_path):
    runs = {kind: _import(src, tmp_path / kind) for kind, src in _inputs(tmp_path).items()}
    expected = [p["id"] for p in runs["jsonl"].pairs()]
    assert len(expected) == 3
    for kind, run in runs.items():
        assert [p["id"] for p in run.pairs()] == expected, kind
        quarantined = list(run.quarantined())
        assert [q["origin"].rsplit(":", 1)[1] for q in quarantined] == ["2", "5"], kind
        assert "messages[1].content" in quarantined[0]["reason"]
        assert ("surrogate" if kind in ("jsonl", "gz") else "NUL") in quarantined[1]["reason"], kind
        assert run.read_meta()["counts"] == {"read": 5, "accepted": 3, "quarantined": 2}
        origins = [p["provenance"]["origin"] for p in run.pairs()]
        assert origins == [f"{_inputs(tmp_path)[kind]}:{n}" for n in (1, 3, 4)]


def test_parquet_import_resumes_after_a_kill_and_stringifies_bytes(tmp_path):
    src = tmp_path / "bytes.parquet"
    rows = [{"instruction": f"Echo {i}.", "input": "", "output": f"{i}", "blob": bytes([i])} for i in range(6)]
    pl.DataFrame(rows).write_parquet(src, row_group_size=4)
    out = tmp_path / "run"
    run = _import(src, out)
    lines = (out / "pairs.jsonl").read_text().splitlines(keepends=True)
    (out / "pairs.jsonl").write_text("".join(lines[:3]) + lines[3][:10])  # a kill -9 mid-line
    meta = run.read_meta()
    run.write_meta({**meta, "status": "running"})
    _import(src, out)
    assert [p["messages"][-1]["content"] for p in run.pairs()] == [str(i) for i in range(6)]
    assert run.read_meta()["counts"] == {"read": 6, "accepted": 6, "quarantined": 0}


def test_a_dataset_dict_directory_is_refused_naming_a_split(tmp_path, capsys):
    saved = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:1])}).save_to_disk(str(saved))
    assert main(["import", str(saved), "--format", "alpaca", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{saved}: not a datasets directory" in err and "name one split" in err
    assert _import(saved / "train", tmp_path / "run").read_meta()["counts"]["accepted"] == 1
