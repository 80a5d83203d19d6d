"""`curator import`: four formats into run directories; bad rows quarantined with file:line, nothing lost."""
import json
from itertools import islice
from pathlib import Path

import pytest

from curator.cli import main
from curator.records import schema_errors
from curator.rundir import RunDir
from shared_data import mix_path



@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_alpaca_slice_of_real_data(tmp_path):
    rows = [json.loads(line) for line in islice(open(mix_path()), 40)]
    src = _write_jsonl(tmp_path / "mix.jsonl", rows)
    out = tmp_path / "run"
    assert main(["import", str(src), "--format", "alpaca", "--out", str(out), "--task-family", "summarize"]) == 0
    run = RunDir(out)
    pairs = list(run.pairs())
    assert run.read_meta()["counts"] == {"read": 40, "accepted": len(pairs), "quarantined": 40 - len(pairs)}
    empty = [i + 1 for i, r in enumerate(rows) if not r["output"].strip()]
    assert empty, "the slice should hold a real empty output"
    assert [q["origin"] for q in run.quarantined()] == [f"{src}:{n}" for n in empty]
    assert all("messages[1].content" in q["reason"] for q in run.quarantined())
    kept_rows = [r for r in rows if r["output"].strip()]
    assert len(pairs) == len(kept_rows)
    for p, row in zip(pairs, kept_rows):
        assert schema_errors(p) == []
        assert p["messages"][-1] == {"role": "assistant", "content": row["output"].strip()}
        assert row["instruction"].strip() in p["messages"][0]["content"]
        assert p["provenance"]["source"] == "imported" and p["provenance"]["strategy"] == "import:alpaca"
        assert p["provenance"]["origin"].startswith(f"{src}:")
        assert p["task_family"] == "summarize"


def test_malformed_line_is_quarantined_with_file_and_line(tmp_path, capsys):
    src = _write_jsonl(tmp_path / "bad.jsonl", [
        {"instruction": "Say hello.", "input": "", "output": "Hello."},
        '{"instruction": "broken", "output": ',
        {"instruction": "Name a colour.", "output": "Blue."},
        {"instruction": "No output here."},
        {"instruction": "Count to two.", "input": "", "output": 12},
    ])
    out = tmp_path / "run"
    assert main(["import", str(src), "--format", "alpaca", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{src}:2: invalid JSON" in err
    assert f"{src}:4: field 'output' is missing" in err
    assert f"{src}:5: field 'output' must be a string" in err
    run = RunDir(out)
    assert [p["messages"][-1]["content"] for p in run.pairs()] == ["Hello.", "Blue."]
    quarantined = list(run.quarantined())
    assert [q["origin"] for q in quarantined] == [f"{src}:2", f"{src}:4", f"{src}:5"]
    assert quarantined[0]["raw"] == '{"instruction": "broken", "output": '
    assert run.read_meta()["counts"] == {"read": 5, "accepted": 2, "quarantined": 3}
    # --strict turns quarantined rows into a failing exit status
    assert main(["import", str(src), "--format", "alpaca", "--out", str(tmp_path / "strict"), "--strict"]) == 1


def test_sharegpt_openai_chat_and_pair_jsonl(tmp_path):
    share = _write_jsonl(tmp_path / "share.jsonl", [
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                           {"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Bye?"},
                           {"from": "gpt", "value": "Goodbye."}]},
        {"conversations": [{"from": "robot", "value": "?"}]},
    ])
    assert main(["import", str(share), "--format", "sharegpt", "--out", str(tmp_path / "s")]) == 0
    s = RunDir(tmp_path / "s")
    [pair] = list(s.pairs())
    assert [m["role"] for m in pair["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert "conversations[0].from" in next(s.quarantined())["reason"]

    chat = _write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
         "task_family": "reason", "difficulty": "easy"},
        {"messages": [{"role": "user", "content": "only a question"}]},
    ])
    assert main(["import", str(chat), "--format", "openai-chat", "--out", str(tmp_path / "c"), "--source", "human"]) == 0
    c = RunDir(tmp_path / "c")
    [pair] = list(c.pairs())
    assert (pair["task_family"], pair["difficulty"], pair["provenance"]["source"]) == ("reason", "easy", "human")
    assert "messages" in next(c.quarantined())["reason"]  # no assistant turn: the pair schema says why

    # our own pair records round-trip, keeping their provenance
    recs = _write_jsonl(tmp_path / "pairs.jsonl", [dict(pair, provenance={**pair["provenance"], "strategy": "hand"})])
    assert main(["import", str(recs), "--format", "jsonl", "--out", str(tmp_path / "j")]) == 0
    [again] = list(RunDir(tmp_path / "j").pairs())
    assert again["id"] == pair["id"] and again["provenance"]["strategy"] == "hand"


def test_reimport_is_idempotent_and_default_out_dir(tmp_path, data_root):
    src = _write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    assert main(["import", str(src), "--format", "alpaca"]) == 0
    [run] = list((data_root / "runs").iterdir())
    assert run.name.startswith("import-a-")
    assert main(["import", str(src), "--format", "alpaca"]) == 0
    assert len(list(RunDir(run).pairs())) == 1  # no duplicate rows on a rerun


def test_json_array_file_and_missing_file(tmp_path, capsys):
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]))
    assert main(["import", str(arr), "--format", "alpaca", "--out", str(tmp_path / "r")]) == 0
    assert len(list(RunDir(tmp_path / "r").pairs())) == 2
    assert main(["import", str(tmp_path / "nope.jsonl"), "--format", "alpaca"]) == 2
    assert "no such file" in capsys.readouterr().err
