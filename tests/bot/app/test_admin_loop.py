"""Admins' loop end to end: /insights, hand-offs to moderators, /settings, retention; through the
loopback Discord stand-in with the real bot, engine, model and SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.engine import Engine
from bot.engine.db import ago
from index.embedder import Embedder
from tests.discord_harness import (
    EPHEMERAL,
    MANAGE_GUILD,
    REFUSED,
    Bot,
    as_admin,
    assert_no_pings,
    assert_within_limits,
    members,
    open_engine,
    shown_payload,
    started,
)
from tests.fake_discord import FakeDiscord, snowflake

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("no_errors_logged")]

GUILD_A, ASK_A, MODS_A, OTHER_A = (1_410_000_000_000_000_000 + n for n in (1, 2, 3, 4))
GUILD_B, ASK_B = 1_420_000_000_000_000_001, 1_420_000_000_000_000_002
GUILD_C = 1_430_000_000_000_000_001  # only in the database
MODS_ROLE = 1_410_000_000_000_000_099
CORBYN = "How long has Corbyn been an MP?"
WEATHER = [
    "What's the weather in London tomorrow?",
    "London weather forecast for tomorrow",
    "what's the weather in london tomorrow",  # the first one again, in other case
]
LASAGNE = ["What is the recipe for lasagne?", "how do I make lasagne"]
MERCURY = "What is the boiling point of mercury?"
ZORBLAT = "Is there a Zorblat parade in Quenville?"  # asked in the other server only
new_user = members(1_490_000_000_000_000_001)
admin = as_admin(GUILD_A, new_user)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    return open_engine(
        tmp_path_factory,
        embedder,
        "admin_loop",
        discord_guild_ids=(GUILD_A, GUILD_B),
        cooldown_questions=100,
    )


def two_servers(fake: FakeDiscord) -> None:
    """Server A (ask, mods and other channels, a moderators' role) and server B."""
    fake.add_guild(GUILD_A, "Server A", channel_ids=[ASK_A, MODS_A, OTHER_A])
    fake.add_role(GUILD_A, MODS_ROLE, "Mods")
    fake.add_guild(GUILD_B, "Server B", channel_ids=[ASK_B])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(engine: Engine) -> AsyncIterator[Bot]:
    async with started(engine, two_servers) as (fake, bot):
        yield fake, bot, engine


async def ask(fake: FakeDiscord, question: str, guild: int = GUILD_A, user: int = 0) -> dict:
    ix = await fake.interact(
        "ask", {"question": question}, guild_id=guild, user_id=user or new_user()
    )
    return await fake.wait_answered(ix, timeout=30)


async def click(fake: FakeDiscord, custom_id: str, message: dict, guild: int, user: int) -> dict:
    ix = await fake.click(custom_id, message, guild_id=guild, user_id=user)
    return await fake.wait_answered(ix, timeout=30)


def buttons(message: dict) -> dict[str, str]:
    """Every button under a message: {label or emoji: custom id}."""
    found = [c for row in message["components"] for c in row["components"] if c["type"] == 2]
    return {b.get("label") or b["emoji"]["name"]: b["custom_id"] for b in found}


def posts_in(fake: FakeDiscord, channel_id: int, since: int = 0) -> list:
    return [
        r
        for r in fake.requests[since:]
        if r.ok and r.method == "POST" and r.path == f"/channels/{channel_id}/messages"
    ]


def jump(guild: int, channel: int, message: dict) -> str:
    return f"https://discord.com/channels/{guild}/{channel}/{message['id']}"


# -- retention ----------------------------------------------------------------------------------


async def test_retention_deletes_old_questions_at_start(engine: Engine) -> None:
    """(First in the module: it starts its own bot before the shared one.)"""
    old = engine.db.record_answer(GUILD_C, ASK_B, new_user(), engine.ask(MERCURY).to_dict())
    kept = engine.db.record_answer(GUILD_C, ASK_B, new_user(), engine.ask(MERCURY).to_dict())
    engine.db.vote(old, new_user(), -1)
    engine.db.claim_handoff(old, new_user(), 600)
    with sqlite3.connect(engine.db.path) as db:
        db.execute("UPDATE answers SET created_at = ? WHERE id = ?", (ago(91 * 86400), old))
    async with started(engine, two_servers):
        for _ in range(100):
            if engine.db.asked(old) is None:
                break
            await asyncio.sleep(0.05)
    assert engine.db.asked(old) is None and engine.db.asked(kept) is not None
    with sqlite3.connect(engine.db.path) as db:
        for table in ("votes", "handoffs"):
            assert db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE answer_id = ?", (old,)
            ).fetchone() == (0,)


