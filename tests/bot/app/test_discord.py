"""The real bot end to end: StatementBot, a real Engine (model, FAISS, files, SQLite) and the
loopback Discord stand-in. Assertions are on what the bot actually sent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from bot.app.exts.ask import plain
from bot.config import Settings
from bot.engine import Engine
from bot.engine.extractive import NOT_FOUND
from index.embedder import Embedder
from index.errors import Error
from tests.conftest import ROOT, STATEMENT
from tests.discord_harness import (
    EPHEMERAL,
    MANAGE_GUILD,
    REFUSED,
    Bot,
    GatedEmbedder,
    as_admin,
    assert_each_quote_once,
    assert_exact_quote,
    assert_no_pings,
    assert_within_limits,
    members,
    open_engine,
    running,
    shown_payloads,
    sources,
    state_snapshot,
    vote_buttons,
)
from tests.fake_discord import FakeDiscord, FakeInteraction, Recorded

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("no_errors_logged")]

GUILD_A, CHANNEL_A = 1_210_000_000_000_000_001, 1_210_000_000_000_000_002
GUILD_B, CHANNEL_B = 1_220_000_000_000_000_001, 1_220_000_000_000_000_002
GUILD_C, CHANNEL_C = 1_230_000_000_000_000_001, 1_230_000_000_000_000_002
GUILDS = {GUILD_A: CHANNEL_A, GUILD_B: CHANNEL_B, GUILD_C: CHANNEL_C}
UPLOAD_LIMIT = 100_000
STATEMENT_TEXT = STATEMENT.read_text(encoding="utf-8")
BUSY = "A re-index is already running; try again when it has finished."
CORBYN = "How long has Corbyn been an MP?"
ZORBLAT = (
    "The Zorblat festival\n\n"
    "The Zorblat festival in Quenville is held every March on the frozen lake. "
    "Visitors skate between ice sculptures of herons while brass bands play.\n"
)
new_user = members(1_290_000_000_000_000_001)  # each member has their own cooldown
admin = as_admin(GUILD_A, new_user)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    """A real engine over a copy of the shipped data, its indexing gated for the re-index tests."""
    return open_engine(
        tmp_path_factory,
        GatedEmbedder(embedder),  # type: ignore[arg-type]
        "discord",
        discord_guild_ids=tuple(GUILDS),
        max_upload_bytes=UPLOAD_LIMIT,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_bot(engine: Engine) -> AsyncIterator[Bot]:
    """One stand-in and one bot for the module (tests use fresh members, so cooldowns don't mix)."""
    async with running(engine, engine.settings, GUILDS) as (fake, bot):
        yield fake, bot, engine


@pytest.fixture
def world(shared_bot: Bot) -> Iterator[Bot]:
    """The shared bot; every message it sends during the test must forbid all pings and show
    no sentence of the statement twice."""
    since = len(shared_bot[0].requests)
    yield shared_bot
    assert_no_pings(shared_bot[0], since)
    for _, message in shown_payloads(shared_bot[0], since):
        assert_each_quote_once(message, STATEMENT_TEXT)


async def ask(
    fake: FakeDiscord,
    question: str,
    *,
    guild: int = GUILD_A,
    user: int | None = None,
    **options: object,
) -> tuple[FakeInteraction, dict]:
    """Run /ask and return the interaction and the message the member finally sees."""
    ix = await fake.interact(
        "ask", {"question": question, **options}, guild_id=guild, user_id=user or new_user()
    )
    return ix, await fake.wait_answered(ix, timeout=30)


async def upload(
    fake: FakeDiscord,
    filename: str,
    data: bytes,
    *,
    guild: int = GUILD_A,
    permissions: int = MANAGE_GUILD,
) -> dict:
    """/docs add with a file served from the stand-in's CDN; return what the member sees."""
    attachment = fake.add_attachment(filename, data, "text/plain")
    _, shown = await admin(
        fake,
        "docs",
        subcommand="add",
        guild=guild,
        permissions=permissions,
        attachments={"file": attachment},
    )
    return shown


def callbacks(fake: FakeDiscord, ix: FakeInteraction) -> list[dict]:
    """The interaction's initial-response bodies, as the bot sent them."""
    return [r.json for r in fake.responses_for(ix) if r.route.endswith("/callback")]


async def reindex_when_idle(engine: Engine) -> None:
    """Re-index directly (to clean up), once any re-index the bot is running has finished."""

    def run() -> None:
        with engine._write:  # waits for the bot's re-index, if a failed test left one running
            pass
        engine.reindex()

    await asyncio.to_thread(run)


def votes_in_db(engine: Engine, answer_id: int) -> list[tuple[int, int]]:
    """(member, vote) rows for an answer, read straight from SQLite."""
    with sqlite3.connect(engine.db.path) as db:
        return db.execute(
            "SELECT user_id, vote FROM votes WHERE answer_id = ? ORDER BY user_id", (answer_id,)
        ).fetchall()


# -- /ask ---------------------------------------------------------------------------------------


async def test_ask_defers_then_answers_with_exact_cited_quotes(world: Bot) -> None:
    fake, _, _ = world
    since = len(fake.requests)
    ix, shown = await ask(fake, CORBYN)
    first = fake.responses_for(ix)[0]
    assert first.route.endswith("/callback") and first.json == {"type": 5}  # "thinking", public
    assert "over 40 years" in shown["content"] and "[1]" in shown["content"]
    assert shown["flags"] & EPHEMERAL == 0
    # The answer is stated once, in the content; the embed lists each source once, unquoted.
    quoted = assert_each_quote_once(shown, STATEMENT_TEXT)
    assert any("over 40 years" in q for q in quoted)
    assert all(q in shown["content"] for q in quoted)
    listed = sources(shown)
    assert [s.n for s in listed] == list(range(1, len(listed) + 1))
    assert {s.title for s in listed} == {STATEMENT_TEXT.split("\n", 1)[0]}
    assert all(s.quote is None and f"[{s.n}]" in shown["content"] for s in listed)
    years = re.search(r"over 40 years[^\[]*\[(\d+)\]", shown["content"])  # its marker
    assert listed[int(years[1]) - 1].location == "¶4"
    assert_within_limits(shown)
    assert set(vote_buttons(shown)) == {"👍", "👎"}
    assert assert_no_pings(fake, since) >= 1


async def test_the_bundled_reader_answers_and_refuses_through_discord(make_engine) -> None:
    engine = make_engine(reader="bundled")
    assert engine.reader is not None  # so the reader, not similarity, ranks the sentences
    async with running(engine, engine.settings, {GUILD_A: CHANNEL_A}) as (fake, _):
        _, shown = await ask(fake, CORBYN)
        assert "over 40 years" in shown["content"]
        assert any("over 40 years" in q for q in assert_each_quote_once(shown, STATEMENT_TEXT))
        _, refused = await ask(fake, "What is the boiling point of mercury?")
        assert refused["content"] == NOT_FOUND and refused["embeds"] == []
        assert assert_no_pings(fake) >= 2


async def test_private_ask_is_ephemeral(world: Bot) -> None:
    fake, _, _ = world
    ix, shown = await ask(fake, CORBYN, private=True)
    assert callbacks(fake, ix)[0] == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert shown["flags"] & EPHEMERAL and "over 40 years" in shown["content"]


async def test_unanswerable_question_says_so_without_sources(world: Bot) -> None:
    fake, _, _ = world
    _, shown = await ask(fake, "What is the boiling point of mercury?")
    assert shown["content"] == NOT_FOUND
    assert sources(shown) == [] and shown["embeds"] == []


async def test_near_miss_refusal_shows_what_might_be_related(world: Bot) -> None:
    fake, _, _ = world
    _, shown = await ask(fake, "When did Kate Dove become chair of Momentum?")
    assert shown["content"].startswith(f"{NOT_FOUND} These passages might be related: [1]")
    assert sources(shown) == [] and len(shown["embeds"]) == 1
    related = sources(shown, "Might be related")
    assert [s.n for s in related] == list(range(1, len(related) + 1))
    assert "Kate Dove" in related[0].quote
    for source in related:  # each passage is quoted once, in the embed, not in the short refusal
        assert_exact_quote(source.quote, STATEMENT_TEXT)
        assert source.quote[:40] not in shown["content"]
    assert len(assert_each_quote_once(shown, STATEMENT_TEXT)) == len(related)


async def test_mentions_and_markdown_in_a_question_never_ping(world: Bot) -> None:
    fake, _, _ = world
    since = len(fake.requests)
    question = (
        f"@everyone @here <@&{GUILD_A + 7}> <@{GUILD_A + 9}> **How long** has Corbyn been an _MP_?"
    )
    _, shown = await ask(fake, question)
    assert "over 40 years" in shown["content"]
    assert "@everyone" not in shown["content"] and "<@&" not in shown["content"]
    asked = await fake.message(question, guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=new_user())
    reply = await fake.wait_for_reply(asked, timeout=30)
    assert "over 40 years" in reply["content"]
    assert assert_no_pings(fake, since) == 2


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("**How long** has _Corbyn_ been an ~~MP~~ ||MP||?", "How long has Corbyn been an MP MP?"),
        (
            "<@123456789012345678> <@!123456789012345678> what about <#123456789012345678>?",
            "    what about  ?",
        ),
        ("<@&123456789012345678> <:party:123456789012345678> <a:wave:123456789012345678>", "   "),
        ("snake_case and 2*3*4 stay", "snake_case and 2*3*4 stay"),
    ],
)
async def test_plain_drops_discord_markup_but_keeps_words(text: str, question: str) -> None:
    assert plain(text).split() == question.split()


