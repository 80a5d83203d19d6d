"""A loopback OpenAI Batch API in front of a real OpenAI-compatible server (llama.cpp has none).

Implements `POST /v1/files` (multipart upload), `GET /v1/files/{id}/content`, `POST /v1/batches`,
`GET /v1/batches/{id}` and `GET /v1/batches` (list); every other request is forwarded to the upstream server
unchanged. A created batch runs in a thread: each input line is sent to the upstream server as is, and its
answer goes to the output file (HTTP 200) or the error file (anything else), in OpenAI's line format.

Test controls: `creates` counts batches created, `forwarded` lists the paths of requests passed through (the
live path's); `hold()` keeps new batches `in_progress` until `release()`;
`fail_lines` answers that many of the next executed lines with an injected HTTP 500 instead of asking upstream.
"""
from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from loopback_proxy import LoopbackProxy

INJECTED = "injected batch line failure"


class BatchProxy(LoopbackProxy):
    def __init__(self, upstream_base_url: str, fail_lines: int = 0):
        self.fail_lines = fail_lines
        self.creates = 0
        self.forwarded: list[str] = []
        self.files: dict[str, dict[str, Any]] = {}  # id -> file object, plus its bytes under "_content"
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._go = threading.Event()
        self._go.set()
        super().__init__(upstream_base_url)

    def __exit__(self, *exc) -> None:
        self._go.set()
        super().__exit__(*exc)

    def hold(self) -> None:
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}-{next(self._ids)}"

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        file = {"id": self.new_id("file"), "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file["id"]] = {**file, "_content": content}
        return file

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.creates += 1
        batch = {"id": self.new_id("batch"), "object": "batch", "endpoint": body["endpoint"], "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                 "status": "validating", "created_at": int(time.time()), "metadata": body.get("metadata"),
                 "output_file_id": None, "error_file_id": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        self.batches[batch["id"]] = batch
        threading.Thread(target=self.execute, args=(batch,), daemon=True).start()
        return batch

    def execute(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["_content"].decode().splitlines() if x.strip()]
        batch["request_counts"]["total"] = len(lines)
        batch["status"] = "in_progress"
        self._go.wait()
        output, errors = [], []
        for line in lines:
            status, body = self.answer(line)
            record = {"id": self.new_id("batch_req"), "custom_id": line["custom_id"], "error": None,
                      "response": {"status_code": status, "request_id": self.new_id("req"), "body": body}}
            (output if status == 200 else errors).append(record)
            batch["request_counts"]["completed" if status == 200 else "failed"] += 1
        for name, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                content = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch[name] = self.add_file(f"{batch['id']}-{name}.jsonl", "batch_output", content)["id"]
        batch["status"] = "completed"

    def answer(self, line: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            inject = self.fail_lines > 0
            self.fail_lines -= inject
        if inject:
            return 500, {"error": {"message": INJECTED, "type": "server_error"}}
        conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        conn.request(line["method"], line["url"], body=json.dumps(line["body"]), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read() or b"{}")
        conn.close()
        return status, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def send_json(self, obj: Any, status: int = 200) -> None:
                self.reply(status, json.dumps(obj).encode())

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if m := re.fullmatch(r"/v1/files/([^/]+)/content", path):
                    file = proxy.files.get(m[1])
                    return self.reply(200, file["_content"], "application/octet-stream") if file else self.send_json({}, 404)
                if m := re.fullmatch(r"/v1/batches/([^/]+)", path):
                    batch = proxy.batches.get(m[1])
                    return self.send_json(batch) if batch else self.send_json({}, 404)
                if path == "/v1/batches":
                    data = sorted(proxy.batches.values(), key=lambda b: b["created_at"], reverse=True)
                    return self.send_json({"object": "list", "data": data, "has_more": False})
                self.forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urlsplit(self.path).path
                if path == "/v1/files":
                    form = BytesParser(policy=HTTP).parsebytes(
                        f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
                    fields = {part.get_param("name", header="content-disposition"): part for part in form.iter_parts()}
                    file = fields["file"]
                    return self.send_json(proxy.add_file(file.get_filename(), fields["purpose"].get_content().strip(),
                                                         file.get_payload(decode=True)))
                if path == "/v1/batches":
                    return self.send_json(proxy.create_batch(json.loads(body)))
                self.forward(body)

            def forward(self, body: bytes) -> None:
                proxy.forwarded.append(urlsplit(self.path).path)
                proxy.relay(self, body)

        return Handler
