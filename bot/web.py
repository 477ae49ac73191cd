"""Documents from the web, for the engine: data/sources.txt, re-fetching stored pages
conditionally, links from citations to the quoted passage, and how fresh a page is."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from bot.records import Answer
from index.errors import DocumentError, Error
from index.fetch import Page, check_url
from index.fragments import quote_url
from index.pages import WebMeta, discard, filename, load_page, read_meta, store, stored, write_meta
from index.records import Document

log = logging.getLogger(__name__)

SOURCES = "sources.txt"  # in the data folder: the shared corpus's web pages, one URL a line
FETCHERS = 4  # pages fetched side by side during a re-index
FETCHED = ("unchanged", "changed", "added")  # outcomes of re-fetching a page; else its error
Fetch = Callable[..., Page | None]  # index.fetch.fetch with the engine's limits bound


def read_sources(path: Path) -> dict[str, str | None]:
    """{url: title or None} from a sources file: `URL [title]` lines, `#` starts a comment."""
    if not path.is_file():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise Error(f"{path} could not be read ({err}).") from err
    sources: dict[str, str | None] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url, _, title = line.partition(" ")
        try:
            check_url(url)
        except DocumentError as err:
            raise Error(f"{path}:{number}: {err}") from err
        sources[url] = title.strip() or None
    return sources


def add_source(path: Path, url: str, title: str | None) -> None:
    """Append `url` (and its title) to a sources file, creating it if needed."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    line = f"{url} {title.strip()}" if title and title.strip() else url
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")


def refresh(
    folder: Path, prefix: str, fetch: Fetch, wanted: Mapping[str, str | None] | None = None
) -> list[tuple[str, str]]:
    """Re-fetch the pages stored in `folder`, conditionally; return (doc_id, outcome) for each.

    With `wanted` ({url: title}, the sources file), pages it lists but `folder` lacks are fetched
    and stored pages it no longer lists are removed. A page that cannot be fetched or read keeps
    its previous copy; its outcome says why.
    """
    have = stored(folder)
    if wanted is None:  # each page keeps the title it was added with
        wanted = {url: meta.title for url, body in have.items() if (meta := meta_of(body))}
    for url, body in have.items():
        if url not in wanted:
            discard(body)
            log.info("removed %s: no longer in %s", body.name, SOURCES)
    with ThreadPoolExecutor(FETCHERS) as pool:
        futures = [
            pool.submit(_refresh_one, folder, prefix, fetch, url, have.get(url), title)
            for url, title in wanted.items()
        ]
        return [f.result() for f in futures]


def _refresh_one(
    folder: Path, prefix: str, fetch: Fetch, url: str, body: Path | None, title: str | None
) -> tuple[str, str]:
    shown = prefix + body.name if body else url
    try:
        meta = read_meta(body) if body else None
        page = fetch(url, etag=meta and meta.etag, last_modified=meta and meta.last_modified)
        if page is None or (meta and (page.data, page.kind) == (body.read_bytes(), meta.kind)):
            # 304 Not Modified, or the same bytes: only the record of the fetch changes
            fresh = meta if page is None else WebMeta.of(page, title)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            write_meta(body, dataclasses.replace(fresh, fetched_at=now, title=title))
            return shown, "unchanged"
        target = body if body and body.suffix == page.kind else free_name(folder, page, url)
        load_page(page, prefix + target.name, title)  # refuses a page with no usable text
        store(target, page, WebMeta.of(page, title))
        if body and body != target:
            discard(body)
        return prefix + target.name, "changed" if body else "added"
    except (DocumentError, OSError) as err:
        log.warning("could not refresh %s: %s", url, err)
        kept = " The copy fetched earlier is kept." if body else ""
        return shown, f"{err}{kept}"


def free_name(folder: Path, page: Page, url: str) -> Path:
    """A file name in `folder` for a page, not taken by another document."""
    name = filename(url, page.kind)
    stem = name.removesuffix(page.kind)
    n = 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}-{n}{page.kind}"
    return folder / name


# -- reading ----------------------------------------------------------------------------------


def link_citations(answer: Answer, docs: Mapping[str, Document]) -> Answer:
    """The answer with each citation of a web document linked to its exact passage."""
    citations = tuple(
        dataclasses.replace(c, url=quote_url(doc, c.start, c.end))
        if (doc := docs.get(c.chunk.doc_id)) is not None and doc.url
        else c
        for c in answer.citations
    )
    return dataclasses.replace(answer, citations=citations)


def freshness(doc: Document | None, meta: WebMeta | None, now: datetime | None = None) -> str:
    """ "fetched 3 days ago, dated 2024-05-24" for a web document; "" for a file."""
    if meta is None:
        return ""
    now = now or datetime.now(UTC)
    days = (now - datetime.fromisoformat(meta.fetched_at)).days
    when = "today" if days < 1 else "1 day ago" if days == 1 else f"{days} days ago"
    dated = f", dated {doc.published}" if doc is not None and doc.published else ""
    return f"from <{shown_url(meta.final_url)}>, fetched {when}{dated}"


def shown_url(url: str) -> str:
    """A URL safe inside Markdown and <…>: spaces, brackets and quotes percent-encoded."""
    return quote(url, safe=":/?#@!$&'*+,;=%~-._[]").replace("[", "%5B").replace("]", "%5D")


def meta_of(path: Path) -> WebMeta | None:
    try:
        return read_meta(path)
    except DocumentError:
        return None
