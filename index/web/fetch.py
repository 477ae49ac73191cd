"""Fetch a document from the web safely: http(s) only, bounded in size, time and redirects, and
never from the host's own network (server-side request forgery).

Every host is resolved once and each address vetted; the connection is then made to the vetted
address itself (TLS still checks the certificate against the host name), so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot slip through. Each redirect
is vetted the same way.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

from index.errors import DocumentError

MAX_REDIRECTS = 5
MAX_URL = 2000  # characters
USER_AGENT = "statement-bot/0.1 (document fetcher)"
ACCEPT = (
    "text/html,application/xhtml+xml,application/pdf,text/plain,"
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document;q=0.9,*/*;q=0.1"
)
_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "application/pdf": ".pdf",
    "application/x-pdf": ".pdf",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}
_GENERIC = {"", "application/octet-stream", "binary/octet-stream", "application/download"}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
Resolver = Callable[..., list]


class FetchError(DocumentError):
    """A link could not be fetched, or what it returned is not an acceptable document."""


@dataclass(frozen=True)
class Page:
    """A fetched document: its bytes, what kind of file they are, and how to ask again."""

    url: str  # as given
    final_url: str  # after redirects: what citations link to
    data: bytes
    kind: str  # ".html", ".pdf", ".txt", ".md" or ".docx"
    charset: str | None
    etag: str | None
    last_modified: str | None
    fetched_at: str  # ISO 8601, UTC


def check_url(url: str) -> None:
    """Refuse what is not a plain http(s) link, before any network traffic."""
    parts = _split(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(
            f"Only http:// and https:// links can be added; {_shown(url)} is {parts.scheme}:."
        )


def fetch(
    url: str,
    *,
    max_bytes: int,
    timeout: float = 20.0,
    connect_timeout: float = 5.0,
    allow_loopback: bool = False,
    etag: str | None = None,
    last_modified: str | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> Page | None:
    """GET `url`; None when the server says it has not changed (a conditional request).

    `timeout` bounds the whole exchange, redirects included. `allow_loopback` lets tests fetch
    from 127.0.0.1; private, link-local, multicast and reserved addresses stay refused.
    """
    check_url(url)
    deadline = time.monotonic() + timeout
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        status, headers, data = _get(
            current, max_bytes, deadline, timeout, connect_timeout, allow_loopback,
            etag, last_modified, resolve,
        )  # fmt: skip
        if status in (301, 302, 303, 307, 308) and headers.get("location"):
            target = urljoin(current, headers["location"])
            if hop == MAX_REDIRECTS:
                raise FetchError(f"{_shown(url)} redirects more than {MAX_REDIRECTS} times.")
            if _split(target).scheme not in ("http", "https"):
                raise FetchError(f"{_shown(url)} redirects to a {_split(target).scheme}: link.")
            current = target
            continue
        if status == 304 and (etag or last_modified):
            return None
        if status != 200:
            reason = http.client.responses.get(status, "")
            raise FetchError(f"{_shown(current)} answered HTTP {status} {reason}".rstrip() + ".")
        media, charset = _content_type(headers.get("content-type", ""))
        return Page(
            url,
            current,
            data,
            _kind(current, media, data),
            charset,
            headers.get("etag"),
            headers.get("last-modified"),
            datetime.now(UTC).isoformat(timespec="seconds"),
        )
    raise AssertionError("unreachable")


def vet(host: str, port: int, allow_loopback: bool, resolve: Resolver = socket.getaddrinfo) -> str:
    """The address to connect to for `host`, once every address it resolves to is acceptable."""
    try:
        addresses = [info[4][0] for info in resolve(host, port, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise FetchError(f"The server {host} could not be found (its name does not resolve).")
    for address in addresses:
        why = forbidden(ipaddress.ip_address(address.split("%")[0]), allow_loopback)
        if why:
            shown = host if host == address else f"{host} ({address})"
            raise FetchError(
                f"{shown} is {why}; links into private networks are refused "
                "(only public web addresses can be fetched)."
            )
    return addresses[0]


def forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str:
    """Why the bot must not connect to `ip` ("" when it may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden(embedded, allow_loopback)
    if ip.is_loopback:
        return "" if allow_loopback else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved address"
    return ""


# -- one request ---------------------------------------------------------------------------------


def _get(
    url, max_bytes, deadline, timeout, connect_timeout, allow_loopback, etag, last_modified, resolve
) -> tuple[int, dict[str, str], bytes]:
    parts = _split(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = vet(host, port, allow_loopback, resolve)
    conn = _connection(parts.scheme, host, port, address, connect_timeout, deadline)
    expired = threading.Event()
    # A hard stop for the whole exchange: a server dripping a byte a second cannot hold us.
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (conn, expired))
    timer.start()
    try:
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        data = _body(url, response, got, max_bytes) if response.status == 200 else b""
        if expired.is_set():
            raise TimeoutError
        return response.status, got, data
    except FetchError:
        raise
    except (OSError, http.client.HTTPException) as err:
        if expired.is_set() or isinstance(err, TimeoutError):
            connected = getattr(conn, "raw", None) is not None
            stage = "answer completely" if connected else "accept the connection"
            limit = timeout if connected else connect_timeout
            raise FetchError(f"{_shown(url)} did not {stage} within {limit:g} s.") from err
        if isinstance(err, ssl.SSLError):
            why = getattr(err, "verify_message", None) or err.reason or "handshake failed"
            raise FetchError(f"{_shown(url)} failed the secure (TLS) connection ({why}).") from err
        if isinstance(err, ConnectionRefusedError):
            raise FetchError(f"{_shown(url)} refused the connection.") from err
        raise FetchError(f"{_shown(url)} could not be fetched ({_reason(err)}).") from err
    finally:
        timer.cancel()
        conn.close()


def _connection(
    scheme: str, host: str, port: int, address: str, connect_timeout: float, deadline: float
) -> http.client.HTTPConnection:
    """A connection for `host` that can only ever reach `address` (the vetted one)."""
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            host, port, timeout=connect_timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)

    def pinned(_address, _timeout, source_address=None):  # replaces http.client's own lookup
        sock = socket.create_connection((address, port), connect_timeout, source_address)
        sock.settimeout(max(0.01, deadline - time.monotonic()))  # reads: what is left of it
        conn.raw = sock  # kept: http.client lets go of it once a response is read to the close
        return sock

    conn._create_connection = pinned
    return conn


