"""The teacher client and the embedded server: real llama.cpp on loopback, with a fault-injecting proxy in front
for the faults a real server cannot be asked to produce (429 with Retry-After, a dropped connection)."""
from __future__ import annotations

import asyncio
import json
import time

import httpx
import httpx2
import openai
import pytest

from curator.cli import main
from curator.rundir import RunDir
from curator.teacher.client import ResponseCache, TeacherClient, TeacherError, TeacherRequest, parse_reply
from curator.teacher.embedded import TeacherStartError, embedded_teacher, free_port
from fault_proxy import FaultProxy
from generate_helpers import write_spec

MODEL = "gemma-3-270m"
SECRET = "sk-test-do-not-log-4f9c1e"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with embedded_teacher(MODEL, log) as url:
        yield url
    assert log.stat().st_size > 0


def completion(prompt: str = "The capital of France is", max_tokens: int = 8) -> TeacherRequest:
    return TeacherRequest(model=MODEL, prompt=prompt, stop=("\n",),
                          sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens, "seed": 1})


async def ask(base_url: str, request: TeacherRequest, **kwargs):
    client = TeacherClient(base_url, "sk-no-key", **kwargs)
    try:
        return await client.complete(request), client.stats
    finally:
        await client.close()


def test_embedded_server_serves_its_alias(server):
    models = httpx.get(f"{server}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_completion_and_chat_requests_are_counted(server):
    reply, stats = asyncio.run(ask(server, completion()))
    assert reply.text.strip() and reply.finish_reason in ("stop", "length") and not reply.cached
    assert stats.requests == 1 and stats.retries == 0 and stats.failures == 0
    assert stats.prompt_tokens > 0 and 0 < stats.completion_tokens <= 8

    chat = TeacherRequest(model=MODEL, messages=({"role": "user", "content": "Name one colour."},),
                          sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 1})
    reply, stats = asyncio.run(ask(server, chat))
    assert chat.mode == "chat" and reply.text.strip()
    assert stats.requests == 1 and stats.completion_tokens > 0


def test_cached_reply_is_never_paid_twice(server, tmp_path):
    request = completion("Water boils at")
    first, paid = asyncio.run(ask(server, request, cache=ResponseCache(tmp_path / "c.sqlite")))
    again, free = asyncio.run(ask(server, request, cache=ResponseCache(tmp_path / "c.sqlite")))
    assert paid.requests == 1 and not first.cached
    assert free.requests == 0 and free.cache_hits == 1 and again.cached
    assert (again.text, again.finish_reason, again.completion_tokens) == (first.text, first.finish_reason, first.completion_tokens)
    other, cost = asyncio.run(ask(server, completion("Water freezes at"), cache=ResponseCache(tmp_path / "c.sqlite")))
    assert cost.requests == 1


def test_429_and_dropped_connection_are_retried_and_counted(server):
    with FaultProxy(server, ["429", "drop"], retry_after="0.2") as proxy:
        reply, stats = asyncio.run(ask(proxy.base_url, completion(), max_attempts=4))
    assert reply.text.strip()
    assert proxy.seen == ["429", "drop", "pass"]
    assert stats.requests == 3 and stats.retries == 2 and stats.failures == 0


def test_stalled_request_times_out_and_is_retried(server):
    with FaultProxy(server, ["stall"], stall_s=6) as proxy:
        reply, stats = asyncio.run(ask(proxy.base_url, completion(), max_attempts=2, timeout_s=3))
    assert reply.text.strip()
    assert proxy.seen == ["stall", "pass"]
    assert stats.requests == 2 and stats.retries == 1 and stats.failures == 0


def test_dropped_connection_is_named_in_the_failure(server):
    with FaultProxy(server, ["drop"]) as proxy:
        with pytest.raises(TeacherError, match=r"\(after 1 attempt\(s\)\)") as err:
            asyncio.run(ask(proxy.base_url, completion(), max_attempts=1))
    assert "disconnected" in str(err.value).lower()  # the cause, not only the SDK's "Request timed out."


