"""Permissions end to end: the real bot where it may not post, where a role won't be pinged, and
members without Manage Server; through the loopback Discord stand-in, which computes permissions
from roles and channel overwrites as Discord does (no test here passes `permissions=`)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.engine import Engine
from index.embedder import Embedder
from tests import fake_permissions as perms
from tests.discord_harness import (
    EPHEMERAL,
    REFUSED,
    Bot,
    assert_no_pings,
    members,
    open_engine,
    started,
    state_snapshot,
)
from tests.fake_discord import FakeDiscord, FakeInteraction, Recorded

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("no_errors_logged")]

GUILD = 1_510_000_000_000_000_001
ASK, MODS, LOCKED, HIDDEN = (1_510_000_000_000_000_010 + n for n in range(4))
MODS_ROLE, HELPERS, MANAGERS, ADMINS, BOT_ROLE = (1_510_000_000_000_000_020 + n for n in range(5))
MANAGER, ADMIN, MODERATOR = (1_510_000_000_000_000_030 + n for n in range(3))
V, S, R = perms.VIEW_CHANNEL, perms.SEND_MESSAGES, perms.READ_MESSAGE_HISTORY
# A usual server: members may read and write but not ping every role; the bot's own role has what
# its invite asked for.
EVERYONE = V | S | R | perms.EMBED_LINKS | perms.ATTACH_FILES | perms.SEND_MESSAGES_IN_THREADS
INVITED = EVERYONE | perms.CREATE_PUBLIC_THREADS
CANT_POST = f"⚠️ I can't post in <#{LOCKED}> yet: give me Send Messages there."
NOT_PINGED = (
    f"⚠️ <@&{HELPERS}> is not mentionable, so it won't be pinged: make it mentionable or give me "
    "Mention All Roles."
)
CORBYN = "How long has Corbyn been an MP?"
OFF_TOPIC = "Where can I buy tickets for the Zorblat parade?"
new_user = members(1_590_000_000_000_000_001)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    return open_engine(
        tmp_path_factory,
        embedder,
        "permissions",
        discord_guild_ids=(GUILD,),
        cooldown_questions=100,
    )


def usual_server(fake: FakeDiscord) -> None:
    """A server with an ask channel, the moderators' channel, a read-only channel and a hidden
    one; roles for moderators (mentionable), helpers (not), managers, admins and the bot."""
    fake.add_guild(GUILD, channel_ids=[ASK, MODS, LOCKED, HIDDEN])
    fake.edit_role(GUILD, GUILD, permissions=EVERYONE)
    fake.add_role(GUILD, MODS_ROLE, "Mods")
    fake.add_role(GUILD, HELPERS, "Helpers", mentionable=False)
    fake.add_role(GUILD, MANAGERS, "Managers", permissions=perms.MANAGE_GUILD)
    fake.add_role(GUILD, ADMINS, "Admins", permissions=perms.ADMINISTRATOR)
    fake.add_role(GUILD, BOT_ROLE, "statement-bot", mentionable=False, permissions=INVITED)
    for user, role in ((MANAGER, MANAGERS), (ADMIN, ADMINS), (MODERATOR, MODS_ROLE)):
        fake.set_roles(GUILD, user, [role])
    fake.set_roles(GUILD, fake.bot_user_id, [BOT_ROLE])
    fake.set_overwrite(LOCKED, GUILD, deny=S)  # announcements: read only
    fake.set_overwrite(LOCKED, MODS_ROLE, allow=S)
    fake.set_overwrite(HIDDEN, GUILD, deny=V)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(engine: Engine) -> AsyncIterator[Bot]:
    async with started(engine, usual_server) as (fake, bot):
        yield fake, bot, engine


async def command(
    fake: FakeDiscord, name: str, options: dict | None = None, *, user: int = MANAGER, **kw
) -> tuple[FakeInteraction, dict]:
    """Run a slash command as `user` (by default a manager) and return what they see."""
    ix = await fake.interact(name, options, guild_id=GUILD, user_id=user, **kw)
    return ix, await fake.wait_answered(ix, timeout=30)


async def handoff_to(fake: FakeDiscord, channel: int | None, role: int | None = None) -> str:
    """/settings handoff as a manager; return the reply."""
    options = {k: str(v) for k, v in (("channel", channel), ("role", role)) if v is not None}
    _, shown = await command(fake, "settings", options, subcommand="handoff")
    return shown["content"]


async def refusal_with_handoff(fake: FakeDiscord, member: int) -> tuple[dict, str]:
    """A question the documents don't answer, and its "Ask a moderator" button's custom id."""
    _, shown = await command(fake, "ask", {"question": OFF_TOPIC}, user=member)
    offered = [c for row in shown["components"] for c in row["components"]]
    [button] = [c for c in offered if c.get("label") == "Ask a moderator"]
    return shown, button["custom_id"]


async def click(fake: FakeDiscord, custom_id: str, message: dict, member: int) -> dict:
    ix = await fake.click(custom_id, message, guild_id=GUILD, user_id=member)
    return await fake.wait_answered(ix, timeout=30)


def posts_in(fake: FakeDiscord, channel: int, since: int) -> list[Recorded]:
    """The bot's attempts to post in a channel (failed ones too)."""
    path = f"/channels/{channel}/messages"
    return [r for r in fake.requests[since:] if r.method == "POST" and r.path == path]


