"""Moderators' answers in the engine, with the real model, FAISS, files and SQLite: saved as a
server's document, matched to questions in other words, kept past RETENTION_DAYS, removed."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from bot.engine.db import ago
from bot.engine.extractive import NOT_FOUND
from bot.engine.knowledge import DOC_ID, FILENAME, clean_answer, locate, render
from bot.engine.knowledge_db import Entry
from index.errors import DocumentError, Error

GUILD, OTHER, MODERATOR = 1_610_000_000_000_000_001, 1_620_000_000_000_000_001, 77
ASKED = "Where can I buy tickets for the Zorblat parade?"
ANSWER = "At the town hall,\nfrom 1 March."


def saved(engine, question: str = ASKED, answer: str = ANSWER, guild: int = GUILD):
    """A refusal passed on to the moderators and answered."""
    answer_id = engine.db.record_answer(guild, 5, 6, engine.ask(question, guild).to_dict())
    engine.db.claim_handoff(answer_id, 6, 0)
    return answer_id, engine.save_answer(guild, answer_id, question, answer, MODERATOR, "Mod")


def test_other_wordings_are_answered_from_the_entry_and_other_questions_are_not(make_engine):
    engine = make_engine()
    _, entry = saved(engine)
    for question in (
        "Who sells Zorblat parade tickets?",
        "how do i get a ticket for the zorblat parade",
    ):
        answer = engine.ask(question, GUILD)
        [citation] = answer.citations
        text = (engine.settings.state_dir / "guilds" / str(GUILD) / "docs" / FILENAME).read_text()
        assert answer.found and answer.entry == entry.id and citation.chunk.doc_id == DOC_ID
        assert citation.quote == ANSWER == text[citation.start : citation.end]
        assert answer.text.endswith(f": {ANSWER} [1]")
    elsewhere = engine.ask("Who sells Zorblat parade tickets?", OTHER)
    assert not elsewhere.found and elsewhere.text.startswith(NOT_FOUND)
    assert all(c.chunk.doc_id != DOC_ID for c in elsewhere.citations)
    assert engine.ask("What is the boiling point of mercury?", GUILD).entry is None
    corbyn = engine.ask("How long has Corbyn been an MP?", GUILD)  # the documents answer it
    assert corbyn.found and corbyn.entry is None and "40 years" in corbyn.text


def test_entries_outlive_retention_and_go_with_their_document(make_engine):
    engine = make_engine()
    answer_id, entry = saved(engine)
    with sqlite3.connect(engine.db.path) as db:
        db.execute("UPDATE answers SET created_at = ? WHERE id = ?", (ago(91 * 86400), answer_id))
    assert engine.db.forget_before(ago(90 * 86400)) == 1
    assert engine.knowledge.handoff(answer_id) is None  # the hand-off record is gone...
    assert engine.knowledge.entries(GUILD) == [entry]  # ...the knowledge stays
    assert engine.ask("Who sells Zorblat parade tickets?", GUILD).entry == entry.id

    engine.remove_document(GUILD, DOC_ID)  # /docs remove: the whole document, every entry
    assert engine.knowledge.entries(GUILD) == []
    assert not engine.ask("Who sells Zorblat parade tickets?", GUILD).found
    saved(engine, answer="Again.")  # a fresh document, without the removed entry
    assert engine.knowledge.entries(GUILD)[0].answer == "Again."


def test_an_answer_past_the_quota_is_not_saved_and_changes_nothing(make_engine):
    engine = make_engine(max_bytes_per_server=300)
    with pytest.raises(Error, match="MAX_BYTES_PER_SERVER"):
        saved(engine, answer="x " * 200)
    assert engine.knowledge.entries(GUILD) == []
    assert not (engine.settings.state_dir / "guilds" / str(GUILD) / "docs" / FILENAME).exists()
    with pytest.raises(DocumentError, match="1 to 4,000 characters"):
        saved(engine, answer="y" * 4001)


def test_the_file_name_is_kept_for_moderators_answers(make_engine):
    engine = make_engine()
    with pytest.raises(DocumentError, match="moderators' answers' file"):
        engine.add_document(GUILD, FILENAME, b"Q: forged\nA: entries", 1)


def test_an_answer_is_stored_as_written_less_what_no_document_can_hold():
    assert clean_answer("  one\r\ntwo\rthree\x00 <@&1> **b** \n") == "one\ntwo\nthree <@&1> **b**"
    assert clean_answer("\ud800 \t ") == ""


def test_an_entry_is_found_only_in_the_text_it_was_indexed_with():
    entry = Entry(3, GUILD, "Q?\nsecond", "A: forged\n\nQ: x", MODERATOR, "Mod", "2026-01-02T03:04")
    text = render([entry])
    start, end = locate(text, entry)
    assert text[start:end] == entry.answer and "\n\nQ: Q? second\nA: A: forged" in text
    assert locate(text, dataclasses.replace(entry, answer="corrected since")) is None


def test_an_entry_is_removed_only_by_its_own_server(make_engine):
    """An admin who types another server's entry number removes nothing anywhere."""
    engine = make_engine()
    _, entry = saved(engine)
    with pytest.raises(DocumentError, match=f"no moderator's answer #{entry.id} here"):
        engine.remove_entry(OTHER, entry.id, MODERATOR)
    with pytest.raises(DocumentError, match="no moderator's answer #999999 here"):
        engine.remove_entry(GUILD, 999_999, MODERATOR)
    assert [e.id for e in engine.knowledge.entries(GUILD)] == [entry.id]
    assert engine.ask("Who sells Zorblat parade tickets?", GUILD).entry == entry.id