def _cut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """Unblock a read in progress on `conn` (shutdown wakes a blocked recv; close may not)."""
    expired.set()
    sock = getattr(conn, "raw", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _body(url: str, response, headers: dict[str, str], max_bytes: int) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(
            f"{_shown(url)} is {int(declared):,} bytes; the limit is {max_bytes:,} bytes "
            "(MAX_UPLOAD_BYTES)."
        )
    gzipped = headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    out = bytearray()
    while block := response.read1(65536):
        if inflate is not None:
            try:
                block = inflate.decompress(block, max_bytes + 1 - len(out))
            except zlib.error as err:
                raise FetchError(f"{_shown(url)} sent a damaged compressed answer.") from err
        out += block
        if len(out) > max_bytes:
            raise FetchError(
                f"{_shown(url)} is larger than the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES)."
            )
    return bytes(out)


# -- what was received ---------------------------------------------------------------------------


def _content_type(value: str) -> tuple[str, str | None]:
    media, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip("\"'").lower()
    return media.strip().lower(), charset


def _kind(url: str, media: str, data: bytes) -> str:
    """The document type, from the bytes' signature first, then the declared content type."""
    if not data:
        raise FetchError(f"{_shown(url)} returned an empty document.")
    if b"%PDF-" in data[:1024]:
        return ".pdf"
    if data.startswith(b"PK\x03\x04") and b"word/" in data[:65536]:
        return ".docx"
    declared = _TYPES.get(media)
    if declared in (".pdf", ".docx"):
        raise FetchError(f"{_shown(url)} claims to be {media}, but its content is not.")
    if declared is None and media not in _GENERIC:
        raise FetchError(
            f"{_shown(url)} is not a document ({media}); links to web pages, PDF, "
            "plain-text and DOCX files can be added."
        )
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    looks_html = head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))
    if declared is None:
        declared = ".html" if looks_html else ".txt"
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FetchError(f"{_shown(url)} is binary data, not a {media or 'text'} document.")
    return declared


# -- small helpers -------------------------------------------------------------------------------


def _split(url: str):
    url = url.strip()
    if len(url) > MAX_URL:
        raise FetchError(f"That link is {len(url):,} characters long; the limit is {MAX_URL:,}.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as err:
        raise FetchError(f"{_shown(url)} is not a valid link ({err}).") from err
    if not parts.scheme or (parts.scheme in ("http", "https") and not parts.hostname):
        raise FetchError(
            f"{_shown(url)} is not a web link; give one such as https://example.org/page."
        )
    if parts.username is not None or parts.password is not None:
        raise FetchError("Links with a user name or password in them are refused.")
    return parts


def _shown(url: str) -> str:
    """A link as it may appear in a message: one line, not too long."""
    clean = "".join(c if c.isprintable() else "\ufffd" for c in url.strip()[:121])
    return clean if len(clean) <= 120 else clean[:119] + "…"


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or type(err).__name__
