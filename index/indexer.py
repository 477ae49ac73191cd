"""Incremental (re)indexing: read what changed, embed only new chunks, publish atomically."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index.chunking import chunk_document, fold
from index.embedder import Embedder
from index.errors import DocumentError, IndexDamaged
from index.loaders import load_bytes, scan
from index.records import Chunk, Document
from index.store import ANN_THRESHOLD, DocInfo, Index, Params, Store, choose_kind
from index.web.pages import load_stored, read_meta

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks to embed)
BATCH = 512  # texts per encode call: large enough to batch well, small enough to report progress


@dataclass(frozen=True)
class Report:
    """What a (re)index did."""

    documents: int
    chunks: int
    embedded: int  # chunks whose vectors were computed, not reused
    skipped: tuple[tuple[str, str], ...]  # (doc_id, reason) for files that could not be read
    seconds: float
    changed: bool  # False when nothing differed and the live version was kept
    fetched: tuple[tuple[str, str], ...] = ()  # (doc_id, outcome) for each web page re-fetched
    warnings: tuple[tuple[str, str], ...] = ()  # (doc_id, note) for pages whose text came out thin


def update(
    store: Store,
    root: Path,
    params: Params,
    embedder: Embedder,
    *,
    prefix: str = "",
    kind: str = "auto",
    ann_threshold: int = ANN_THRESHOLD,
    rebuild: bool = False,
    titles: dict[str, str] | None = None,
    progress: Progress | None = None,
    extra: Sequence[tuple[Path, str]] = (),
    exclude: Collection[str] = (),
    read: Mapping[str, Document] | None = None,
) -> tuple[Index, Report]:
    """Bring the index in `store` up to date with the documents under `root`, and the `extra`
    (path, doc_id) files; `exclude` names files under `root` that are not documents. `read`
    holds documents the caller has just read from these very files ({doc_id: Document}): they
    are not read again, so an untrusted file is read before a write lock, not under it."""
    started = time.perf_counter()
    titles = titles or {}
    previous = None if rebuild else _previous(store, params)
    docs: dict[str, tuple[Document, DocInfo]] = {}
    skipped = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    found = scan(root) if root.is_dir() else []
    files = [(path, prefix + rel) for path, rel in found if rel not in exclude] + list(extra)
    for path, doc_id in files:
        try:
            data = path.read_bytes()
            meta = read_meta(path)  # a page from the web has a sidecar saying where from
        except OSError as err:
            skipped.append((doc_id, f"could not be read ({err.strerror})"))
            continue
        except DocumentError as err:
            skipped.append((doc_id, str(err)))
            continue
        # A page's address and given title are part of what it is: either changing re-reads it.
        origin = f"{meta.final_url} {meta.title or ''}".encode() if meta else b""
        sha = hashlib.sha256(data + origin).hexdigest()
        old = previous.infos.get(doc_id) if previous else None
        title = titles.get(doc_id)
        if old and old.sha256 == sha and (title is None or title == old.title):
            docs[doc_id] = (previous.docs[doc_id], old)
            continue
        doc = (read or {}).get(doc_id)
        if doc is None or title not in (None, doc.title):
            try:
                doc = (
                    load_stored(data, meta, doc_id, title)
                    if meta
                    else load_bytes(path.name, data, doc_id, title)
                )
            except DocumentError as err:
                skipped.append((doc_id, str(err)))
                log.warning("skipped %s: %s", doc_id, err)
                continue
        docs[doc_id] = (doc, DocInfo(doc_id, doc.title, str(path), sha, 0, now))

    chosen = None
    if previous is not None and previous.infos == {d: i for d, (_, i) in docs.items()}:
        chosen = choose_kind(len(previous), kind, ann_threshold)
        if chosen == previous.kind:
            report = Report(len(docs), len(previous), 0, tuple(skipped), _since(started), False)
            return previous, report

    index, embedded = build(
        [d for d, _ in docs.values()],
        {d: i for d, (_, i) in docs.items()},
        params,
        embedder,
        previous=previous,
        kind=kind,
        ann_threshold=ann_threshold,
        progress=progress,
    )
    store.publish(index)
    report = Report(len(docs), len(index), embedded, tuple(skipped), _since(started), True)
    log.info("indexed %s: %s", store.folder, report)
    return index, report


def build(
    docs: list[Document],
    infos: dict[str, DocInfo],
    params: Params,
    embedder: Embedder,
    *,
    previous: Index | None = None,
    kind: str = "auto",
    ann_threshold: int = ANN_THRESHOLD,
    progress: Progress | None = None,
) -> tuple[Index, int]:
    """An in-memory index of `docs`, reusing `previous`'s vectors for unchanged chunk texts."""
    infos = dict(infos)
    reuse: dict[tuple[str, str], int] = {}
    if previous is not None:
        reuse = {(c.doc_id, c.text): i for i, c in enumerate(previous.chunks)}
    chunks: list[Chunk] = []
    for doc in docs:
        doc_chunks = chunk_document(doc, params.chunk_size, params.chunk_overlap)
        chunks.extend(doc_chunks)
        infos[doc.doc_id] = DocInfo(**{**infos[doc.doc_id].__dict__, "chunks": len(doc_chunks)})

    old_rows = [reuse.get((c.doc_id, c.text)) for c in chunks]
    todo = [i for i, row in enumerate(old_rows) if row is None]
    vectors = np.zeros((len(chunks), params.dim), np.float32)
    sentence_vectors: list[np.ndarray] = [None] * len(chunks)  # type: ignore[list-item]
    for i, row in enumerate(old_rows):
        if row is not None:
            vectors[i] = previous.vectors[row]
            sentence_vectors[i] = previous.sentence_vectors[previous.chunks.sentence_rows(row)]
    for done in range(0, len(todo), BATCH):
        batch = todo[done : done + BATCH]
        texts = [fold(chunks[i].text) for i in batch]
        spans = [
            [(a - chunks[i].start, b - chunks[i].start) for a, b in chunks[i].sentences]
            for i in batch
        ]
        encoded = embedder.encode_with_spans(texts, spans)
        for j, i in enumerate(batch):
            vectors[i] = encoded.texts[j]
            sentence_vectors[i] = encoded.spans[j]
        if progress:
            progress(min(done + BATCH, len(todo)), len(todo))
    sentences = (
        np.concatenate(sentence_vectors).astype(np.float16)
        if chunks
        else np.zeros((0, params.dim), np.float16)
    )
    index = Index(
        params,
        choose_kind(len(chunks), kind, ann_threshold),
        {d.doc_id: d for d in docs},
        infos,
        chunks,
        vectors,
        sentences,
    )
    return index, len(todo)


def _previous(store: Store, params: Params) -> Index | None:
    """The live index to build on; a damaged one is logged and rebuilt from scratch."""
    try:
        return store.load(params)
    except IndexDamaged as err:
        log.error("%s Rebuilding it.", err)
        return None


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)
