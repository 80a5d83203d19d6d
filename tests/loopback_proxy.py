"""The part the test proxies share: a threaded HTTP server on 127.0.0.1 in front of a real upstream server, and the
relay of a request to that upstream and of its answer back."""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class LoopbackProxy:
    """Serves `self._handler()` (a BaseHTTPRequestHandler class the subclass builds) while in a `with` block."""

    def __init__(self, upstream_base_url: str):
        up = urlsplit(upstream_base_url)
        self.upstream = (up.hostname, up.port)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def relay(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        """Send the handler's request (with `body`) upstream and its answer back, headers included."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(handler.command, handler.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        handler.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        conn.close()
