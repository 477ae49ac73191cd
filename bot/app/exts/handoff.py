"""The "Ask a moderator" button: passes a question the bot could not help with to a human."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace

import discord
from discord.ext import commands

from bot.app.exts.answers import answer_view
from bot.app.render_admin import render_handoff
from bot.app.replies import NO_PINGS, reply
from bot.engine.db import HandoffRefused
from index.errors import Error

log = logging.getLogger(__name__)


def pings(role_id: int | None) -> discord.AllowedMentions:
    """Only the moderators' role may be pinged by a hand-off: no one else, never @everyone."""
    if role_id is None:
        return NO_PINGS
    return discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(role_id)], replied_user=False
    )


class HandoffButton(discord.ui.DynamicItem[discord.ui.Button], template=r"handoff:(?P<id>\d+)"):
    """Offered under refusals and after a 👎 where the server has set up hand-offs."""

    def __init__(self, answer_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Ask a moderator",
                emoji="🙋",
                style=discord.ButtonStyle.secondary,
                custom_id=f"handoff:{answer_id}",
            )
        )
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> HandoffButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        engine = interaction.client.engine  # type: ignore[attr-defined]
        cooldown = engine.settings.handoff_cooldown_seconds
        try:
            if interaction.guild is None:
                raise HandoffRefused("Hand-offs work in servers only.")
            asked = await asyncio.to_thread(engine.db.asked, self.answer_id)
            settings = await asyncio.to_thread(engine.db.settings, interaction.guild.id)
            if asked is None or asked.guild_id != interaction.guild.id:  # a crafted custom id
                raise HandoffRefused("That answer is not one of this server's.")
            channel = interaction.guild.get_channel(settings.handoff_channel or 0)
            if not isinstance(channel, discord.abc.Messageable):
                raise HandoffRefused("This server does not pass questions on to moderators.")
            await asyncio.to_thread(
                engine.db.claim_handoff, asked.answer_id, interaction.user.id, cooldown
            )
        except Error as err:
            await reply(interaction, str(err))
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        shown = interaction.message
        if asked.message_id is None and shown is not None and not shown.flags.ephemeral:
            # Pressed under the public answer itself, perhaps before its id was stored.
            asked = replace(asked, message_id=shown.id, channel_id=shown.channel.id)
        text = render_handoff(asked, interaction.user.id, settings.handoff_role)
        try:
            posted = await channel.send(
                text,
                allowed_mentions=pings(settings.handoff_role),
                view=answer_view(asked.answer_id),
            )
        except discord.HTTPException as err:
            log.warning("could not post a hand-off in channel %s: %s", channel.id, err)
            await asyncio.to_thread(engine.db.handoff_posted, asked.answer_id, None)
            await reply(interaction, "I could not reach the moderators; please try again later.")
            return
        await asyncio.to_thread(engine.db.handoff_posted, asked.answer_id, posted.id)
        log.info(
            "%s (%s) passed answer %s on to the moderators of guild %s",
            interaction.user,
            interaction.user.id,
            asked.answer_id,
            interaction.guild.id,
        )
        await reply(
            interaction,
            f"Passed on to the moderators in {channel.mention}; someone will get back to you.",
        )


async def setup(bot: commands.Bot) -> None:
    bot.add_dynamic_items(HandoffButton)