def handoffs(engine: Engine, answer_id: int) -> int:
    with sqlite3.connect(engine.db.path) as db:
        query = "SELECT COUNT(*) FROM handoffs WHERE answer_id = ?"
        return db.execute(query, (answer_id,)).fetchone()[0]


# -- /settings handoff ---------------------------------------------------------------------------


async def test_handoff_settings_warn_where_i_cannot_post(world: Bot) -> None:
    fake, _, engine = world
    welcome = f"Members can now pass questions on to <#{LOCKED}>."
    assert await handoff_to(fake, LOCKED, MODS_ROLE) == f"{welcome}\n{CANT_POST}"
    assert engine.db.settings(GUILD).handoff_channel == LOCKED  # saved, with the warning
    hidden = await handoff_to(fake, HIDDEN)
    assert hidden.splitlines()[1] == CANT_POST.replace(str(LOCKED), str(HIDDEN))
    # A manager gives the bot's role Send Messages there (a role overwrite beats @everyone's).
    fake.set_overwrite(LOCKED, BOT_ROLE, allow=S)
    try:
        assert await handoff_to(fake, LOCKED, MODS_ROLE) == welcome
    finally:
        fake.set_overwrite(LOCKED, BOT_ROLE)
        await handoff_to(fake, None)


async def test_handoff_settings_warn_of_a_role_that_will_not_be_pinged(world: Bot) -> None:
    fake, _, _ = world
    welcome = f"Members can now pass questions on to <#{MODS}>."
    assert await handoff_to(fake, MODS, HELPERS) == f"{welcome}\n{NOT_PINGED}"
    assert await handoff_to(fake, MODS, MODS_ROLE) == welcome  # mentionable
    fake.set_overwrite(MODS, BOT_ROLE, allow=perms.MENTION_EVERYONE)  # may mention all roles
    try:
        assert await handoff_to(fake, MODS, HELPERS) == welcome
    finally:
        fake.set_overwrite(MODS, BOT_ROLE)
        await handoff_to(fake, None)


# -- the hand-off button -------------------------------------------------------------------------


