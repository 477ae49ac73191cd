"""The Discord stand-in drives the real discord.py client: commands, buttons, messages, resumes,
permissions."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests import fake_permissions as perms
from tests.fake_discord import FakeDiscord, connected, guild_on_shard

GUILD = 1_200_000_000_000_000_001
CHANNEL = 1_200_000_000_000_000_002
USER = 1_200_000_000_000_000_003
DOCUMENTS = ["alpha.txt", "beta.txt", "gamma.txt"]


@app_commands.command()
async def ping(interaction: discord.Interaction) -> None:
    """Defer with "thinking", then follow up."""
    await interaction.response.defer(thinking=True)
    await interaction.followup.send("pong")


class VoteView(discord.ui.View):
    """One button that rewrites the message it is on."""

    @discord.ui.button(label="Up", custom_id="vote:up")
    async def up(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        """Replace the message with the vote."""
        await interaction.response.edit_message(content=f"up from {interaction.user.id}", view=None)


@app_commands.command()
async def vote(interaction: discord.Interaction) -> None:
    """Answer with a button."""
    await interaction.response.send_message("Vote?", view=VoteView())


class NoteModal(discord.ui.Modal, title="Leave a note"):
    """One paragraph, up to Discord's 4,000 characters."""

    note = discord.ui.TextInput(label="Note", style=discord.TextStyle.paragraph, max_length=4000)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Say what was submitted, and by whom."""
        text = f"{interaction.user.id} noted {len(self.note.value)} characters"
        await interaction.response.send_message(text)


@app_commands.command()
async def note(interaction: discord.Interaction, title: str = "Leave a note") -> None:
    """Open the modal (titled `title`); say so if Discord refuses it."""
    modal = NoteModal()
    modal.title = title
    try:
        await interaction.response.send_modal(modal)
    except discord.HTTPException as err:
        await interaction.response.send_message(f"refused: {err.status}")


docs = app_commands.Group(name="docs", description="Documents")


@docs.command(name="add")
async def docs_add(interaction: discord.Interaction, file: discord.Attachment) -> None:
    """Download the attachment and echo it back with its size."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    data = await file.read()
    echo = discord.File(io.BytesIO(data), filename=f"echo-{file.filename}")
    await interaction.followup.send(f"{file.filename}: {len(data)} bytes", file=echo)


@docs.command(name="remove")
async def docs_remove(interaction: discord.Interaction, document: str) -> None:
    """Acknowledge the removal."""
    await interaction.response.send_message(f"removed {document}")


@docs_remove.autocomplete("document")
async def documents(interaction: discord.Interaction, current: str) -> list[app_commands.Choice]:
    """Documents whose name starts with what was typed."""
    return [app_commands.Choice(name=d, value=d) for d in DOCUMENTS if d.startswith(current)]


