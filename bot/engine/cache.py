"""Servers' own indexes, loaded on first use and kept within a memory budget, least recently used
out first: start-up time and memory no longer grow with the number of servers."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable

from index.store import Index

# A server's index and whether it may be kept (False: loaded while a write ran, not final).
Loader = Callable[[int], tuple[Index | None, bool]]
OVERHEAD = 16_000  # bytes per loaded index beyond its arrays (bm25s, FAISS, dicts): bench/shards.py
ABSENT = 200  # bytes to remember that a server has no uploads


def footprint(index: Index | None) -> int:
    """Roughly the memory an index holds: FAISS's copy of the vectors, the documents' text, the
    chunk table and a fixed overhead (sentence vectors and BM25 are memory-mapped files)."""
    if index is None:
        return ABSENT
    chunks = index.chunks
    arrays = sum(a.nbytes for a in (chunks.doc, chunks.bounds, chunks.sentences))
    text = sum(len(doc.text) for doc in index.docs.values())
    return OVERHEAD + index.vectors.nbytes + arrays + 8 * len(chunks) + text


class IndexCache:
    """Server id -> its index (or None), loaded by `load` on a miss; thread-safe."""

    def __init__(self, budget: int, load: Loader) -> None:
        self.budget = budget  # bytes; the index asked for last is kept even if it alone is larger
        self._load = load
        self._entries: OrderedDict[int, tuple[Index | None, int]] = OrderedDict()
        self._loading: Counter[int] = Counter()  # loads in flight, per server
        self._stale: set[int] = set()  # servers written while a load of theirs was in flight
        self._lock = threading.Lock()
        self.bytes = self.hits = self.loads = self.evictions = 0

    def get(self, key: int) -> Index | None:
        """The server's index (None when it has none), loading it on first use."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key][0]
            self._loading[key] += 1
        try:
            index, keep = self._load(key)
        finally:
            with self._lock:
                self._loading[key] -= 1
                stale = key in self._stale
                if not self._loading[key]:
                    del self._loading[key]
                    self._stale.discard(key)
        with self._lock:
            self.loads += 1
            if keep and not stale and key not in self._entries:  # a write's result wins
                self._add(key, index)
        return index

    def put(self, key: int, index: Index | None) -> None:
        """Replace a server's index after a write (None: it has no uploads left)."""
        with self._lock:
            if key in self._loading:
                self._stale.add(key)
            self._remove(key)
            self._add(key, index)

    def loaded(self) -> dict[int, Index]:
        """The servers' indexes in memory now, least recently used first."""
        with self._lock:
            return {k: ix for k, (ix, _) in self._entries.items() if ix is not None}

    def _add(self, key: int, index: Index | None) -> None:
        size = footprint(index)
        self._entries[key] = (index, size)
        self.bytes += size
        while self.bytes > self.budget and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1

    def _remove(self, key: int) -> None:
        if key in self._entries:
            self.bytes -= self._entries.pop(key)[1]