def test_reply_bodies_are_read_or_refused():
    body = {"choices": [{"message": {"content": "Blue."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    assert parse_reply(json.dumps(body).encode(), "chat") == parse_reply(
        b'{"choices": [{"text": "Blue.", "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}', "completion")
    assert parse_reply(b'{"choices": [{"message": {"content": null}}]}', "chat").text == ""
    for bad in (b"<html>busy</html>", b"[]", b'{"choices": []}', b'{"choices": [{"message": {}}]}', b'{"choices": [{}]}'):
        with pytest.raises(TeacherError, match="malformed reply"):
            parse_reply(bad, "chat")


def test_retry_after_header_sets_the_wait():
    client = TeacherClient("http://127.0.0.1:9/v1", "sk-no-key", backoff_base_s=0.5, max_retry_after_s=60)
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/completions")
    limited = openai.RateLimitError("slow down", response=httpx2.Response(429, headers={"Retry-After": "7"}, request=request), body=None)
    assert client.backoff_s(1, limited) == 7
    huge = openai.RateLimitError("slow down", response=httpx2.Response(429, headers={"Retry-After": "9999"}, request=request), body=None)
    assert client.backoff_s(1, huge) == 60
    unhinted = openai.InternalServerError("oops", response=httpx2.Response(503, request=request), body=None)
    assert all(0 <= client.backoff_s(3, unhinted) <= 2.0 for _ in range(50))


def test_attempts_run_out_into_a_counted_failure(server):
    with FaultProxy(server, ["503"] * 5, retry_after="0") as proxy:
        with pytest.raises(TeacherError, match="HTTP 503.*after 3 attempt"):
            asyncio.run(ask(proxy.base_url, completion(), max_attempts=3))
    assert proxy.seen == ["503"] * 3


def test_bad_request_is_not_retried(server):
    bad = completion("word " * 3000, max_tokens=4)  # longer than the server's 2048-token context: HTTP 400

    async def go():
        client = TeacherClient(server, "sk-no-key", max_attempts=4)
        try:
            with pytest.raises(TeacherError, match="HTTP 400.*after 1 attempt"):
                await client.complete(bad)
            return client.stats
        finally:
            await client.close()

    stats = asyncio.run(go())
    assert stats.requests == 1 and stats.retries == 0 and stats.failures == 1


def test_generate_through_faults_completes_and_never_writes_the_key(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_TEST_TEACHER_KEY", SECRET)
    spec = write_spec(tmp_path, api_key_env="CURATOR_TEST_TEACHER_KEY")
    out = tmp_path / "run"
    with FaultProxy(server, ["429", "drop"], retry_after="0.2") as proxy:
        rc = main(["generate", str(spec), "--pairs", "1", "--out", str(out), "--base-url", proxy.base_url,
                   "--cache", str(tmp_path / "cache.sqlite")])
    assert rc == 0
    meta = RunDir(out).read_meta()
    counts = meta["counts"]
    assert counts["planned"] == 1 == counts["accepted"] + counts["quarantined"] + counts["failed"]
    assert counts["failed"] == 0
    assert proxy.seen == ["429", "drop", "pass"]
    assert meta["usage"]["retries"] == 2 and meta["usage"]["requests"] == 3
    assert meta["teacher"]["base_url"] == proxy.base_url and meta["teacher"]["api_key_env"] == "CURATOR_TEST_TEACHER_KEY"
    assert proxy.auth and all(h == f"Bearer {SECRET}" for h in proxy.auth)  # the key was used...
    for path in out.rglob("*"):
        assert SECRET not in path.read_text(errors="replace"), path  # ...and written nowhere


def test_failed_slots_are_recorded_then_retried_on_rerun(server, tmp_path):
    spec = write_spec(tmp_path, max_attempts=2)
    out = tmp_path / "run"
    argv = ["generate", str(spec), "--pairs", "1", "--out", str(out), "--cache", str(tmp_path / "cache.sqlite")]
    with FaultProxy(server, ["503", "503"], retry_after="0") as proxy:
        assert main(argv + ["--base-url", proxy.base_url]) == 1  # everything failed
    run = RunDir(out)
    failed = list(run.failed())
    assert [f["plan_slot"] for f in failed] == ["summarize/free_text/easy/short/#0"]
    assert "HTTP 503" in failed[0]["reason"]
    assert run.read_meta()["counts"] == {"planned": 1, "accepted": 0, "quarantined": 0, "failed": 1, "pending": 0}

    assert main(argv + ["--base-url", server]) == 0
    counts = run.read_meta()["counts"]
    assert counts["failed"] == 0 and counts["accepted"] + counts["quarantined"] == 1 == counts["planned"]


def test_unreachable_teacher_is_a_clear_error(tmp_path, capsys):
    spec = write_spec(tmp_path, max_attempts=2)
    url = f"http://127.0.0.1:{free_port()}/v1"
    rc = main(["generate", str(spec), "--pairs", "1", "--out", str(tmp_path / "run"), "--base-url", url,
               "--cache", str(tmp_path / "cache.sqlite")])
    assert rc == 2
    assert f"teacher at {url} not reachable" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["counts"]["pending"] == 1


def test_embedded_server_that_is_not_ready_in_time_is_stopped_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    with pytest.raises(TeacherStartError, match="not ready after") as err:
        with embedded_teacher(MODEL, log, startup_timeout_s=0.05):
            pass
    assert str(log) in str(err.value)


def test_requests_per_minute_spreads_requests_over_the_minute(server):
    """240 a minute: a budget of 4 a second, so 12 requests sent at once need at least 2 s of waiting."""
    requests = [completion(f"Count to {i}:", max_tokens=2) for i in range(12)]

    async def go():
        client = TeacherClient(server, "sk-no-key", max_in_flight=12, requests_per_minute=240)
        try:
            started = time.monotonic()
            await asyncio.gather(*(client.complete(r) for r in requests))
            return time.monotonic() - started, client.stats
        finally:
            await client.close()

    elapsed, stats = asyncio.run(go())
    assert stats.requests == 12 and stats.failures == 0
    assert elapsed >= 1.95
    assert stats.rate_limited_s >= 0.25 * sum(range(1, 9)) * 0.95  # the 5th waits 0.25 s, the 12th 2 s


def test_tokens_per_minute_charges_prompt_and_max_tokens_then_settles_on_usage(server):
    """600 tokens a minute is 10 a second: each request is charged more than that, so each after the first waits
    for the budget to refill from what the one before really used."""
    request = completion("The capital of France is", max_tokens=8)
    assert request.token_charge == len("The capital of France is") // 4 + 1 + 8

    async def go():
        client = TeacherClient(server, "sk-no-key", max_in_flight=3, tokens_per_minute=600)
        try:
            started = time.monotonic()
            await asyncio.gather(*(client.complete(completion(f"The capital of country {i} is", max_tokens=8)) for i in range(3)))
            return time.monotonic() - started, client.stats
        finally:
            await client.close()

    elapsed, stats = asyncio.run(go())
    assert stats.requests == 3 and stats.failures == 0
    used_each = (stats.prompt_tokens + stats.completion_tokens) / 3
    assert used_each > 5
    assert elapsed >= 2 * used_each / 10 * 0.9 and stats.rate_limited_s > 0
