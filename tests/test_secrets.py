"""The API key never reaches disk or the screen: a real loopback endpoint that echoes the Authorization header in
its error bodies, and a key put inside the base URL."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from curator.cli import main
from curator.redact import redact
from curator.rundir import RunDir
from curator.spec import SpecError, load_spec
from generate_helpers import write_spec

SECRET = "sk-live-4b1d0e9f2c7a8e5d"


class EchoHeaders(BaseHTTPRequestHandler):
    """/v1/models answers; every other request is refused (HTTP 400, not retried) with the headers echoed back."""

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": "test"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        echoed = f"invalid request; you sent Authorization: {self.headers.get('Authorization')} to {self.path}"
        self._send(400, {"error": {"message": echoed, "type": "invalid_request_error", "headers": dict(self.headers)}})


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_an_endpoint_echoing_the_key_leaves_no_trace_of_it(echo_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CURATOR_TEST_TEACHER_KEY", SECRET)
    spec = write_spec(tmp_path, api_key_env="CURATOR_TEST_TEACHER_KEY", max_attempts=1)
    out = tmp_path / "run"
    rc = main(["generate", str(spec), "--pairs", "2", "--out", str(out), "--base-url", echo_server, "--model", "echo",
               "--cache", str(tmp_path / "cache.sqlite")])
    printed = capsys.readouterr()
    assert rc == 1  # every attempt failed
    failed = list(RunDir(out).failed())
    assert len(failed) == 2 and all("you sent Authorization: Bearer *** to /v1/completions" in f["reason"] for f in failed)
    assert SECRET not in _files_text(tmp_path) and SECRET not in printed.out + printed.err
    assert SECRET[:12] not in _files_text(tmp_path)  # not even the part a cut message would keep


def test_a_key_inside_the_base_url_is_refused_without_being_shown_or_written(echo_server, tmp_path, capsys):
    spec = write_spec(tmp_path)
    url = echo_server.replace("http://", f"http://user:{SECRET}@")
    out = tmp_path / "run"
    assert main(["generate", str(spec), "--pairs", "1", "--out", str(out), "--base-url", url]) == 2
    err = capsys.readouterr().err
    assert "--base-url http://***@127.0.0.1" in err and "holds credentials" in err and err.count("\n") == 1
    assert SECRET not in err and not out.exists()
    in_spec = write_spec(tmp_path, base_url=url)
    with pytest.raises(SpecError, match=r"teacher.base_url: http://\*\*\*@127.0.0.1:\d+/v1 holds credentials") as e:
        load_spec(in_spec)
    assert SECRET not in str(e.value)


@pytest.mark.parametrize("text, expected", [
    (f"key {SECRET} echoed", "key *** echoed"),
    ("Authorization: Bearer abc.DEF-123_x", "Authorization: Bearer ***"),
    ("auth basic dXNlcjpwYXNz", "auth basic ***"),
    ("see https://me:hunter2@api.example.com/v1?x=1", "see https://***@api.example.com/v1?x=1"),
])
def test_redact(text, expected):
    assert redact(text, SECRET) == expected
