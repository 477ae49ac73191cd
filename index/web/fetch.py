"""Fetch a document from the web safely: http(s) only, bounded in size, time and redirects, and
never from the host's own network (server-side request forgery).

Every host is resolved once and each address vetted; the connection is then made to the vetted
address itself (TLS still checks the certificate against the host name), so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot slip through. Each redirect
is vetted the same way.
"""

from __future__ import annotations

import codecs
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from index.errors import DocumentError
from index.web.addresses import forbidden
from index.web.deadline import Watch, clocked

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
_URL_SAFE = "!$%&'()*+,/:;=?@[]~"  # left as they are when a link is made ASCII
_INERT = str.maketrans({c: f"%{ord(c):02X}" for c in "[]()<>*_~\\|@` "})  # Markdown, pings
_PROSE = {k: v for k, v in _INERT.items() if k != ord(" ")}  # the same, keeping spaces
Resolver = Callable[..., list]
log = logging.getLogger(__name__)


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
    tls: ssl.SSLContext | None = None,
) -> Page | None:
    """GET `url`; None when the server says it has not changed (a conditional request).

    `timeout` bounds the whole exchange: name lookups, connecting, TLS, headers, redirects and
    body. `allow_loopback` lets tests fetch from 127.0.0.1 (that address only); private,
    link-local, multicast and reserved addresses stay refused. `tls` replaces the system's trust
    store (tests pass one trusting their own certificate authority).
    """
    try:
        check_url(url)
        deadline = time.monotonic() + timeout
        resolve = _bounded(resolve, deadline, timeout)
        current = _ascii(url)
        for hop in range(MAX_REDIRECTS + 1):
            status, headers, data = _get(
                current, max_bytes, deadline, timeout, connect_timeout, allow_loopback,
                etag, last_modified, resolve, tls,
            )  # fmt: skip
            if status in (301, 302, 303, 307, 308) and headers.get("location"):
                target = urljoin(current, _location(headers["location"]))
                if hop == MAX_REDIRECTS:
                    raise FetchError(f"{_shown(url)} redirects more than {MAX_REDIRECTS} times.")
                if _split(target).scheme not in ("http", "https"):
                    raise FetchError(f"{_shown(url)} redirects to a {_split(target).scheme}: link.")
                current = _ascii(target)
                continue
            if status == 304 and (etag or last_modified):
                return None
            if status != 200:
                reason = http.client.responses.get(status, "")
                raise FetchError(
                    f"{_shown(current)} answered HTTP {status} {reason}".rstrip() + "."
                )
            media, charset = _content_type(headers.get("content-type", ""))
            kind = _kind(current, media, data)
            fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
            return Page(
                url, current, data, kind, charset, headers.get("etag"),
                headers.get("last-modified"), fetched_at,
            )  # fmt: skip
        raise AssertionError("unreachable")
    except FetchError:
        raise
    except Exception as err:  # a last resort: callers are promised FetchError and nothing else
        log.warning("Fetching %s failed unexpectedly", _shown(url), exc_info=True)
        raise FetchError(
            f"{_shown(url)} could not be fetched (unexpected {type(err).__name__})."
        ) from err


