"""Web documents: a fetched page as a `Document`, and how it is kept on disk.

A page is stored as its body, exactly as fetched (`<name>.html`, `.pdf`, ...), beside a sidecar
`<name>.html.web.json` saying where it came from and how to ask for it again. The sidecar is
written first and the body last, so a body on disk always has its sidecar.

HTML goes through trafilatura for the main text, title, author and date (not navigation, cookie
banners or comments). Citations link into the live page with text fragments, which the browser
matches against the page's *rendered* text, so a Document also keeps that text (`page_text`):
every visible block of the page on its own line, whitespace collapsed as the browser does.
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
from index.loaders import MAX_TITLE, load_bytes
from index.records import Document
from index.web.fetch import Page

log = logging.getLogger(__name__)

SIDECAR = ".web.json"
MAX_NAME = 80  # characters of a stored page's name, before its extension
# Elements a browser does not render, so text fragments cannot match in them.
_HIDDEN = {
    "head", "script", "style", "template", "noscript", "iframe", "img", "video", "audio",
    "object", "embed", "select", "textarea", "svg", "math", "meter", "progress", "canvas",
}  # fmt: skip
# Block-level elements (by the browser's default style): a text fragment's terms stay in one.
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li",
    "main", "menu", "nav", "ol", "p", "pre", "search", "section", "summary", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "ul", "br", "option", "optgroup",
}  # fmt: skip
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.I)
_SPACE = re.compile(r"\s+")  # Unicode whitespace, no-break space included: browsers match it so


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
        if meta.kind in (".txt", ".md"):
            data = _decode(data, meta.charset, where).encode("utf-8")
        name = f"page{meta.kind}"
        try:
            doc = load_bytes(name, data, doc_id, title)
        except DocumentError as err:  # "page.pdf is encrypted…" -> "https://…/x.pdf is encrypted…"
            said = str(err)
            said = said.removeprefix(name) if said.startswith(name + " ") else f": {said}"
            raise DocumentError(_short(where) + said) from err
        # A browser shows plain text as it is: each line is matched on its own.
        page_text = "\n".join(_SPACE.sub(" ", line).strip() for line in doc.text.split("\n"))
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
        _one_line(title or found or text.split("\n", 1)[0]),
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
    return (*extract(html, where), visible_text(html))


def extract(html: str, url: str | None = None) -> tuple[str, str | None, str | None, str | None]:
    """(main text, title, author, date) of an HTML page; text "" when it has none.

    Paragraphs are separated by a blank line; a line break inside one is kept as "\\n".
    """
    import trafilatura

    found = None
    for recall in (False, True):  # a short statement may need the recall-oriented pass
        try:
            found = trafilatura.bare_extraction(
                html, url=url, with_metadata=True, include_comments=False, favor_recall=recall
            )
        except Exception:  # lxml and trafilatura raise many types on broken markup
            log.debug("trafilatura failed on %s", url, exc_info=True)
            found = None
        if found is not None and found.body is not None and len(found.body):
            break
    if found is None or found.body is None:
        return "", None, None, None
    blocks = [b for b in (_block_text(el) for el in _leaf_blocks(found.body)) if b]
    return "\n\n".join(blocks), found.title, found.author, found.date


def visible_text(html: str) -> str:
    """The text a browser renders for `html`: one line per block, whitespace collapsed."""
    import lxml.html

    try:
        root = lxml.html.document_fromstring(html)
    except Exception:  # lxml raises ParserError and others on garbage
        log.debug("lxml could not parse a page", exc_info=True)
        return ""
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = _SPACE.sub(" ", "".join(current)).strip()
        if line:
            lines.append(line)
        current.clear()

    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:  # iterative: deep nesting is no problem
        node, leaving = stack.pop()
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        if leaving:
            if tag in _BLOCKS:
                flush()
            current.append(node.tail or "")
            continue
        if not tag or tag in _HIDDEN or _hidden(node):
            current.append(node.tail or "")  # a comment or hidden element: only its tail shows
            continue
        if tag in _BLOCKS:
            flush()
        current.append(node.text or "")
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    flush()
    return "\n".join(lines)


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


def _leaf_blocks(body):
    """trafilatura's paragraphs, headings, list items, quotes and table rows, in order."""
    for el in body.iter("p", "head", "item", "quote", "row", "code"):
        if any(up.tag == "row" for up in el.iterancestors()):
            continue  # a table row is one block, its cells side by side
        if el.tag == "row" or not any(d is not el for d in el.iter("p", "item", "quote", "row")):
            yield el


def _block_text(el) -> str:
    pieces = [el.text or ""]
    for child in el.iter():
        if child is el:
            continue
        pieces.append("\n" if child.tag == "lb" else (child.text or ""))
        pieces.append(" " if child.tag == "cell" else (child.tail or ""))
    lines = (_SPACE.sub(" ", line).strip() for line in "".join(pieces).split("\n"))
    return "\n".join(line for line in lines if line)


def _hidden(node) -> bool:
    return node.get("hidden") is not None or bool(_DISPLAY_NONE.search(node.get("style") or ""))


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


def _one_line(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1].rstrip() + "…"


def _short(url: str) -> str:
    return url if len(url) <= 100 else url[:99] + "…"
