"""Moderators' answers: the **Answer** button on a hand-off post and its modal, which answer the
member where they asked and save the answer as this server's knowledge; /answers list|remove."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.render import CONTENT_LIMIT, escape, shorten
from bot.app.render_known import answered_post, member_reply, one_line, pieces, render_entries
from bot.app.replies import GENERIC_ERROR, NO_PINGS, admin_only, reply
from bot.engine import Engine
from bot.engine.db import Asked, HandoffRefused
from bot.engine.knowledge import MAX_ANSWER, clean_answer
from bot.engine.knowledge_db import answered
from index.errors import Error

log = logging.getLogger(__name__)
PRIVATE = (
    "They asked privately (`/ask private:true`): I can't answer them where they asked without "
    "showing their question to others."
)
BY_HAND = "Send them your answer yourself (below); the hand-off is marked answered."


async def answerable(interaction: discord.Interaction, answer_id: int) -> Asked:
    """The question of a hand-off this member may answer here, or an Error saying why not:
    moderators (the hand-off role) and members with Manage Server may, once per hand-off."""
    engine: Engine = interaction.client.engine  # type: ignore[attr-defined]
    guild = interaction.guild
    if guild is None:
        raise HandoffRefused("Hand-offs work in servers only.")
    settings = await asyncio.to_thread(engine.db.settings, guild.id)
    role = settings.handoff_role
    member_roles = getattr(interaction.user, "roles", [])
    if not interaction.permissions.manage_guild and not any(r.id == role for r in member_roles):
        raise HandoffRefused(
            "Only moderators (the hand-off role) and members with Manage Server can answer."
        )
    asked = await asyncio.to_thread(engine.db.asked, answer_id)
    handoff = await asyncio.to_thread(engine.knowledge.handoff, answer_id)
    if asked is not None and asked.guild_id != guild.id:  # a crafted custom id
        raise HandoffRefused("That hand-off is not one of this server's.")
    if asked is None or handoff is None or handoff.answered_at is not None:
        raise HandoffRefused(answered(handoff))
    return asked


def answer_view(answer_id: int, done: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton(answer_id, done))
    return view


class AnswerButton(discord.ui.DynamicItem[discord.ui.Button], template=r"answer:(?P<id>\d+)"):
    """On a hand-off post: opens the modal a moderator answers the member with."""

    def __init__(self, answer_id: int, done: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label="Answered" if done else "Answer",
                emoji="✅" if done else "✍️",
                style=discord.ButtonStyle.secondary if done else discord.ButtonStyle.primary,
                custom_id=f"answer:{answer_id}",
                disabled=done,
            )
        )
        self.answer_id = answer_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> AnswerButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            asked = await answerable(interaction, self.answer_id)
        except Error as err:
            await reply(interaction, str(err))
            return
        await interaction.response.send_modal(AnswerModal(asked.answer_id))


class AnswerModal(discord.ui.Modal, title="Answer the member"):
    """One paragraph: sent to the member where they asked, and saved as what the bot knows."""

    answer = discord.ui.TextInput(
        label="Your answer",
        style=discord.TextStyle.paragraph,
        placeholder="Sent to the member and saved: I answer this question with it from now on",
        max_length=MAX_ANSWER,
    )

    def __init__(self, answer_id: int) -> None:
        super().__init__(timeout=3600)
        self.answer_id = answer_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """A crafted submit (another member, another server) is refused and leaves the modal
        open for the moderator it was shown to."""
        try:
            await answerable(interaction, self.answer_id)
        except Error as err:
            await reply(interaction, str(err))
            return False
        return True

    async def on_submit(self, interaction: discord.Interaction) -> None:
        engine: Engine = interaction.client.engine  # type: ignore[attr-defined]
        text = clean_answer(self.answer.value)
        try:
            asked = await answerable(interaction, self.answer_id)  # answered meanwhile?
            if not text:
                raise HandoffRefused("The answer was empty; nothing was sent.")
            await interaction.response.defer(ephemeral=True, thinking=True)
            await asyncio.to_thread(
                engine.knowledge.claim_answer, asked.answer_id, interaction.user.id
            )
        except Error as err:
            await reply(interaction, str(err))
            return
        user = interaction.user
        log.info(
            "%s (%s) answers hand-off %s in guild %s",
            user,
            user.id,
            asked.answer_id,
            asked.guild_id,
        )
        told, send_by_hand = await deliver(interaction, asked, text)
        try:
            entry = await asyncio.to_thread(
                engine.save_answer,
                asked.guild_id,
                asked.answer_id,
                asked.question,
                text,
                user.id,
                user.display_name,
            )
        except Error as err:
            entry, saved = None, f"It was not saved as this server's knowledge: {err}"
        else:
            saved = f"Saved as moderator answer #{entry.id}: I answer this question with it now."
        await mark_answered(interaction, asked.answer_id, entry and entry.id)
        await reply(interaction, f"{told}\n{saved}")
        for part in send_by_hand:
            await reply(interaction, part)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        log.error("answering hand-off %s failed", self.answer_id, exc_info=error)
        await reply(interaction, GENERIC_ERROR)


async def deliver(interaction: discord.Interaction, asked: Asked, text: str):
    """Send the answer to the member where they asked, pinging only them: a reply to the bot's
    answer (in its thread, if it is in one). Returns what the moderator is told and, where the
    member can't be answered in place, the answer in messages to send them by hand."""
    if asked.message_id is None or asked.channel_id is None:
        return f"{PRIVATE} {BY_HAND}", pieces(text, CONTENT_LIMIT)
    channel = interaction.client.get_partial_messageable(  # type: ignore[attr-defined]
        asked.channel_id, guild_id=asked.guild_id
    )
    ping = discord.AllowedMentions(
        everyone=False, users=[discord.Object(asked.user_id)], roles=False, replied_user=False
    )
    where = discord.MessageReference(
        message_id=asked.message_id, channel_id=asked.channel_id, fail_if_not_exists=False
    )
    first, *rest = member_reply(asked.user_id, text)
    try:
        posted = await channel.send(first, reference=where, allowed_mentions=ping)
        for part in rest:  # the rest of a long answer, replying to its beginning
            await channel.send(part, reference=posted, allowed_mentions=NO_PINGS)
    except discord.HTTPException as err:
        log.warning("could not answer in channel %s: %s", asked.channel_id, err)
        why = f"I could not post in <#{asked.channel_id}> ({escape(err.text or str(err.status))})."
        return f"{why} {BY_HAND}", pieces(text, CONTENT_LIMIT)
    return f"Sent to <@{asked.user_id}>: {posted.jump_url}", []