async def test_handoff_where_i_can_no_longer_post_tells_the_member_and_gives_the_claim_back(
    world: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    fake, _, engine = world
    assert await handoff_to(fake, MODS, MODS_ROLE) == (
        f"Members can now pass questions on to <#{MODS}>."
    )
    member = new_user()
    refusal, custom_id = await refusal_with_handoff(fake, member)
    answer_id = int(custom_id.split(":")[1])
    fake.set_overwrite(MODS, BOT_ROLE, deny=S)  # later, someone takes Send Messages away
    try:
        since = len(fake.requests)
        told = await click(fake, custom_id, refusal, member)
        assert told["content"] == "I could not reach the moderators; please try again later."
        assert told["flags"] & EPHEMERAL
        [failed] = posts_in(fake, MODS, since)
        assert failed.status == 403 and failed.response["code"] == 50013
        assert fake.channel_messages(MODS) == []
        assert handoffs(engine, answer_id) == 0  # the claim is given back for a retry
        assert any("could not post a hand-off" in r.getMessage() for r in caplog.records)
    finally:
        fake.set_overwrite(MODS, BOT_ROLE)
    told = await click(fake, custom_id, refusal, member)  # the same member, no cooldown
    assert told["content"].startswith(f"Passed on to the moderators in <#{MODS}>")
    [posted] = fake.channel_messages(MODS)
    assert posted["mention_roles"] == [str(MODS_ROLE)]
    assert handoffs(engine, answer_id) == 1
    await handoff_to(fake, None)


async def test_handoff_to_a_role_that_is_not_mentionable_pings_no_one(world: Bot) -> None:
    fake, _, _ = world
    assert (await handoff_to(fake, MODS, HELPERS)).endswith(NOT_PINGED)
    since = len(fake.requests)
    member = new_user()
    refusal, custom_id = await refusal_with_handoff(fake, member)
    told = await click(fake, custom_id, refusal, member)
    assert told["content"].startswith(f"Passed on to the moderators in <#{MODS}>")
    [post] = posts_in(fake, MODS, since)
    assert post.json["allowed_mentions"] == {"parse": [], "roles": [HELPERS]}
    assert post.json["content"].startswith(f"<@&{HELPERS}> ")
    posted = fake.messages[post.response["id"]]
    assert posted["mention_roles"] == [] and posted["mentions"] == []  # as the warning said
    await handoff_to(fake, None)


# -- admin commands --------------------------------------------------------------------------


async def test_members_without_manage_server_are_refused_by_the_bot(world: Bot) -> None:
    fake, _, engine = world
    before = engine.db.settings(GUILD), engine.db.titles(GUILD)
    state = state_snapshot(engine.settings.state_dir)
    downloads = sum(r.path.startswith("/cdn/") for r in fake.requests)
    evil = fake.add_attachment("evil.txt", b"Pwned.", "text/plain")
    attempts = [
        ("docs", {}, "add", {"file": evil}),
        ("docs", {"document": "statement.txt"}, "remove", None),
        ("reindex", {}, None, None),
        ("insights", {}, None, None),
        ("settings", {}, "show", None),
        ("settings", {"channel": str(MODS), "role": str(MODS_ROLE)}, "handoff", None),
        ("settings", {}, "handoff", None),
        ("settings", {}, "channels", None),
    ]
    # Discord would hide these commands (default_permissions); a crafted client sends them anyway.
    for member in (new_user(), MODERATOR):
        for name, options, sub, files in attempts:
            ix, shown = await command(
                fake, name, options, user=member, subcommand=sub, attachments=files
            )
            assert not int(ix.payload["member"]["permissions"]) & perms.MANAGE_GUILD
            assert fake.responses_for(ix)[0].json["type"] == 4, name  # refused before any work
            assert shown["content"] == REFUSED and shown["flags"] & EPHEMERAL, (name, sub)
    assert (engine.db.settings(GUILD), engine.db.titles(GUILD)) == before
    assert state_snapshot(engine.settings.state_dir) == state
    assert sum(r.path.startswith("/cdn/") for r in fake.requests) == downloads
    # Manage Server from a role, or Administrator (which grants every permission), is enough.
    for user in (MANAGER, ADMIN):
        _, shown = await command(fake, "settings", user=user, subcommand="show")
        assert shown["content"].startswith("**Hand-off to moderators:**"), shown["content"]


# -- @mentions -----------------------------------------------------------------------------------


async def test_a_mention_where_i_cannot_post_is_left_unanswered_and_others_still_are(
    world: Bot,
) -> None:
    fake, _, engine = world
    since = len(fake.requests)
    fake.set_overwrite(ASK, BOT_ROLE, deny=R)  # may post, but not reply
    try:
        for channel in (LOCKED, ASK):  # a moderator may post in the read-only channel
            await fake.message(CORBYN, guild_id=GUILD, channel_id=channel, user_id=MODERATOR)
        asked = await fake.message(CORBYN, guild_id=GUILD, channel_id=MODS, user_id=new_user())
        answer = await fake.wait_for_reply(asked, timeout=30)
        assert "over 40 years" in answer["content"]
    finally:
        fake.set_overwrite(ASK, BOT_ROLE)
    # Nothing was tried where it would fail, and no answer no one sees was recorded.
    tried = {r.path for r in fake.requests[since:] if r.method == "POST"}
    assert tried == {f"/channels/{MODS}/messages", f"/channels/{MODS}/typing"}
    with sqlite3.connect(engine.db.path) as db:
        query = "SELECT COUNT(*) FROM answers WHERE user_id = ?"
        assert db.execute(query, (MODERATOR,)).fetchone() == (0,)
    assert_no_pings(fake, since)
