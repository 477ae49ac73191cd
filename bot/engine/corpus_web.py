"""The corpus's web side: pages fetched into it and fetched again.

A link a server adds (`add_url`), a page added to the shared corpus and listed in
data/sources.txt (`add_source`), and a re-index, which fetches every stored page again. The
network is used before the write lock is taken, so a slow or hostile page never holds up
another server's upload; what was fetched is then stored and indexed as bot/engine/corpus.py
stores and indexes any document.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from contextlib import AbstractContextManager, nullcontext

from bot.config import Settings
from bot.engine.corpus import SHARED, WEB, Corpus
from bot.engine.db import Database, DatabaseError
from bot.engine.folders import UPLOADS, not_added, storage_error
from index.embedder import Embedder
from index.errors import Busy, Error
from index.indexer import Progress, Report
from index.records import Document
from index.web import pages
from index.web import sources as web
from index.web.fetch import fetch


class WebCorpus(Corpus):
    """The corpus, with web pages added to it and fetched again when it is re-indexed."""

    def __init__(self, settings: Settings, embedder: Embedder, db: Database | None = None) -> None:
        super().__init__(settings, embedder, db)
        self._reindexing = threading.Lock()  # one re-index at a time, its fetching included
        self.fetch = functools.partial(
            fetch,
            max_bytes=settings.max_upload_bytes,
            timeout=settings.fetch_timeout,
            connect_timeout=settings.fetch_connect_timeout,
            allow_loopback=settings.fetch_allow_loopback,
        )

    def reindex(
        self, guild_id: int | None = None, rebuild: bool = False, progress: Progress | None = None
    ) -> list[Report]:
        """Re-fetch and re-index the shared corpus and, for a server, its own documents.

        Web pages are fetched and read first; the write lock only covers storing and publishing,
        so a slow or hostile page never holds up another server's upload.
        """
        if guild_id is not None:
            self._own(guild_id)
        scopes = [SHARED] + ([str(guild_id)] if guild_id and self._uploads(guild_id) else [])
        if not self._reindexing.acquire(blocking=False):
            raise Busy()
        try:
            fetched = {scope: self._fetch_again(scope) for scope in scopes}
            reports: list[Report] = []
            try:  # each scope is published as soon as it is built
                with self._exclusive(wait=True):
                    for scope in scopes:
                        reports.append(
                            self._store_fetched(scope, fetched[scope], rebuild, progress)
                        )
            except (OSError, DatabaseError) as err:
                if not reports:
                    raise storage_error(err, "the new index") from err
                raise storage_error(
                    err,
                    "this server's new index",
                    "The shared documents were re-indexed; this server's uploads are still "
                    "answering from their previous index.",
                ) from err
            return reports
        finally:
            self._reindexing.release()

    def _fetch_again(self, scope: str) -> list[web.Fetched]:
        """Fetch a scope's web pages again (and data/sources.txt's), writing nothing."""
        if scope == SHARED:
            return web.fetch_again(self._web(), WEB, self.fetch, self._sources())
        return web.fetch_again(self._docs(int(scope)), UPLOADS, self.fetch)

    def _store_fetched(
        self, scope: str, fetched: list[web.Fetched], rebuild: bool, progress: Progress | None
    ) -> Report:
        """Store a scope's re-fetched pages, then update its index (under the write lock)."""
        with self._scope_lock(scope):
            if scope == SHARED:
                outcomes, read = web.store_fetched(self._web(), WEB, fetched, prune=True)
            else:
                self._tidy(int(scope))
                room = self.settings.max_bytes_per_server
                outcomes, read = web.store_fetched(
                    self._docs(int(scope)), UPLOADS, fetched, room=room
                )
            _, report = self._update(scope, rebuild, progress, read)
        # A page whose text came out thin is kept; whoever re-indexes is told, as its adder was.
        # The note names no link (its doc id is shown beside it; Discord would unfurl a link).
        notes = tuple((d, note) for d, doc in read.items() if (note := pages.warning(doc, "it")))
        return dataclasses.replace(report, fetched=tuple(outcomes), warnings=notes)

    def _scope_lock(self, scope: str) -> AbstractContextManager:
        """The shared corpus is written by one process at a time; a server's by its shard's."""
        return self._store(SHARED).lock() if scope == SHARED else nullcontext()

    def add_url(
        self, guild_id: int, url: str, user_id: int, title: str | None = None
    ) -> tuple[Report, Document]:
        """Fetch a web page (or PDF, text, DOCX file) and index it for this server only."""
        self._own(guild_id)
        folder = self._docs(guild_id)
        not_added(folder, url)  # before any traffic
        self._check_room(guild_id, 0)
        page = self.fetch(url)  # network, before the lock; raises a clear FetchError
        doc = pages.load_page(page, UPLOADS, title)  # raises before anything is written
        with self._exclusive():
            self._tidy(guild_id)
            not_added(folder, url)  # again: another admin may have added it meanwhile
            self._check_room(guild_id, len(page.data))
            path = web.free_name(folder, page, url)
            doc = dataclasses.replace(doc, doc_id=UPLOADS + path.name)
            meta = pages.WebMeta.of(page, title)
            report = self._add(
                guild_id, path, functools.partial(pages.store, path, page, meta), doc, user_id
            )
        return report, doc

    def add_source(self, url: str, title: str | None = None) -> tuple[Report, Document]:
        """Add a web page to the shared corpus: listed in data/sources.txt, fetched, indexed."""
        listing = self.settings.data_dir / web.SOURCES
        if url in self._sources():
            raise Error(f"{url} is already in {listing}; `statement-bot index` fetches it again.")
        page = self.fetch(url)
        doc = pages.load_page(page, WEB, title)  # raises before anything is written
        with self._exclusive(), self._store(SHARED).lock():
            path = web.free_name(self._web(), page, url)
            doc = dataclasses.replace(doc, doc_id=WEB + path.name)
            before = listing.read_bytes() if listing.is_file() else None
            try:
                pages.store(path, page, pages.WebMeta.of(page, title))
                web.add_source(listing, url, title)
                _, report = self._update(SHARED, read={doc.doc_id: doc})
            except (OSError, Error) as err:
                pages.discard(path)
                if before is None:
                    listing.unlink(missing_ok=True)
                else:
                    listing.write_bytes(before)
                raise storage_error(err) from err
        return report, doc

    def _sources(self) -> dict[str, str | None]:
        return web.read_sources(self.settings.data_dir / web.SOURCES)