class TinyBot(commands.Bot):
    """Global /ping and /vote, guild-scoped /docs, and replies to @mentions."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!unused ", intents=intents, guild_ready_timeout=0.05)

    async def setup_hook(self) -> None:
        """Register and sync the commands globally and to the guild."""
        self.tree.add_command(ping)
        self.tree.add_command(vote)
        self.tree.add_command(note)
        self.tree.add_command(docs, guild=discord.Object(GUILD))
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(GUILD))

    async def on_message(self, message: discord.Message) -> None:
        """Reply to a mention, start a thread on request, and answer inside threads."""
        assert self.user is not None
        if message.author.bot or self.user not in message.mentions:
            return
        text = message.content.replace(self.user.mention, "").strip()
        if isinstance(message.channel, discord.Thread):
            await message.reply(f"in {message.channel.name}: {text}", mention_author=False)
        elif text.startswith("thread"):
            thread = await message.create_thread(name=text)
            await thread.send("thread started")
        else:
            ref = message.reference.resolved if message.reference else None
            prefix = f"re {ref.content!r}, " if isinstance(ref, discord.Message) else ""
            async with message.channel.typing():
                await message.reply(f"{prefix}you said: {text}", mention_author=False)


@contextlib.asynccontextmanager
async def running() -> AsyncIterator[tuple[FakeDiscord, TinyBot]]:
    """A started stand-in with one guild and a ready TinyBot connected to it."""
    fake = FakeDiscord()
    await fake.start()
    fake.add_guild(GUILD, channel_ids=[CHANNEL])
    try:
        bot = TinyBot()
        async with connected(fake, bot):
            yield fake, bot
    finally:
        await fake.stop()


async def test_login_and_sync_reach_the_stand_in() -> None:
    async with running() as (fake, bot):
        assert bot.user is not None and bot.user.id == fake.bot_user_id
        guild = bot.get_guild(GUILD)
        assert guild is not None and guild.me is not None
        assert isinstance(guild.get_channel(CHANNEL), discord.TextChannel)
        assert [c["name"] for c in fake.commands[None]] == ["ping", "vote", "note"]
        assert [c["name"] for c in fake.commands[GUILD]] == ["docs"]
        assert fake.identifies == 1
        with pytest.raises(discord.NotFound):
            await bot.http.request(discord.http.Route("GET", "/no/such/route"))


async def test_slash_command_defers_then_follows_up() -> None:
    async with running() as (fake, _):
        ix = await fake.interact("ping", guild_id=GUILD, user_id=USER)
        shown = await fake.wait_answered(ix)
        assert shown["content"] == "pong"
        assert shown["flags"] == 0 and shown["type"] == 20
        callback, followup = fake.responses_for(ix)
        assert callback.json == {"type": 5}
        assert (followup.method, followup.route) == ("POST", "/webhooks/{app_id}/{token}")
        assert ix.payload["data"]["id"] == fake.commands[None][0]["id"]


async def test_guild_subcommand_downloads_attachment_and_uploads_echo() -> None:
    async with running() as (fake, _):
        attachment = fake.add_attachment("notes.txt", b"hello world", "text/plain")
        ix = await fake.interact(
            "docs", subcommand="add", guild_id=GUILD, user_id=USER, attachments={"file": attachment}
        )
        assert ix.payload["data"]["guild_id"] == str(GUILD)
        shown = await fake.wait_answered(ix)
        assert shown["content"] == "notes.txt: 11 bytes"
        assert shown["flags"] & 64  # ephemeral, as deferred
        assert any(r.path.startswith("/cdn/") for r in fake.requests)
        upload = fake.responses_for(ix)[-1]
        assert upload.files == {"echo-notes.txt": b"hello world"}
        [echo] = shown["attachments"]
        async with aiohttp.ClientSession() as session, session.get(echo["url"]) as response:
            assert await response.read() == b"hello world"


async def test_autocomplete_returns_choices() -> None:
    async with running() as (fake, _):
        choices = await fake.autocomplete(
            "docs", "remove", "document", "b", guild_id=GUILD, user_id=USER
        )
        assert choices == [{"name": "beta.txt", "value": "beta.txt"}]
        ix = await fake.interact(
            "docs", {"document": "beta.txt"}, subcommand="remove", guild_id=GUILD, user_id=USER
        )
        assert (await fake.wait_answered(ix))["content"] == "removed beta.txt"


async def test_button_click_edits_the_message() -> None:
    async with running() as (fake, _):
        ix = await fake.interact("vote", guild_id=GUILD, user_id=USER)
        message = await fake.wait_answered(ix)
        assert message["components"][0]["components"][0]["custom_id"] == "vote:up"
        click = await fake.click("vote:up", message, guild_id=GUILD, user_id=USER)
        shown = await fake.wait_answered(click)
        assert shown["id"] == message["id"]
        assert shown["content"] == f"up from {USER}" and shown["components"] == []


async def test_a_modal_opens_within_discords_limits_and_is_submitted() -> None:
    async with running() as (fake, _):
        ix = await fake.interact("note", guild_id=GUILD, user_id=USER)
        modal = await fake.wait_modal(ix)
        assert fake.responses_for(ix)[0].json["type"] == 9 and modal["title"] == "Leave a note"
        [row] = modal["components"]
        [text_input] = row["components"]
        assert row["type"] == 1 and (text_input["type"], text_input["style"]) == (4, 2)
        with pytest.raises(ValueError, match="4001 characters"):
            await fake.submit(ix, {text_input["custom_id"]: "x" * 4001})
        submitted = await fake.submit(ix, {text_input["custom_id"]: "x" * 4000})
        assert submitted.type == 5 and submitted.payload["data"]["custom_id"] == modal["custom_id"]
        assert (await fake.wait_answered(submitted))["content"] == f"{USER} noted 4000 characters"

        too_long = await fake.interact("note", {"title": "t" * 46}, guild_id=GUILD, user_id=USER)
        assert (await fake.wait_answered(too_long))["content"] == "refused: 400"
        assert too_long.modal is None


async def test_mention_and_reply_to_the_bot_are_answered() -> None:
    async with running() as (fake, _):
        asked = await fake.message("hello", guild_id=GUILD, channel_id=CHANNEL, user_id=USER)
        reply = await fake.wait_for_reply(asked)
        assert reply["content"] == "you said: hello"
        assert reply["message_reference"]["message_id"] == asked["id"]
        assert any(r.path == f"/channels/{CHANNEL}/typing" for r in fake.requests)
        again = await fake.message(
            "and?", guild_id=GUILD, channel_id=CHANNEL, user_id=USER, reply_to=reply
        )
        assert again["type"] == 19 and again["content"] == "and?"
        answer = await fake.wait_for_reply(again)
        assert answer["content"] == "re 'you said: hello', you said: and?"


async def test_thread_from_a_message_then_a_message_inside_it() -> None:
    async with running() as (fake, bot):
        asked = await fake.message(
            "thread please", guild_id=GUILD, channel_id=CHANNEL, user_id=USER
        )
        started = await fake.wait_for_reply(asked)
        assert started["channel_id"] == asked["id"] and started["content"] == "thread started"
        assert fake.channels[asked["id"]]["type"] == 11
        inside = await fake.message("hi", guild_id=GUILD, channel_id=int(asked["id"]), user_id=USER)
        answer = await fake.wait_for_reply(inside)
        assert answer["content"] == "in thread please: hi"
        assert bot.get_channel(int(asked["id"])) is not None


async def test_dropped_gateway_resumes_and_commands_still_work() -> None:
    async with running() as (fake, _):
        await fake.drop_connection()
        assert (fake.identifies, fake.resumes) == (1, 1)
        ix = await fake.interact("ping", guild_id=GUILD, user_id=USER)
        assert (await fake.wait_answered(ix))["content"] == "pong"


async def test_rate_limited_follow_up_is_retried() -> None:
    async with running() as (fake, _):
        fake.fail_next("POST", "/webhooks/*", status=429, retry_after=0.01)
        ix = await fake.interact("ping", guild_id=GUILD, user_id=USER)
        assert (await fake.wait_answered(ix))["content"] == "pong"
        statuses = [r.status for r in fake.requests if r.token == ix.token]
        assert statuses == [200, 429, 200]


@app_commands.command()
async def whoami(interaction: discord.Interaction) -> None:
    """Say which shards of how many this client runs."""
    client = interaction.client
    await interaction.response.send_message(f"shards {client.shard_ids} of {client.shard_count}")


class ShardedBot(commands.AutoShardedBot):
    """A global /whoami; SHARD_IDS-style `shard_ids`, or every shard /gateway/bot recommends."""

    def __init__(self, **options) -> None:
        super().__init__(
            command_prefix="!unused ",
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            **options,
        )

    async def setup_hook(self) -> None:
        self.tree.add_command(whoami)
        await self.tree.sync()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Identify at once (discord.py waits 5 s a shard; the stand-in has no rate limit)."""


