"""A server's folder of documents: which file a typed name may mean, how much the folder may
hold, and what an interrupted write left in it; a failed write as a user-safe error."""

from __future__ import annotations

from pathlib import Path

from bot.engine.db import DatabaseError
from index.errors import DocumentError, Error, shown
from index.loaders import scan
from index.web import pages, sources

UPLOADS = "uploads/"  # doc id prefix of a server's own documents


def document_path(folder: Path, doc_id: str) -> Path:
    """The file of one of the documents in `folder`; anything else is refused.

    `doc_id` is typed by a user: it is only ever looked up among the names the folder holds,
    never joined onto a path as it is (no ../, links or absolute paths).
    """
    name = doc_id.removeprefix(UPLOADS) if doc_id.startswith(UPLOADS) else ""
    names = {p.name: p for p, _ in scan(folder)} if folder.is_dir() else {}
    path = names.get(name)
    if path is None or path.is_symlink() or path.resolve().parent != folder.resolve():
        raise DocumentError(
            f"{shown(doc_id)} is not one of this server's documents; "
            "/docs list shows them (shared documents cannot be removed from a server)."
        )
    return path


def check_room(folder: Path, size: int, most: int, room: int) -> None:
    """Refuse `size` more bytes past a server's quotas (MAX_DOCUMENTS/BYTES_PER_SERVER)."""
    if folder.is_dir() and len(scan(folder)) >= most:
        raise DocumentError(
            f"This server already has {most:,} documents, the most it can keep "
            "(MAX_DOCUMENTS_PER_SERVER); remove one with /docs remove first."
        )
    used = sources.folder_bytes(folder)
    if used + size > room:
        raise DocumentError(
            f"This server's documents take {used:,} bytes; adding {size:,} more would pass "
            f"its limit of {room:,} bytes (MAX_BYTES_PER_SERVER). Remove some first."
        )


def not_added(folder: Path, url: str) -> None:
    if (same := pages.stored(folder).get(url)) is not None:
        raise DocumentError(
            f"{url} is already indexed here as {UPLOADS}{same.name}; /reindex fetches it again."
        )


def clean(folder: Path) -> None:
    """Remove what an interrupted write left: temporary files and sidecars without a body."""
    for leftover in [*folder.glob(".*.part"), *pages.orphans(folder)]:
        leftover.unlink(missing_ok=True)


def storage_error(
    err: Exception,
    what: str = "the document or index",
    outcome: str = "Nothing was changed: the previous index is still answering.",
) -> Error:
    """A failed write (disk full, read-only, database) as a user-safe Error; others as they are."""
    if isinstance(err, Error) and not isinstance(err, DatabaseError):
        return err
    reason = err.reason if isinstance(err, DatabaseError) else err.strerror or err
    return Error(f"Could not save {what} ({reason}). {outcome}")
