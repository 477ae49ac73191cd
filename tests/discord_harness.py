"""Running the real StatementBot against the loopback Discord stand-in (an engine over a copy of
the shipped data, fresh member ids, the bot started on servers a test builds); checks on what
it sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.app.client import StatementBot
from bot.config import Settings
from bot.engine import Engine
from index.chunking import paragraphs, sentences
from index.embedder import Embedder, Encoded
from tests.conftest import ROOT
from tests.fake_discord import FakeDiscord, FakeInteraction, Recorded, connected

Json = dict[str, Any]
Bot = tuple[FakeDiscord, StatementBot, Engine]

EPHEMERAL = 1 << 6
MANAGE_GUILD = 0x20
CONTENT_LIMIT, DESCRIPTION, EMBED_TOTAL, FIELD_NAME, FIELD_VALUE = 2000, 4096, 6000, 256, 1024
MAX_FIELDS = 25
REFUSED = "You need the Manage Server permission to do that."
# Routes whose JSON body is a message the bot shows (interaction callbacks carry it in "data").
_MESSAGE_ROUTES = {
    "/interactions/{interaction_id}/{token}/callback",
    "/webhooks/{app_id}/{token}",
    "/webhooks/{app_id}/{token}/messages/{message_id}",
    "/channels/{channel_id}/messages",
    "/channels/{channel_id}/messages/{message_id}",
}


class GatedEmbedder:
    """The real model, with a gate that can hold indexing mid-way (queries are never held).

    Only the indexer calls `encode_with_spans`; questions use `encode`. Closing the gate keeps a
    re-index running, inside the engine's write lock, until the test opens it again.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.model_id, self.dim = inner.name, inner.model_id, inner.dim
        self.worker = inner.worker
        self._open = threading.Event()
        self._open.set()
        self.entered = threading.Event()  # set when an indexing call reaches the gate

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed a query (never held)."""
        return self.inner.encode(texts)

    def encode_with_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> Encoded:
        """Embed chunks for the index, waiting while the gate is closed."""
        self.entered.set()
        if not self._open.wait(timeout=30):
            raise TimeoutError("the test never opened the indexing gate")
        return self.inner.encode_with_spans(texts, spans)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold every indexing call at the gate until the block ends."""
        self.entered.clear()
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    async def wait_entered(self, timeout: float = 10.0) -> None:
        """Wait (off the event loop) until an indexing call is held at the gate."""
        if not await asyncio.to_thread(self.entered.wait, timeout):
            raise TimeoutError("no indexing call reached the gate")


def add_thread(fake: FakeDiscord, parent_id: int, thread_id: int, owner_id: int, name: str) -> None:
    """A public thread a member started (before the bot connects: GUILD_CREATE lists it)."""
    parent = fake.channels[str(parent_id)]
    fake.channels[str(thread_id)] = {
        "id": str(thread_id), "type": 11, "guild_id": parent["guild_id"],
        "parent_id": parent["id"], "owner_id": str(owner_id), "name": name,
        "last_message_id": None, "rate_limit_per_user": 0, "message_count": 0, "member_count": 1,
        "total_message_sent": 0, "flags": 0,
        "thread_metadata": {"archived": False, "locked": False, "auto_archive_duration": 1440,
                            "archive_timestamp": "2024-01-01T00:00:00+00:00"},
    }  # fmt: skip


def open_engine(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, folder: str, **settings: Any
) -> Engine:
    """A real engine, opened, over a copy of the shipped data in a fresh `folder` (for a
    module-scoped fixture); `settings` are Settings' fields beyond the two folders."""
    tmp = tmp_path_factory.mktemp(folder)
    shutil.copytree(ROOT / "data", tmp / "data")
    engine = Engine(Settings(data_dir=tmp / "data", state_dir=tmp / "state", **settings), embedder)
    engine.open()
    return engine