async def test_sharded_processes_get_only_their_shards_guilds_and_events() -> None:
    fake = FakeDiscord(shard_count=2, max_concurrency=2)
    await fake.start()
    guilds = {shard: [guild_on_shard(shard, 2, n) for n in range(2)] for shard in (0, 1)}
    for shard_guilds in guilds.values():
        for guild in shard_guilds:
            fake.add_guild(guild)
    try:
        first, second = (
            ShardedBot(shard_count=2, shard_ids=[0]),
            ShardedBot(shard_ids=[1], shard_count=2),
        )
        async with connected(fake, first), connected(fake, second):
            assert sorted(fake.shards) == [(0, 2), (1, 2)]
            for bot, shard in ((first, 0), (second, 1)):
                assert sorted(g.id for g in bot.guilds) == sorted(guilds[shard])
            for shard, shard_guilds in guilds.items():
                for guild in shard_guilds:
                    ix = await fake.interact("whoami", guild_id=guild, user_id=USER)
                    shown = await fake.wait_answered(ix)
                    assert shown["content"] == f"shards [{shard}] of 2"
                    assert len(fake.responses_for(ix)) == 1  # answered once, by its shard
            await fake.drop_connection(guild_id=guilds[1][0])  # shard 1 resumes on its own
            assert fake.resumes == 1 and len(fake.sessions) == 2
    finally:
        await fake.stop()