def vet(host: str, port: int, allow_loopback: bool, resolve: Resolver = socket.getaddrinfo) -> str:
    """The address to connect to for `host`, once every address it resolves to is acceptable."""
    try:
        addresses = [info[4][0] for info in resolve(host, port, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise FetchError(
            f"The server {_inert(host)} could not be found (its name does not resolve)."
        )
    for address in addresses:
        why = forbidden(ipaddress.ip_address(address.split("%")[0]), allow_loopback)
        if why:
            shown = _inert(host) + ("" if host == address else f" ({address})")
            raise FetchError(
                f"{shown} is {why}; links into private networks are refused "
                "(only public web addresses can be fetched)."
            )
    return addresses[0]


# -- one request ---------------------------------------------------------------------------------


def _get(
    url, max_bytes, deadline, timeout, connect_timeout, allow_loopback, etag, last_modified,
    resolve, tls,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    parts = _split(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = vet(host, port, allow_loopback, resolve)
    wait = min(connect_timeout, deadline - time.monotonic())
    sock = watch = conn = response = None
    try:
        # Straight to the vetted address: no second lookup that DNS rebinding could answer.
        sock = socket.create_connection((address, port), max(0.01, wait))
        watch = Watch(sock, deadline)
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        if parts.scheme == "https":
            context = tls or ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)  # checks the name, not address
            conn = http.client.HTTPSConnection(host, port, context=context)
        else:
            conn = http.client.HTTPConnection(host, port)
        conn.sock = sock  # already connected: http.client never looks the name up itself
        conn.response_class = lambda s, *a, **k: clocked(s, deadline, *a, **k)
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
        if watch.expired.is_set():
            raise TimeoutError
        return response.status, got, data
    except FetchError:
        raise
    except (OSError, http.client.HTTPException) as err:
        late = isinstance(err, TimeoutError) or time.monotonic() >= deadline
        if late and watch is None and wait >= connect_timeout:  # connecting took all its time
            raise FetchError(
                f"{_shown(url)} did not accept the connection within {connect_timeout:g} s."
            ) from err
        if late or (watch is not None and watch.expired.is_set()):
            raise FetchError(
                f"{_shown(url)} did not answer completely within {timeout:g} s."
            ) from err
        if isinstance(err, ssl.SSLError):
            why = getattr(err, "verify_message", None) or err.reason or "handshake failed"
            raise FetchError(f"{_shown(url)} failed the secure (TLS) connection ({why}).") from err
        if isinstance(err, ConnectionRefusedError):
            raise FetchError(f"{_shown(url)} refused the connection.") from err
        raise FetchError(f"{_shown(url)} could not be fetched ({_reason(err)}).") from err
    finally:
        for thing in (watch, response, conn, sock):
            if thing is not None:
                thing.close()


def _bounded(resolve: Resolver, deadline: float, timeout: float) -> Resolver:
    """`resolve`, abandoned at the deadline: a lookup that hangs is left to finish alone."""

    def bounded(host: str, *args, **kwargs) -> list:
        answer: list = []

        def run() -> None:
            try:
                answer.append(resolve(host, *args, **kwargs))
            except BaseException as err:  # raised again in the caller's thread
                answer.append(err)

        thread = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        if not answer:
            raise FetchError(
                f"The server {_inert(host)} could not be resolved within {timeout:g} s."
            )
        if isinstance(answer[0], BaseException):
            raise answer[0]
        return answer[0]

    return bounded


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
    received = 0  # on the wire: compressed bytes count too
    while block := response.read1(65536):
        received += len(block)
        if inflate is not None:
            try:
                block = inflate.decompress(block, max_bytes + 1 - len(out))
            except zlib.error as err:
                raise FetchError(f"{_shown(url)} sent a damaged compressed answer.") from err
            if inflate.unused_data:  # bytes after the end of the gzip stream: never piled up
                raise FetchError(f"{_shown(url)} sent data after the end of its compressed answer.")
        out += block
        if len(out) > max_bytes or received > max_bytes:
            raise FetchError(
                f"{_shown(url)} is larger than the limit of {max_bytes:,} bytes (MAX_UPLOAD_BYTES)."
            )
    if inflate is not None and received and not inflate.eof:
        raise FetchError(f"{_shown(url)} sent a compressed answer that ends too early.")
    return bytes(out)


# -- what was received ---------------------------------------------------------------------------


def _content_type(value: str) -> tuple[str, str | None]:
    media, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = _charset(val.strip().strip("\"'").lower())
    return media.strip().lower(), charset


def _charset(name: str) -> str | None:
    """`name` if it is a text encoding this Python can decode bytes with, else None (guess)."""
    if len(name) > 40 or not name.isascii() or not name.replace("-", "").replace("_", "").isalnum():
        return None
    try:
        if not codecs.lookup(name)._is_text_encoding:  # rot13, base64, zlib, hex …: not text
            return None
        b"text".decode(name, "replace")  # "undefined" is a text codec that refuses everything
    except (LookupError, ValueError):
        return None
    return name


def _kind(url: str, media: str, data: bytes) -> str:
    """The document type, from the bytes' signature first, then the declared content type."""
    if not data:
        raise FetchError(f"{_shown(url)} returned an empty document.")
    if b"%PDF-" in data[:1024]:
        return ".pdf"
    if data.startswith(b"PK\x03\x04") and b"word/" in data[:65536]:
        return ".docx"
    declared, shown = _TYPES.get(media), _inert(media, 60, _PROSE)  # the server chose it
    if declared in (".pdf", ".docx"):
        raise FetchError(f"{_shown(url)} claims to be {shown}, but its content is not.")
    if declared is None and media not in _GENERIC:
        raise FetchError(
            f"{_shown(url)} is not a document ({shown}); links to web pages, PDF, "
            "plain-text and DOCX files can be added."
        )
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    looks_html = head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--"))
    if declared is None:
        declared = ".html" if looks_html else ".txt"
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FetchError(f"{_shown(url)} is binary data, not a {shown or 'text'} document.")
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
        raise FetchError(
            f"{_shown(url)} is not a valid link ({_inert(str(err), table=_PROSE)})."
        ) from err
    if not parts.scheme or (parts.scheme in ("http", "https") and not parts.hostname):
        raise FetchError(
            f"{_shown(url)} is not a web link; give one such as https://example.org/page."
        )
    if parts.username is not None or parts.password is not None:
        raise FetchError("Links with a user name or password in them are refused.")
    return parts


def _ascii(url: str) -> str:
    """`url` as browsers send it: an IDN host in punycode, other non-ASCII percent-encoded."""
    parts = _split(url)
    netloc = parts.netloc
    if not netloc.isascii():
        try:
            netloc = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError as err:
            raise FetchError(f"{_shown(url)} has a host name that is not valid (IDNA).") from err
        netloc += f":{parts.port}" if parts.port else ""
    path, query, fragment = (quote(p, safe=_URL_SAFE) for p in parts[2:])
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _location(value: str) -> str:
    """A Location header: http.client reads its bytes as Latin-1; browsers try UTF-8 first."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _shown(url: str) -> str:
    """A link as it may appear in a message: one line, not too long, inert in Discord."""
    return _inert(url.strip(), 120)


def _inert(text: str, limit: int = 80, table: dict = _INERT) -> str:
    """Text a user or web server chose, safe in a Discord message as it is: one line, bounded,
    and with what Markdown or Discord act on (links, code, pings, emphasis) percent-encoded."""
    clean = "".join(c if c.isprintable() else "\ufffd" for c in text[: limit + 1])
    clean = clean.translate(table)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or type(err).__name__
