"""Hostile web servers against index/fetch.py: what each fetch ends in, how long it took and the
most memory it held.

`python bench/hostile_web.py [TIMEOUT]` runs each case once against the servers of
tests/web_server.py on 127.0.0.1 (http and https, with a certificate made here by openssl), with
the bot's default MAX_UPLOAD_BYTES and a total timeout of TIMEOUT seconds (default 3; the bot's
FETCH_TIMEOUT is 20, which only makes the slow cases slower). Memory is tracemalloc's peak.
"""

from __future__ import annotations

import socket
import ssl
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from index.web.fetch import FetchError, fetch  # noqa: E402
from tests.web_server import Reply, Trickle, WebServer, make_cert, tls_server  # noqa: E402  # noqa: E402

MAX_BYTES = Settings.max_upload_bytes


def slow_dns(host, port, **kwargs):
    time.sleep(30)
    return []


def loopback(host, port, **kwargs):
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def cases(web: WebServer, tls: WebServer, trickle: Trickle) -> list[tuple[str, str, dict]]:
    """(case, url, extra fetch options)."""
    markdown = "/[click](https://evil.example)%20@everyone%20%3C@123%3E%20%60x%60"
    return [
        ("drip body, http", web.url("/drip"), {}),
        ("drip body, https", tls.url("/drip"), {}),
        ("drip headers, http", web.url("/drip-headers"), {}),
        ("drip headers, https", tls.url("/drip-headers"), {}),
        ("100 Continue flood, http", web.url("/continue"), {}),
        ("100 Continue flood, https", tls.url("/continue"), {}),
        ("hang after TLS handshake", tls.url("/hang"), {}),
        ("TLS handshake drips", f"https://127.0.0.1:{trickle.port}/fixture/tricky-statement", {}),
        ("DNS lookup hangs", "http://slow.example/", {"resolve": slow_dns}),
        ("endless body", web.url("/endless"), {}),
        ("gzip + 48 MiB trailing", web.url("/gzip-trailing"), {}),
        ("gzip empty blocks", web.url("/gzip-padding"), {}),
        ("gzip bomb (1 GiB)", web.url("/gzip-bomb"), {}),
        ("redirect, UTF-8 bytes", web.url("/location?to=/caf%C3%A9"), {}),
        ("redirect, Latin-1 byte", web.url("/location?to=/caf%E9"), {}),
        ("redirect, IDN host", web.url(f"/location?to=http://b%C3%BCcher.example:{web.port}/fixture/bbc-newsbeat"),
         {"resolve": loopback}),
        ("charset=undefined", web.url("/charset?name=undefined"), {}),
        ("charset=rot13", web.url("/charset?name=rot13"), {}),
        ("Markdown in redirect", web.url(f"/location?to={markdown}"), {}),
    ]  # fmt: skip


def run(url: str, options: dict, trust: ssl.SSLContext, timeout: float) -> tuple[str, float, int]:
    tracemalloc.start()
    started = time.monotonic()
    try:
        page = fetch(
            url, max_bytes=MAX_BYTES, timeout=timeout, allow_loopback=True, tls=trust, **options
        )
        outcome = f"Page {page.final_url} charset={page.charset}"
    except FetchError as err:
        outcome = f"FetchError: {err}"
    except Exception as err:  # what the bench is there to catch
        outcome = f"ESCAPED {type(err).__name__}: {err}"
    took = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, took, peak


def main() -> None:
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    folder = Path(tempfile.mkdtemp())
    cert = make_cert(folder)
    trust = ssl.create_default_context(cafile=str(cert))
    print(f"max_bytes={MAX_BYTES:,} timeout={timeout:g} s\n")
    print(f"{'case':27} {'outcome':78} {'s':>5} {'peak MiB':>8} {'sent MiB':>8}")
    with WebServer() as web, tls_server(cert) as tls, Trickle(tls.port) as trickle:
        for server in (web, tls):
            server.routes["/caf%C3%A9"] = Reply(200, b"Bonjour", {"Content-Type": "text/plain"})
        for name, url, options in cases(web, tls, trickle):
            outcome, took, peak = run(url, options, trust, timeout)
            for base in (web.base, tls.base, f"https://127.0.0.1:{trickle.port}"):
                outcome = outcome.replace(base, "…")
            outcome = outcome if len(outcome) <= 78 else outcome[:77] + "…"
            time.sleep(0.2)  # the server notices the client has gone and stops counting
            path = url.removeprefix(web.base).removeprefix(tls.base).split("?")[0]
            sent = (web.sent[path] + tls.sent[path]) / 2**20
            print(f"{name:27} {outcome:78} {took:5.2f} {peak / 2**20:8.2f} {sent:8.2f}")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
