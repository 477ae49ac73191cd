"""An index version on disk: chunks, vectors, FAISS and BM25, with a checked manifest.

Versions are written aside and published by atomically replacing the `CURRENT` pointer, so a
crash at any point leaves the previous version loadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from index.chunking import CHUNKER
from index.chunks import Chunks
from index.errors import Busy, Error, IndexDamaged, IndexMismatch
from index.lexical import READS, Lexical, passage
from index.records import Chunk, Document

log = logging.getLogger(__name__)

FORMAT = 1
KINDS = ("flat", "hnsw", "ivf")
ANN_THRESHOLD = 200_000  # chunks; exact search stays under ~10 ms up to here (bench/bench.py)
WEB_FIELDS = ("url", "page_text", "author", "published")  # stored for documents from the web


@dataclass(frozen=True)
class Params:
    """Everything that must match between the index on disk and the running engine."""

    model: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    chunker: str = CHUNKER  # how text is cut into sentences and which paragraphs are kept


@dataclass(frozen=True)
class DocInfo:
    """A document as indexed: `sha256` is of the file's bytes, for change detection."""

    doc_id: str
    title: str
    source: str
    sha256: str
    chunks: int
    indexed_at: str


def choose_kind(n: int, setting: str, threshold: int) -> str:
    """The FAISS index type: exact below `threshold` chunks, approximate (IVF) above."""
    if setting == "auto":
        return "flat" if n < threshold else "ivf"
    if setting not in KINDS:
        raise Error(f"Unknown index type {setting!r}: use auto, {', '.join(KINDS)}.")
    return setting


