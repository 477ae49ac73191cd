"""SQLite records of moderators' answers: hand-offs answered, and the entries the bot answers
from (bot/engine/knowledge.py keeps them as a server document). Entries hold their own copy of
the question, so RETENTION_DAYS, which deletes questions and hand-offs, leaves them be."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from bot.engine.db import Database, HandoffRefused, _now

_ENTRY = "SELECT id, guild_id, question, answer, answered_by, answerer, answered_at FROM knowledge"


@dataclass(frozen=True)
class Entry:
    """A question a moderator answered, as this server's knowledge."""

    id: int
    guild_id: int
    question: str
    answer: str  # exactly as the moderator wrote it (line endings and control characters aside)
    answered_by: int
    answerer: str  # the moderator's name when they answered
    answered_at: str

    @property
    def date(self) -> str:
        return self.answered_at[:10]


@dataclass(frozen=True)
class Handoff:
    """A question passed on to the moderators, and whether one of them answered it."""

    answer_id: int
    guild_id: int | None
    passed_by: int
    message_id: int | None  # the post in the moderators' channel
    answered_by: int | None
    answered_at: str | None
    entry_id: int | None  # the entry the answer was saved as


@dataclass(frozen=True)
class Moderated:
    """An answered hand-off with the moderator's answer, as `feedback export` writes it."""

    answer_id: int
    guild_id: int
    question: str
    answer_given: str  # the bot's answer, before the moderator's
    found: bool
    answer: str  # the moderator's (the entry's, corrected since perhaps)


class KnowledgeRecords:
    """Moderators' answers in the bot's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- hand-offs ------------------------------------------------------------------------------

    def handoff(self, answer_id: int) -> Handoff | None:
        with self.db.transaction() as db:
            row = db.execute(
                "SELECT handoffs.answer_id, guild_id, handoffs.user_id, handoffs.message_id,"
                " answered_by, answered_at, entry_id FROM handoffs"
                " JOIN answers ON answers.id = handoffs.answer_id WHERE handoffs.answer_id = ?",
                (answer_id,),
            ).fetchone()
        return Handoff(*row) if row else None

    def claim_answer(self, answer_id: int, user_id: int) -> None:
        """Mark a hand-off answered by `user_id`, unless someone answered it already."""
        with self.db.transaction() as db:
            claimed = db.execute(
                "UPDATE handoffs SET answered_by = ?, answered_at = ?"
                " WHERE answer_id = ? AND answered_at IS NULL",
                (user_id, _now(), answer_id),
            ).rowcount
        if not claimed:
            raise HandoffRefused(answered(self.handoff(answer_id)))

    def set_entry(self, answer_id: int, entry_id: int) -> None:
        with self.db.transaction() as db:
            db.execute(
                "UPDATE handoffs SET entry_id = ? WHERE answer_id = ?", (entry_id, answer_id)
            )

    def handoff_counts(self, guild_id: int, since: str) -> tuple[int, int, int]:
        """(hand-offs answered, hand-offs open, questions answered from entries) since `since`."""
        with self.db.transaction() as db:
            done, left = db.execute(
                "SELECT COALESCE(SUM(answered_at IS NOT NULL), 0),"
                " COALESCE(SUM(answered_at IS NULL), 0) FROM handoffs"
                " JOIN answers ON answers.id = handoffs.answer_id"
                " WHERE guild_id = ? AND handoffs.created_at >= ?",
                (guild_id, since),
            ).fetchone()
            (known,) = db.execute(
                "SELECT COUNT(*) FROM answers WHERE guild_id = ? AND created_at >= ?"
                " AND json_extract(answer, '$.entry') IS NOT NULL",
                (guild_id, since),
            ).fetchone()
        return int(done), int(left), int(known)

    def moderated(self, guild_id: int, since: str) -> list[Moderated]:
        """Answered hand-offs whose entry is still kept, oldest first."""
        with self.db.transaction() as db:
            rows = db.execute(
                "SELECT answers.id, answers.guild_id, answers.question,"
                " json_extract(answers.answer, '$.answer'), answers.found, knowledge.answer"
                " FROM handoffs JOIN answers ON answers.id = handoffs.answer_id"
                " JOIN knowledge ON knowledge.id = handoffs.entry_id"
                " WHERE answers.guild_id = ? AND handoffs.answered_at >= ? ORDER BY answers.id",
                (guild_id, since),
            ).fetchall()
        return [Moderated(a, g, q, given, bool(found), ans) for a, g, q, given, found, ans in rows]

    # -- entries --------------------------------------------------------------------------------

    def entries(self, guild_id: int) -> list[Entry]:
        with self.db.transaction() as db:
            rows = db.execute(_ENTRY + " WHERE guild_id = ? ORDER BY id", (guild_id,))
            return [Entry(*row) for row in rows]

    def entry(self, guild_id: int, entry_id: int) -> Entry | None:
        with self.db.transaction() as db:
            row = db.execute(
                _ENTRY + " WHERE guild_id = ? AND id = ?", (guild_id, entry_id)
            ).fetchone()
        return Entry(*row) if row else None

    def put(
        self,
        guild_id: int,
        question: str,
        answer: str,
        user_id: int,
        name: str,
        replaces: int | None,
    ) -> Entry:
        """Add an entry, or correct entry `replaces` (its question stays) when it exists."""
        with self.db.transaction() as db:
            values = (answer, user_id, name, _now())
            cur = db.execute(
                "UPDATE knowledge SET answer = ?, answered_by = ?, answerer = ?, answered_at = ?"
                " WHERE guild_id = ? AND id = ?",
                (*values, guild_id, replaces),
            )
            if not cur.rowcount:
                cur = db.execute(
                    "INSERT INTO knowledge (guild_id, question, answer, answered_by, answerer,"
                    " answered_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (guild_id, question, *values),
                )
                replaces = cur.lastrowid
            return Entry(*db.execute(_ENTRY + " WHERE id = ?", (replaces,)).fetchone())

    def restore(self, guild_id: int, entry_id: int, previous: Entry | None) -> None:
        """Undo a `put`: the entry as it was, or none."""
        with self.db.transaction() as db:
            db.execute("DELETE FROM knowledge WHERE guild_id = ? AND id = ?", (guild_id, entry_id))
            if previous is not None:
                db.execute("INSERT INTO knowledge VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(previous))

    def remove(self, guild_id: int, entry_id: int) -> None:
        with self.db.transaction() as db:
            db.execute("DELETE FROM knowledge WHERE guild_id = ? AND id = ?", (guild_id, entry_id))

    def forget(self, guild_id: int) -> int:
        """Delete every entry of a server (its document was removed); how many."""
        with self.db.transaction() as db:
            return db.execute("DELETE FROM knowledge WHERE guild_id = ?", (guild_id,)).rowcount


def answered(handoff: Handoff | None) -> str:
    """What a moderator is told who tries to answer a hand-off that is answered or gone."""
    if handoff is None:
        return "That hand-off is no longer on record (old questions are deleted: RETENTION_DAYS)."
    when = (handoff.answered_at or "")[:10]
    return f"This question was already answered by <@{handoff.answered_by}> on {when}."
