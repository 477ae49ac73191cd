"""Web documents: a fetched page as a `Document`, and how it is kept on disk.

A page is stored as its body, exactly as fetched (`<name>.html`, `.pdf`, ...), beside a sidecar
`<name>.html.web.json` saying where it came from and how to ask for it again. The sidecar is
written first and the body last, so a body on disk always has its sidecar.

HTML goes through index/web/extraction.py for the main text, title, author and date.
Citations link into the live page with text fragments, which the browser matches against the
page's *rendered* text, so a Document also keeps that text (`page_text`): every visible block of
the page on its own line, whitespace collapsed, decoded as the browser decodes it (a page that
declares no charset is windows-1252 there, even when it is UTF-8). A page whose main text is
still thin is kept, and `warning` says so to the admin who added it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from index import sandbox
from index.errors import DocumentError
from index.loaders import clipped_line, load_bytes
from index.records import Document
from index.web.extraction import extract, thin, visible_text
from index.web.fetch import Page
from index.web.fragments import WINDOWS_1252

log = logging.getLogger(__name__)

SIDECAR = ".web.json"
MAX_NAME = 80  # characters of a stored page's name, before its extension
_SPACE = re.compile(r"\s+")
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)


@dataclass(frozen=True)
class WebMeta:
    """Where a stored page came from (its sidecar), and how to ask for it again."""

    url: str  # as given by the admin or data/sources.txt
    final_url: str  # after redirects: what citations link to
    kind: str
    charset: str | None
    etag: str | None
    last_modified: str | None
    fetched_at: str  # last time the server confirmed this content (200 or 304)
    title: str | None = None  # given by the admin (or data/sources.txt); else the page's own

    @classmethod
    def of(cls, page: Page, title: str | None = None) -> WebMeta:
        return cls(
            page.url, page.final_url, page.kind, page.charset, page.etag, page.last_modified,
            page.fetched_at, title,
        )  # fmt: skip


def load_page(page: Page, doc_id: str, title: str | None = None) -> Document:
    """Extract a fetched page into a Document; raise DocumentError when it has no usable text."""
    return load_stored(page.data, WebMeta.of(page, title), doc_id, title)


def load_stored(data: bytes, meta: WebMeta, doc_id: str, title: str | None = None) -> Document:
    """A Document from a stored body and its sidecar."""
    title = title or meta.title
    where = meta.final_url
    if meta.kind != ".html":
        browser = None
        if meta.kind in (".txt", ".md"):
            read = _decode(data, meta.charset, where)
            browser = _browser_decode(data, meta.charset)
            browser = None if browser == read else browser  # else the browser reads otherwise
            data = read.encode("utf-8")
        name = f"page{meta.kind}"
        try:
            doc = load_bytes(name, data, doc_id, title)
        except DocumentError as err:  # "page.pdf is encrypted…" -> "https://…/x.pdf is encrypted…"
            said = str(err)
            said = said.removeprefix(name) if said.startswith(name + " ") else f": {said}"
            raise DocumentError(_short(where) + said) from err
        # A browser shows plain text as it is (in its own decoding): each line is matched alone.
        lines = doc.text if browser is None else browser.replace("\r\n", "\n")
        page_text = "\n".join(_SPACE.sub(" ", line).strip() for line in lines.split("\n"))
        shown = page_text if meta.kind in (".txt", ".md") else ""
        return dataclasses.replace(doc, source=where, url=where, page_text=shown)
    text, found, author, published, page_text = sandbox.run(
        _read_html, data, meta.charset, where, name=_short(where)
    )
    if not text:
        raise DocumentError(
            f"{_short(where)} has no extractable text (no article or statement was found on it)."
        )
    return Document(
        doc_id,
        clipped_line(title or found or text.split("\n", 1)[0]),
        text,
        where,
        url=where,
        page_text=page_text,
        author=author or "",
        published=published or "",
    )


def _read_html(data: bytes, charset: str | None, where: str) -> tuple[str, ...]:
    """(main text, title, author, date, rendered text): what load_stored runs in the sandbox."""
    html = _decode(data, charset, where)
    shown = visible_text(html)
    browser = _browser_decode(data, charset)  # what the browser reads, if it reads otherwise
    rendered = visible_text(browser) if browser is not None and browser != html else shown
    return (*extract(html, where, shown), rendered)


def warning(doc: Document, where: str = "") -> str:
    """What the admin adding a web page should know about its text ("" when nothing); `where`
    is how to show its link (by default the link itself)."""
    if not doc.url or not doc.page_text or doc.pages or not thin(doc.text, doc.page_text):
        return ""
    return (
        f"only {len(doc.text):,} characters of text found on {where or _short(doc.url)}; the "
        "page may need a browser (its text may be drawn by scripts), so few answers can come "
        "from it."
    )


# -- on disk ---------------------------------------------------------------------------------


def sidecar(body: Path) -> Path:
    return body.with_name(body.name + SIDECAR)


def read_meta(body: Path) -> WebMeta | None:
    """The sidecar of a stored body, or None for a file that did not come from the web."""
    try:
        raw = json.loads(sidecar(body).read_text(encoding="utf-8"))
        return WebMeta(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise DocumentError(f"The record of where {body.name} came from is damaged.") from err


def write_meta(body: Path, meta: WebMeta) -> None:
    _write(sidecar(body), json.dumps(dataclasses.asdict(meta), indent=1).encode("utf-8"))


def store(body: Path, page: Page, meta: WebMeta) -> None:
    """Write a fetched page: sidecar first, body last (its rename is the commit)."""
    body.parent.mkdir(parents=True, exist_ok=True)
    write_meta(body, meta)
    _write(body, page.data)


def discard(body: Path) -> None:
    body.unlink(missing_ok=True)
    sidecar(body).unlink(missing_ok=True)


def stored(folder: Path) -> dict[str, Path]:
    """{url: body} for every stored page in `folder`."""
    out = {}
    for side in sorted(folder.glob("*" + SIDECAR)) if folder.is_dir() else []:
        body = side.with_name(side.name.removesuffix(SIDECAR))
        try:
            if body.is_file() and (meta := read_meta(body)):
                out[meta.url] = body
        except DocumentError as err:  # indexed as a plain file until it is added again
            log.warning("%s", err)
    return out


def orphans(folder: Path) -> list[Path]:
    """Sidecars whose body is gone: left by a store or removal that was interrupted."""
    return [
        side
        for side in (folder.glob("*" + SIDECAR) if folder.is_dir() else [])
        if not side.with_name(side.name.removesuffix(SIDECAR)).exists()
    ]


def filename(url: str, kind: str) -> str:
    """A readable, safe file name for a page: host and path, e.g. example.org-news-item.html."""
    parts = urlsplit(url)
    host = (parts.hostname or "page").removeprefix("www.")
    path = parts.path.rstrip("/")
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else ""
    words = f"{host}{path.rsplit('.', 1)[0] if stem else path}"
    if parts.query:
        words += "-" + parts.query
    name = re.sub(r"[^A-Za-z0-9]+", "-", words).strip("-").lower()[:MAX_NAME].strip("-")
    return (name or "page") + kind


# -- helpers -----------------------------------------------------------------------------------


def _decode(data: bytes, charset: str | None, where: str) -> str:
    from bs4 import UnicodeDammit

    for encoding in (charset, "utf-8"):
        if encoding:
            try:
                return data.decode(encoding).removeprefix("\ufeff")
            except (LookupError, ValueError):  # ValueError: any UnicodeError, e.g. "undefined"
                continue
    dammit = UnicodeDammit(data, is_html=True)  # follows <meta charset> and guesses
    if dammit.unicode_markup is None:
        raise DocumentError(f"{_short(where)} is not text in any encoding this bot can read.")
    return dammit.unicode_markup


def _browser_decode(data: bytes, charset: str | None) -> str | None:
    """The page as a browser decodes it when that may differ from `_decode`: no charset in the
    headers, no byte order mark, then a `<meta charset>` or else windows-1252 (HTML's default,
    though many pages so served are UTF-8). None when the browser reads it as `_decode` does."""
    if charset or data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return None
    found = _META_CHARSET.search(data[:1024])
    label = found.group(1).decode("ascii", "replace").lower() if found else "windows-1252"
    if label in ("windows-1252", "cp1252", "iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"):
        return data.decode("latin-1").translate(WINDOWS_1252)
    try:
        return data.decode("utf-8" if label.startswith("utf-16") else label, "replace")
    except LookupError:
        return None  # a label Python does not know: no better guess than _decode's


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _short(url: str) -> str:
    return url if len(url) <= 100 else url[:99] + "…"