@pytest.mark.parametrize(
    ("question", "error"),
    [
        ("", "Please ask a question: the text was empty."),
        ("   \n\t ", "Please ask a question: the text was empty."),
        ("🙂🎉❓", "Please ask a question in words: that had only symbols or emoji."),
        (
            "<@&1210000000000000007> <:party:1210000000000000008>",
            "Please ask a question: the text was empty.",
        ),
    ],
)
async def test_empty_or_emoji_question_gets_a_clear_private_error(
    world: Bot, question: str, error: str
) -> None:
    fake, _, _ = world
    ix, shown = await ask(fake, question)
    assert callbacks(fake, ix)[0]["type"] == 4  # refused at once, no "thinking"
    assert shown["content"] == error and shown["flags"] & EPHEMERAL


async def test_long_answer_stays_within_discord_limits(world: Bot) -> None:
    fake, _, engine = world
    clause = (
        "the Quenville lighthouse keeper number {n}-{i} polished the great brass lantern of "
        "the Quenville lighthouse, logged the passing fishing boats, and wrote about the "
        "storms that battered the lighthouse on the northern cliffs"
    )
    sentences = [
        "The " + ", ".join(clause.format(n=n, i=i) for i in range(7))[4:] + "." for n in range(3)
    ]
    assert all(1_400 <= len(s) <= 1_700 for s in sentences)
    text = "The Quenville lighthouse\n\n" + " ".join(sentences) + "\n"
    added = await upload(fake, "quenville_lighthouse.txt", text.encode(), guild=GUILD_C)
    try:
        assert added["content"].startswith("Added `quenville_lighthouse.txt`")
        _, shown = await ask(
            fake, "Who polished the brass lantern of the Quenville lighthouse?", guild=GUILD_C
        )
        assert_within_limits(shown)
        listed = sources(shown)
        assert len(listed) >= 2  # too long for one message: the lead here, the quotes below
        assert len(assert_each_quote_once(shown, text)) == len(listed)
        for n, source in enumerate(listed, 1):
            assert f"[{n}]" in shown["content"] and source.location.startswith("¶")
            assert source.quote[:40] not in shown["content"]
            assert_exact_quote(source.quote, text)
        assert sum(len(s.quote) for s in listed) > 2_000  # more than a message could hold
    finally:
        await asyncio.to_thread(engine.remove_document, GUILD_C, "uploads/quenville_lighthouse.txt")


