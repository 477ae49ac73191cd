"""The shipped statement end to end through the engine: real model, FAISS, files, SQLite."""

import errno
import json
import os
import shutil

import pytest

from bot.engine import Busy
from index.errors import DocumentError, Error
from tests.conftest import STATEMENT

TEXT = STATEMENT.read_text(encoding="utf-8")


def test_answer_quotes_the_statement_exactly(engine):
    answer = engine.ask("How long has Corbyn been the MP for Islington North?")
    assert answer.found
    assert "over 40 years" in answer.text
    for c in answer.citations:
        assert TEXT[c.start : c.end] == c.quote
        assert f"[{c.n}]" in answer.text
        assert c.chunk.doc_id == "statement.txt" and c.chunk.location.startswith("¶")


def test_unanswerable_question_is_refused(engine):
    answer = engine.ask("What is the recipe for a good lasagne?")
    assert not answer.found and answer.citations == ()
    assert answer.text == "The indexed documents don't answer that."


def test_near_miss_points_at_what_the_statement_does_say(engine):
    answer = engine.ask("When did Kate Dove become chair of Momentum?")
    assert not answer.found and answer.text.startswith("The indexed documents don't answer that.")
    assert "Kate Dove" in answer.citations[0].quote
    assert all(TEXT[c.start : c.end] == c.quote for c in answer.citations)
    data = answer.to_dict()
    assert all(data["answer"].count(f"[{c['n']}]") == 1 for c in data["citations"])


def test_json_contract_markers_match_citations(engine):
    data = engine.ask("What did Momentum say about Diane Abbott?").to_dict()
    assert set(data) == {"question", "answer", "found", "citations"}
    numbers = [c["n"] for c in data["citations"]]
    assert numbers == list(range(1, len(numbers) + 1))
    for n in numbers:
        assert data["answer"].count(f"[{n}]") == 1
    for c in data["citations"]:
        assert set(c) == {"n", "doc_id", "title", "location", "quote", "start", "end", "score"}
    json.dumps(data)


def test_uploads_are_answerable_only_in_their_server(make_engine):
    engine = make_engine()
    text = b"The Hackney allotment committee meets every second Tuesday in the old library."
    report = engine.add_document(111, "allotments.txt", text, user_id=5)
    assert report.embedded >= 1
    question = "When does the allotment committee meet?"
    here = engine.ask(question, guild_id=111)
    assert here.found and here.citations[0].chunk.doc_id == "uploads/allotments.txt"
    assert "second Tuesday" in here.citations[0].quote
    assert not any(
        c.chunk.doc_id.startswith("uploads/") for c in engine.ask(question, 222).citations
    )
    assert [d.doc_id for d in engine.documents(222)] == ["statement.txt"]
    assert [d.doc_id for d in engine.documents(111)] == ["statement.txt", "uploads/allotments.txt"]

    engine.remove_document(111, "uploads/allotments.txt")
    assert [d.doc_id for d in engine.documents(111)] == ["statement.txt"]
    with pytest.raises(DocumentError, match="not one of this server"):
        engine.remove_document(111, "statement.txt")


def test_a_plural_day_answers_when_and_a_photo_credit_answers_nothing(make_engine):
    engine = make_engine()
    text = b"The Quarry Lane allotment society meets on Thursdays at the old chapel."
    engine.add_document(111, "society.txt", text, user_id=5)
    for question in ("When does the Quarry Lane allotment society meet?", "Where does it meet?"):
        answer = engine.ask(question.replace("it", "the Quarry Lane society"), guild_id=111)
        assert answer.found and "meets on Thursdays" in answer.citations[0].quote
    # The statement ends with its photo's caption and credit: never quoted as an answer.
    for question in ("who wrote this statement", "who took the photo of corbyn"):
        answer = engine.ask(question)
        assert not any("Townsend" in c.quote or "Image:" in c.quote for c in answer.citations)


def test_bad_upload_changes_nothing(make_engine):
    engine = make_engine()
    before = dict(engine.indexes)
    with pytest.raises(DocumentError):
        engine.add_document(111, "../evil.txt", b"text", user_id=1)
    with pytest.raises(DocumentError):
        engine.add_document(111, "empty.txt", b"", user_id=1)
    assert engine.indexes == before
    assert not (engine.settings.state_dir / "guilds" / "111" / "docs").exists()


def test_second_writer_is_told_busy(make_engine):
    engine = make_engine()
    with engine._exclusive(), pytest.raises(Busy, match="already running"):
        engine.reindex()


def test_state_survives_a_restart(make_engine, embedder):
    engine = make_engine()
    engine.add_document(7, "notes.md", b"# Notes\n\nThe quorum is twelve members.", user_id=1)
    again = make_engine()
    assert "uploads/notes.md" in [d.doc_id for d in again.documents(7)]
    assert again.ask("What is the quorum?", guild_id=7).found