def make_faiss(vectors: np.ndarray, kind: str, nprobe: int = 32) -> faiss.Index:
    """A FAISS inner-product index over unit vectors (so scores are cosines)."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # this thread may have served queries on one
    n, dim = vectors.shape
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 192  # at 1M, 64 and 128 gave recall@10 0.91 and 0.955; 192: 0.97
    else:
        # 4*sqrt(n) lists, capped: k-means costs ~ lists^2 * 64 points, and 2048 lists keep a 1M
        # rebuild under a minute on 2 cores (4000 lists trained on all 1M points: 9.4 minutes).
        # fp16 codes keep scores near exact (SQ8 cost ~0.03 recall@10 at 1M) at 768 B a chunk.
        # See bench/bench.py.
        nlist = max(1, min(4 * int(np.sqrt(n)), 2048, n // 39))  # FAISS wants >= 39 per list
        index = faiss.index_factory(dim, f"IVF{nlist},SQfp16", faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).permutation(n)[: 64 * nlist]]
        index.train(np.ascontiguousarray(sample))
        index.nprobe = nprobe
    if n:
        index.add(np.ascontiguousarray(vectors))
    return index


class Index:
    """One immutable, searchable index version."""

    def __init__(
        self,
        params: Params,
        kind: str,
        docs: dict[str, Document],
        infos: dict[str, DocInfo],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        sentence_vectors: np.ndarray,
        faiss_index: faiss.Index | None = None,
        lexical: Lexical | None = None,
    ) -> None:
        self.params = params
        self.kind = kind
        self.docs = docs
        self.infos = infos
        self.chunks = chunks if isinstance(chunks, Chunks) else Chunks.of(chunks, docs)
        self.vectors = vectors
        self.sentence_vectors = sentence_vectors  # all chunks' sentences, in chunk order
        self.faiss = faiss_index if faiss_index is not None else make_faiss(vectors, kind)
        self.lexical = lexical or Lexical.build([passage(c) for c in self.chunks])

    def __len__(self) -> int:
        return len(self.chunks)

    def dense(self, qvec: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine scores of the `n` nearest chunks, best first."""
        if not len(self) or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        # One OpenMP thread, for this thread only: one query gains nothing from more, and queries
        # served side by side would wait on each other. make_faiss sets every core back.
        faiss.omp_set_num_threads(1)
        scores, ids = self.faiss.search(qvec.reshape(1, -1), min(n, len(self)))
        keep = ids[0] >= 0  # FAISS pads missing results with -1
        return ids[0][keep], scores[0][keep]

    def cosines(self, ids: list[int], qvec: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """For each chunk of `ids`: its cosine to the query vector, and each of its sentences'."""
        if not ids:
            return []
        spans = [self.chunks.sentence_rows(i) for i in ids]
        rows = np.concatenate([np.arange(s.start, s.stop) for s in spans])
        sentences = self.sentence_vectors[rows].astype(np.float32) @ qvec
        ends = np.cumsum([s.stop - s.start for s in spans])
        cosines = (self.vectors[ids] @ qvec).tolist()
        return list(zip(cosines, np.split(sentences, ends[:-1]), strict=True))

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write this version into an empty folder, manifest (with checksums) last."""
        folder.mkdir(parents=True)
        with open(folder / "docs.jsonl", "w", encoding="utf-8") as f:
            for doc_id, doc in self.docs.items():
                row = {**asdict(self.infos[doc_id]), "text": doc.text, "pages": list(doc.pages)}
                if doc.url:
                    row["web"] = {k: getattr(doc, k) for k in WEB_FIELDS}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(folder / "chunks.jsonl", "w", encoding="utf-8") as f:
            for c in self.chunks:
                row = [c.doc_id, c.start, c.end, c.location, [list(s) for s in c.sentences]]
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        np.save(folder / "vectors.npy", self.vectors)
        np.save(folder / "sentences.npy", self.sentence_vectors.astype(np.float16))
        if self.kind != "flat":
            faiss.write_index(self.faiss, str(folder / "faiss.index"))
        self.lexical.save(folder / "bm25")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "params": asdict(self.params),
            "kind": self.kind,
            "chunks": len(self.chunks),
            "lexical": READS,
            "docs": {d: info.sha256 for d, info in self.infos.items()},
            "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in files},
        }
        for p in files:
            _fsync(p)
        _write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1))

    @classmethod
    def load(cls, folder: Path, params: Params) -> Index:
        """Load a version, refusing one built with other parameters or damaged on disk."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise IndexDamaged(f"The index in {folder} has no readable manifest ({err}).") from err
        if not (
            isinstance(manifest, dict)
            and manifest.get("format") == FORMAT
            and manifest.get("kind") in KINDS
            and isinstance(manifest.get("params"), dict)
            and isinstance(manifest.get("files"), dict)
        ):  # parses, but is not a manifest this code wrote: never trust what it lists
            raise IndexDamaged(f"The index in {folder} has a damaged manifest.")
        check_params(manifest["params"], params, folder)
        for name, digest in manifest["files"].items():
            path = folder / name
            if not path.is_file() or _sha256(path) != digest:
                raise IndexDamaged(f"The index in {folder} is damaged: {name} fails its checksum.")
        docs, infos = {}, {}
        with open(folder / "docs.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                text, pages, web = row.pop("text"), tuple(row.pop("pages")), row.pop("web", {})
                info = DocInfo(**row)
                infos[info.doc_id] = info
                docs[info.doc_id] = Document(
                    info.doc_id, info.title, text, info.source, pages, **web
                )
        with open(folder / "chunks.jsonl", encoding="utf-8") as f:
            chunks = Chunks(docs, (json.loads(line) for line in f))
        kind = manifest["kind"]
        # Saved reading chunks otherwise (before titles): BM25 is built again, the vectors kept.
        same = manifest.get("lexical") == READS
        lexical = Lexical.load(folder / "bm25", len(chunks)) if same else None
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        index = faiss.read_index(str(folder / "faiss.index")) if kind != "flat" else None
        return cls(
            params,
            kind,
            docs,
            infos,
            chunks,
            vectors,
            np.load(folder / "sentences.npy", mmap_mode="r"),
            index,
            lexical,
        )


def check_params(found: dict, expected: Params, where: Path | str) -> None:
    """Raise a clear error when an index was built with other settings than the engine's."""
    wanted = asdict(expected)
    diffs = [f"{k}={found.get(k)!r} (now {v!r})" for k, v in wanted.items() if found.get(k) != v]
    if diffs:
        raise IndexMismatch(
            f"The index in {where} was built with other settings: {', '.join(diffs)}. "
            "Rebuild it with `statement-bot index --rebuild`, or restore those settings."
        )


class Store:
    """A folder of index versions, with `CURRENT` naming the live one.

    Readers need no lock: versions never change once written and CURRENT is replaced in one
    rename. Writers that other processes may race (publish, cleanup of a shared corpus) hold
    `lock()`, a file lock that holds across processes.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def lock(self, wait: bool = False) -> Iterator[None]:
        """Hold the folder's write lock (flock on LOCK); raise Busy if another holder has it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / "LOCK", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise Busy() from None
            yield
        finally:
            os.close(fd)  # releases the lock, also when the process dies

    def current(self) -> Path | None:
        try:
            name = (self.folder / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return self.folder / name

    def load(self, params: Params) -> Index | None:
        """The live version, or None when nothing was ever published here."""
        folder = self.current()
        return Index.load(folder, params) if folder else None

    def publish(self, index: Index) -> Path:
        """Write `index` as a new version and make it the live one in a single rename."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"v{time.time_ns()}"
        tmp, final = self.folder / f"{name}.tmp", self.folder / name
        try:
            index.save(tmp)
            os.replace(tmp, final)
            _fsync(self.folder)
            _write_atomic(self.folder / "CURRENT", name)
        except BaseException as err:
            if not self._is_live(final):  # not published: leave no trace (disk full, read-only)
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(final, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (self.folder / "CURRENT.tmp").unlink(missing_ok=True)
                raise
            if not isinstance(err, OSError):
                raise
            # CURRENT was replaced; only flushing the folder failed. It is live: say so.
            log.warning("published %s but could not flush %s", name, self.folder, exc_info=True)
        try:
            self.cleanup()
        except OSError:  # the old version is unused; the next start removes it
            log.warning("could not remove old versions in %s", self.folder, exc_info=True)
        return final

    def _is_live(self, version: Path) -> bool:
        try:
            return self.current() == version
        except OSError:
            return False

    def cleanup(self) -> None:
        """Remove every version but the live one: leftovers of crashed or replaced builds."""
        if not self.folder.is_dir():
            return
        live = self.current()
        for path in self.folder.iterdir():
            if path.is_dir() and path != live:
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)