# -- @mentions, replies and threads -------------------------------------------------------------


async def test_mention_is_answered_and_a_reply_follows_up_in_context(world: Bot) -> None:
    fake, _, _ = world
    user = new_user()
    ignored = await fake.message(
        "chatting about Corbyn",
        guild_id=GUILD_A,
        channel_id=CHANNEL_A,
        user_id=user,
        mention_bot=False,
    )
    asked = await fake.message(CORBYN, guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=user)
    answer = await fake.wait_for_reply(asked, timeout=30)
    assert answer["message_reference"]["message_id"] == asked["id"]
    assert "over 40 years" in answer["content"] and sources(answer)
    assert any(r.path == f"/channels/{CHANNEL_A}/typing" for r in fake.requests)

    # A follow-up that only makes sense with the previous question: alone it is not answered.
    alone = await fake.message(
        "how many years?", guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=new_user()
    )
    assert (await fake.wait_for_reply(alone, timeout=30))["content"] == NOT_FOUND
    follow = await fake.message(
        "how many years?", guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=user, reply_to=answer
    )
    followed = await fake.wait_for_reply(follow, timeout=30)
    assert followed["message_reference"]["message_id"] == follow["id"]
    assert "over 40 years" in followed["content"]

    abbott = await fake.message(
        "what about Diane Abbott?",
        guild_id=GUILD_A,
        channel_id=CHANNEL_A,
        user_id=user,
        reply_to=followed,
    )
    about = await fake.wait_for_reply(abbott, timeout=30)
    assert "Diane Abbott" in about["content"]
    assert any("Diane Abbott" in q for q in assert_each_quote_once(about, STATEMENT_TEXT))
    assert sources(about) and all(s.quote is None for s in sources(about))
    replied_to = {
        (m.get("message_reference") or {}).get("message_id")
        for m in fake.channel_messages(CHANNEL_A)
    }
    assert ignored["id"] not in replied_to


