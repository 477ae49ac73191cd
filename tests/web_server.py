"""A web server on 127.0.0.1 for tests: saved pages, redirects, slow, huge and broken answers.

The web is outside the bot; this stands in for it, as tests/fake_discord.py stands in for
Discord. Routes are plain data (`Reply`) registered per path, plus a few built in:

  /fixture/NAME        tests/fixtures/web/NAME.html(.gz), with ETag and Last-Modified
                       (and `inject`, e.g. a style for the browser, after <head>)
  /redirect/N?to=URL   N redirects (302), then to URL (default: /fixture/tricky-statement)
  /drip                headers at once, then a byte every 0.3 s, forever
  /hang                accepts the connection and never answers
  /endless             200 with no length, then data until the client stops reading

and hostile ones, each ending by itself within 30 s (bytes written are counted in `sent`):

  /drip-headers        a status line, then a header, a byte every 0.2 s
  /continue            "100 Continue" answers, one after another, never a final one
  /gzip-trailing?mib=N a small gzipped page, then N MiB (default 48) after the gzip stream's end
  /gzip-padding        gzip that never ends and inflates to nothing (empty deflate blocks)
  /gzip-bomb?mib=N     a gzip stream of N MiB (default 1024) of zeros, made as it is sent
  /location?to=X       302 whose Location is the percent-decoded bytes of X, raw (any bytes)
  /charset?name=X      a text page declaring charset X

`Trickle` is a proxy passing a server's bytes on one at a time (a TLS handshake that drips).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

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
        self.sent: Counter[str] = Counter()  # bytes written by the hostile routes, by path
        self.inject = inject  # added after <head> of fixture pages (e.g. a style for the browser)
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append((self.path, dict(self.headers)))
                try:
                    server._answer(self)
                except OSError:  # BrokenPipe, ConnectionReset, SSLError over TLS
                    pass  # the client gave up, as a careful client should

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = self._handle_error
        if tls is not None:
            # Each handshake in its handler's thread: a client stalling one stalls no other.
            self.httpd.socket = tls.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self.httpd.server_address[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> WebServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle_error(self, request: object, address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # not a client that hung up or distrusts us
            http.server.ThreadingHTTPServer.handle_error(self.httpd, request, address)

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
            match = h.headers.get("If-None-Match")  # when sent, it decides (RFC 9110 13.2.2)
            if match == etag or (match is None and h.headers["If-Modified-Since"] == LAST_MODIFIED):
                return self._send(
                    h, Reply(304, b"", {"ETag": etag, "Last-Modified": LAST_MODIFIED})
                )
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
        if parts.path in _HOSTILE:
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            return self._hostile(h, parts.path, query, parts.query)
        return self._send(h, Reply(404, b"<h1>Not found</h1>"))

    def _hostile(self, h, path: str, query: dict[str, str], raw_query: str) -> None:
        def write(data: bytes) -> None:
            h.wfile.write(data)
            self.sent[path] += len(data)

        def until_stopped(every: float = 0.0):  # bounded: 30 s at most, or the server's end
            end = time.monotonic() + 30
            while time.monotonic() < end and not self._stop.wait(every):
                yield

        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        gzip_head = head + b"Content-Encoding: gzip\r\n\r\n"
        if path == "/drip-headers":
            write(head + b"X-Slow: ")
            for _ in until_stopped(0.2):
                write(b"z")
        elif path == "/continue":
            for _ in until_stopped():
                write(b"HTTP/1.1 100 Continue\r\n\r\n" * 1000)
        elif path == "/gzip-trailing":
            write(gzip_head + gzip.compress(b"Zorblat herons nest in April."))
            block = b"after the end " * 4681  # 64 KiB
            for _ in range(int(query.get("mib", 48)) * 16):
                write(block)
        elif path == "/gzip-padding":
            pack = zlib.compressobj(9, zlib.DEFLATED, 31)
            write(gzip_head + pack.compress(b"") + pack.flush(zlib.Z_SYNC_FLUSH))
            for _ in until_stopped():
                write(b"\x00\x00\x00\xff\xff" * 13107)  # 64 KiB of empty stored blocks
        elif path == "/gzip-bomb":
            pack = zlib.compressobj(9, zlib.DEFLATED, 31)
            write(gzip_head)
            for _ in range(int(query.get("mib", 1024))):
                write(pack.compress(_MIB_OF_ZEROS))
            write(pack.flush())
        elif path == "/location":
            to = unquote_to_bytes(raw_query.removeprefix("to="))
            write(b"HTTP/1.1 302 Found\r\nLocation: " + to + b"\r\nContent-Length: 0\r\n\r\n")
        elif path == "/charset":
            content_type = f"text/plain; charset={query.get('name', '')}"
            self._send(
                h, Reply(200, b"Zorblat herons nest in April.", {"Content-Type": content_type})
            )

    @staticmethod
    def _send(h: http.server.BaseHTTPRequestHandler, reply: Reply) -> None:
        h.send_response(reply.status)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        if "Content-Length" not in reply.headers:
            h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        h.wfile.write(reply.body)


_HOSTILE = {
    "/drip-headers", "/continue", "/gzip-trailing", "/gzip-padding", "/gzip-bomb", "/location",
    "/charset",
}  # fmt: skip
_MIB_OF_ZEROS = bytes(1 << 20)  # made once: a client measuring its memory should not see it


class Trickle:
    """A TCP proxy on 127.0.0.1 to `port`: the client's bytes go on at once, the server's come
    back one byte every `every` seconds (a TLS handshake or an answer that drips)."""

    def __init__(self, port: int, every: float = 0.2) -> None:
        self._target, self._every = port, every
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]

    def __enter__(self) -> Trickle:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # a timeout, or closed at the end
                continue
            server = socket.create_connection(("127.0.0.1", self._target))
            for pump in (self._up, self._down):
                threading.Thread(target=pump, args=(client, server), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        self._pump(client, server, 65536, 0.0)

    def _down(self, client: socket.socket, server: socket.socket) -> None:
        self._pump(server, client, 1, self._every)

    def _pump(self, src: socket.socket, dst: socket.socket, size: int, every: float) -> None:
        src.settimeout(1.0)
        end = time.monotonic() + 30
        try:
            while time.monotonic() < end and not self._stop.wait(every):
                try:
                    data = src.recv(size)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:  # either side gone: both go, so the server's handshake ends too
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def make_cert(folder: Path, name: str = "hostile.example", ip: bool = True) -> Path:
    """A self-signed certificate (its own authority) for `name` (and 127.0.0.1 with `ip`); its
    key is key.pem beside it."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = f"DNS:{name}" + (",IP:127.0.0.1" if ip else "")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def tls_server(cert: Path) -> WebServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, cert.with_name("key.pem"))
    return WebServer(tls=context)