async def test_unsharded_settings_run_every_shard_discord_recommends() -> None:
    fake = FakeDiscord(shard_count=3, max_concurrency=3)
    await fake.start()
    guilds = [guild_on_shard(shard, 3) for shard in range(3)]
    for guild in guilds:
        fake.add_guild(guild)
    try:
        bot = ShardedBot()
        async with connected(fake, bot):
            assert bot.shard_count == 3 and sorted(bot.shards) == [0, 1, 2]
            assert sorted(fake.shards) == [(0, 3), (1, 3), (2, 3)]
            assert {g.id: g.shard_id for g in bot.guilds} == {g: s for s, g in enumerate(guilds)}
            assert [r.path for r in fake.requests].count("/gateway/bot") == 1
    finally:
        await fake.stop()


# -- permissions --------------------------------------------------------------------------------

V, S, R, E = perms.VIEW_CHANNEL, perms.SEND_MESSAGES, perms.READ_MESSAGE_HISTORY, perms.EMBED_LINKS
M, T, G = perms.MENTION_EVERYONE, perms.SEND_MESSAGES_IN_THREADS, perms.MANAGE_GUILD
HIDDEN, THREAD = 1_200_000_000_000_000_010, 1_200_000_000_000_000_011
MODS, MUTED, ADMINS, QUIET = (1_200_000_000_000_000_020 + n for n in range(4))
PLAIN, MOD, MUTED_MOD, SILENCED_MOD, TRUSTED, ADMIN = (
    1_200_000_000_000_000_030 + n for n in range(6)
)
OWNER = GUILD + 1  # add_guild's owner


def permission_world() -> FakeDiscord:
    """A read-only channel (members of Mods may post), a hidden one and a thread; not started."""
    fake = FakeDiscord()
    fake.add_guild(GUILD, channel_ids=[CHANNEL, HIDDEN])
    fake.channels[str(THREAD)] = {"id": str(THREAD), "type": 11, "guild_id": str(GUILD),
                                  "parent_id": str(CHANNEL)}  # fmt: skip
    fake.edit_role(GUILD, GUILD, permissions=V | S | R | E | M | T)
    fake.add_role(GUILD, MODS, "Mods", permissions=G)
    fake.add_role(GUILD, MUTED, "Muted")
    fake.add_role(GUILD, ADMINS, "Admins", permissions=perms.ADMINISTRATOR)
    for user, roles in {MOD: [MODS], MUTED_MOD: [MODS, MUTED], SILENCED_MOD: [MODS]}.items():
        fake.set_roles(GUILD, user, roles)
    fake.set_roles(GUILD, ADMIN, [ADMINS])
    fake.set_overwrite(CHANNEL, GUILD, deny=S | M)  # @everyone's overwrite: read only
    fake.set_overwrite(CHANNEL, MODS, allow=S)
    fake.set_overwrite(CHANNEL, MUTED, deny=S)
    fake.set_overwrite(CHANNEL, SILENCED_MOD, deny=S)
    fake.set_overwrite(CHANNEL, TRUSTED, allow=S)
    fake.set_overwrite(CHANNEL, ADMIN, deny=V)
    fake.set_overwrite(HIDDEN, GUILD, deny=V)
    return fake


