"""Fetching links safely, against a local web server (tests/web_server.py) on 127.0.0.1."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import time

import pytest

from index.web.fetch import FetchError, fetch, forbidden
from tests.web_server import LAST_MODIFIED, Reply, WebServer, fixture, make_cert, tls_server

LIMIT = 200_000


@pytest.fixture(scope="module")
def web():
    with WebServer() as server:
        server.routes.update(
            {
                "/missing": Reply(404, b"<h1>Gone</h1>"),
                "/broken": Reply(500, b"oops"),
                "/big": Reply(200, b"x" * (LIMIT + 1), {"Content-Type": "text/plain"}),
                "/lying-length": Reply(
                    200, b"", {"Content-Type": "text/plain", "Content-Length": "999999999"}
                ),
                "/bomb": Reply(
                    200,
                    gzip.compress(b"a" * (LIMIT * 20)),
                    {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
                ),
                "/gzipped": Reply(
                    200,
                    gzip.compress(b"Zorblat herons nest in April."),
                    {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"},
                ),
                "/image": Reply(
                    200, b"\x89PNG\r\n\x1a\n" + bytes(64), {"Content-Type": "image/png"}
                ),
                "/json": Reply(200, b'{"a": 1}', {"Content-Type": "application/json"}),
                "/fake-pdf": Reply(200, b"<html>no</html>", {"Content-Type": "application/pdf"}),
                "/binary": Reply(
                    200, b"\x00\x01\x02binary", {"Content-Type": "application/octet-stream"}
                ),
                "/empty": Reply(200, b"", {"Content-Type": "text/html"}),
                "/pdf-as-octets": Reply(
                    200, b"%PDF-1.4\n%...", {"Content-Type": "application/octet-stream"}
                ),
                "/untyped-html": Reply(200, b"<!DOCTYPE html><p>Hi</p>", {}),
                "/latin1": Reply(
                    200,
                    "Café".encode("latin-1"),
                    {"Content-Type": "text/plain; charset=ISO-8859-1"},
                ),
            }
        )
        yield server


def refused(url: str, **options: object) -> str:
    with pytest.raises(FetchError) as caught:
        fetch(url, max_bytes=LIMIT, **options)
    return str(caught.value)


# -- links refused before any traffic ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/file.txt", "Only http:// and https:// links can be added;"),
        ("file:///etc/passwd", "Only http:// and https:// links can be added;"),
        ("javascript:alert(1)", "Only http:// and https:// links can be added;"),
        ("example.org/statement", "example.org/statement is not a web link"),
        ("http://", "http:// is not a web link"),
        ("http://user:secret@example.org/", "Links with a user name or password"),
        ("http://example.org:99999/", "http://example.org:99999/ is not a valid link"),
        ("https://example.org/" + "a" * 2100, "That link is 2,120 characters long"),
    ],
)
def test_what_is_not_a_plain_web_link_is_refused_before_any_traffic(url, message) -> None:
    def no_dns(*args: object, **kwargs: object) -> list:
        raise AssertionError("looked up a name")

    assert refused(url, resolve=no_dns).startswith(message)


# -- server-side request forgery -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("localhost", "localhost (127.0.0.1) is a loopback address"),
        ("2130706433", "2130706433 (127.0.0.1) is a loopback address"),  # 127.0.0.1 as a number
        ("[::1]", "::1 is a loopback address"),
    ],
)
def test_loopback_is_refused_unless_the_test_setting_allows_it(web, host, message) -> None:
    port = web.base.rsplit(":", 1)[1]
    before = len(web.requests)
    said = refused(f"http://{host}:{port}/fixture/tricky-statement")
    assert said.startswith(message) and "only public web addresses can be fetched" in said
    assert len(web.requests) == before  # refused after DNS, before connecting


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("169.254.169.254", "a link-local address"),  # cloud metadata service
        ("[fe80::1]", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("[::ffff:10.0.0.1]", "a private address"),  # IPv4-mapped IPv6
        ("[64:ff9b::a00:1]", "a private address"),  # NAT64 of 10.0.0.1
        ("100.64.0.1", "a reserved address"),  # carrier-grade NAT
        ("[fc00::1]", "a private address"),
    ],
)
def test_private_networks_are_refused_even_when_loopback_is_allowed(host, why) -> None:
    said = refused(f"http://{host}/", allow_loopback=True)
    assert f" is {why}; links into private networks are refused" in said


@pytest.mark.parametrize(
    "address",
    [
        *("192.0.0.0", "192.0.0.1", "192.0.0.9", "192.0.0.10", "192.0.0.170", "192.0.0.255"),
        *("fec0::", "fec0::1", "fed0::1:2", "feff:ffff::1"),  # IPv6 site-local (deprecated)
        *("100.64.0.1", "100.127.255.254"),  # carrier-grade NAT
        *("198.18.0.1", "198.19.255.254"),  # benchmarking
        *("240.0.0.1", "255.255.255.254", "255.255.255.255"),  # reserved, broadcast
        *("2001:db8::1", "2001:db8:ffff::1"),  # documentation
        *("::ffff:127.0.0.1", "::ffff:10.1.2.3", "::127.0.0.1"),  # IPv4-mapped, -compatible
        *("2002:7f00:1::", "2002:a00:1::1"),  # 6to4 of 127.0.0.1 and 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        *("64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1"),  # NAT64, local NAT64
        *("127.0.0.2", "127.255.255.254", "::1"),  # loopback, though not 127.0.0.1 itself
    ],
)
def test_internal_ranges_python_may_call_global_are_refused(address) -> None:
    assert forbidden(ipaddress.ip_address(address), allow_loopback=True)


def test_allowing_loopback_allows_127_0_0_1_and_nothing_else(web) -> None:
    assert forbidden(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) == ""
    assert forbidden(ipaddress.ip_address("93.184.215.14"), allow_loopback=False) == ""
    assert forbidden(ipaddress.ip_address("2606:4700::6810:85e5"), allow_loopback=False) == ""
    port = web.base.rsplit(":", 1)[1]
    for host, shown in [
        ("127.0.0.2", "127.0.0.2"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ]:
        said = refused(f"http://{host}:{port}/fixture/tricky-statement", allow_loopback=True)
        assert said.startswith(f"{shown} is a loopback address; links into private networks")


def test_a_name_resolving_to_any_private_address_is_refused(web) -> None:
    def mixed(host, port, **kwargs):
        return [(0, 0, 0, "", ("127.0.0.1", port)), (0, 0, 0, "", ("10.0.0.7", port))]

    port = web.base.rsplit(":", 1)[1]
    said = refused(f"http://mixed.example:{port}/", allow_loopback=True, resolve=mixed)
    assert said.startswith("mixed.example (10.0.0.7) is a private address")


def test_a_redirect_into_a_private_network_is_refused_at_the_redirect(web) -> None:
    before = web.hits("/redirect/1")
    said = refused(web.url("/redirect/1?to=http://10.0.0.1/admin"), allow_loopback=True)
    assert said.startswith("10.0.0.1 is a private address")
    assert web.hits("/redirect/1") == before + 1  # the first hop was made; the second never


def test_the_connection_goes_to_the_address_vetted_not_a_second_lookup(web) -> None:
    """DNS rebinding: a name that answers safely once and privately after is looked up once."""
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    lookups = []

    def rebinding(host, port, **kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    port = web.base.rsplit(":", 1)[1]
    page = fetch(
        f"http://rebind.example:{port}/fixture/tricky-statement",
        max_bytes=LIMIT,
        allow_loopback=True,
        resolve=rebinding,
    )
    assert lookups == ["rebind.example"] and page.kind == ".html"
    assert web.requests[-1][1]["Host"] == f"rebind.example:{port}"  # the name, not the address


# -- failures, each with its own message ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "answered HTTP 404 Not Found."),
        ("/broken", "answered HTTP 500 Internal Server Error."),
        ("/big", f"is {LIMIT + 1:,} bytes; the limit is {LIMIT:,} bytes (MAX_UPLOAD_BYTES)."),
        ("/lying-length", "is 999,999,999 bytes; the limit is"),
        ("/endless", f"is larger than the limit of {LIMIT:,} bytes (MAX_UPLOAD_BYTES)."),
        ("/bomb", f"is larger than the limit of {LIMIT:,} bytes"),  # 4 MB from 4 KB of gzip
        ("/image", "is not a document (image/png); links to web pages, PDF, plain-text and DOCX"),
        ("/json", "is not a document (application/json)"),
        ("/fake-pdf", "claims to be application/pdf, but its content is not."),
        ("/binary", "is binary data, not a application/octet-stream document."),
        ("/empty", "returned an empty document."),
        ("/redirect/6", "redirects more than 5 times."),
        ("/redirect/1?to=ftp://example.org/x", "redirects to a ftp: link."),
    ],
)
def test_each_failure_has_a_clear_message(web, path, message) -> None:
    said = refused(web.url(path), allow_loopback=True)
    assert message in said, said
    assert said.startswith("http://127.0.0.1:")  # it names the link


def test_a_server_dripping_bytes_is_cut_off_at_the_total_timeout(web) -> None:
    started = time.monotonic()
    said = refused(web.url("/drip"), allow_loopback=True, timeout=1.0)
    assert said.endswith("did not answer completely within 1 s.")
    assert time.monotonic() - started < 2.5


def test_a_server_that_never_answers_times_out(web) -> None:
    said = refused(web.url("/hang"), allow_loopback=True, timeout=0.8)
    assert said.endswith("did not answer completely within 0.8 s.")


def test_a_server_that_never_accepts_times_out_at_the_connect_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = []
    for _ in range(3):  # fill the accept queue: further connection attempts get no answer
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        queued.append(s)
    time.sleep(0.1)
    try:
        said = refused(f"http://127.0.0.1:{port}/", allow_loopback=True, connect_timeout=0.5)
        assert said.endswith("did not accept the connection within 0.5 s.")
    finally:
        for s in [*queued, listener]:
            s.close()


def test_a_closed_port_and_an_unknown_name_are_explained() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert refused(f"http://127.0.0.1:{port}/", allow_loopback=True).endswith(
        "refused the connection."
    )
    assert refused("http://no-such-host.invalid/") == (
        "The server no-such-host.invalid could not be found (its name does not resolve)."
    )


# -- what comes back -----------------------------------------------------------------------------


def test_a_page_comes_back_with_its_type_and_how_to_ask_again(web) -> None:
    page = fetch(web.url("/redirect/5"), max_bytes=LIMIT, allow_loopback=True)  # 5 are allowed
    assert page.final_url == web.url("/fixture/tricky-statement")
    assert page.url == web.url("/redirect/5")
    assert page.data == fixture("tricky-statement") and page.kind == ".html"
    assert page.charset == "utf-8" and page.last_modified == LAST_MODIFIED and page.etag
    again = fetch(page.final_url, max_bytes=LIMIT, allow_loopback=True, etag=page.etag)
    assert again is None  # 304 Not Modified
    sent = web.requests[-1][1]
    assert sent["If-None-Match"] == page.etag and sent["User-Agent"].startswith("statement-bot")


def test_a_last_modified_date_makes_a_conditional_request(web) -> None:
    url = web.url("/fixture/tricky-statement")
    assert fetch(url, max_bytes=LIMIT, allow_loopback=True, last_modified=LAST_MODIFIED) is None
    sent = web.requests[-1][1]
    assert sent["If-Modified-Since"] == LAST_MODIFIED and "If-None-Match" not in sent
    older = "Mon, 01 Jan 2001 00:00:00 GMT"  # the page changed since: it comes back in full
    page = fetch(url, max_bytes=LIMIT, allow_loopback=True, last_modified=older)
    assert page.data == fixture("tricky-statement") and page.last_modified == LAST_MODIFIED
    assert web.requests[-1][1]["If-Modified-Since"] == older


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/pdf-as-octets", ".pdf"), ("/untyped-html", ".html"), ("/latin1", ".txt")],
)
def test_the_type_comes_from_the_bytes_when_the_server_is_vague(web, path, kind) -> None:
    assert fetch(web.url(path), max_bytes=LIMIT, allow_loopback=True).kind == kind


def test_a_gzipped_answer_is_decompressed(web) -> None:
    page = fetch(web.url("/gzipped"), max_bytes=LIMIT, allow_loopback=True)
    assert page.data == b"Zorblat herons nest in April." and page.kind == ".txt"


def test_tls_is_checked_against_the_host_name_while_connecting_to_the_vetted_address(
    tmp_path, monkeypatch
) -> None:
    cert = make_cert(tmp_path, "tls.example", ip=False)

    def to_loopback(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    with tls_server(cert) as web:
        url = f"https://tls.example:{web.port}/fixture/tricky-statement"
        options = {"allow_loopback": True, "resolve": to_loopback}
        assert "failed the secure (TLS) connection" in refused(url, **options)  # not trusted
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now it is
        assert fetch(url, max_bytes=LIMIT, **options).data == fixture("tricky-statement")
        wrong_name = refused(web.url("/fixture/tricky-statement"), allow_loopback=True)
        assert "failed the secure (TLS) connection" in wrong_name  # 127.0.0.1 is not its name
