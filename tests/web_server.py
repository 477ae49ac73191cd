"""A web server on 127.0.0.1 for tests: saved pages, redirects, slow, huge and broken answers.

The web is outside the bot; this stands in for it, as tests/fake_discord.py stands in for
Discord. Routes are plain data (`Reply`) registered per path, plus a few built in:

  /fixture/NAME        tests/fixtures/web/NAME.html(.gz), with ETag and Last-Modified
                       (and `inject`, e.g. a style for the browser, after <head>)
  /redirect/N?to=URL   N redirects (302), then to URL (default: /fixture/tricky-statement)
  /drip                headers at once, then a byte every 0.3 s, forever
  /hang                accepts the connection and never answers
  /endless             200 with no length, then data until the client stops reading
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "web"
LAST_MODIFIED = formatdate(1_710_000_000, usegmt=True)  # fixed: conditional requests can match


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/html"})


def fixture(name: str) -> bytes:
    """A saved page's HTML (decompressed)."""
    plain = FIXTURES / f"{name}.html"
    if plain.exists():
        return plain.read_bytes()
    return gzip.decompress((FIXTURES / f"{name}.html.gz").read_bytes())


class WebServer:
    """Serves `routes` ({path: Reply}) and the built-in routes; records every request."""

    def __init__(self, inject: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.inject = inject  # added after <head> of fixture pages (e.g. a style for the browser)
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, dict(self.headers)))
                try:
                    server._answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as a careful client should

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> WebServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        return sum(p.split("?")[0] == path for p, _ in self.requests)

    def _answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        if parts.path in self.routes:
            reply = self.routes[parts.path]
            etag = reply.headers.get("ETag")
            if etag and h.headers.get("If-None-Match") == etag:
                return self._send(h, Reply(304, b"", {"ETag": etag}))
            return self._send(h, reply)
        if parts.path.startswith("/fixture/"):
            body = fixture(parts.path.removeprefix("/fixture/"))
            if self.inject:
                extra = self.inject.encode()
                body = re.sub(rb"<head\b[^>]*>|$", lambda m: m[0] + extra, body, count=1)
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if h.headers.get("If-None-Match") == etag:
                return self._send(h, Reply(304, b"", {"ETag": etag}))
            headers = {"Content-Type": "text/html; charset=utf-8", "ETag": etag}
            return self._send(h, Reply(200, body, {**headers, "Last-Modified": LAST_MODIFIED}))
        if parts.path.startswith("/redirect/"):
            n = int(parts.path.rsplit("/", 1)[1])
            to = parse_qs(parts.query).get("to", ["/fixture/tricky-statement"])[0]
            query = f"?{parts.query}" if parts.query else ""
            location = f"/redirect/{n - 1}{query}" if n > 1 else to
            return self._send(h, Reply(302, b"", {"Location": location}))
        if parts.path == "/drip":
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.end_headers()
            while not self._stop.wait(0.3):
                h.wfile.write(b"<p>x</p>")
                h.wfile.flush()
            return None
        if parts.path == "/hang":
            self._stop.wait(30)
            return None
        if parts.path == "/endless":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            block = b"all work and no play makes a dull page\n" * 1000
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self._stop.is_set():
                h.wfile.write(block)
            return None
        return self._send(h, Reply(404, b"<h1>Not found</h1>"))

    @staticmethod
    def _send(h: http.server.BaseHTTPRequestHandler, reply: Reply) -> None:
        h.send_response(reply.status)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if "Content-Length" not in reply.headers:
            h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        h.wfile.write(reply.body)
