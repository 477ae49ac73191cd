"""Hostile web servers, over http and https: each one ends in a one-line FetchError, on time,
without reading everything it sends (tests/web_server.py's hostile routes, on 127.0.0.1)."""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import time
import tracemalloc
from pathlib import Path

import pytest

from index.web.fetch import FetchError, fetch
from tests.web_server import Reply, Trickle, WebServer, fixture, make_cert, tls_server

LIMIT = 200_000
TIMEOUT = 1.0
LATE = TIMEOUT + 1.5  # what "on time" allows: the deadline plus a loaded machine's slack
MARKDOWN = "[]()<>*_~\\|@` \n"  # what Discord would turn into links, pings, code or emphasis


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> Path:
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def trust(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def servers(cert):
    with WebServer() as plain, tls_server(cert) as secure:
        for server in (plain, secure):
            server.routes["/caf%C3%A9"] = Reply(200, b"Bonjour", {"Content-Type": "text/plain"})
        yield {"http": plain, "https": secure}


def refused(url: str, trust: ssl.SSLContext | None, **options: object) -> str:
    """The FetchError `url` ends in (no other exception), checked to come on time (LATE)."""
    options = {"max_bytes": LIMIT, "timeout": TIMEOUT, "allow_loopback": True, **options}
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(url, tls=trust, **options)
    took = time.monotonic() - started
    said = str(caught.value)
    assert took < LATE, f"{took:.2f} s: {said}"
    assert "\n" not in said and len(said) < 400
    return said


def test_https_works_with_the_test_authority(servers, trust) -> None:
    url = servers["https"].url("/fixture/tricky-statement")
    assert fetch(url, max_bytes=LIMIT, allow_loopback=True, tls=trust).data == fixture(
        "tricky-statement"
    )
    assert "failed the secure (TLS) connection" in refused(url, None)  # not the system's


# -- the total deadline ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    "path",
    [
        "/drip",  # headers, then a byte every 0.3 s
        "/drip-headers",  # a header, a byte every 0.2 s
        "/continue",  # 100 Continue, again and again
        "/hang",  # nothing after the (TLS) handshake
    ],
)
def test_a_slow_or_endless_answer_ends_at_the_total_deadline(servers, trust, scheme, path) -> None:
    said = refused(servers[scheme].url(path), trust)
    assert said == f"{servers[scheme].url(path)} did not answer completely within 1 s."


def test_a_tls_handshake_that_drips_ends_at_the_total_deadline(servers, trust) -> None:
    with Trickle(servers["https"].port, every=0.2) as slow:
        url = f"https://127.0.0.1:{slow.port}/fixture/tricky-statement"
        assert refused(url, trust) == f"{url} did not answer completely within 1 s."


def test_a_name_lookup_that_hangs_is_abandoned_at_the_deadline(trust) -> None:
    def slow(host, port, **kwargs):
        time.sleep(5)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    said = refused("http://slow.example/", trust, resolve=slow)
    assert said == "The server slow.example could not be resolved within 1 s."


# -- size: what is on the wire counts, and nothing piles up ---------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/gzip-trailing", "sent data after the end of its compressed answer."),  # 48 MiB more
        ("/gzip-padding", f"is larger than the limit of {LIMIT:,} bytes (MAX_UPLOAD_BYTES)."),
        ("/gzip-bomb", f"is larger than the limit of {LIMIT:,} bytes (MAX_UPLOAD_BYTES)."),  # 1 GiB
    ],
)
def test_compressed_answers_are_bounded_on_the_wire_and_inflated(
    servers, trust, scheme, path, message
) -> None:
    web = servers[scheme]
    tracing = tracemalloc.is_tracing()  # already, under PYTHONTRACEMALLOC
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        before = tracemalloc.get_traced_memory()[0]
        said = refused(web.url(path), trust)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert said == f"{web.url(path)} {message}"
    assert peak < 5 * LIMIT, f"{peak:,} bytes at the peak"
    time.sleep(0.2)  # the server notices the client has gone
    assert web.sent[path] < 16 << 20  # of 48 MiB, or endless: not read through


def test_a_compressed_answer_cut_short_is_refused(servers, trust) -> None:
    web = servers["http"]
    cut = gzip.compress(b"Zorblat herons nest in April. " * 50)[:-12]  # the end is missing
    gzipped = {"Content-Type": "text/plain", "Content-Encoding": "gzip"}
    web.routes["/gzip-cut"] = Reply(200, cut, gzipped)
    said = refused(web.url("/gzip-cut"), trust)
    assert said == f"{web.url('/gzip-cut')} sent a compressed answer that ends too early."


