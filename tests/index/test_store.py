import json
import os

import faiss
import numpy as np
import pytest

from index.chunking import chunk_document, fold
from index.chunks import Chunks
from index.errors import IndexDamaged, IndexMismatch
from index.indexer import build, update
from index.lexical import Lexical
from index.records import Document
from index.search import search
from index.store import DocInfo, Index, Params, Store, make_faiss
from tests.conftest import STATEMENT


def params(embedder, size=800):
    return Params(embedder.model_id, embedder.dim, size, 1)


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_faiss_matches_numpy_brute_force():
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(500, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    queries = vecs[:20] + rng.normal(scale=0.3, size=(20, 32)).astype(np.float32)
    for kind in ("flat", "hnsw"):
        index = make_faiss(vecs, kind)
        scores, ids = index.search(queries, 10)
        truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=False)])
        assert overlap == 1.0 if kind == "flat" else overlap > 0.9
    np.testing.assert_allclose(
        make_faiss(vecs, "flat").search(queries, 1)[0][:, 0], (queries @ vecs.T).max(1), rtol=1e-5
    )


def test_k_larger_than_index_returns_what_exists(tmp_path, embedder):
    write(tmp_path / "data", "a.txt", "Only one short document about apples.")
    index, _ = update(Store(tmp_path / "ix"), tmp_path / "data", params(embedder), embedder)
    q = embedder.encode(["apples"])[0]
    hits = search([index], "apples", q, k=50)
    assert len(hits) == 1 and hits[0].chunk.doc_id == "a.txt"
    assert hits[0].dense_rank == 1 and hits[0].lexical_rank == 1


def test_a_query_runs_on_one_thread_and_leaves_builds_every_core(engine):
    before = faiss.omp_get_max_threads()
    engine.search("Who is Momentum's chair?")  # on the model worker thread
    seen = [engine.worker.call(faiss.omp_get_max_threads)]
    engine.worker.call(make_faiss, np.eye(4, dtype=np.float32), "flat")  # a build there too
    seen.append(engine.worker.call(faiss.omp_get_max_threads))
    assert seen == [1, os.cpu_count()]
    assert faiss.omp_get_max_threads() == before  # other threads keep their own setting


def test_save_load_round_trip(tmp_path, embedder):
    write(tmp_path / "data", "statement.txt", STATEMENT.read_text(encoding="utf-8"))
    store = Store(tmp_path / "ix")
    built, report = update(store, tmp_path / "data", params(embedder), embedder)
    loaded = store.load(params(embedder))
    assert loaded.chunks == built.chunks and loaded.infos == built.infos
    np.testing.assert_array_equal(loaded.vectors, built.vectors)
    q = embedder.encode(["Diane Abbott trailblazer"])[0]
    assert [h.chunk for h in search([loaded], "Diane Abbott", q)] == [
        h.chunk for h in search([built], "Diane Abbott", q)
    ]
    assert report.chunks == len(built) and report.embedded == len(built)


def test_manifest_mismatch_is_refused_with_a_clear_message(tmp_path, embedder):
    write(tmp_path / "data", "a.txt", "Some text.")
    store = Store(tmp_path / "ix")
    update(store, tmp_path / "data", params(embedder), embedder)
    with pytest.raises(IndexMismatch, match=r"chunk_size=800 \(now 300\).*--rebuild"):
        store.load(params(embedder, size=300))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_damaged_index_is_detected(tmp_path, embedder, damage):
    write(tmp_path / "data", "statement.txt", STATEMENT.read_text(encoding="utf-8"))
    store = Store(tmp_path / "ix")
    update(store, tmp_path / "data", params(embedder), embedder)
    folder = store.current()
    vectors = folder / "vectors.npy"
    if damage == "truncate":
        vectors.write_bytes(vectors.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(vectors.read_bytes())
        data[-5] ^= 0xFF
        vectors.write_bytes(bytes(data))
    elif damage == "delete":
        (folder / "chunks.jsonl").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IndexDamaged):
        store.load(params(embedder))
    # Re-indexing notices and rebuilds instead of trusting the damaged version.
    index, report = update(store, tmp_path / "data", params(embedder), embedder)
    assert report.changed and report.embedded == len(index)
    assert store.load(params(embedder)).chunks == index.chunks


