"""A loopback HTTP proxy that injects the faults a real teacher cannot be asked to produce: 429s, dropped connections
and stalls.

Each POST takes the next action from `faults` ("429", "503", "drop", or "stall": no answer for `stall_s`, then a
drop); once they are used up, requests pass to the upstream server unchanged. `seen` records what happened to every
request, `auth` the Authorization headers.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream_base_url: str, faults: list[str] | None = None, retry_after: str = "1", stall_s: float = 5.0):
        up = urlsplit(upstream_base_url)
        self.upstream = (up.hostname, up.port)
        self.faults = list(faults or [])
        self.retry_after = retry_after
        self.stall_s = stall_s
        self.seen: list[str] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_action(self, method: str) -> str:
        with self._lock:
            action = self.faults.pop(0) if method == "POST" and self.faults else "pass"
            self.seen.append(action)
            return action

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.auth.append(self.headers.get("Authorization", ""))
                action = proxy.next_action("POST")
                if action == "stall":
                    time.sleep(proxy.stall_s)
                if action in ("drop", "stall"):
                    self.close_connection = True
                    with suppress(OSError):  # a stalled client may have hung up already
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action in ("429", "503"):
                    payload = b'{"error": {"message": "injected fault", "type": "fault"}}'
                    self.send_response(int(action))
                    self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        return Handler
