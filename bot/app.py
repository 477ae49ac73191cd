"""The Discord client: wiring, command sync, the one error funnel, and `statement-bot run`."""

from __future__ import annotations

import gc
import logging

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.engine import Engine
from index.errors import Error

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. The error has been logged."
NO_PINGS = discord.AllowedMentions.none()  # the bot echoes document and member text


def point_at(api_base: str, gateway_url: str) -> None:
    """Send REST and gateway traffic to a stand-in or proxy instead of discord.com."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class StatementBot(commands.Bot):
    """Answers questions about the indexed documents; admins manage the documents."""

    def __init__(self, settings: Settings, engine: Engine, **options: object) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # to read the question in an @mention
        super().__init__(
            command_prefix=lambda bot, message: [],  # slash commands and mentions only
            intents=intents,
            allowed_mentions=NO_PINGS,
            help_command=None,
            **options,
        )
        self.settings = settings
        self.engine = engine

    async def setup_hook(self) -> None:
        from bot.cogs.admin import Admin
        from bot.cogs.ask import Ask, VoteButton
        from bot.cogs.handoff import HandoffButton
        from bot.cogs.insights import Insights, ServerSettings

        await self.add_cog(Ask(self.engine, self.settings))
        await self.add_cog(Admin(self.engine))
        await self.add_cog(Insights(self.engine))
        await self.add_cog(ServerSettings(self.engine))
        self.add_dynamic_items(VoteButton, HandoffButton)
        self.tree.on_error = on_app_command_error
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not self.settings.discord_guild_ids:
            await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) to %d servers", self.user, self.user.id, len(self.guilds))


async def reply(interaction: discord.Interaction, content: str, **kwargs: object) -> None:
    """Answer an interaction ephemerally, whether or not it was already responded to."""
    kwargs.setdefault("ephemeral", True)
    if interaction.response.is_done():
        await interaction.followup.send(content, allowed_mentions=NO_PINGS, **kwargs)
    else:
        await interaction.response.send_message(content, allowed_mentions=NO_PINGS, **kwargs)


async def on_app_command_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """The one error funnel: known errors in their own words, anything else logged."""
    cause = getattr(error, "original", error)
    if isinstance(cause, Error):
        message = str(cause)
    elif isinstance(cause, app_commands.MissingPermissions):
        message = "You need the Manage Server permission to do that."
    elif isinstance(cause, app_commands.NoPrivateMessage):
        message = "That command only works in a server."
    elif isinstance(cause, app_commands.CheckFailure):
        message = str(cause) or "You can't use that command here."
    else:
        log.error(
            "command %s failed", interaction.command and interaction.command.name, exc_info=cause
        )
        message = GENERIC_ERROR
    try:
        await reply(interaction, message)
    except discord.HTTPException:
        log.warning("could not report an error to user %s", interaction.user.id)


def run(settings: Settings) -> int:
    """Load the model and indexes once, then serve Discord until interrupted."""
    if not settings.discord_token:
        raise Error("DISCORD_TOKEN is not set: put it in .env or the environment (see README).")
    from index.embedder import Embedder

    point_at(settings.discord_api_base, settings.discord_gateway_url)
    engine = Engine(settings, Embedder(settings.model))
    engine.open()
    # The model's many long-lived objects make each full garbage collection pause the event
    # loop ~250 ms; freezing them keeps interaction acks fast (bench/load.py: max 316 -> 52 ms).
    gc.freeze()
    bot = StatementBot(settings, engine)
    try:
        bot.run(settings.discord_token, log_handler=None)
    except discord.LoginFailure:
        raise Error("Discord rejected DISCORD_TOKEN: check it in the developer portal.") from None
    return 0
