"""Helpers for tests that start real local servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, log: Path, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; otherwise stop the process group and fail with the log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    pytest.fail(f"{what} did not start: " + log.read_text()[-3000:])


class FixtureServer:
    """Loopback HTTP server answering from saved engine responses (``tests/tasks/collect/fixtures/engines``).

    ``routes`` maps a path to a function ``(query: dict[str, str]) -> (status, body, content_type, headers)``;
    ``{base}`` in a body is replaced by the server's base URL. ``requests`` lists (path, query, headers) seen.
    """

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qsl, urlsplit

        self.routes: dict = {}
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                server.requests.append((parts.path, query, dict(self.headers.items())))
                route = server.routes.get(parts.path)
                status, body, content_type, headers = route(query) if route else (404, b"not found", "text/plain", {})
                body = body.replace(b"{base}", server.base_url.encode())
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    for one in value if isinstance(value, list) else [value]:
                        self.send_header(key, one)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def paths(self, path: str) -> list[dict[str, str]]:
        """The query dicts of the requests of ``path``, in order."""
        return [q for p, q, _ in self.requests if p == path]
