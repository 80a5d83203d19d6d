"""A loopback HTTP proxy that injects the faults a real teacher cannot be asked to produce: 429s, dropped connections
and stalls.

Each POST takes the next action from `faults` ("429", "503", "drop", or "stall": no answer for `stall_s`, then a
drop); once they are used up, requests pass to the upstream server unchanged. `seen` records what happened to every
request, `auth` the Authorization headers.
"""
from __future__ import annotations

import socket
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler

from loopback_proxy import LoopbackProxy


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream_base_url: str, faults: list[str] | None = None, retry_after: str = "1", stall_s: float = 5.0):
        self.faults = list(faults or [])
        self.retry_after = retry_after
        self.stall_s = stall_s
        self.seen: list[str] = []
        self.auth: list[str] = []
        super().__init__(upstream_base_url)

    def next_action(self, method: str) -> str:
        with self._lock:
            action = self.faults.pop(0) if method == "POST" and self.faults else "pass"
            self.seen.append(action)
            return action

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy.relay(self, b"")

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
                proxy.relay(self, body)

        return Handler