async def test_reply_in_thread_then_follow_up_inside_it(engine: Engine) -> None:
    settings = dataclasses.replace(engine.settings, reply_in_thread=True)
    async with running(engine, settings, {GUILD_A: CHANNEL_A}) as (fake, _):
        user = new_user()
        asked = await fake.message(CORBYN, guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=user)
        answer = await fake.wait_for_reply(asked, timeout=30)
        thread = fake.channels[asked["id"]]
        assert answer["channel_id"] == thread["id"] and thread["type"] == 11
        assert thread["name"] == CORBYN and thread["parent_id"] == str(CHANNEL_A)
        assert "over 40 years" in answer["content"]
        inside = await fake.message(
            "how many years?",
            guild_id=GUILD_A,
            channel_id=int(thread["id"]),
            user_id=user,
            mention_bot=False,
        )
        followed = await fake.wait_for_reply(inside, timeout=30)
        assert followed["channel_id"] == thread["id"]
        assert "over 40 years" in followed["content"]
        assert assert_no_pings(fake) == 2


async def test_a_mention_in_a_members_thread_does_not_adopt_the_thread(engine: Engine) -> None:
    thread, owner = CHANNEL_A + 100, new_user()
    threads = {thread: (CHANNEL_A, owner)}
    async with running(engine, engine.settings, {GUILD_A: CHANNEL_A}, threads) as (fake, _):
        asked = await fake.message(CORBYN, guild_id=GUILD_A, channel_id=thread, user_id=owner)
        answer = await fake.wait_for_reply(asked, timeout=30)
        assert answer["channel_id"] == str(thread) and "over 40 years" in answer["content"]
        # The members go on talking in their thread: only a new mention is for the bot.
        chat = await fake.message(
            "how many years do we have left?",
            guild_id=GUILD_A,
            channel_id=thread,
            user_id=new_user(),
            mention_bot=False,
        )
        again = await fake.message(
            "what about Diane Abbott?", guild_id=GUILD_A, channel_id=thread, user_id=owner
        )
        assert "Diane Abbott" in (await fake.wait_for_reply(again, timeout=30))["content"]
        replied_to = {
            (m.get("message_reference") or {}).get("message_id")
            for m in fake.channel_messages(thread)
        }
        assert chat["id"] not in replied_to
        # Each answer shows "typing..." first, so an answer to the chat would have begun by now.
        typing = [r for r in fake.requests if r.path == f"/channels/{thread}/typing"]
        assert len(typing) == 2


