"""Servers' indexes: loaded on first use, kept within a byte budget, never stale after a write."""

from __future__ import annotations

import pytest

from bot.engine.cache import IndexCache, footprint
from index.indexer import build
from index.records import Document
from index.store import DocInfo, Index, Params


@pytest.fixture(scope="module")
def indexes(embedder) -> dict[int, Index]:
    """Three small real indexes, of growing size."""
    params = Params(embedder.model_id, embedder.dim, 800, 1)
    built = {}
    for n in (1, 2, 3):
        text = " ".join(
            f"Server {n} fact {i} is about the harbour of town {i}." for i in range(n * 40)
        )
        doc = Document(f"uploads/{n}.txt", f"Doc {n}", text, f"{n}.txt")
        info = DocInfo(doc.doc_id, doc.title, doc.source, "x", 0, "now")
        built[n] = build([doc], {doc.doc_id: info}, params, embedder)[0]
    return built


class Loader:
    """Counts loads; returns the prepared index of a server (None for servers not in it)."""

    def __init__(self, indexes: dict[int, Index], keep: bool = True) -> None:
        self.indexes, self.keep, self.calls = indexes, keep, []

    def __call__(self, key: int) -> tuple[Index | None, bool]:
        self.calls.append(key)
        return self.indexes.get(key), self.keep


def test_footprint_counts_what_an_index_holds(indexes):
    sizes = [footprint(indexes[n]) for n in (1, 2, 3)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    small = indexes[1]
    assert footprint(small) > small.vectors.nbytes + len(small.docs["uploads/1.txt"].text)
    assert footprint(None) < 1000


def test_loads_once_on_first_use_then_answers_from_memory(indexes):
    load = Loader(indexes)
    cache = IndexCache(10**9, load)
    assert cache.get(1) is indexes[1] and cache.get(1) is indexes[1]
    assert cache.get(7) is None and cache.get(7) is None  # no uploads: remembered too
    assert load.calls == [1, 7] and (cache.loads, cache.hits) == (2, 2)
    assert cache.loaded() == {1: indexes[1]}
    assert cache.bytes == footprint(indexes[1]) + footprint(None)


def test_least_recently_used_leave_first_within_the_budget(indexes):
    load = Loader(indexes)
    budget = footprint(indexes[1]) + footprint(indexes[3]) + 10  # room for two, not three
    cache = IndexCache(budget, load)
    cache.get(1)
    cache.get(2)
    cache.get(1)  # 2 is now the least recently used
    cache.get(3)
    assert list(cache.loaded()) == [1, 3] and cache.evictions == 1
    assert cache.bytes == footprint(indexes[1]) + footprint(indexes[3]) <= budget
    assert cache.get(2) is indexes[2] and load.calls.count(2) == 2  # loaded again when asked


def test_an_index_larger_than_the_budget_is_still_served(indexes):
    cache = IndexCache(0, Loader(indexes))
    assert cache.get(3) is indexes[3] and list(cache.loaded()) == [3]
    assert cache.get(1) is indexes[1] and list(cache.loaded()) == [1]


def test_a_write_during_a_load_wins(indexes):
    """A question loads server 1's published index while an upload to it publishes a newer
    one: the upload's index is kept, not the load's older one."""
    cache = IndexCache(10**9, lambda key: None)

    def slow_load(key: int) -> tuple[Index, bool]:
        cache.put(key, indexes[2])  # the upload finishes while the load is reading
        return indexes[1], True

    cache._load = slow_load
    assert cache.get(1) is indexes[1]  # the question is answered from what it read...
    assert cache.loaded() == {1: indexes[2]}  # ...but the newer index stays
    cache._load = Loader(indexes)
    assert cache.get(1) is indexes[2]


def test_what_the_loader_says_not_to_keep_is_loaded_again(indexes):
    load = Loader(indexes, keep=False)
    cache = IndexCache(10**9, load)
    assert cache.get(1) is indexes[1] and cache.get(1) is indexes[1]
    assert load.calls == [1, 1] and cache.loaded() == {}