def members(first: int) -> Callable[[], int]:
    """A source of member ids from `first` on; each call gives one no test has used yet (each
    member has their own cooldown). Give each module its own range."""
    return itertools.count(first).__next__


def as_admin(
    home: int, users: Callable[[], int]
) -> Callable[..., Awaitable[tuple[FakeInteraction, Json]]]:
    """`admin(fake, name, options)`: run a slash command as a new member of server `home`
    (another with `guild=`) with Manage Server (other rights with `permissions=`), and return
    the interaction and what they finally see."""

    async def admin(
        fake: FakeDiscord,
        name: str,
        options: dict | None = None,
        *,
        guild: int = home,
        permissions: int = MANAGE_GUILD,
        **kwargs: Any,
    ) -> tuple[FakeInteraction, Json]:
        ix = await fake.interact(
            name, options, guild_id=guild, user_id=users(), permissions=permissions, **kwargs
        )
        return ix, await fake.wait_answered(ix, timeout=30)

    return admin


@contextlib.asynccontextmanager
async def started(
    engine: Engine,
    build: Callable[[FakeDiscord], None],
    settings: Settings | None = None,
    **stand_in: Any,
) -> AsyncIterator[tuple[FakeDiscord, StatementBot]]:
    """A started stand-in (`stand_in`: FakeDiscord's options) with the servers `build` adds, and
    a ready StatementBot on it with `settings` (by default the engine's)."""
    fake = FakeDiscord(**stand_in)
    await fake.start()
    try:
        build(fake)
        bot = StatementBot(settings or engine.settings, engine, guild_ready_timeout=0.01)
        async with connected(fake, bot):
            yield fake, bot
    finally:
        await fake.stop()


def running(
    engine: Engine,
    settings: Settings,
    guilds: dict[int, int],
    threads: dict[int, tuple[int, int]] | None = None,
) -> contextlib.AbstractAsyncContextManager[tuple[FakeDiscord, StatementBot]]:
    """`started` with `guilds` ({guild id: channel id}) and members' `threads`
    ({thread id: (parent channel id, owner id)})."""

    def build(fake: FakeDiscord) -> None:
        for guild_id, channel_id in guilds.items():
            fake.add_guild(guild_id, f"Server {guild_id % 1000}", channel_ids=[channel_id])
        for thread_id, (parent_id, owner_id) in (threads or {}).items():
            add_thread(fake, parent_id, thread_id, owner_id, f"thread {thread_id % 1000}")

    return started(engine, build, settings)


# -- reading what the bot sent ------------------------------------------------------------------


def shown_payloads(fake: FakeDiscord, since: int = 0) -> list[tuple[Recorded, Json]]:
    """Each message body the bot sent from request `since` on, with its request."""
    return [(r, p) for r in fake.requests[since:] if (p := shown_payload(r)) is not None]


def shown_payload(rec: Recorded) -> Json | None:
    """The message a request shows (content, embeds, allowed mentions), or None for others."""
    if rec.route not in _MESSAGE_ROUTES or rec.method not in ("POST", "PATCH"):
        return None
    body = rec.json or {}
    if rec.route.endswith("/callback"):
        return body.get("data") if body.get("type") in (4, 7) else None
    return body


def assert_no_pings(fake: FakeDiscord, since: int = 0) -> int:
    """Every message the bot sent from request `since` on forbids all pings; return how many."""
    shown = shown_payloads(fake, since)
    for rec, payload in shown:
        mentions = payload.get("allowed_mentions")
        assert mentions is not None and mentions.get("parse") == [], (rec.method, rec.path, payload)
        assert not mentions.get("users") and not mentions.get("roles"), payload
    return len(shown)


