"""Moderators' answers as what the bot knows: a server's entries kept as one of its documents
("Moderator answers", a text file the bot writes in the server's folder), indexed like any
upload, and matched to later questions asked in other words.

The database holds the entries (bot/engine/knowledge_db.py); the file is written from them under
the corpus's write lock, so /docs list, the quotas and the index treat it as any document. A
match quotes the moderator's whole answer: exactly the file's text between the citation's
offsets. The file's passages are left out of the extractive answers, which would quote a stored
question or half an answer; only a match answers from it.
"""

from __future__ import annotations

import logging
import os
import sys
import unicodedata
from pathlib import Path

import numpy as np

from bot.config import Settings
from bot.engine.answers import Answer, Citation
from bot.engine.corpus_web import WebCorpus
from bot.engine.db import Database
from bot.engine.folders import UPLOADS, check_room, storage_error
from bot.engine.insights import CachedEncode
from bot.engine.knowledge_db import Entry, KnowledgeRecords
from index.embedder import Embedder
from index.errors import DocumentError, Error
from index.indexer import Report
from index.loaders import clipped_line, load_bytes
from index.records import Chunk
from index.store import DocInfo

log = logging.getLogger(__name__)

TITLE = "Moderator answers"
FILENAME = "moderator-answers.txt"
DOC_ID = UPLOADS + FILENAME
INTRO = (
    f"{TITLE}\n\nQuestions members asked here that the documents did not answer, answered by "
    "this server's moderators."
)
MAX_ANSWER = 4000  # characters: what Discord's text input holds
# The cosine of a question and an entry's question at which the entry answers it: when the
# documents refuse, and (stricter) instead of the documents' answer. Chosen on the calibrate
# split of tests/qa/unanswered_groups.jsonl with `python bench/known_threshold.py`.
KNOWN = 0.6
KNOWN_OVER_DOCUMENTS = 0.8


def clean_answer(text: str) -> str:
    """A moderator's answer as stored and quoted: line endings as \\n, no control characters
    (a NUL would make the document unreadable), no surrounding whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    keep = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs"))
    return keep.strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def block(entry: Entry) -> tuple[str, int]:
    """An entry as the document holds it, and where its answer starts in that text."""
    head = f"Q: {_one_line(entry.question)}\nA: "
    tail = f"\n(answered by {_one_line(entry.answerer)} on {entry.date})"
    return head + entry.answer + tail, len(head)


def render(entries: list[Entry]) -> str:
    """The server's document: a short introduction, then one block per entry."""
    return INTRO + "".join(f"\n\n{block(e)[0]}" for e in entries) + "\n"


def locate(text: str, entry: Entry) -> tuple[int, int] | None:
    """The offsets of an entry's answer in the indexed document's text (None until the entry is
    indexed, or after it was corrected or removed)."""
    whole, offset = block(entry)
    at = text.find(whole)
    return None if at < 0 else (at + offset, at + offset + len(entry.answer))


