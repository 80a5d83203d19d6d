"""`curator generate --batch`: the OpenAI Batch API path, through a loopback Batch API proxy (tests/batch_proxy.py)
in front of the real embedded gemma-3-270m server; and the real server alone, which has no Batch API."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from batch_proxy import INJECTED, BatchProxy
from curator.cli import main
from curator.generate.batch import line_reply
from curator.records import schema_errors
from curator.rundir import RunDir
from curator.teacher.client import TeacherError, TeacherReply
from curator.teacher.embedded import embedded_teacher
from generate_helpers import slots_on_disk, write_spec


@pytest.fixture(scope="module")
def teacher_url(tmp_path_factory):
    with embedded_teacher("gemma-3-270m", tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def generate_argv(tmp_path, base_url: str, pairs: int, **teacher) -> list[str]:
    spec = write_spec(tmp_path, max_tokens=64, batch=True, batch_poll_s=0.1, **teacher)
    return ["generate", str(spec), "--pairs", str(pairs), "--out", str(tmp_path / "run"), "--base-url", base_url,
            "--cache", str(tmp_path / "cache.sqlite")]


def ledger(run: RunDir) -> list[dict]:
    return json.loads((run.path / "batch.json").read_text())["batches"]


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_run_fills_the_plan_from_one_batch_with_live_provenance(teacher_url, tmp_path, workers):
    """With 2 worker processes too: the replies the batch put in the cache reach the workers' own connections."""
    argv = generate_argv(tmp_path, "", 3) + ["--workers", str(workers), "--max-in-flight", str(workers)]
    with BatchProxy(teacher_url) as proxy:
        argv[argv.index("--base-url") + 1] = proxy.base_url
        assert main(argv) == 0
        assert proxy.creates == 1
        assert "/v1/completions" not in proxy.forwarded  # every reply came through the batch
        run = RunDir(tmp_path / "run")
        [entry] = ledger(run)
        assert (entry["state"], entry["status"], entry["requests"], entry["answered"]) == ("collected", "completed", 3, 3)
        lines = jsonl(run.path / "batch-1-input.jsonl")
        assert [(x["method"], x["url"]) for x in lines] == [("POST", "/v1/completions")] * 3
        assert all("prompt" in x["body"] and "grammar" not in x["body"] for x in lines)
        assert len(jsonl(run.path / "batch-1-output.jsonl")) == 3

        meta = run.read_meta()
        counts = meta["counts"]
        assert counts["planned"] == 3 == counts["accepted"] + counts["quarantined"] and counts["failed"] == 0
        keys = {x["custom_id"] for x in lines}
        for pair in run.pairs():
            prov = pair["provenance"]
            assert schema_errors(pair) == []
            assert prov["prompt_hash"] in keys and prov["teacher_model"] == "gemma-3-270m"
            assert prov["strategy"] == "self_instruct" and prov["prompt_template"] == "self_instruct_v1"
        assert all(q["raw"]["prompt_hash"] in keys for q in run.quarantined())
        session = meta["sessions"][-1]
        assert session["usage"]["requests"] == 3 and session["usage"]["prompt_tokens"] > 0
        assert session["usage"]["completion_tokens"] > 0 and session["usage"]["cache_hits"] == 3
        assert session["batches"] == [{"id": entry["id"], "status": "completed", "requests": 3, "answered": 3, "failed": 0}]

        before = (run.path / "pairs.jsonl").read_bytes()
        assert main(argv) == 0  # nothing pending: no batch, no teacher
        assert proxy.creates == 1 and (run.path / "pairs.jsonl").read_bytes() == before


@pytest.mark.parametrize("crashed_in", ["submitted", "uploaded"])
def test_a_killed_batch_run_resumes_the_same_batch(teacher_url, tmp_path, crashed_in):
    """Killed while polling: the rerun polls the recorded batch. `uploaded`: killed after the batch was created but
    before its id was written: the rerun finds it by its input file instead of creating another."""
    with BatchProxy(teacher_url) as proxy:
        argv = generate_argv(tmp_path, proxy.base_url, 2)
        run = RunDir(tmp_path / "run")
        proxy.hold()
        stderr = tmp_path / "stderr.txt"
        with open(stderr, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "curator.cli", *argv], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (run.path / "batch.json").exists() and ledger(run)[0]["state"] == "submitted":
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, stderr.read_text()[-2000:]
        assert proxy.creates == 1 and slots_on_disk(run) == []
        if crashed_in == "uploaded":
            entries = ledger(run)
            del entries[0]["id"]
            entries[0]["state"] = "uploaded"
            (run.path / "batch.json").write_text(json.dumps({"batches": entries}))
        proxy.release()

        assert main(argv) == 0
        assert proxy.creates == 1
        [entry] = ledger(run)
        assert entry["state"] == "collected" and entry["answered"] == 2
        counts = run.read_meta()["counts"]
        assert counts["planned"] == 2 == counts["accepted"] + counts["quarantined"]
        assert "/v1/completions" not in proxy.forwarded