async def test_a_known_failure_is_explained_on_both_paths(
    world: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _, engine = world
    failure = "The bot's database could not be used (disk full)."

    def full(*args: object) -> int:
        raise Error(failure)

    monkeypatch.setattr(engine.db, "record_answer", full)
    ix, shown = await ask(fake, CORBYN)
    assert shown["content"] == failure and callbacks(fake, ix)[0] == {"type": 5}
    asked = await fake.message(CORBYN, guild_id=GUILD_A, channel_id=CHANNEL_A, user_id=new_user())
    assert (await fake.wait_for_reply(asked, timeout=30))["content"] == failure


# -- votes and insights -------------------------------------------------------------------------


async def test_votes_are_one_per_member_and_summarised(world: Bot) -> None:
    fake, _, engine = world
    _, shown = await ask(fake, CORBYN, guild=GUILD_B)
    buttons = vote_buttons(shown)
    answer_id = int(buttons["👍"].split(":")[1])
    assert buttons == {"👍": f"vote:{answer_id}:1", "👎": f"vote:{answer_id}:-1"}
    assert engine.db.answer(answer_id)["question"] == CORBYN

    voter, other = new_user(), new_user()
    for user, emoji in ((voter, "👍"), (voter, "👎"), (other, "👍")):
        click = await fake.click(buttons[emoji], shown, guild_id=GUILD_B, user_id=user)
        thanks = await fake.wait_answered(click)
        assert thanks["content"] == "Thanks, your vote is recorded."
        assert thanks["flags"] & EPHEMERAL
    assert votes_in_db(engine, answer_id) == [(voter, -1), (other, 1)]

    # What /insights sums up (shown through Discord in tests/bot/app/test_admin_loop.py).
    assert engine.db.totals(GUILD_B, "")[3:] == (1, 1)
    assert [(a.question, a.ups, a.downs) for a in engine.db.downvoted(GUILD_B, "", 5)] == [
        (CORBYN, 1, 1)
    ]


# -- documents: permissions, uploads, isolation between servers, removal ------------------------


async def test_members_without_manage_server_change_nothing(world: Bot) -> None:
    fake, _, engine = world
    state = engine.settings.state_dir
    added = await upload(fake, "zorblat_notes.txt", ZORBLAT.encode())
    try:
        assert added["content"].startswith("Added `zorblat_notes.txt`: 2 chunks indexed in ")
        before, docs_before = state_snapshot(state), engine.db.titles(GUILD_A)
        downloads = sum(r.path.startswith("/cdn/") for r in fake.requests)
        attempts = [
            ("docs", {}, "add", {"file": fake.add_attachment("evil.txt", b"Pwned.", "text/plain")}),
            ("docs", {"document": "uploads/zorblat_notes.txt"}, "remove", None),
            ("reindex", {}, None, None),
            ("insights", {}, None, None),
        ]
        for name, options, sub, files in attempts:
            ix, shown = await admin(
                fake, name, options, permissions=0, subcommand=sub, attachments=files
            )
            assert callbacks(fake, ix)[0]["type"] == 4, name  # refused before any work
            assert shown["content"] == REFUSED and shown["flags"] & EPHEMERAL, name
        assert state_snapshot(state) == before
        assert engine.db.titles(GUILD_A) == docs_before
        assert sum(r.path.startswith("/cdn/") for r in fake.requests) == downloads
        _, shown = await ask(fake, "When is the Zorblat festival held?")
        assert "every March" in shown["content"]
    finally:
        await asyncio.to_thread(engine.remove_document, GUILD_A, "uploads/zorblat_notes.txt")


async def test_upload_answers_in_its_server_only_until_removed(world: Bot) -> None:
    fake, _, engine = world
    question = "When is the Zorblat festival held in Quenville?"
    added = await upload(fake, "zorblat_festival.txt", ZORBLAT.encode())
    assert added["flags"] & EPHEMERAL
    # Markdown-escaping inside inline code would show a backslash: zorblat\_festival.txt
    assert added["content"].startswith("Added `zorblat_festival.txt`: 2 chunks indexed in ")
    stored = engine.settings.state_dir / "guilds" / str(GUILD_A) / "docs" / "zorblat_festival.txt"
    assert stored.read_bytes() == ZORBLAT.encode()

    _, shown = await ask(fake, question, guild=GUILD_A)
    assert "every March" in shown["content"]
    [quote] = [q for q in assert_each_quote_once(shown, ZORBLAT) if "every March" in q]
    assert quote in shown["content"]
    n = re.search(r"every March[^\[]*\[(\d+)\]", shown["content"])
    [zorblat] = [s for s in sources(shown) if s.n == int(n[1])]
    assert zorblat.title == "The Zorblat festival" and zorblat.location.startswith("¶")

    _, elsewhere = await ask(fake, question, guild=GUILD_B)
    assert "Zorblat" not in elsewhere["content"] and "March" not in str(elsewhere["embeds"])
    _, listed_b = await admin(fake, "docs", subcommand="list", guild=GUILD_B, permissions=0)
    assert "zorblat" not in listed_b["content"].lower() and "statement.txt" in listed_b["content"]
    _, listed_a = await admin(fake, "docs", subcommand="list", guild=GUILD_A, permissions=0)
    assert "uploads/zorblat_festival.txt" in listed_a["content"]
    assert_within_limits(listed_a)

    choices_b = await fake.autocomplete(
        "docs",
        "remove",
        "document",
        "zor",
        guild_id=GUILD_B,
        user_id=new_user(),
        permissions=MANAGE_GUILD,
    )
    assert choices_b == []
    [choice] = await fake.autocomplete(
        "docs",
        "remove",
        "document",
        "zor",
        guild_id=GUILD_A,
        user_id=new_user(),
        permissions=MANAGE_GUILD,
    )
    assert choice["value"] == "uploads/zorblat_festival.txt"
    assert "The Zorblat festival" in choice["name"]

    _, removed = await admin(fake, "docs", {"document": choice["value"]}, subcommand="remove")
    assert removed["content"] == "Removed `uploads/zorblat_festival.txt`."
    assert not stored.exists() and "uploads/zorblat_festival.txt" not in engine.db.titles(GUILD_A)
    _, gone = await ask(fake, question, guild=GUILD_A)
    assert gone["content"] == NOT_FOUND
    _, listed = await admin(fake, "docs", subcommand="list", guild=GUILD_A, permissions=0)
    assert "zorblat" not in listed["content"].lower()


@pytest.mark.parametrize(
    ("filename", "data", "error", "downloaded"),
    [
        (
            "binary.txt",
            b"\x00\x01\x02\x03 not text \xff\xfe",
            "binary.txt looks like a binary file, not .txt text.",
            True,
        ),
        (
            "photo.txt",
            b"\x89PNG\r\n\x1a\n" + bytes(64),
            "The content of photo.txt does not match its .txt extension"
            " (it looks like a PNG image).",
            True,
        ),
        ("latin1.txt", "Café au lait.".encode("latin-1"), "latin1.txt is not", True),
        ("empty.txt", b"", "empty.txt is empty.", True),
        (
            "big.txt",
            b"word " * (UPLOAD_LIMIT // 5 + 1),
            f"big.txt is {UPLOAD_LIMIT + 5:,} bytes",
            False,
        ),
        ("../escape.txt", b"Harmless text.", "The file name ../escape.txt contains / or \\", False),
        ("program.exe", b"MZ\x90\x00", "program.exe is not a supported file type", False),
    ],
)
async def test_broken_upload_is_refused_precisely_and_changes_nothing(
    world: Bot, filename: str, data: bytes, error: str, downloaded: bool
) -> None:
    fake, _, engine = world
    state = engine.settings.state_dir
    before, docs_before = state_snapshot(state), engine.db.titles(GUILD_A)
    downloads = sum(r.path.startswith("/cdn/") for r in fake.requests)
    shown = await upload(fake, filename, data)
    assert shown["content"].startswith(error), shown["content"]
    assert shown["flags"] & EPHEMERAL
    assert state_snapshot(state) == before and engine.db.titles(GUILD_A) == docs_before
    assert sum(r.path.startswith("/cdn/") for r in fake.requests) - downloads == int(downloaded)


# -- re-indexing --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def herons_added(engine: Engine) -> AsyncIterator[None]:
    """A new document in the data folder during the block; removed and re-indexed away after."""
    added = engine.settings.data_dir / "herons.txt"
    added.write_text("Herons of Quenville\n\nGrey herons nest on the lake islands in April.\n")
    try:
        yield
    finally:
        added.unlink()
        await reindex_when_idle(engine)


async def start_held_reindex(fake: FakeDiscord, gate: GatedEmbedder) -> FakeInteraction:
    """Start an admin /reindex; return once it is embedding, inside the engine's write lock."""
    ix = await fake.interact(
        "reindex", guild_id=GUILD_A, user_id=new_user(), permissions=MANAGE_GUILD
    )
    await gate.wait_entered()
    return ix


async def test_reindex_reports_progress_and_a_second_one_is_told_it_is_running(world: Bot) -> None:
    fake, _, engine = world
    gate: GatedEmbedder = engine.embedder  # type: ignore[assignment]
    async with herons_added(engine):
        with gate.held():
            first = await start_held_reindex(fake, gate)
            _, second = await admin(fake, "reindex")
            assert second["content"] == BUSY and second["flags"] & EPHEMERAL
            assert callbacks(fake, first) == [{"type": 5, "data": {"flags": EPHEMERAL}}]
        edits = [
            (
                await fake.wait_for(
                    lambda r, want=want: (
                        r.token == first.token
                        and r.ok
                        and r.method == "PATCH"
                        and want in r.json["content"]
                    ),
                    timeout=30,
                )
            ).json["content"]
            for want in ("Re-indexing…", "Indexed ")
        ]
        assert edits[0] == "Re-indexing… 2/2 chunks embedded."  # the title and its paragraph
        assert re.fullmatch(
            r"Indexed \d+ documents, \d+ chunks \(2 re-embedded\) in [\d.]+ s\.", edits[1]
        )
        final = fake.final_content(first)
        assert final["content"] == edits[1] and final["flags"] & EPHEMERAL
        patches = [r.json["content"] for r in fake.responses_for(first) if r.method == "PATCH"]
        assert patches == edits
        _, shown = await ask(fake, "Where do grey herons nest?")
        assert "lake islands" in shown["content"]


async def test_questions_are_answered_while_a_reindex_runs(world: Bot) -> None:
    fake, _, engine = world
    gate: GatedEmbedder = engine.embedder  # type: ignore[assignment]
    async with herons_added(engine):
        with gate.held():
            running_ix = await start_held_reindex(fake, gate)
            asked = [
                await fake.interact(
                    "ask", {"question": CORBYN}, guild_id=GUILD_A, user_id=new_user()
                )
                for _ in range(3)
            ]
            shown = await asyncio.gather(*(fake.wait_answered(ix, timeout=30) for ix in asked))
            for ix, message in zip(asked, shown, strict=True):
                assert callbacks(fake, ix)[0] == {"type": 5}
                assert "over 40 years" in message["content"]
            assert fake.final_content(running_ix)["flags"] & (1 << 7)  # still "thinking"
        done = await fake.wait_for(
            lambda r: (
                r.token == running_ix.token
                and r.ok
                and r.method == "PATCH"
                and r.json["content"].startswith("Indexed ")
            ),
            timeout=30,
        )
        assert "(2 re-embedded)" in done.json["content"]


# -- the connection and the cooldown ------------------------------------------------------------


async def test_dropped_gateway_resumes_and_answers(world: Bot) -> None:
    fake, _, _ = world
    identifies, resumes = fake.identifies, fake.resumes
    await fake.drop_connection()
    assert (fake.identifies, fake.resumes) == (identifies, resumes + 1)
    _, shown = await ask(fake, CORBYN)
    assert "over 40 years" in shown["content"]


async def test_cooldown_stops_a_member_asking_too_quickly(world: Bot) -> None:
    fake, bot, _ = world
    user, limit = new_user(), bot.settings.cooldown_questions
    asked = [
        await fake.interact("ask", {"question": CORBYN}, guild_id=GUILD_A, user_id=user)
        for _ in range(limit + 1)
    ]
    shown = await asyncio.gather(*(fake.wait_answered(ix, timeout=30) for ix in asked))
    answered = [m for m in shown if "over 40 years" in m["content"]]
    cooled = [m for m in shown if m["content"].startswith("You're asking quickly! Please wait ")]
    assert (len(answered), len(cooled)) == (limit, 1)
    assert cooled[0]["flags"] & EPHEMERAL and cooled[0]["content"].endswith(" s and ask again.")
    _, other = await ask(fake, CORBYN)  # another member is not held back
    assert "over 40 years" in other["content"]


@contextlib.asynccontextmanager
async def with_model(tmp_path, embedder: Embedder):
    """A fake OpenAI-compatible model and an engine that answers with it."""
    from tests.fake_openai import FakeOpenAI

    async with FakeOpenAI() as model:
        settings = Settings(
            data_dir=ROOT / "data",
            state_dir=tmp_path / "state",
            discord_guild_ids=(GUILD_A,),
            llm_base_url=model.base_url,
        )
        engine = Engine(settings, embedder)
        await asyncio.to_thread(engine.open)
        yield model, engine


async def ask_streamed(engine: Engine) -> tuple[Recorded, list[Recorded]]:
    """Ask CORBYN in Discord: the final edit (with the sources) and every edit of that answer."""
    async with running(engine, engine.settings, {GUILD_A: CHANNEL_A}) as (fake, _):
        ix = await fake.interact("ask", {"question": CORBYN}, guild_id=GUILD_A, user_id=new_user())
        final = await fake.wait_for(
            lambda r: r.method == "PATCH" and r.token == ix.token and (r.json or {}).get("embeds"),
            timeout=30,
        )
        return final, [r for r in fake.requests if r.method == "PATCH" and r.token == ix.token]


async def test_generated_answer_streams_verified_text_then_final_sources(
    tmp_path, embedder: Embedder
) -> None:
    async with with_model(tmp_path, embedder) as (model, engine):
        hits = engine.search(CORBYN)
        n = next(i for i, h in enumerate(hits, 1) if "over 40 years" in h.chunk.text)
        served = "Jeremy Corbyn has served Islington North as their Labour MP for over 40 years"
        invented = "He has never lost an election"
        reply = f"{served} [{n}]. {invented} [{n}]. {served} [{n}]."
        words = reply.split(" ")
        model.reply(reply, pieces=[w + " " for w in words], piece_delay=2.5 / len(words))
        final, patches = await ask_streamed(engine)
    edits = [r.json["content"] for r in patches]
    assert model.requests[0]["body"].get("stream") is True
    assert len(edits) >= 2  # at least one streamed preview before the final answer
    assert all(invented not in text for text in edits)  # only verified sentences are shown
    assert final.json["content"].startswith(served) and "[1]" in final.json["content"]
    [source] = sources(final.json)  # the model's words above, the exact quote they rest on here
    assert "over 40 years" in source.quote and source.quote not in final.json["content"]
    assert_exact_quote(source.quote, STATEMENT_TEXT)
    assert_each_quote_once(final.json, STATEMENT_TEXT)


async def test_streamed_previews_edit_the_message_at_most_once_a_second(
    tmp_path, embedder: Embedder
) -> None:
    """README: the deferred message is edited with verified text as it streams, at most once a
    second (the engine's own interval), then finalised with the sources. The model here writes
    a new sentence about every 0.6 s, faster than the edits may follow."""
    async with with_model(tmp_path, embedder) as (model, engine):
        assert engine.generator is not None and engine.generator.interval == 1.0
        hits = engine.search(CORBYN)

        def cite(text: str) -> str:
            return f"[{next(i for i, h in enumerate(hits, 1) if text in h.chunk.text)}]"

        invented = "Corbyn has been an MP for 12 years"
        sentences = [
            f"Jeremy Corbyn has served Islington North as their Labour MP for over 40 years "
            f"{cite('over 40 years')}.",
            f"He wanted to run again as the Labour candidate and the local party backed him "
            f"{cite('local party backed him')}.",
            f"{invented} {cite('over 40 years')}.",
            f"He has announced he will fight to retain his seat as an independent "
            f"{cite('retain his seat')}.",
            f"The Labour apparatus imposes a shortlist of just two candidates in Islington North "
            f"{cite('shortlist of just two')}.",
            f"Starmer and his Westminster clique denied local people the chance to choose their "
            f"own candidate {cite('Westminster clique')}.",
        ]
        words = " ".join(sentences).split(" ")
        model.reply(
            " ".join(sentences),
            pieces=[w + " " for w in words],
            piece_delay=0.6 * len(sentences) / len(words),
        )
        final, patches = await ask_streamed(engine)
    previews = [r for r in patches if r is not final]
    texts = [r.json["content"] for r in previews]
    gaps = [b.at - a.at for a, b in itertools.pairwise(previews)]
    print(f"{len(previews)} previews, {gaps=}")
    assert len(previews) >= 2 and all(gap >= 0.95 for gap in gaps), gaps
    for before, after in itertools.pairwise(texts):  # each edit shows more verified text
        assert len(after) > len(before) and after.startswith(before)
    assert all(invented not in text for text in texts + [final.json["content"]])
    assert len(sources(final.json)) >= 3 and final.json["content"].startswith(texts[0][:40])
