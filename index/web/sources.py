"""Web pages kept as documents: data/sources.txt, re-fetching stored pages conditionally (fetched
and read first, then stored one by one), and how fresh a page is."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from index.errors import DocumentError, Error
from index.records import Document
from index.web.fetch import Page, check_url
from index.web.pages import (
    WebMeta,
    discard,
    filename,
    load_page,
    read_meta,
    store,
    stored,
    write_meta,
)

log = logging.getLogger(__name__)

SOURCES = "sources.txt"  # in the data folder: the shared corpus's web pages, one URL a line
FETCHERS = 4  # pages fetched side by side during a re-index
FETCHED = ("unchanged", "changed", "added")  # outcomes of re-fetching a page; else its error
Fetch = Callable[..., Page | None]  # index.web.fetch.fetch with the engine's limits bound


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


@dataclass(frozen=True)
class Fetched:
    """A page fetched again and read, not yet stored (`store_fetched` writes it)."""

    url: str
    body: Path | None  # the copy stored earlier, if any
    meta: WebMeta | None  # the sidecar to write; None when the page could not be refreshed
    page: Page | None = None  # None when unchanged (304 Not Modified, or the same bytes)
    doc: Document | None = None  # read from `page`, with a provisional doc_id
    error: str = ""  # why it could not be refreshed


def fetch_again(
    folder: Path, prefix: str, fetch: Fetch, wanted: Mapping[str, str | None] | None = None
) -> list[Fetched]:
    """Re-fetch (conditionally) and read the pages stored in `folder`, writing nothing.

    With `wanted` ({url: title}, the sources file), pages it lists but `folder` lacks are
    fetched too. Network and extraction happen here, before any lock is taken.
    """
    have = stored(folder)
    if wanted is None:  # each page keeps the title it was added with
        wanted = {url: meta.title for url, body in have.items() if (meta := meta_of(body))}
    with ThreadPoolExecutor(FETCHERS) as pool:
        futures = [
            pool.submit(_fetch_one, prefix, fetch, url, have.get(url), title)
            for url, title in wanted.items()
        ]
        return [f.result() for f in futures]


def _fetch_one(
    prefix: str, fetch: Fetch, url: str, body: Path | None, title: str | None
) -> Fetched:
    try:
        meta = read_meta(body) if body else None
        page = fetch(url, etag=meta and meta.etag, last_modified=meta and meta.last_modified)
        if page is None or (meta and (page.data, page.kind) == (body.read_bytes(), meta.kind)):
            # 304 Not Modified, or the same bytes: only the record of the fetch changes
            fresh = meta if page is None else WebMeta.of(page, title)
            now = datetime.now(UTC).isoformat(timespec="seconds")
            return Fetched(url, body, dataclasses.replace(fresh, fetched_at=now, title=title))
        doc = load_page(page, prefix, title)  # refuses a page with no usable text
        return Fetched(url, body, WebMeta.of(page, title), page, doc)
    except (DocumentError, OSError) as err:
        error = str(err)
    except Exception:  # a hostile page must never stop the others: logged, reported, skipped
        log.exception("refreshing %s failed", url)
        error = f"{url} could not be refreshed (an unexpected error, logged for the operator)."
    log.warning("could not refresh %s: %s", url, error)
    return Fetched(url, body, None, error=error)


def store_fetched(
    folder: Path, prefix: str, fetched: list[Fetched], prune: bool = False, room: int = -1
) -> tuple[list[tuple[str, str]], dict[str, Document]]:
    """Store what `fetch_again` found, one page after another (so names stay unique); with
    `prune`, remove stored pages it did not ask for; `room` bounds the folder's bytes (-1: no
    bound). Returns (doc_id, outcome) for each page and the documents read, by doc_id."""
    have = stored(folder)
    if prune:
        for url in have.keys() - {f.url for f in fetched}:
            discard(have[url])
            log.info("removed %s: no longer in %s", have[url].name, SOURCES)
    outcomes, read = [], {}
    for f in fetched:
        shown = prefix + f.body.name if f.body else f.url
        if f.meta is None:
            kept = " The copy fetched earlier is kept." if f.body else ""
            outcomes.append((shown, f.error + kept))
        elif have.get(f.url) != f.body:  # removed or added by an admin meanwhile: theirs wins
            outcomes.append((shown, "It was removed or added again meanwhile; left as it is."))
        elif f.page is None:
            write_meta(f.body, f.meta)
            outcomes.append((shown, "unchanged"))
        elif room >= 0 and folder_bytes(folder) + len(f.page.data) - _size(f.body) > room:
            outcomes.append((shown, f"{f.url} has grown past this server's storage limit."))
        else:
            target = f.body if f.body and f.body.suffix == f.page.kind else None
            target = target or free_name(folder, f.page, f.url)
            store(target, f.page, f.meta)
            if f.body and f.body != target:
                discard(f.body)
            read[prefix + target.name] = dataclasses.replace(f.doc, doc_id=prefix + target.name)
            outcomes.append((prefix + target.name, "changed" if f.body else "added"))
    return outcomes, read


def free_name(folder: Path, page: Page, url: str) -> Path:
    """A file name in `folder` for a page, not taken by another document."""
    name = filename(url, page.kind)
    stem = name.removesuffix(page.kind)
    n = 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}-{n}{page.kind}"
    return folder / name


def folder_bytes(folder: Path) -> int:
    """Bytes of every file in a server's document folder (bodies and their records)."""
    return sum(_size(p) for p in folder.iterdir()) if folder.is_dir() else 0


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None and path.is_file() else 0
    except OSError:
        return 0


# -- reading ----------------------------------------------------------------------------------


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