async def test_retention_runs_again_every_hour(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """README: at start and every hour after. The cog's loop runs hourly; shortened here (with
    discord.py's own `change_interval`), a question that grew old after start is deleted."""

    def old_question() -> int:
        old = engine.db.record_answer(GUILD_C, ASK_B, new_user(), engine.ask(MERCURY).to_dict())
        with sqlite3.connect(engine.db.path) as db:
            db.execute("UPDATE answers SET created_at = ? WHERE id = ?", (ago(91 * 86400), old))
        return old

    async def deleted(answer_id: int) -> bool:
        for _ in range(100):
            if engine.db.asked(answer_id) is None:
                return True
            await asyncio.sleep(0.05)
        return False

    at_start = old_question()
    async with started(engine, two_servers) as (_, bot):
        forget = bot.get_cog("Insights").forget
        assert forget.is_running() and (forget.hours, forget.minutes, forget.seconds) == (1, 0, 0)
        assert await deleted(at_start)  # the run at start-up has been
        later = old_question()
        await asyncio.sleep(0.3)
        assert engine.db.asked(later) is not None  # nothing runs again within the hour
        forget.change_interval(seconds=0.2)
        assert await deleted(later) and forget.current_loop >= 1
    lines = [r for r in caplog.records if r.getMessage().startswith("deleted 1 questions")]
    assert [r.getMessage() for r in lines] == ["deleted 1 questions older than 90 days"] * 2


# -- /insights ----------------------------------------------------------------------------------


async def test_insights_group_unanswered_questions_by_topic(world: Bot) -> None:
    fake, _, engine = world
    since = len(fake.requests)
    refusals = [await ask(fake, q) for q in WEATHER + LASAGNE + [MERCURY]]
    assert all(r["content"].startswith("The indexed documents don't answer that") for r in refusals)
    answered = await ask(fake, CORBYN)
    await click(fake, buttons(answered)["👎"], answered, GUILD_A, new_user())
    await click(fake, buttons(answered)["👎"], answered, GUILD_A, new_user())
    await click(fake, buttons(refusals[-1])["👎"], refusals[-1], GUILD_A, new_user())
    await ask(fake, ZORBLAT, guild=GUILD_B)

    ix, shown = await admin(fake, "insights")
    assert fake.responses_for(ix)[0].json == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert shown["flags"] & EPHEMERAL and shown["content"] == ""
    assert_within_limits(shown)
    [embed] = shown["embeds"]
    head, topics = embed["description"].split("\n\n")
    assert head == "**7** questions from **7** members · **14%** answered · 👍 0 · 👎 3"
    assert topics.splitlines() == [
        "**Unanswered, by topic** (6 questions, 3 topics)",
        f"**3×** {WEATHER[2]} *(3 members)*",  # the most asked wording, as last asked
        f"**2×** {LASAGNE[1]} *(2 members)*",  # of equally asked wordings, the latest
        f"**1×** {MERCURY}",
    ]
    [worst] = embed["fields"]
    assert worst["name"] == "Most down-voted answers"
    assert worst["value"].splitlines() == [
        f"👎 2 · {CORBYN} · [jump]({jump(GUILD_A, ASK_A, answered)})",
        f"👎 1 · {MERCURY} · [jump]({jump(GUILD_A, ASK_A, refusals[-1])})",
    ]
    assert "Zorblat" not in str(shown)  # another server's question
    assert_no_pings(fake, since)

    _, other = await admin(fake, "insights", {"private": False}, guild=GUILD_B)
    assert not other["flags"] & EPHEMERAL  # shared on purpose
    assert other["embeds"][0]["description"].splitlines()[-1] == f"**1×** {ZORBLAT}"
    assert "weather" not in str(other) and "lasagne" not in str(other)


async def test_members_without_manage_server_see_no_insights_and_change_no_settings(
    world: Bot,
) -> None:
    fake, _, engine = world
    before = engine.db.settings(GUILD_A)
    attempts = [
        ("insights", {}, None),
        ("settings", {}, "show"),
        ("settings", {"channel": str(OTHER_A), "role": str(MODS_ROLE)}, "handoff"),
        ("settings", {}, "handoff"),
        ("settings", {}, "channels"),
    ]
    for name, options, sub in attempts:
        ix, shown = await admin(fake, name, options, permissions=0, subcommand=sub)
        assert fake.responses_for(ix)[0].json["type"] == 4, (name, sub)  # refused before any work
        assert shown["content"] == REFUSED and shown["flags"] & EPHEMERAL
        assert not shown["embeds"] and not shown["components"]
    # The channel picker an admin opened, picked from by a crafted interaction of a member.
    _, picker = await admin(fake, "settings", subcommand="channels")
    [row] = picker["components"]
    [select] = row["components"]
    ix = await fake.select(
        select["custom_id"], picker, [OTHER_A], guild_id=GUILD_A, user_id=new_user()
    )
    assert (await fake.wait_answered(ix))["content"] == REFUSED
    assert engine.db.settings(GUILD_A) == before


# -- asking a human -----------------------------------------------------------------------------


async def test_handoff_posts_in_the_moderators_channel_pinging_only_their_role(
    world: Bot,
) -> None:
    fake, _, engine = world
    since = len(fake.requests)
    _, set_up = await admin(
        fake, "settings", {"channel": str(MODS_A), "role": str(MODS_ROLE)}, subcommand="handoff"
    )
    assert set_up["content"] == f"Members can now pass questions on to <#{MODS_A}>."
    _, settings = await admin(fake, "settings", subcommand="show")
    assert (
        f"**Hand-off to moderators:** to <#{MODS_A}>, pinging <@&{MODS_ROLE}>"
        in settings["content"]
    )

    member = new_user()
    refusal = await ask(fake, "Where can I buy tickets for the Zorblat parade?", user=member)
    offered = buttons(refusal)
    assert list(offered) == ["👍", "👎", "Ask a moderator"]
    told = await click(fake, offered["Ask a moderator"], refusal, GUILD_A, member)
    assert told["content"] == (
        f"Passed on to the moderators in <#{MODS_A}>; someone will get back to you."
    )
    assert told["flags"] & EPHEMERAL
    [post] = posts_in(fake, MODS_A, since)
    # Only the moderators' role: no users, no other roles, no @everyone (ids go out as numbers).
    assert post.json["allowed_mentions"] == {"parse": [], "roles": [MODS_ROLE]}
    lines = post.json["content"].splitlines()
    assert lines[0] == f"<@&{MODS_ROLE}> A member would like a moderator's help."
    assert lines[1] == f"**Asked by** <@{member}> in <#{ASK_A}>:"
    assert lines[2] == "> Where can I buy tickets for the Zorblat parade?"
    assert lines[3].startswith("**The bot answered:** The indexed documents don't answer that")
    assert lines[4] == f"**Answer:** {jump(GUILD_A, ASK_A, refusal)}"
    # Everything else the bot sent in this test forbids every ping.
    for r in fake.requests[since:]:
        if r is not post and (shown := shown_payload(r)) is not None:
            mentions = shown["allowed_mentions"]
            assert mentions["parse"] == [] and not mentions.get("roles"), r.path

    # At most one hand-off per question, and one per member in a while.
    again = await click(fake, offered["Ask a moderator"], refusal, GUILD_A, new_user())
    assert again["content"] == "This question has already been passed on to the moderators."
    second = await ask(fake, "Who sells Zorblat parade tickets?", user=member)
    soon = await click(fake, buttons(second)["Ask a moderator"], second, GUILD_A, member)
    assert soon["content"].startswith("You passed a question on a moment ago;")
    assert len(posts_in(fake, MODS_A, since)) == 1

    # A 👎 on an answer offers the hand-off too; another member passes it on.
    answered = await ask(fake, CORBYN)
    assert "Ask a moderator" not in buttons(answered)
    voter = new_user()
    thanks = await click(fake, buttons(answered)["👎"], answered, GUILD_A, voter)
    assert thanks["content"].startswith("Thanks, your vote is recorded. If the answer didn't help")
    await click(fake, buttons(thanks)["Ask a moderator"], thanks, GUILD_A, voter)
    posted = posts_in(fake, MODS_A, since)[-1].json
    assert f"> {CORBYN}" in posted["content"] and f"Passed on by <@{voter}>." in posted["content"]

    # A crafted button in another server, naming this server's answer, posts nothing anywhere.
    elsewhere = await ask(fake, MERCURY, guild=GUILD_B)
    custom_id = buttons(second)["Ask a moderator"]
    crafted = {**elsewhere, "id": snowflake(), "components": second["components"]}
    refused = await click(fake, custom_id, crafted, GUILD_B, new_user())
    assert refused["content"] == "That answer is not one of this server's."
    assert len(posts_in(fake, MODS_A, since)) == 2 and not posts_in(fake, ASK_B, since)
    assert "Ask a moderator" not in buttons(elsewhere)  # server B has no hand-off

    _, off = await admin(fake, "settings", subcommand="handoff")
    assert off["content"] == "Hand-offs to moderators are off."
    assert engine.db.settings(GUILD_A).handoff_channel is None
    assert "Ask a moderator" not in buttons(await ask(fake, MERCURY))


# -- where the bot listens ----------------------------------------------------------------------


async def test_settings_channels_restricts_mentions_to_the_chosen_channels(world: Bot) -> None:
    fake, _, engine = world
    _, picker = await admin(fake, "settings", subcommand="channels")
    [select] = picker["components"][0]["components"]
    assert select["type"] == 8 and select["min_values"] == 0 and select["max_values"] == 25
    ix = await fake.select(
        select["custom_id"],
        picker,
        [ASK_A],
        guild_id=GUILD_A,
        user_id=new_user(),
        permissions=MANAGE_GUILD,
    )
    await fake.wait_for(lambda r: r.token == ix.token and r.ok)
    assert fake.messages[picker["id"]]["content"] == f"I answer @mentions in <#{ASK_A}>."
    assert engine.db.settings(GUILD_A).channels == (ASK_A,)
    try:
        since = len(fake.requests)
        await fake.message(CORBYN, guild_id=GUILD_A, channel_id=OTHER_A, user_id=new_user())
        asked = await fake.message(CORBYN, guild_id=GUILD_A, channel_id=ASK_A, user_id=new_user())
        assert "over 40 years" in (await fake.wait_for_reply(asked, timeout=30))["content"]
        await asyncio.sleep(0.2)
        assert not posts_in(fake, OTHER_A, since)
        assert not any(r.path == f"/channels/{OTHER_A}/typing" for r in fake.requests[since:])
        # Slash commands still work everywhere; B's mentions are not restricted.
        ix = await fake.interact(
            "ask", {"question": CORBYN}, guild_id=GUILD_A, user_id=new_user(), channel_id=OTHER_A
        )
        assert "over 40 years" in (await fake.wait_answered(ix, timeout=30))["content"]
        in_b = await fake.message(CORBYN, guild_id=GUILD_B, channel_id=ASK_B, user_id=new_user())
        assert "over 40 years" in (await fake.wait_for_reply(in_b, timeout=30))["content"]
        _, show = await admin(fake, "settings", subcommand="show")
        assert f"**@mentions answered in:** <#{ASK_A}>" in show["content"]
    finally:
        _, picker = await admin(fake, "settings", subcommand="channels")
        [select] = picker["components"][0]["components"]
        assert select["default_values"] == [{"id": ASK_A, "type": "channel"}]  # as chosen
        ix = await fake.select(
            select["custom_id"],
            picker,
            [],
            guild_id=GUILD_A,
            user_id=new_user(),
            permissions=MANAGE_GUILD,
        )
        await fake.wait_for(lambda r: r.token == ix.token and r.ok)
    assert fake.messages[picker["id"]]["content"] == "I answer @mentions in every channel."
    assert engine.db.settings(GUILD_A).channels == ()