async def mark_answered(
    interaction: discord.Interaction, answer_id: int, entry_id: int | None
) -> None:
    """Say on the hand-off post who answered it and when, and disable its button."""
    post = interaction.message  # a modal opened from a button comes with the button's message
    if post is None:
        return
    content = answered_post(
        post.content, interaction.user.id, datetime.now(UTC).date().isoformat(), entry_id
    )
    try:
        await post.edit(
            content=content, view=answer_view(answer_id, done=True), allowed_mentions=NO_PINGS
        )
    except discord.HTTPException as err:
        log.warning("could not mark hand-off post %s answered: %s", post.id, err)


class Answers(commands.Cog):
    """Admins keep the moderators' answers tidy."""

    answers = app_commands.Group(
        name="answers",
        description="Moderators' answers the bot answers from",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @answers.command(name="list")
    @admin_only
    async def answers_list(self, interaction: discord.Interaction) -> None:
        """List the moderators' answers I answer from here."""
        entries = await asyncio.to_thread(self.engine.knowledge.entries, interaction.guild_id)
        await reply(interaction, render_entries(entries))

    @answers.command(name="remove")
    @app_commands.describe(entry="The answer's number (#) in /answers list")
    @admin_only
    async def answers_remove(self, interaction: discord.Interaction, entry: int) -> None:
        """Remove a moderator's answer: I stop answering from it."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = interaction.user
        log.info(
            "%s (%s) removes answer #%s in guild %s", user, user.id, entry, interaction.guild_id
        )
        removed = await asyncio.to_thread(
            self.engine.remove_entry, interaction.guild_id, entry, user.id
        )
        question = escape(shorten(one_line(removed.question), 150))
        await reply(interaction, f"Removed moderator answer #{removed.id} (“{question}”).")

    @answers_remove.autocomplete("entry")
    async def _entries(self, interaction: discord.Interaction, current: str):
        if not interaction.permissions.manage_guild:  # questions are for admins' eyes only
            return []
        entries = await asyncio.to_thread(self.engine.knowledge.entries, interaction.guild_id)
        return [
            app_commands.Choice(
                name=shorten(f"#{e.id} {one_line(e.question)} ({e.answerer}, {e.date})", 100),
                value=e.id,
            )
            for e in reversed(entries)
            if current.strip().lstrip("#").lower() in f"{e.id} {e.question}".lower()
        ][:25]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Answers(bot.engine))
    bot.add_dynamic_items(AnswerButton)