@pytest.mark.parametrize(
    ("user", "channel", "expected"),
    [
        (PLAIN, CHANNEL, V | R | T),  # @everyone's overwrite denies S and M; without S, no E
        (MOD, CHANNEL, V | S | R | E | T | G),  # the role's overwrite comes after @everyone's
        (MUTED_MOD, CHANNEL, V | S | R | E | T | G),  # role overwrites combined: an allow wins
        (SILENCED_MOD, CHANNEL, V | R | T | G),  # the member's own overwrite comes last
        (TRUSTED, CHANNEL, V | S | R | E | T),
        (ADMIN, CHANNEL, perms.ALL),  # Administrator: everything, overwrites notwithstanding
        (OWNER, HIDDEN, perms.ALL),
        (PLAIN, HIDDEN, 0),  # without View Channel, no channel permission at all
        (MOD, HIDDEN, G),  # ... but guild-wide ones stay
        (PLAIN, THREAD, V | R | E | T),  # the parent's overwrites; posting there needs T, not S
    ],
)
def test_permissions_are_computed_in_discords_order(user: int, channel: int, expected: int):
    assert permission_world().permissions_in(channel, user) == expected


@pytest.mark.parametrize(
    ("allowed", "may_mention_all", "users", "roles", "everyone"),
    [
        (None, False, [USER], [MODS], False),  # no allowed_mentions: everything parsed
        (None, True, [USER], [MODS, QUIET], True),
        ({"parse": [], "roles": [MODS, QUIET]}, False, [], [MODS], False),
        ({"parse": ["users"], "roles": [str(QUIET)]}, True, [USER], [QUIET], False),
        ({"parse": []}, True, [], [], False),
    ],
)
def test_a_message_pings_what_allowed_mentions_and_mentionable_roles_let_through(
    allowed, may_mention_all, users, roles, everyone
):
    fake = permission_world()
    fake.add_role(GUILD, QUIET, "Quiet", mentionable=False)
    text = f"<@&{MODS}> <@&{QUIET}> <@&{GUILD}> <@!{USER}> <@{USER}> @everyone"
    assert perms.mentions(text, allowed, fake.guilds[GUILD], may_mention_all) == {
        "mentions": [str(u) for u in users],
        "mention_roles": [str(r) for r in roles],
        "mention_everyone": everyone,
    }


