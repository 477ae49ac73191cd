"""SQLite records: uploaded documents, answers given, members' votes, hand-offs, server settings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from index.errors import Error

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    guild_id INTEGER NOT NULL, doc_id TEXT NOT NULL, title TEXT NOT NULL,
    added_by INTEGER NOT NULL, added_at TEXT NOT NULL, PRIMARY KEY (guild_id, doc_id));
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY, guild_id INTEGER, channel_id INTEGER, user_id INTEGER NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    answer_id INTEGER NOT NULL REFERENCES answers(id), user_id INTEGER NOT NULL,
    vote INTEGER NOT NULL CHECK (vote IN (-1, 1)), created_at TEXT NOT NULL,
    PRIMARY KEY (answer_id, user_id));
"""
# Each step moves a database from version n to n + 1 (PRAGMA user_version); databases made
# before versions existed are version 0 and keep their rows.
MIGRATIONS = (
    """
    ALTER TABLE answers ADD COLUMN found INTEGER;
    ALTER TABLE answers ADD COLUMN message_id INTEGER;
    UPDATE answers SET found = json_extract(answer, '$.found') = 1;
    CREATE INDEX answers_by_guild ON answers (guild_id, created_at);
    CREATE INDEX answers_by_age ON answers (created_at);
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY, handoff_channel INTEGER, handoff_role INTEGER,
        channels TEXT NOT NULL DEFAULT '[]', updated_by INTEGER, updated_at TEXT);
    CREATE TABLE handoffs (
        answer_id INTEGER PRIMARY KEY REFERENCES answers(id), user_id INTEGER NOT NULL,
        message_id INTEGER, created_at TEXT NOT NULL);
    CREATE INDEX handoffs_by_user ON handoffs (user_id, created_at);
    """,
    # Moderators' answers (bot/engine/knowledge_db.py). Entries keep their own copy of the
    # question: they outlive RETENTION_DAYS, which deletes answers and hand-offs.
    """
    ALTER TABLE handoffs ADD COLUMN answered_by INTEGER;
    ALTER TABLE handoffs ADD COLUMN answered_at TEXT;
    ALTER TABLE handoffs ADD COLUMN entry_id INTEGER;
    CREATE TABLE knowledge (
        id INTEGER PRIMARY KEY, guild_id INTEGER NOT NULL, question TEXT NOT NULL,
        answer TEXT NOT NULL, answered_by INTEGER NOT NULL, answerer TEXT NOT NULL,
        answered_at TEXT NOT NULL);
    CREATE INDEX knowledge_by_guild ON knowledge (guild_id, id);
    """,
)


class DatabaseError(Error):
    """The database file could not be written or read (disk full, read-only, damaged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The bot's database could not be used ({reason}).")
        self.reason = reason


class HandoffRefused(Error):
    """A hand-off to the moderators that may not happen (again, or yet)."""


@dataclass(frozen=True)
class GuildSettings:
    """A server's own settings; the defaults mean no hand-off and answers in every channel."""

    handoff_channel: int | None = None
    handoff_role: int | None = None
    channels: tuple[int, ...] = ()  # where @mentions are answered; empty: everywhere


@dataclass(frozen=True)
class Asked:
    """A question asked, the answer it got and the votes on it."""

    answer_id: int
    guild_id: int | None
    channel_id: int | None
    message_id: int | None  # None for private answers, which cannot be linked to
    user_id: int
    question: str
    answer: str
    found: bool
    created_at: str
    ups: int = 0
    downs: int = 0


_ASKED = (
    "SELECT answers.id, guild_id, channel_id, message_id, answers.user_id, question,"
    " json_extract(answer, '$.answer'), found, answers.created_at,"
    " COALESCE(SUM(vote = 1), 0), COALESCE(SUM(vote = -1), 0)"
    " FROM answers LEFT JOIN votes ON votes.answer_id = answers.id"
)