def test_dense_ranking_counts_the_best_sentence(engine):
    """A passage ranks by its own cosine plus its best sentence's, so one matching sentence in
    a long paragraph lifts it: here it changes the order for at least one question."""
    reordered = 0
    for question in ["did corbyn oppose austerity", "How has he coped with all the smears?"]:
        hits = engine.search(question, k=12, mode="dense")
        combined = [h.dense_score + max(h.sentence_scores) for h in hits]
        assert combined == sorted(combined, reverse=True)
        reordered += [h.dense_score for h in hits] != sorted(
            (h.dense_score for h in hits), reverse=True
        )
    assert reordered


# -- many servers, several processes -------------------------------------------------------------

QUORUM = b"# Notes\n\nThe quorum of the harbour board is twelve members."


def test_start_up_loads_no_server_index_until_its_first_question(make_engine):
    engine = make_engine()
    for guild in (7, 8, 9):
        engine.add_document(guild, "notes.md", QUORUM, user_id=1)
    again = make_engine()
    assert list(again.indexes) == ["shared"] and again.guilds.loads == 0
    assert again.ask("What is the quorum?", guild_id=8).found
    assert sorted(again.indexes) == ["8", "shared"] and again.guilds.loads == 1
    again.ask("What is the quorum of the board?", guild_id=8)
    assert again.guilds.loads == 1 and again.guilds.hits >= 1
    assert not again.ask("What is the quorum?", guild_id=10).found  # no uploads: shared only


def test_a_process_never_touches_a_server_on_another_shard(make_engine):
    ours, theirs = (5 << 22) | 1, (4 << 22) | 1  # shards 1 and 0 of 2
    engine = make_engine(shard_count=2, shard_ids=(1,))
    engine.add_document(ours, "notes.md", QUORUM, user_id=1)
    guilds = engine.settings.state_dir / "guilds"
    for write in (
        lambda: engine.add_document(theirs, "notes.md", QUORUM, user_id=1),
        lambda: engine.remove_document(theirs, "uploads/notes.md"),
        lambda: engine.reindex(theirs),
        lambda: engine.ask("What is the quorum?", guild_id=theirs),
    ):
        with pytest.raises(Error, match=r"is on shard 0 of 2, which another process serves"):
            write()
    assert sorted(p.name for p in guilds.iterdir()) == [str(ours)]
    assert engine.ask("What is the quorum?", guild_id=ours).found


def test_a_shared_reindex_elsewhere_is_swapped_in_without_a_restart(make_engine):
    writer, follower = make_engine(), make_engine()
    assert not follower.refresh()  # nothing new
    (writer.settings.data_dir / "harbour.txt").write_text(
        "The Walthamstow harbour board meets every Thursday at dawn.", encoding="utf-8"
    )
    question = "When does the harbour board meet?"
    assert not follower.ask(question).found
    writer.reindex()
    assert follower.shared_version != writer.shared_version
    assert follower.refresh() and not follower.refresh()
    assert follower.shared_version == writer.shared_version
    assert follower.ask(question).citations[0].chunk.doc_id == "harbour.txt"


def test_one_process_at_a_time_writes_the_shared_corpus(make_engine):
    engine = make_engine()
    with engine.shared_store.lock():  # as another process re-indexing holds it
        with pytest.raises(Busy, match="already running"):
            engine.reindex()
        with pytest.raises(Busy):
            make_engine().shared_store.lock().__enter__()
    assert engine.reindex()[0].documents == 1  # free again


def test_a_half_copied_shared_version_is_not_swapped_in(make_engine, caplog):
    engine = make_engine()
    store = engine.shared_store.folder
    copy = store / "v9"  # as `rsync` of a new version, before its manifest arrives
    shutil.copytree(store / engine.shared_version, copy)
    (copy / "manifest.json").unlink()
    (store / "CURRENT").write_text("v9", encoding="utf-8")
    before = engine.shared
    assert not engine.refresh() and not engine.refresh()
    assert engine.shared is before and engine.ask("Who is Kate Dove?").found
    assert [r.levelname for r in caplog.records if "Still answering" in r.message] == ["ERROR"]


def test_a_read_only_shared_index_is_followed_not_written(make_engine, monkeypatch, caplog):
    """A copy or mount of the corpus's index that this machine cannot write (EROFS)."""
    import index.store

    writer = make_engine()
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith("LOCK") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(index.store.os, "open", read_only)
    follower = make_engine()
    assert any("is read-only here" in r.message for r in caplog.records)
    with pytest.raises(Error, match=r"Could not save the new index \(Read-only file system\)"):
        follower.reindex()
    monkeypatch.setattr(index.store.os, "open", real_open)
    (writer.settings.data_dir / "harbour.txt").write_text("The harbour board meets on Thursdays.")
    writer.reindex()
    monkeypatch.setattr(index.store.os, "open", read_only)
    assert follower.refresh() and follower.shared_version == writer.shared_version