async def test_interactions_carry_computed_permissions_and_the_client_agrees() -> None:
    async with running() as (fake, bot):
        bot_id = fake.bot_user_id
        # Changes while connected reach the bot (as events) before the next interaction.
        fake.add_role(GUILD, MODS, "Mods", permissions=G)
        fake.set_roles(GUILD, USER, [MODS])
        fake.set_overwrite(CHANNEL, bot_id, deny=E)
        ix = await fake.interact("ping", guild_id=GUILD, user_id=USER)
        await fake.wait_answered(ix)
        assert ix.payload["member"]["roles"] == [str(MODS)]
        assert int(ix.payload["member"]["permissions"]) == perms.EVERYONE_DEFAULT | G
        assert int(ix.payload["app_permissions"]) == perms.EVERYONE_DEFAULT & ~E
        given = await fake.interact("ping", guild_id=GUILD, user_id=USER, permissions=0)
        assert given.payload["member"]["permissions"] == "0"  # a test's permissions= stand

        # A restricted server: the bot's own role, @everyone cut down, overwrites on both.
        fake.edit_role(GUILD, GUILD, permissions=V | S)
        fake.add_role(GUILD, QUIET, "statement-bot", permissions=R | E | M)
        fake.set_roles(GUILD, bot_id, [QUIET])
        fake.set_overwrite(CHANNEL, QUIET, allow=T)
        ix = await fake.interact("vote", guild_id=GUILD, user_id=USER)
        vote = await fake.wait_answered(ix)
        assert int(ix.payload["app_permissions"]) == V | S | R | M | T  # E denied to the bot
        assert int(ix.payload["member"]["permissions"]) == V | S | G
        guild = bot.get_guild(GUILD)
        assert guild is not None and [r.id for r in guild.me.roles[1:]] == [QUIET]
        channel = guild.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        assert channel.permissions_for(guild.me).value == V | S | R | M | T
        picked = await fake.select("pick", vote, [CHANNEL], guild_id=GUILD, user_id=USER)
        resolved = picked.payload["data"]["resolved"]["channels"][str(CHANNEL)]
        assert int(resolved["permissions"]) == V | S | G  # the member's, in that channel


async def test_the_bot_is_refused_where_it_may_not_post() -> None:
    async with running() as (fake, bot):
        bot_id = fake.bot_user_id
        channel = bot.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        started = await channel.send("start")
        thread = await started.create_thread(name="t")

        async def refused(action, code: int) -> None:
            with pytest.raises(discord.Forbidden) as raised:
                await action
            assert (raised.value.status, raised.value.code) == (403, code)

        fake.set_overwrite(CHANNEL, bot_id, deny=S)
        await refused(channel.send("no"), 50013)
        await refused(channel.typing(), 50013)
        await thread.send("threads need Send Messages in Threads instead")
        await started.edit(content="its own messages can be edited")
        fake.set_overwrite(CHANNEL, bot_id, deny=T | R | perms.CREATE_PUBLIC_THREADS)
        await refused(thread.send("no"), 50013)
        await refused(started.reply("replies need Read Message History"), 50013)
        await refused((await channel.send("a thread?")).create_thread(name="no"), 50013)
        fake.set_overwrite(CHANNEL, GUILD, deny=V)
        await refused(channel.send("no"), 50001)
        await refused(thread.send("no"), 50001)
        failed = [r for r in fake.requests if r.status == 403]
        assert len(failed) == 7 and failed[-1].response == {
            "code": 50001,
            "message": "Missing Access",
        }
        assert [m["content"] for m in fake.channel_messages(CHANNEL)] == [
            "its own messages can be edited",
            "a thread?",
        ]


async def test_roles_are_pinged_only_if_mentionable_or_the_bot_may_mention_all() -> None:
    async with running() as (fake, bot):
        fake.add_role(GUILD, MODS, "Mods")
        fake.add_role(GUILD, QUIET, "Quiet", mentionable=False)
        channel = bot.get_channel(CHANNEL)
        assert isinstance(channel, discord.TextChannel)
        roles = discord.AllowedMentions.none()
        roles.roles = [discord.Object(MODS), discord.Object(QUIET)]
        text = f"<@&{MODS}> <@&{QUIET}> <@{USER}>"

        async def pinged(allowed: discord.AllowedMentions) -> tuple[list, list]:
            message = fake.messages[str((await channel.send(text, allowed_mentions=allowed)).id)]
            return [u["id"] for u in message["mentions"]], message["mention_roles"]

        assert await pinged(roles) == ([], [str(MODS), str(QUIET)])  # the bot may mention all
        fake.set_overwrite(CHANNEL, fake.bot_user_id, deny=M)
        assert await pinged(roles) == ([], [str(MODS)])  # Quiet is silently not pinged
        assert await pinged(discord.AllowedMentions.all()) == ([str(USER)], [str(MODS)])
        assert await pinged(discord.AllowedMentions.none()) == ([], [])
