"""What every feature replies with: no pings, ephemeral replies, the admin check, and the one
error funnel (known errors in their own words, anything else logged)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from index.errors import Error

log = logging.getLogger(__name__)

GENERIC_ERROR = "Sorry, something went wrong on my side. The error has been logged."
NO_PINGS = discord.AllowedMentions.none()  # the bot echoes document and member text
admin_only = app_commands.checks.has_permissions(manage_guild=True)  # checked by the bot too


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
