"""SQLite records: uploaded documents, answers given, and members' votes on them."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
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


class DatabaseError(Error):
    """The database file could not be written or read (disk full, read-only, damaged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The bot's database could not be used ({reason}).")
        self.reason = reason


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Database:
    """One SQLite file in WAL mode; every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

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
                "INSERT INTO answers (guild_id, channel_id, user_id, question, answer, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (guild_id, channel_id, user_id, answer["question"], json.dumps(answer), _now()),
            )
            return int(cur.lastrowid)

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

    def feedback(self, guild_id: int, limit: int = 5) -> tuple[int, int, list[tuple[str, int]]]:
        """(👍 total, 👎 total, the most down-voted questions with their 👎 counts)."""
        with self._connect() as db:
            up, down = db.execute(
                "SELECT COALESCE(SUM(vote = 1), 0), COALESCE(SUM(vote = -1), 0) FROM votes"
                " JOIN answers ON answers.id = votes.answer_id WHERE answers.guild_id = ?",
                (guild_id,),
            ).fetchone()
            worst = db.execute(
                "SELECT question, SUM(vote = -1) AS downs FROM votes JOIN answers"
                " ON answers.id = votes.answer_id WHERE answers.guild_id = ?"
                " GROUP BY answers.id HAVING downs > 0 ORDER BY downs DESC, answers.id DESC"
                " LIMIT ?",
                (guild_id, limit),
            ).fetchall()
            return int(up), int(down), [(q, int(n)) for q, n in worst]
