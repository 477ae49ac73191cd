"""The service the CLI and the Discord bot share: indexes per scope, search, answers, uploads.

Methods are synchronous and thread-safe. Model and FAISS work runs on the embedder's one worker
thread (index/worker.py); `answer` awaits it there, so an event loop never blocks. Writes
(re-index, upload, removal) take one lock and swap the new index in with one assignment, so
questions keep being answered from the previous index until the new one is published. What is
slow or hostile (fetching pages, reading files) happens before that lock is taken. A value a
user types is only ever looked up among the names in its own server's folder. The
shared corpus may be served by several processes: one writes it at a time (a file lock), the
others swap in what it publishes (`refresh`). A server's own data is written only by the process
serving its shard, and its index is loaded on its first question (bot/cache.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from bot import web
from bot.answer import (
    PASSAGES,
    THRESHOLD,
    Ranking,
    bm25_idf,
    by_reader,
    by_similarity,
    clean_question,
    compose,
)
from bot.cache import IndexCache
from bot.config import Settings
from bot.db import Database, DatabaseError
from bot.llm import Generator, OnText, Stats
from bot.records import Answer
from index import pages
from index.embedder import Embedder
from index.errors import Busy, DocumentError, Error, IndexDamaged, IndexMismatch, shown
from index.fetch import fetch
from index.indexer import Progress, Report, update
from index.loaders import check_upload, load_bytes, safe_filename, scan
from index.reader import Reader, load_reader
from index.records import Document, Hit
from index.search import search
from index.store import DocInfo, Index, Params, Store

log = logging.getLogger(__name__)

SHARED = "shared"
UPLOADS = "uploads/"  # doc id prefix of a server's own documents
WEB = "web/"  # doc id prefix of the shared corpus's pages from data/sources.txt

__all__ = ["SHARED", "UPLOADS", "Busy", "Engine"]


class Engine:
    """Indexes for the shared corpus and each server's uploads, and answers from them."""

    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        db: Database | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.reader = reader
        self.worker = embedder.worker
        self.db = db or Database(settings.state_dir / "bot.sqlite3")
        self.params = Params(
            embedder.model_id, embedder.dim, settings.chunk_size, settings.chunk_overlap
        )
        self.generator = Generator(settings, embedder) if settings.llm_base_url else None
        self.shared: Index | None = None  # replaced whole, never mutated: readers need no lock
        self.shared_version = ""  # the name of its version folder
        self.guilds = IndexCache(settings.guild_index_cache, self._load_guild)
        self._write = threading.Lock()  # one write at a time in this process
        self._reindexing = threading.Lock()  # one re-index at a time, its fetching included
        self._swap = threading.Lock()  # orders refresh() against this process's own re-index
        self._refused = ""  # a published shared version that failed to load, reported once
        self.fetch = functools.partial(
            fetch,
            max_bytes=settings.max_upload_bytes,
            timeout=settings.fetch_timeout,
            connect_timeout=settings.fetch_connect_timeout,
            allow_loopback=settings.fetch_allow_loopback,
        )

    @property
    def indexes(self) -> dict[str, Index]:
        """The indexes in memory now: the shared one and the servers' cached ones."""
        loaded = {str(g): ix for g, ix in self.guilds.loaded().items()}
        return {SHARED: self.shared, **loaded} if self.shared is not None else loaded

    @property
    def shared_store(self) -> Store:
        """Where the shared corpus's index versions are (SHARED_INDEX_DIR)."""
        return self._store(SHARED)

    # -- start-up ----------------------------------------------------------------------------

    def open(self, progress: Progress | None = None) -> None:
        """Load the shared index, building it on first use and again when damaged. A server's
        own index loads on its first question, so start-up does not grow with their number."""
        store = self._store(SHARED)
        try:
            with store.lock():
                store.cleanup()  # leftovers of a build that crashed
                _clean(self._web())
        except Busy:
            pass  # another process is building it: its leftovers are its own
        except OSError as err:  # a read-only copy or mount: others publish, this one follows
            log.warning("%s is read-only here (%s)", store.folder, err.strerror)
        seen, index = self._read_shared()
        if index is None:
            with store.lock(wait=True):  # one process builds it; the others wait, then load it
                if store.current() != seen:
                    seen, index = self._read_shared()
                if index is None:
                    self._update(SHARED, rebuild=True, progress=progress)
                    return
        self._set(SHARED, index, seen)

    def _read_shared(self) -> tuple[Path | None, Index | None]:
        """The live shared version and its index (None when there is none or it is damaged)."""
        folder = self._store(SHARED).current()
        try:
            return folder, Index.load(folder, self.params) if folder else None
        except IndexDamaged as err:
            log.error("%s Rebuilding it.", err)
            return folder, None

    def refresh(self) -> bool:
        """Swap in a shared version another process published; True when one was swapped in."""
        folder, before = self._store(SHARED).current(), self.shared_version
        if folder is None or folder.name == before:
            return False
        try:
            index = Index.load(folder, self.params)
        except (Error, OSError) as err:  # half copied, or replaced again while it was read
            if self._store(SHARED).current() == folder and folder.name != self._refused:
                log.error("%s Still answering from %s.", err, before)
                self._refused = folder.name
            return False
        with self._swap:
            if self.shared_version != before:  # this process re-indexed meanwhile
                return False
            self.shared, self.shared_version = index, folder.name
        log.info("answering from shared version %s (%d chunks)", folder.name, len(index))
        return True

    def _load_guild(self, guild_id: int) -> tuple[Index | None, bool]:
        """A server's index on first use (None when it has no uploads) and whether to keep it.

        Leftovers of a killed upload or removal are finished or undone and a damaged index is
        rebuilt first; while another write runs, what is published is used and not kept.
        """
        self._own(guild_id)
        if not self._docs(guild_id).is_dir():
            return None, True
        scope, store = str(guild_id), self._store(str(guild_id))
        if not self._write.acquire(blocking=False):
            try:
                return store.load(self.params), False
            except (IndexDamaged, IndexMismatch):
                return None, False
        try:
            self._tidy(guild_id)
            try:
                index = store.load(self.params)
            except (IndexDamaged, IndexMismatch) as err:
                log.error("%s Rebuilding it.", err)
                index = None
            if self._uploads(guild_id) != set(index.infos if index else ()):
                # Also after a crash between storing (or setting aside) an upload and publishing.
                try:
                    index, _ = self._build(scope, rebuild=index is None)
                except (OSError, Error):  # disk full, say: answer from what there is for now
                    log.exception("could not rebuild the index of server %s", guild_id)
                    return index, False
            return (index if index is not None and len(index) else None), True
        finally:
            self._write.release()

    def _own(self, guild_id: int) -> None:
        """Refuse to touch a server another process serves (its shard is not ours)."""
        if not self.settings.owns(guild_id):
            count = self.settings.shard_count
            raise Error(
                f"Server {guild_id} is on shard {(guild_id >> 22) % count} of {count}, which "
                f"another process serves (this one: {','.join(map(str, self.settings.shard_ids))})."
            )

    def _finish_interrupted(self, guild_id: int) -> None:
        """Undo an upload killed before it was stored; finish a removal killed once begun."""
        for leftover in self._docs(guild_id).glob(".*.removed"):
            log.warning("finishing the interrupted removal of %s", leftover.name)
            leftover.unlink()
        _clean(self._docs(guild_id))

    def _uploads(self, guild_id: int) -> set[str]:
        return {UPLOADS + rel for _, rel in scan(self._docs(guild_id))}

    # -- reading -----------------------------------------------------------------------------

    def _scope(self, guild_id: int | None) -> list[Index]:
        """The indexes a server's questions may draw on: shared ones and its own uploads."""
        if self.shared is None:
            raise Error("The index is not loaded yet.")
        indexes = [self.shared]
        if guild_id is not None and (own := self.guilds.get(guild_id)) is not None:
            indexes.append(own)
        return indexes

    def search(
        self, query: str, guild_id: int | None = None, k: int | None = None, mode: str | None = None
    ) -> list[Hit]:
        """The best passages for a query, from the shared corpus and this server's uploads."""
        k, mode = k or self.settings.top_k, mode or self.settings.search_mode
        return self.worker.call(self._search, query, guild_id, k, mode)

    def _search(self, query: str, guild_id: int | None, k: int, mode: str) -> list[Hit]:
        qvec = self.embedder.encode([query])[0]
        return search(self._scope(guild_id), query, qvec, k, mode)

    @property
    def threshold(self) -> float:
        """Below this score answers are refused: the setting, else the reader's calibration."""
        if self.settings.answer_threshold is not None:
            return self.settings.answer_threshold
        return self.reader.card.threshold if self.reader else THRESHOLD

    def retrieve(
        self, question: str, guild_id: int | None = None, context: str | None = None
    ) -> tuple[str, list[Hit], Answer]:
        """The cleaned question, its passages, and the extractive answer from them."""
        question, hits, ranking = self.ranking(question, guild_id, context)
        return question, hits, self.linked(compose(question, ranking, self.threshold), guild_id)

    def ranking(
        self, question: str, guild_id: int | None = None, context: str | None = None
    ) -> tuple[str, list[Hit], Ranking]:
        """The cleaned question, its passages, and the sentences that may answer it, ranked."""
        question = clean_question(question, self.settings.max_question_chars)
        query = f"{context} {question}" if context else question
        return self.worker.call(self._rank, question, query, guild_id)

    def _rank(self, question: str, query: str, guild_id: int | None):
        hits = self.search(query, guild_id)
        if self.reader is None:
            ranking = by_similarity(question, hits, self.threshold, self.idf(guild_id))
            return question, hits, ranking
        read = hits[:PASSAGES]
        probabilities = self.reader.probabilities(question, [h.chunk for h in read])
        return question, hits, by_reader(read, probabilities, self.reader.card.weights)

    def ask(self, question: str, guild_id: int | None = None, context: str | None = None) -> Answer:
        """An extractive, cited answer; `context` is the previous question of a conversation."""
        return self.retrieve(question, guild_id, context)[2]

    def linked(self, answer: Answer, guild_id: int | None = None) -> Answer:
        """`answer` with each citation of a web page linked to the quoted passage."""
        return web.link_citations(answer, self._docs_in(guild_id))

    def _docs_in(self, guild_id: int | None) -> dict[str, Document]:
        return {d: doc for ix in self._scope(guild_id) for d, doc in ix.docs.items()}

    async def answer(
        self,
        question: str,
        guild_id: int | None = None,
        context: str | None = None,
        on_text: OnText | None = None,
    ) -> tuple[Answer, Stats | None]:
        """A verified generated answer when a model is configured, else the extractive one.

        Model and FAISS work runs on the worker thread, so an event loop calling this never blocks.
        """
        question, hits, extractive = await self.worker.run(
            self.retrieve, question, guild_id, context
        )
        if self.generator is None:
            return extractive, None
        docs = await self.worker.run(self._docs_in, guild_id)  # may load the server's index
        answer, stats = await self.generator.answer(
            question, hits, extractive, on_text, {d: doc.text for d, doc in docs.items()}
        )
        return await self.worker.run(self.linked, answer, guild_id), stats

    def idf(self, guild_id: int | None = None) -> Callable[[str], float]:
        """BM25 inverse document frequency of a term over what this server can see."""
        indexes = self._scope(guild_id)
        n = sum(len(ix) for ix in indexes)
        return lambda term: bm25_idf(sum(ix.lexical.document_frequency(term) for ix in indexes), n)

    def documents(self, guild_id: int | None = None) -> list[DocInfo]:
        """The documents answers can draw on here: shared ones, then this server's own."""
        return [info for ix in self._scope(guild_id) for info in ix.infos.values()]

    def listing(self, guild_id: int | None = None) -> list[tuple[DocInfo, str]]:
        """Each document with, for a web page, where and when it was fetched (reads the disk)."""
        docs = self._docs_in(guild_id)
        return [
            (info, web.freshness(docs.get(info.doc_id), web.meta_of(Path(info.source))))
            for info in self.documents(guild_id)
        ]

    # -- writing -----------------------------------------------------------------------------

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
                    raise _storage_error(err, "the new index") from err
                raise _storage_error(
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
        return dataclasses.replace(report, fetched=tuple(outcomes))

    def add_document(
        self, guild_id: int, filename: str, data: bytes, user_id: int, title: str | None = None
    ) -> Report:
        """Validate an upload completely, then store and index it for this server only."""
        self._own(guild_id)
        name = safe_filename(filename)
        check_upload(name, data, self.settings.max_upload_bytes)
        doc = load_bytes(name, data, UPLOADS + name, title)  # raises before anything is written
        with self._exclusive():
            self._tidy(guild_id)
            path = self._docs(guild_id) / name
            if path.exists():
                raise DocumentError(f"{name} is already indexed here; remove it first.")
            self._check_room(guild_id, len(data))

            def write() -> None:
                tmp = path.with_name(f".{name}.part")
                tmp.write_bytes(data)
                os.replace(tmp, path)

            return self._add(guild_id, path, write, doc, user_id)

    def add_url(
        self, guild_id: int, url: str, user_id: int, title: str | None = None
    ) -> tuple[Report, Document]:
        """Fetch a web page (or PDF, text, DOCX file) and index it for this server only."""
        self._own(guild_id)
        folder = self._docs(guild_id)
        _not_added(folder, url)  # before any traffic
        self._check_room(guild_id, 0)
        page = self.fetch(url)  # network, before the lock; raises a clear FetchError
        doc = pages.load_page(page, UPLOADS, title)  # raises before anything is written
        with self._exclusive():
            self._tidy(guild_id)
            _not_added(folder, url)  # again: another admin may have added it meanwhile
            self._check_room(guild_id, len(page.data))
            path = web.free_name(folder, page, url)
            doc = dataclasses.replace(doc, doc_id=UPLOADS + path.name)
            meta = pages.WebMeta.of(page, title)
            report = self._add(
                guild_id, path, functools.partial(pages.store, path, page, meta), doc, user_id
            )
        return report, doc

    def _add(
        self, guild_id: int, path: Path, write: Callable[[], None], doc: Document, user_id: int
    ) -> Report:
        """Store a document read already with `write`, then index it; on failure leave no
        trace."""
        doc_id = UPLOADS + path.name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write()
            self.db.add_document(guild_id, doc_id, doc.title, user_id)
            _, report = self._update(str(guild_id), read={doc_id: doc})
        except (OSError, Error) as err:
            pages.discard(path)  # the file and, for a web page, its sidecar
            path.with_name(f".{path.name}.part").unlink(missing_ok=True)
            try:
                self.db.remove_document(guild_id, doc_id)
            except DatabaseError:  # a title row without its file is ignored, then replaced
                log.warning("could not forget %s in the database", doc_id, exc_info=True)
            raise _storage_error(err) from err
        return report

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
                raise _storage_error(err) from err
        return report, doc

    def remove_document(self, guild_id: int, doc_id: str) -> Report:
        """Remove one of this server's uploads and its chunks."""
        self._own(guild_id)
        with self._exclusive():
            self._tidy(guild_id)
            path = self._document(guild_id, doc_id)
            trash = path.with_name(f".{path.name}.removed")
            try:
                os.replace(path, trash)  # restorable until the new index is published
            except OSError as err:
                raise _storage_error(err) from err
            try:
                _, report = self._update(str(guild_id))
            except (OSError, Error) as err:
                os.replace(trash, path)
                raise _storage_error(err) from err
            trash.unlink()
            pages.sidecar(path).unlink(missing_ok=True)  # a web page's record of its source
            try:
                self.db.remove_document(guild_id, doc_id)
            except DatabaseError:  # removed from the index already; a stale title is harmless
                log.warning("could not forget %s in the database", doc_id, exc_info=True)
            return report

    def _update(
        self,
        scope: str,
        rebuild: bool = False,
        progress: Progress | None = None,
        read: dict[str, Document] | None = None,
    ) -> tuple[Index, Report]:
        """Build and publish a scope's index and answer from it (for the shared one, hold its
        store's lock: the version published is then the one in CURRENT)."""
        index, report = self._build(scope, rebuild, progress, read)
        self._set(scope, index, self._store(scope).current() if scope == SHARED else None)
        return index, report

    def _set(self, scope: str, index: Index, version: Path | None) -> None:
        if scope == SHARED:
            with self._swap:
                self.shared, self.shared_version = index, version.name if version else ""
        else:
            self.guilds.put(int(scope), index if len(index) else None)

    def _build(
        self,
        scope: str,
        rebuild: bool = False,
        progress: Progress | None = None,
        read: dict[str, Document] | None = None,
    ) -> tuple[Index, Report]:
        guild = scope != SHARED
        root = self._docs(int(scope)) if guild else self.settings.data_dir
        index, report = update(
            self._store(scope),
            root,
            self.params,
            self.embedder,
            prefix=UPLOADS if guild else "",
            kind=self.settings.index_type,
            ann_threshold=self.settings.ann_threshold,
            rebuild=rebuild,
            titles=self.db.titles(int(scope)) if guild else None,
            progress=progress,
            extra=[] if guild else [(p, WEB + p.name) for p in pages.stored(self._web()).values()],
            exclude=() if guild else (web.SOURCES,),
            read=read,
        )
        if guild and not len(index):  # the last upload was removed
            shutil.rmtree(self._store(scope).folder, ignore_errors=True)
        return index, report

    def _sources(self) -> dict[str, str | None]:
        return web.read_sources(self.settings.data_dir / web.SOURCES)

    def _web(self) -> Path:
        return self.settings.state_dir / "web"

    def _tidy(self, guild_id: int) -> None:
        """Remove what a killed write left in this server's folders (under the write lock)."""
        self._store(str(guild_id)).cleanup()
        self._finish_interrupted(guild_id)

    @contextmanager
    def _exclusive(self, wait: bool = False) -> Iterator[None]:
        """This process's one write at a time; `wait` for a write in progress (an upload) to
        finish, up to a minute, instead of refusing at once."""
        if not (self._write.acquire(timeout=60) if wait else self._write.acquire(blocking=False)):
            raise Busy()
        try:
            yield
        finally:
            self._write.release()

    def _scope_lock(self, scope: str) -> AbstractContextManager:
        """The shared corpus is written by one process at a time; a server's by its shard's."""
        return self._store(SHARED).lock() if scope == SHARED else nullcontext()

    def _document(self, guild_id: int, doc_id: str) -> Path:
        """The file of one of this server's own documents; anything else is refused.

        `doc_id` is typed by a user: it is only ever looked up among the names this server's
        folder holds, never joined onto a path as it is (no ../, links or absolute paths).
        """
        folder = self._docs(guild_id)
        name = doc_id.removeprefix(UPLOADS) if doc_id.startswith(UPLOADS) else ""
        names = {p.name: p for p, _ in scan(folder)} if folder.is_dir() else {}
        path = names.get(name)
        if path is None or path.is_symlink() or path.resolve().parent != folder.resolve():
            raise DocumentError(
                f"{shown(doc_id)} is not one of this server's documents; "
                "/docs list shows them (shared documents cannot be removed from a server)."
            )
        return path

    def _check_room(self, guild_id: int, size: int) -> None:
        """Refuse a document past this server's quotas (MAX_DOCUMENTS/BYTES_PER_SERVER)."""
        most, room = self.settings.max_documents_per_server, self.settings.max_bytes_per_server
        if len(self._uploads(guild_id)) >= most:
            raise DocumentError(
                f"This server already has {most:,} documents, the most it can keep "
                "(MAX_DOCUMENTS_PER_SERVER); remove one with /docs remove first."
            )
        used = web.folder_bytes(self._docs(guild_id))
        if used + size > room:
            raise DocumentError(
                f"This server's documents take {used:,} bytes; adding {size:,} more would pass "
                f"its limit of {room:,} bytes (MAX_BYTES_PER_SERVER). Remove some first."
            )

    def _store(self, scope: str) -> Store:
        if scope == SHARED and self.settings.shared_index_dir is not None:
            return Store(self.settings.shared_index_dir)
        return Store(self.settings.state_dir / "indexes" / scope)

    def _docs(self, guild_id: int) -> Path:
        return self.settings.state_dir / "guilds" / str(guild_id) / "docs"


def start(settings: Settings, progress: Progress | None = None, load: bool = True) -> Engine:
    """The embedding model, the reader and (with `load`) every index, loaded once at start-up."""
    embedder = Embedder(settings.model)
    engine = Engine(settings, embedder, reader=load_reader(settings.reader, embedder.worker))
    if load:
        engine.open(progress)
    return engine


def _storage_error(
    err: Exception,
    what: str = "the document or index",
    outcome: str = "Nothing was changed: the previous index is still answering.",
) -> Error:
    """A failed write (disk full, read-only, database) as a user-safe Error; others as they are."""
    if isinstance(err, Error) and not isinstance(err, DatabaseError):
        return err
    reason = err.reason if isinstance(err, DatabaseError) else err.strerror or err
    return Error(f"Could not save {what} ({reason}). {outcome}")


def _not_added(folder: Path, url: str) -> None:
    if (same := pages.stored(folder).get(url)) is not None:
        raise DocumentError(
            f"{url} is already indexed here as {UPLOADS}{same.name}; /reindex fetches it again."
        )


def _clean(folder: Path) -> None:
    """Remove what an interrupted write left: temporary files and sidecars without a body."""
    for leftover in [*folder.glob(".*.part"), *pages.orphans(folder)]:
        leftover.unlink(missing_ok=True)