def _asked(row: tuple) -> Asked:
    *head, found, created_at, ups, downs = row
    return Asked(*head, bool(found), created_at, int(ups), int(downs))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def ago(seconds: float) -> str:
    """The time `seconds` ago, as the database writes times (ISO 8601, UTC, comparable)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="seconds")


class Database:
    """One SQLite file in WAL mode; every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        for n, step in enumerate(MIGRATIONS, 1):
            with self._connect() as db:  # one step per transaction: all of it or none
                db.execute("BEGIN IMMEDIATE")  # so a second process starting waits, then skips
                if db.execute("PRAGMA user_version").fetchone()[0] >= n:
                    continue
                for statement in filter(str.strip, step.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {n}")

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One transaction on the file, for the engine's other record keepers."""
        return self._connect()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=10)
        except sqlite3.Error as err:
            raise DatabaseError(str(err)) from err
        try:
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable up to the last commit
            with db:  # commit on success, roll back on error
                yield db
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in a query, not the disk
        except sqlite3.Error as err:  # full, read-only, locked too long, damaged
            raise DatabaseError(str(err)) from err
        finally:
            db.close()

    def add_document(self, guild_id: int, doc_id: str, title: str, user_id: int) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                (guild_id, doc_id, title, user_id, _now()),
            )

    def remove_document(self, guild_id: int, doc_id: str) -> None:
        with self._connect() as db:
            db.execute(
                "DELETE FROM documents WHERE guild_id = ? AND doc_id = ?", (guild_id, doc_id)
            )

    def titles(self, guild_id: int) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT doc_id, title FROM documents WHERE guild_id = ?", (guild_id,))
            return dict(rows.fetchall())

    def record_answer(
        self, guild_id: int | None, channel_id: int | None, user_id: int, answer: dict
    ) -> int:
        """Store an answer given, returning its id (for the vote buttons)."""
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO answers (guild_id, channel_id, user_id, question, answer, found,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    channel_id,
                    user_id,
                    answer["question"],
                    json.dumps(answer),
                    bool(answer.get("found")),
                    _now(),
                ),
            )
            return int(cur.lastrowid)

    def set_message(self, answer_id: int, message_id: int, channel_id: int | None = None) -> None:
        """Remember the message showing an answer (and its channel, when it is a thread the bot
        started), for jump links and moderators' replies."""
        with self._connect() as db:
            db.execute(
                "UPDATE answers SET message_id = ?, channel_id = COALESCE(?, channel_id)"
                " WHERE id = ?",
                (message_id, channel_id, answer_id),
            )

    def asked(self, answer_id: int) -> Asked | None:
        with self._connect() as db:
            row = db.execute(_ASKED + " WHERE answers.id = ?", (answer_id,)).fetchone()
            return _asked(row) if row[0] is not None else None

    def answer(self, answer_id: int) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT answer FROM answers WHERE id = ?", (answer_id,)).fetchone()
            return json.loads(row[0]) if row else None

    def vote(self, answer_id: int, user_id: int, vote: int) -> None:
        """One vote per member per answer: voting again replaces the earlier vote."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO votes VALUES (?, ?, ?, ?) ON CONFLICT (answer_id, user_id)"
                " DO UPDATE SET vote = excluded.vote, created_at = excluded.created_at",
                (answer_id, user_id, vote, _now()),
            )

    # -- what members asked, for /insights and exports ------------------------------------------

    def guilds(self) -> list[int]:
        """Servers with questions on record."""
        with self._connect() as db:
            rows = db.execute("SELECT DISTINCT guild_id FROM answers WHERE guild_id IS NOT NULL")
            return sorted(g for (g,) in rows)

    def totals(self, guild_id: int, since: str) -> tuple[int, int, int, int, int]:
        """(questions, answered, members asking, 👍, 👎) for answers given since `since`."""
        with self._connect() as db:
            asked, answered, members = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(found), 0), COUNT(DISTINCT user_id) FROM answers"
                " WHERE guild_id = ? AND created_at >= ?",
                (guild_id, since),
            ).fetchone()
            up, down = db.execute(
                "SELECT COALESCE(SUM(vote = 1), 0), COALESCE(SUM(vote = -1), 0) FROM votes"
                " JOIN answers ON answers.id = votes.answer_id"
                " WHERE guild_id = ? AND answers.created_at >= ?",
                (guild_id, since),
            ).fetchone()
            return int(asked), int(answered), int(members), int(up), int(down)

    def unanswered(self, guild_id: int, since: str, limit: int) -> list[Asked]:
        """The latest questions the documents did not answer, newest first."""
        order = "AND NOT found GROUP BY answers.id ORDER BY answers.id DESC"
        return self._asked_since(guild_id, since, order, limit)

    def downvoted(self, guild_id: int, since: str, limit: int) -> list[Asked]:
        """The answers with the most 👎 (then the newest), each at least one."""
        order = "GROUP BY answers.id HAVING SUM(vote = -1) > 0 ORDER BY SUM(vote = -1) DESC,"
        return self._asked_since(guild_id, since, order + " answers.id DESC", limit)

    def _asked_since(self, guild_id: int, since: str, rest: str, limit: int) -> list[Asked]:
        with self._connect() as db:
            rows = db.execute(
                f"{_ASKED} WHERE guild_id = ? AND answers.created_at >= ? {rest} LIMIT ?",
                (guild_id, since, limit),
            )
            return [_asked(row) for row in rows]

    def forget_before(self, cutoff: str) -> int:
        """Delete questions asked before `cutoff`, with their votes and hand-offs; how many."""
        with self._connect() as db:
            old = "SELECT id FROM answers WHERE created_at < ?"
            db.execute(f"DELETE FROM votes WHERE answer_id IN ({old})", (cutoff,))
            db.execute(f"DELETE FROM handoffs WHERE answer_id IN ({old})", (cutoff,))
            return db.execute("DELETE FROM answers WHERE created_at < ?", (cutoff,)).rowcount

    # -- server settings and hand-offs ----------------------------------------------------------

    def settings(self, guild_id: int) -> GuildSettings:
        with self._connect() as db:
            row = db.execute(
                "SELECT handoff_channel, handoff_role, channels FROM guild_settings"
                " WHERE guild_id = ?",
                (guild_id,),
            ).fetchone()
        if row is None:
            return GuildSettings()
        return GuildSettings(row[0], row[1], tuple(json.loads(row[2])))

    def save_settings(self, guild_id: int, settings: GuildSettings, user_id: int) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO guild_settings VALUES (?, ?, ?, ?, ?, ?)",
                (
                    guild_id,
                    settings.handoff_channel,
                    settings.handoff_role,
                    json.dumps(list(settings.channels)),
                    user_id,
                    _now(),
                ),
            )

    def claim_handoff(self, answer_id: int, user_id: int, cooldown: float) -> None:
        """Claim an answer's one hand-off for a member who has not handed one off lately."""
        with self._connect() as db:
            claimed = db.execute(
                "INSERT OR IGNORE INTO handoffs (answer_id, user_id, created_at) SELECT ?, ?, ?"
                " WHERE NOT EXISTS (SELECT 1 FROM handoffs WHERE user_id = ? AND created_at > ?)",
                (answer_id, user_id, _now(), user_id, ago(cooldown)),
            ).rowcount
            if claimed:
                return
            if db.execute("SELECT 1 FROM handoffs WHERE answer_id = ?", (answer_id,)).fetchone():
                raise HandoffRefused("This question has already been passed on to the moderators.")
            (last,) = db.execute(
                "SELECT MAX(created_at) FROM handoffs WHERE user_id = ?", (user_id,)
            ).fetchone()
        wait = cooldown - (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
        raise HandoffRefused(
            f"You passed a question on a moment ago; you can pass on another in "
            f"{max(1, round(wait / 60))} min."
        )

    def handoff_posted(self, answer_id: int, message_id: int | None) -> None:
        """Record the moderators' post of a claimed hand-off, or (None) give the claim back."""
        with self._connect() as db:
            if message_id is None:
                db.execute("DELETE FROM handoffs WHERE answer_id = ?", (answer_id,))
            else:
                db.execute(
                    "UPDATE handoffs SET message_id = ? WHERE answer_id = ?",
                    (message_id, answer_id),
                )