def test_a_failed_batch_line_ends_failed_with_its_reason_and_a_rerun_retries_it(teacher_url, tmp_path):
    with BatchProxy(teacher_url, fail_lines=1) as proxy:
        argv = generate_argv(tmp_path, proxy.base_url, 2)
        assert main(argv) == 0
        run = RunDir(tmp_path / "run")
        [failed] = list(run.failed())
        [entry] = ledger(run)
        assert failed["reason"] == f"batch {entry['id']}: HTTP 500: {INJECTED}"
        assert (entry["answered"], entry["failed"]) == (1, 1)
        [error_line] = jsonl(run.path / "batch-1-errors.jsonl")
        meta = run.read_meta()
        counts = meta["counts"]
        assert counts["planned"] == 2 == counts["accepted"] + counts["quarantined"] + counts["failed"] and counts["failed"] == 1
        assert meta["sessions"][-1]["usage"]["failures"] == 1 and meta["sessions"][-1]["outcomes"]["failed"] == 1
        assert failed["plan_slot"] not in slots_on_disk(run)
        assert "/v1/completions" not in proxy.forwarded  # the failed slot was not sent live

        assert main(argv) == 0  # retried in a second batch holding only that request
        assert proxy.creates == 2
        [retry] = jsonl(run.path / "batch-2-input.jsonl")
        assert retry["custom_id"] == error_line["custom_id"]
        counts = run.read_meta()["counts"]
        assert counts["failed"] == 0 and counts["planned"] == 2 == counts["accepted"] + counts["quarantined"]
        assert failed["plan_slot"] in slots_on_disk(run)


def test_a_server_without_the_batch_api_is_one_clear_error(teacher_url, tmp_path, capsys):
    """llama.cpp's server answers 404 on /v1/files: exit 2 with one line, nothing generated."""
    argv = generate_argv(tmp_path, teacher_url, 1)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"curator: error: the teacher at {teacher_url} has no Batch API (POST /files answered HTTP 404); "
                   "run without --batch (and teacher.batch: false)")
    run = RunDir(tmp_path / "run")
    assert slots_on_disk(run) == [] and list(run.failed()) == []


def test_batch_refuses_a_gbnf_grammar(teacher_url, tmp_path, capsys):
    spec = write_spec(tmp_path, families={"extract": 1.0}, structured_output="json_object")
    argv = ["generate", str(spec), "--pairs", "1", "--batch", "--out", str(tmp_path / "run"), "--base-url", teacher_url,
            "--cache", str(tmp_path / "cache.sqlite")]
    assert main(argv) == 2
    assert "GBNF grammar" in capsys.readouterr().err


@pytest.mark.parametrize("line,reason", [
    ({"custom_id": "k", "response": None, "error": {"code": "batch_expired", "message": "This request could not be executed "
      "before the completion window expired."}},
     "batch_expired: This request could not be executed before the completion window expired."),
    ({"custom_id": "k", "response": {"status_code": 400, "body": {"error": {"message": "Invalid 'max_tokens'"}}}, "error": None},
     "HTTP 400: Invalid 'max_tokens'"),
    ({"custom_id": "k", "response": {"status_code": 200, "body": {"choices": []}}, "error": None}, "malformed reply: no choices"),
])
def test_batch_lines_without_a_reply_say_why(line, reason):
    with pytest.raises(TeacherError) as e:
        line_reply(line, "completion")
    assert str(e.value) == reason


def test_batch_output_lines_read_like_live_replies():
    body = {"choices": [{"message": {"content": "Hi."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    line = {"custom_id": "k", "response": {"status_code": 200, "body": body}, "error": None}
    assert line_reply(line, "chat") == TeacherReply("Hi.", "stop", 5, 2)