def test_incremental_update_embeds_only_what_changed(tmp_path, embedder):
    data = tmp_path / "data"
    write(data, "a.txt", "Apples are red.\n\nBananas are yellow.")
    write(data, "b.txt", "Cherries are dark red.")
    write(data, "c.txt", "Dates are sweet.")
    store = Store(tmp_path / "ix")
    p = params(embedder)
    first, r1 = update(store, data, p, embedder)
    assert (r1.documents, r1.chunks, r1.embedded) == (3, 4, 4)

    same, r2 = update(store, data, p, embedder)
    assert not r2.changed and r2.embedded == 0 and same.chunks == first.chunks

    write(data, "a.txt", "Apples are red.\n\nBananas are ripe now.")  # one paragraph edited
    (data / "c.txt").unlink()
    write(data, "d.txt", "Elderberries grow wild.")
    index, r3 = update(store, data, p, embedder)
    assert r3.changed and r3.embedded == 2  # the edited paragraph and the new document
    assert sorted(index.infos) == ["a.txt", "b.txt", "d.txt"]
    assert not any(c.doc_id == "c.txt" for c in index.chunks)

    def row(ix, text):
        return next(i for i, c in enumerate(ix.chunks) if c.text == text)

    # Reused vectors are the stored ones, bit for bit (not recomputed).
    old, new = row(first, "Cherries are dark red."), row(index, "Cherries are dark red.")
    np.testing.assert_array_equal(index.vectors[new], first.vectors[old])


def test_crash_while_writing_leaves_previous_version_live(tmp_path, embedder, monkeypatch):
    data = tmp_path / "data"
    write(data, "a.txt", "The first version of the text.")
    store = Store(tmp_path / "ix")
    p = params(embedder)
    update(store, data, p, embedder)
    live = store.current()

    def crash(self, folder):
        folder.mkdir(parents=True)
        (folder / "vectors.npy").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    write(data, "a.txt", "A second version that never gets published.")
    monkeypatch.setattr(Index, "save", crash)
    with pytest.raises(OSError):
        update(store, data, p, embedder)
    monkeypatch.undo()
    assert store.current() == live
    assert store.load(p).chunks[0].text == "The first version of the text."
    store.cleanup()  # the next start removes the half-written version
    assert [x.name for x in store.folder.iterdir() if x.is_dir()] == [live.name]


def test_approximate_index_is_chosen_above_the_threshold(tmp_path, embedder):
    docs = [
        Document(f"{i}.txt", "t", f"Document number {i} mentions topic {i % 7}.", "x")
        for i in range(120)
    ]
    infos = {
        d.doc_id: DocInfo(d.doc_id, d.title, d.source, str(i), 0, "") for i, d in enumerate(docs)
    }
    index, embedded = build(docs, infos, params(embedder), embedder, kind="auto", ann_threshold=100)
    assert index.kind == "ivf" and embedded == 120
    store = Store(tmp_path / "ix")
    store.publish(index)
    loaded = store.load(params(embedder))
    assert loaded.kind == "ivf"
    manifest = json.loads((store.current() / "manifest.json").read_text())
    assert "faiss.index" in manifest["files"]
    q = embedder.encode(["Document number 42"])[0]
    assert search([loaded], "Document number 42", q, k=1)[0].chunk.doc_id == "42.txt"


def test_chunk_table_gives_back_the_chunks_it_was_made_from():
    doc = Document("a.txt", "A", STATEMENT.read_text(encoding="utf-8"), "a.txt")
    chunks = chunk_document(doc, 300, 1)
    table = Chunks.of(chunks, {"a.txt": doc})
    assert len(table) == len(chunks) > 5
    assert list(table) == chunks and table[-1] == chunks[-1] and table[2:4] == chunks[2:4]
    assert all(doc.text[c.start : c.end] == c.text for c in table)
    with pytest.raises(IndexError):
        table[len(chunks)]
    with pytest.raises(KeyError, match="unknown document"):
        Chunks({}, [("b.txt", 0, 1, "¶1", [(0, 1)])])


def test_bm25_reads_each_passages_title_and_an_index_saved_without_is_read_again(
    tmp_path, embedder
):
    # "Emirates" is only in the first article's title; its passage says "the airline".
    docs = [
        Document("a.txt", "Emirates orders A380s", "The airline will take 36 more planes.", "a"),
        Document("b.txt", "Qantas results", "The airline said its profits rose by a third.", "b"),
    ]
    infos = {d.doc_id: DocInfo(d.doc_id, d.title, d.source, "0", 0, "") for d in docs}
    built, _ = build(docs, infos, params(embedder), embedder)
    ids, _ = built.lexical.search("Emirates", 2)
    assert [built.chunks[i].doc_id for i in ids] == ["a.txt"]

    # An index saved before titles were read: its BM25 is built again when it is loaded.
    bare = Lexical.build([fold(c.text) for c in built.chunks])
    Index(
        built.params,
        "flat",
        built.docs,
        built.infos,
        built.chunks,
        built.vectors,
        built.sentence_vectors,
        lexical=bare,
    ).save(tmp_path / "old")
    assert Index.load(tmp_path / "old", params(embedder)).lexical.search("Emirates", 2)[0].size == 0
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text(encoding="utf-8"))
    del manifest["lexical"]
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    loaded = Index.load(tmp_path / "old", params(embedder))
    assert [loaded.chunks[i].doc_id for i in loaded.lexical.search("Emirates", 2)[0]] == ["a.txt"]