class Knowledge(WebCorpus):
    """The corpus, with each server's moderators' answers saved, removed and matched."""

    def __init__(self, settings: Settings, embedder: Embedder, db: Database | None = None) -> None:
        super().__init__(settings, embedder, db)
        self.knowledge = KnowledgeRecords(self.db)
        self._questions = CachedEncode(embedder.encode)  # each entry's question embedded once

    def add_document(
        self, guild_id: int, filename: str, data: bytes, user_id: int, title: str | None = None
    ) -> Report:
        if filename.lower() == FILENAME:
            raise DocumentError(f"{FILENAME} is the moderators' answers' file; rename yours.")
        return super().add_document(guild_id, filename, data, user_id, title)

    def remove_document(self, guild_id: int, doc_id: str) -> Report:
        report = super().remove_document(guild_id, doc_id)
        if doc_id == DOC_ID:  # the whole document: every entry goes with it
            forgot = self.knowledge.forget(guild_id)
            log.info("forgot %d moderators' answers of guild %s", forgot, guild_id)
        return report

    def save_answer(
        self, guild_id: int, answer_id: int, question: str, answer: str, user_id: int, name: str
    ) -> Entry:
        """Save a moderator's answer to a hand-off as this server's knowledge, indexed at once.
        It corrects the entry the bot's answer came from, if it came from one."""
        self._own(guild_id)
        text = clean_answer(answer)
        if not text or len(text) > MAX_ANSWER:
            raise DocumentError(f"An answer holds 1 to {MAX_ANSWER:,} characters.")
        replaces = (self.db.answer(answer_id) or {}).get("entry")
        with self._exclusive(wait=True):
            self._tidy(guild_id)
            previous = self.knowledge.entry(guild_id, replaces) if replaces else None
            entry = self.knowledge.put(
                guild_id, question, text, user_id, name, previous and previous.id
            )
            try:
                self._write_entries(guild_id, user_id)
            except (OSError, Error) as err:
                self.knowledge.restore(guild_id, entry.id, previous)
                raise storage_error(err, "the answer as this server's knowledge") from err
        self.knowledge.set_entry(answer_id, entry.id)
        return entry

    def remove_entry(self, guild_id: int, entry_id: int, user_id: int) -> Entry:
        """Remove one of this server's moderators' answers; the bot no longer answers from it."""
        self._own(guild_id)
        with self._exclusive(wait=True):
            self._tidy(guild_id)
            entry = self.knowledge.entry(guild_id, entry_id)
            if entry is None:
                raise DocumentError(
                    f"There is no moderator's answer #{entry_id} here; /answers list shows them."
                )
            self.knowledge.remove(guild_id, entry_id)
            try:
                self._write_entries(guild_id, user_id)
            except (OSError, Error) as err:
                self.knowledge.restore(guild_id, entry_id, entry)
                raise storage_error(err) from err
        return entry

    def _write_entries(self, guild_id: int, user_id: int) -> None:
        """Write the server's entries as its document and index it (under the write lock). The
        document counts towards the server's quotas; on failure the previous file is put back."""
        entries = self.knowledge.entries(guild_id)
        folder = self._docs(guild_id)
        path = folder / FILENAME
        old = path.read_bytes() if path.is_file() else None
        data = render(entries).encode() if entries else None
        read = {}
        if data is not None:
            most = self.settings.max_documents_per_server if old is None else sys.maxsize
            room = self.settings.max_bytes_per_server
            check_room(folder, len(data) - len(old or b""), most, room)
            read[DOC_ID] = load_bytes(FILENAME, data, DOC_ID, TITLE)
        try:
            _replace(path, data)
            if data is not None:
                self.db.add_document(guild_id, DOC_ID, TITLE, user_id)
            self._update(str(guild_id), read=read)
        except (OSError, Error):
            _replace(path, old)
            raise
        if data is None:
            self.db.remove_document(guild_id, DOC_ID)

    # -- answering from it ------------------------------------------------------------------------

    def or_known(self, question: str, guild_id: int | None, answer: Answer) -> Answer:
        """The moderators' answer to the same question in other words, when there is one close
        enough (closer still when the documents answered); else `answer`."""
        if guild_id is None:
            return answer
        known = self.worker.call(self._known, question, guild_id)
        if known is None or known.citations[0].score < (
            KNOWN_OVER_DOCUMENTS if answer.found else KNOWN
        ):
            return answer
        return known

    def _known(self, question: str, guild_id: int) -> Answer | None:
        """The entry whose question is closest to `question`, its answer quoted whole."""
        index = self.guilds.get(guild_id)
        doc = index.docs.get(DOC_ID) if index is not None else None
        if doc is None:
            return None
        entries = self.knowledge.entries(guild_id)
        found = [(e, span) for e in entries if (span := locate(doc.text, e)) is not None]
        if not found:
            return None
        cosines = (
            self._questions([e.question for e, _ in found]) @ self.embedder.encode([question])[0]
        )
        best = int(np.argmax(cosines))
        (entry, (start, end)), cosine = found[best], float(cosines[best])
        where = f"answered by {_one_line(entry.answerer)} on {entry.date}"
        chunk = Chunk(DOC_ID, doc.title, start, end, doc.text[start:end], where, ((start, end),))
        asked = clipped_line(entry.question, 150)
        lead = f"According to “{doc.title}” (asked as “{asked}”, {where}):"
        citation = Citation(1, chunk, chunk.text, start, end, cosine)
        return Answer(question, f"{lead} {chunk.text} [1]", (citation,), True, entry=entry.id)

    def entry_note(self, guild_id: int | None, info: DocInfo) -> str:
        """What /docs list says of the moderators' answers: how many entries they hold."""
        if guild_id is None or info.doc_id != DOC_ID:
            return ""
        count = len(self.knowledge.entries(guild_id))
        return f"{count} {'entry' if count == 1 else 'entries'} (/answers list)"


def _replace(path: Path, data: bytes | None) -> None:
    """Write `data` to `path` in one step (None: remove it)."""
    if data is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
