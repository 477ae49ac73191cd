"""/insights, /settings show|handoff|channels, and deleting old questions; all for admins."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.app.render_admin import render_insights, render_settings
from bot.app.replies import NO_PINGS, admin_only, reply
from bot.engine import Engine
from bot.engine.db import DatabaseError, ago
from bot.engine.insights import CachedEncode, build
from index.errors import Error

log = logging.getLogger(__name__)
REFUSED = "You need the Manage Server permission to do that."
LISTEN_TYPES = [discord.ChannelType.text, discord.ChannelType.news, discord.ChannelType.forum]


class Insights(commands.Cog):
    """What members asked that the documents don't answer; old questions are deleted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.encode = CachedEncode(engine.embedder.encode)  # each question is embedded once

    async def cog_load(self) -> None:
        if self.engine.settings.retention_days:
            self.forget.start()

    async def cog_unload(self) -> None:
        self.forget.cancel()

    @tasks.loop(hours=1)  # the first run is at start-up
    async def forget(self) -> None:
        """Delete questions (with their votes and hand-offs) older than RETENTION_DAYS."""
        days = self.engine.settings.retention_days
        try:
            deleted = await asyncio.to_thread(self.engine.db.forget_before, ago(days * 86400))
        except DatabaseError as err:
            log.warning("could not delete old questions: %s", err)
            return
        if deleted:
            log.info("deleted %d questions older than %d days", deleted, days)

    @app_commands.command(name="insights")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(days="How many days back (default 30)", private="Only you see it")
    @admin_only
    async def insights(
        self,
        interaction: discord.Interaction,
        days: app_commands.Range[int, 1, 3650] = 30,
        private: bool = True,
    ) -> None:
        """Show what members asked that the documents don't answer, and the worst answers."""
        await interaction.response.defer(ephemeral=private, thinking=True)
        report = await asyncio.to_thread(
            build, self.engine.db, self.encode, interaction.guild_id, days
        )
        await interaction.edit_original_response(
            embed=render_insights(report), allowed_mentions=NO_PINGS
        )


class ServerSettings(commands.Cog):
    """This server's hand-off to moderators and the channels where @mentions are answered."""

    settings = app_commands.Group(
        name="settings",
        description="This server's settings for the bot",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @settings.command(name="show")
    @admin_only
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this server's settings."""
        current = await asyncio.to_thread(self.engine.db.settings, interaction.guild_id)
        await reply(interaction, render_settings(current, self.engine.settings.retention_days))

    @settings.command(name="handoff")
    @app_commands.describe(
        channel="Where members' questions for a human are posted (leave out: hand-offs off)",
        role="The role to ping there",
    )
    @admin_only
    async def handoff(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | None = None,
        role: discord.Role | None = None,
    ) -> None:
        """Let members pass questions the bot can't answer on to moderators."""
        if role is not None and channel is None:
            raise Error("Pick the channel for hand-offs as well as the role to ping there.")
        if role is not None and role.is_default():
            raise Error("Pick a moderators' role rather than @everyone.")
        guild = interaction.guild
        current = await asyncio.to_thread(self.engine.db.settings, guild.id)
        new = replace(
            current, handoff_channel=channel and channel.id, handoff_role=role and role.id
        )
        await asyncio.to_thread(self.engine.db.save_settings, guild.id, new, interaction.user.id)
        log.info(
            "%s (%s) sets hand-offs of guild %s to %s",
            interaction.user,
            interaction.user.id,
            guild.id,
            new,
        )
        if channel is None:
            await reply(interaction, "Hand-offs to moderators are off.")
            return
        lines = [f"Members can now pass questions on to {channel.mention}."]
        mine = channel.permissions_for(guild.me)
        if not (mine.view_channel and mine.send_messages):
            lines.append(f"⚠️ I can't post in {channel.mention} yet: give me Send Messages there.")
        if role is not None and not (role.mentionable or mine.mention_everyone):
            lines.append(
                f"⚠️ {role.mention} is not mentionable, so it won't be pinged: make it "
                "mentionable or give me Mention All Roles."
            )
        await reply(interaction, "\n".join(lines))

    @settings.command(name="channels")
    @admin_only
    async def channels(self, interaction: discord.Interaction) -> None:
        """Choose the channels where I answer @mentions."""
        current = await asyncio.to_thread(self.engine.db.settings, interaction.guild_id)
        await reply(
            interaction,
            "Pick the channels where I answer @mentions (threads follow their channel); "
            "pick none to answer everywhere. Slash commands work everywhere.",
            view=ChannelsView(self.engine, current.channels),
        )


class ChannelsView(discord.ui.View):
    """The channel picker of /settings channels."""

    def __init__(self, engine: Engine, chosen: tuple[int, ...]) -> None:
        super().__init__(timeout=600)
        self.engine = engine
        self.pick.default_values = [discord.Object(c) for c in chosen[:25]]

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Checked again on every pick: a crafted interaction needs Manage Server too."""
        if interaction.permissions.manage_guild:
            return True
        await reply(interaction, REFUSED)
        return False

    @discord.ui.select(
        cls=discord.ui.ChannelSelect,
        channel_types=LISTEN_TYPES,
        min_values=0,
        max_values=25,
        placeholder="Every channel",
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.ChannelSelect):
        guild, chosen = interaction.guild, tuple(c.id for c in select.values)
        current = await asyncio.to_thread(self.engine.db.settings, guild.id)
        new = replace(current, channels=chosen)
        await asyncio.to_thread(self.engine.db.save_settings, guild.id, new, interaction.user.id)
        log.info(
            "%s (%s) sets guild %s to answer in %s",
            interaction.user,
            interaction.user.id,
            guild.id,
            chosen or "every channel",
        )
        where = " ".join(f"<#{c}>" for c in chosen) or "every channel"
        await interaction.response.edit_message(
            content=f"I answer @mentions in {where}.", view=None, allowed_mentions=NO_PINGS
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Insights(bot.engine))
    await bot.add_cog(ServerSettings(bot.engine))
