"""The engine's corpus: the shared index and each server's own, kept and written.

Writes (upload, removal, and bot/engine/corpus_web.py's web pages and re-index) take one lock and
swap the new index in with one assignment, so questions keep being answered from the previous index
until the new one is published. What is slow or hostile (fetching pages, reading files) happens
before that lock is taken. A value a user types is only ever looked up among the names in its own
server's folder. The shared corpus may be served by several processes: one writes it at a time (a
file lock), the others swap in what it publishes (`refresh`). A server's own data is written only
by the process serving its shard, and its index is loaded on its first question
(bot/engine/cache.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.config import Settings
from bot.engine.cache import IndexCache
from bot.engine.db import Database, DatabaseError
from bot.engine.folders import UPLOADS, check_room, clean, document_path, storage_error
from index.embedder import Embedder
from index.errors import Busy, DocumentError, Error, IndexDamaged, IndexMismatch
from index.indexer import Progress, Report, update
from index.loaders import check_upload, load_bytes, safe_filename, scan
from index.records import Document
from index.store import Index, Params, Store
from index.web import pages
from index.web import sources as web

log = logging.getLogger(__name__)

SHARED = "shared"
WEB = "web/"  # doc id prefix of the shared corpus's pages from data/sources.txt


class Corpus:
    """The shared corpus's index and each server's own: loaded, refreshed, written."""

    def __init__(self, settings: Settings, embedder: Embedder, db: Database | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.worker = embedder.worker
        self.db = db or Database(settings.state_dir / "bot.sqlite3")
        self.params = Params(
            embedder.model_id, embedder.dim, settings.chunk_size, settings.chunk_overlap
        )
        self.shared: Index | None = None  # replaced whole, never mutated: readers need no lock
        self.shared_version = ""  # the name of its version folder
        self.guilds = IndexCache(settings.guild_index_cache, self._load_guild)
        self._write = threading.Lock()  # one write at a time in this process
        self._swap = threading.Lock()  # orders refresh() against this process's own re-index
        self._refused = ""  # a published shared version that failed to load, reported once

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
                clean(self._web())
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
        clean(self._docs(guild_id))

    def _uploads(self, guild_id: int) -> set[str]:
        return {UPLOADS + rel for _, rel in scan(self._docs(guild_id))}

    # -- writing -----------------------------------------------------------------------------

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
            raise storage_error(err) from err
        return report

    def remove_document(self, guild_id: int, doc_id: str) -> Report:
        """Remove one of this server's uploads and its chunks."""
        self._own(guild_id)
        with self._exclusive():
            self._tidy(guild_id)
            path = document_path(self._docs(guild_id), doc_id)
            trash = path.with_name(f".{path.name}.removed")
            try:
                os.replace(path, trash)  # restorable until the new index is published
            except OSError as err:
                raise storage_error(err) from err
            try:
                _, report = self._update(str(guild_id))
            except (OSError, Error) as err:
                os.replace(trash, path)
                raise storage_error(err) from err
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

    def _check_room(self, guild_id: int, size: int) -> None:
        most, room = self.settings.max_documents_per_server, self.settings.max_bytes_per_server
        check_room(self._docs(guild_id), size, most, room)

    def _store(self, scope: str) -> Store:
        if scope == SHARED and self.settings.shared_index_dir is not None:
            return Store(self.settings.shared_index_dir)
        return Store(self.settings.state_dir / "indexes" / scope)

    def _docs(self, guild_id: int) -> Path:
        return self.settings.state_dir / "guilds" / str(guild_id) / "docs"