def assert_within_limits(message: Json) -> None:
    """A message's content and embeds are within Discord's limits."""
    assert len(message["content"]) <= CONTENT_LIMIT
    assert len(message["embeds"]) <= 10
    for embed in message["embeds"]:
        fields = embed.get("fields", [])
        assert len(fields) <= MAX_FIELDS
        assert len(embed.get("title", "")) <= 256
        assert len(embed.get("description", "")) <= DESCRIPTION
        assert len(embed.get("footer", {}).get("text", "")) <= 2048
        for f in fields:
            assert 0 < len(f["name"]) <= FIELD_NAME and 0 < len(f["value"]) <= FIELD_VALUE, f
        total = (
            len(embed.get("title", ""))
            + len(embed.get("description", ""))
            + len(embed.get("footer", {}).get("text", ""))
            + sum(len(f["name"]) + len(f["value"]) for f in fields)
        )
        assert total <= EMBED_TOTAL


@dataclass(frozen=True)
class Source:
    """One citation as the embed lists it; `quote` only where the embed quotes it."""

    n: int
    title: str
    location: str
    url: str | None
    quote: str | None


_PLACE = re.compile(r"\[(\d+)\] (?:\[(.+?)\]\((\S+)\)|(.+?))(?= · \[\d+\] |$)")


def unescape(text: str) -> str:
    """Text as a member reads it: Markdown escapes removed."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def sources(message: Json, title: str = "Sources") -> list[Source]:
    """The citations in the embed titled `title` (none when there is no such embed).

    The embed's description holds each document's title in bold once, then its citations:
    `[n] location` (the location possibly a link), with a `> ` block quote below when quoted.
    """
    embeds = [e for e in message["embeds"] if e.get("title") == title]
    if not embeds:
        return []
    found: list[Source] = []
    doc = ""
    for line in embeds[0]["description"].split("\n"):
        if line.startswith("**") and line.endswith("**"):
            doc = unescape(line[2:-2])
        elif line.startswith("> "):
            last, more = found[-1], unescape(line[2:])
            quote = more if last.quote is None else f"{last.quote}\n{more}"
            found[-1] = dataclasses.replace(last, quote=quote)
        else:
            places = list(_PLACE.finditer(line))
            assert places, f"not a title, citation or quote line: {line!r}"
            for m in places:
                found.append(Source(int(m[1]), doc, unescape(m[2] or m[4]), m[3], None))
    return found


def shown_text(message: Json) -> str:
    """Everything a member reads in a message: its content and its embeds, unescaped."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields", [])]
        parts.append(embed.get("footer", {}).get("text", ""))
    return unescape("\n".join(parts))


def assert_each_quote_once(message: Json, document: str) -> list[str]:
    """No sentence of `document` shows twice in the message, whole or shortened (its first
    60 characters are counted); return the sentences it shows. Document titles may repeat."""
    text = shown_text(message)
    embeds = message.get("embeds") or []
    titles = {s.title for e in embeds for s in sources(message, e.get("title", ""))}
    shown = []
    for a, b in (s for p in paragraphs(document) for s in sentences(document, *p)):
        sentence = document[a:b]
        if sentence in titles:
            continue
        count = text.count(sentence[:60])
        assert count <= 1, f"shown {count} times: {sentence!r}\n{text}"
        shown += [sentence] * count
    return shown


def assert_exact_quote(quote: str, document: str) -> str:
    """A quote is exact document text (a shortened quote is an exact prefix + "…")."""
    if quote.endswith("…") and quote not in document:
        quote = quote.removesuffix("…").rstrip()
    assert quote and quote in document, f"not an exact quote: {quote!r}"
    return quote


def vote_buttons(message: Json) -> dict[str, str]:
    """The 👍/👎 buttons under an answer: {emoji: custom id}."""
    buttons = [c for row in message["components"] for c in row["components"] if c["type"] == 2]
    return {b["emoji"]["name"]: b["custom_id"] for b in buttons}


def state_snapshot(state_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under the state folder (but SQLite's) with its size and mtime."""
    return {
        str(p.relative_to(state_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(state_dir.rglob("*"))
        if p.is_file() and "sqlite3" not in p.name
    }