# -- links the server chooses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("/caf%C3%A9", "/caf%C3%A9"),  # UTF-8 bytes, raw in the header
        ("/caf%E9", "/caf%C3%A9"),  # a Latin-1 byte
        ("/caf%25C3%25A9", "/caf%C3%A9"),  # already percent-encoded: left as it is
        ("/caf%C3%A9%3Fq%3D%E2%82%AC%20x", "/caf%C3%A9?q=%E2%82%AC%20x"),  # query and a space
    ],
)
def test_a_redirect_to_a_non_ascii_path_is_followed_percent_encoded(
    servers, location, path
) -> None:
    web = servers["http"]
    page = fetch(web.url(f"/location?to={location}"), max_bytes=LIMIT, allow_loopback=True)
    assert page.data == b"Bonjour" and page.final_url == web.url(path)
    assert web.requests[-1][0] == path


def test_an_international_host_name_is_looked_up_in_punycode(servers, trust) -> None:
    web, names = servers["http"], []

    def loopback(host, port, **kwargs):
        names.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    to = f"http://b%C3%BCcher.example:{web.port}/fixture/tricky-statement"
    page = fetch(
        web.url(f"/location?to={to}"), max_bytes=LIMIT, allow_loopback=True, resolve=loopback
    )
    assert page.final_url == f"http://xn--bcher-kva.example:{web.port}/fixture/tricky-statement"
    assert names[-1] == "xn--bcher-kva.example"
    assert web.requests[-1][1]["Host"] == f"xn--bcher-kva.example:{web.port}"
    said = refused("http://" + "ü" * 64 + ".example/", trust)
    assert said.endswith(".example/ has a host name that is not valid (IDNA).")


def test_markdown_and_pings_in_a_redirect_target_are_inert_in_the_message(servers, trust) -> None:
    web = servers["http"]
    target = "/[click](https://evil.example) @everyone <@123> `code` *b* _i_ ~~s~~ ||x|| \\ " * 3
    said = refused(web.url("/location?to=" + target.replace(" ", "%20")), trust)
    shown, _, rest = said.partition(" answered HTTP ")
    assert rest == "404 Not Found." and shown.startswith(web.url("/%5Bclick%5D%28https://evil"))
    assert not set(shown) & set(MARKDOWN) and len(shown) <= 120 and shown.endswith("…")


def test_markdown_in_a_host_name_is_inert_in_the_message(servers, trust) -> None:
    def unknown(host, port, **kwargs):
        if host == "127.0.0.1":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]
        raise socket.gaierror("no such name")

    said = refused(servers["http"].url("/location?to=http://a_b*c~d%60e/"), trust, resolve=unknown)
    assert said == "The server a%5Fb%2Ac%7Ed%60e could not be found (its name does not resolve)."


def test_markdown_in_a_content_type_is_inert_in_the_message(servers, trust) -> None:
    web = servers["http"]
    web.routes["/typed"] = Reply(200, b"hi", {"Content-Type": "[x](https://evil.example) @here"})
    said = refused(web.url("/typed"), trust)
    assert said.startswith(f"{web.url('/typed')} is not a document (")
    assert "%5Bx%5D%28https://evil.example%29 %40here); links to web pages" in said


@pytest.mark.parametrize(
    ("link", "message"),
    [
        (
            "gopher://x/[a](https://evil.example)@everyone",
            "Only http:// and https:// links can be added; "
            "gopher://x/%5Ba%5D%28https://evil.example%29%40everyone is gopher:.",
        ),
        (
            "http://x:80`*_~|/",  # the reason quotes the port
            "http://x:80%60%2A%5F%7E%7C/ is not a valid link "
            "(Port could not be cast to integer value as '80%60%2A%5F%7E%7C').",
        ),
    ],
)
def test_markdown_in_a_refused_link_is_inert_in_the_message(trust, link, message) -> None:
    assert refused(link, trust) == message


# -- what the server declares ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("utf-8", "utf-8"),
        ("ISO-8859-1", "iso-8859-1"),
        ("windows-1252", "windows-1252"),
        ("undefined", None),  # a codec that refuses to decode anything
        ("x-evil", None),
        ("rot13", None),  # codecs that are not text encodings
        ("base64", None),
        ("zlib", None),
        ("hex", None),
        ("uu", None),
        ("bz2", None),
        ("quopri", None),
        ("utf-8/../../x", None),  # odd characters
        ("utf%008", None),
        ("a" * 50, None),
    ],
)
def test_an_unknown_or_bogus_charset_is_dropped(servers, trust, name, kept) -> None:
    url = servers["https"].url(f"/charset?name={name}")
    page = fetch(url, max_bytes=LIMIT, allow_loopback=True, tls=trust)
    assert page.charset == kept and page.kind == ".txt"
    assert page.data.decode(page.charset or "utf-8") == "Zorblat herons nest in April."


# -- anything else ---------------------------------------------------------------------------------


def test_an_unexpected_error_becomes_a_fetch_error_and_is_logged(trust, caplog) -> None:
    def broken(host, port, **kwargs):
        raise RuntimeError("a resolver bug")

    with caplog.at_level(logging.WARNING, logger="index.web.fetch"):
        said = refused("http://odd.example/", trust, resolve=broken)
    assert said == "http://odd.example/ could not be fetched (unexpected RuntimeError)."
    assert "a resolver bug" in caplog.text  # the traceback is kept for whoever runs the bot
