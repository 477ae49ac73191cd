"""/ask, @mentions, follow-ups in threads and replies, and the 👍/👎 buttons."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict, deque

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.exts.handoff import HandoffButton
from bot.app.render import fit_answer, render_answer, shorten
from bot.app.replies import NO_PINGS, reply
from bot.config import Settings
from bot.engine import Engine
from bot.engine.answers import Answer
from bot.engine.extractive import QuestionError, clean_question
from bot.engine.generated import OnText
from index.errors import Error

log = logging.getLogger(__name__)
REMEMBERED = 5000  # conversations (threads, answer messages) kept for follow-ups
# Discord markup for users, roles, channels and custom emoji: noise to retrieval, never a question.
_MARKUP = re.compile(r"<(?:@[!&]?|#)\d+>|<a?:\w+:\d+>")
# Paired emphasis (**bold**, _italic_, ~~strike~~, ||spoiler||, `code`); snake_case stays whole.
_EMPHASIS = re.compile(r"(?<!\w)(\*\*|__|~~|\|\||[*_`])(?=\S)(.+?)(?<=\S)\1(?!\w)")


def plain(text: str) -> str:
    """The question as words: no mention or custom-emoji markup, no Markdown emphasis."""
    return _EMPHASIS.sub(r"\2", _MARKUP.sub(" ", text))


class Cooldown:
    """At most `count` questions per member within `seconds`."""

    def __init__(self, count: int, seconds: float) -> None:
        self.count, self.seconds = count, seconds
        self.asked: dict[int, deque[float]] = {}

    def check(self, user_id: int) -> None:
        now = time.monotonic()
        times = self.asked.setdefault(user_id, deque())
        while times and now - times[0] > self.seconds:
            times.popleft()
        if len(times) >= self.count:
            wait = self.seconds - (now - times[0])
            raise QuestionError(f"You're asking quickly! Please wait {wait:.0f} s and ask again.")
        times.append(now)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"vote:(?P<id>\d+):(?P<v>-?1)"
):
    """A 👍 or 👎 under an answer; survives restarts because its state is in its custom id."""

    def __init__(self, answer_id: int, vote: int) -> None:
        super().__init__(
            discord.ui.Button(
                emoji="👍" if vote > 0 else "👎",
                style=discord.ButtonStyle.secondary,
                custom_id=f"vote:{answer_id}:{vote}",
            )
        )
        self.answer_id, self.vote = answer_id, vote

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> VoteButton:
        return cls(int(match["id"]), int(match["v"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        engine: Engine = interaction.client.engine  # type: ignore[attr-defined]
        asked = await asyncio.to_thread(engine.db.asked, self.answer_id)
        if asked is None or asked.guild_id != interaction.guild_id:  # a crafted custom id
            await reply(interaction, "That answer is not one of this server's.")
            return
        await asyncio.to_thread(engine.db.vote, self.answer_id, interaction.user.id, self.vote)
        if self.vote < 0 and await handoffs(engine, interaction.guild_id):
            view = discord.ui.View()
            view.add_item(HandoffButton(self.answer_id))
            text = "Thanks, your vote is recorded. If the answer didn't help, ask a moderator."
            await reply(interaction, text, view=view)
        else:
            await reply(interaction, "Thanks, your vote is recorded.")


async def handoffs(engine: Engine, guild_id: int | None) -> bool:
    """Whether this server passes questions on to moderators."""
    if guild_id is None:
        return False
    settings = await asyncio.to_thread(engine.db.settings, guild_id)
    return settings.handoff_channel is not None


def buttons(answer_id: int, handoff: bool = False) -> discord.ui.View:
    """👍/👎 under an answer, and "Ask a moderator" under a refusal where hand-offs are on."""
    view = discord.ui.View(timeout=None)
    view.add_item(VoteButton(answer_id, 1))
    view.add_item(VoteButton(answer_id, -1))
    if handoff:
        view.add_item(HandoffButton(answer_id))
    return view


class Ask(commands.Cog):
    """Members' questions."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.cooldown = Cooldown(settings.cooldown_questions, settings.cooldown_seconds)
        # Message or thread id -> the question answered there, for follow-ups.
        self.asked: OrderedDict[int, str] = OrderedDict()

    async def answer(
        self,
        question: str,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        context: str | None = None,
        on_text: OnText | None = None,
    ) -> tuple[Answer, int, dict]:
        """Answer off the event loop and record it; returns the answer, its id, message kwargs."""
        answer, _ = await self.engine.answer(question, guild_id, context, on_text)
        answer_id = await asyncio.to_thread(
            self.engine.db.record_answer, guild_id, channel_id, user_id, answer.to_dict()
        )
        handoff = not answer.found and await handoffs(self.engine, guild_id)
        rendered = render_answer(answer)
        kwargs: dict = {
            "content": rendered.content,
            "allowed_mentions": NO_PINGS,
            "view": buttons(answer_id, handoff),
        }
        if rendered.embed:
            kwargs["embed"] = rendered.embed
        return answer, answer_id, kwargs

    def remember(self, key: int, question: str) -> None:
        self.asked[key] = question
        self.asked.move_to_end(key)
        while len(self.asked) > REMEMBERED:
            self.asked.popitem(last=False)

    async def listens_in(self, channel: discord.abc.Messageable) -> bool:
        """Whether @mentions are answered here (`/settings channels`; a thread by its parent)."""
        guild = getattr(channel, "guild", None)
        if guild is None:
            return True
        allowed = (await asyncio.to_thread(self.engine.db.settings, guild.id)).channels
        return not allowed or bool({channel.id, getattr(channel, "parent_id", None)} & set(allowed))

    def may_answer(
        self, channel: discord.abc.GuildChannel | discord.Thread, me: discord.Member
    ) -> bool:
        """Whether I may answer here: post (a reply needs Read Message History too), in threads
        as well where REPLY_IN_THREAD starts one."""
        mine = channel.permissions_for(me)
        if isinstance(channel, discord.Thread):
            post = mine.send_messages_in_threads
        else:
            threads = mine.create_public_threads and mine.send_messages_in_threads
            post = mine.send_messages and (threads or not self.settings.reply_in_thread)
        return post and mine.read_message_history

    @app_commands.command(name="ask")
    @app_commands.describe(question="Your question", private="Only you see the answer")
    async def ask(
        self, interaction: discord.Interaction, question: str, private: bool = False
    ) -> None:
        """Ask a question about the documents; the answer quotes its sources."""
        question = clean_question(plain(question), self.settings.max_question_chars)
        self.cooldown.check(interaction.user.id)
        await interaction.response.defer(ephemeral=private, thinking=True)

        async def preview(text: str) -> None:  # verified text so far, while a model streams
            await interaction.edit_original_response(content=fit_answer(text))

        _, answer_id, kwargs = await self.answer(
            question,
            interaction.user.id,
            interaction.guild_id,
            interaction.channel_id,
            on_text=preview,
        )
        # Editing fills the "thinking" message, whether or not a preview already replaced it.
        message = await interaction.edit_original_response(**kwargs)
        self.remember(message.id, question)
        if not private:  # a private answer has no link others could follow
            await asyncio.to_thread(self.engine.db.set_message, answer_id, message.id)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer @mentions, follow-ups in the bot's threads, and replies to its answers."""
        me = message.guild.me if message.guild else None
        if message.author.bot or me is None:
            return
        ref = message.reference
        context = self.asked.get(message.channel.id) or (ref and self.asked.get(ref.message_id))
        if me not in message.mentions and context is None:
            return
        if not await self.listens_in(message.channel):
            return
        if not self.may_answer(message.channel, me):  # rather than fail after the work
            log.info(
                "not answering %s: I may not post in channel %s", message.id, message.channel.id
            )
            return
        try:
            question = clean_question(plain(message.content), self.settings.max_question_chars)
            self.cooldown.check(message.author.id)
        except QuestionError as err:
            await message.reply(str(err), mention_author=False, allowed_mentions=NO_PINGS)
            return
        try:
            async with message.channel.typing():
                answer, answer_id, kwargs = await self.answer(
                    question, message.author.id, message.guild.id, message.channel.id, context
                )
        except Error as err:  # user-safe text, as the slash-command funnel shows it
            await message.reply(str(err), mention_author=False, allowed_mentions=NO_PINGS)
            return
        in_thread = isinstance(message.channel, discord.Thread)
        if self.settings.reply_in_thread and not in_thread:
            thread = await message.create_thread(name=shorten(question, 90))
            self.remember(thread.id, question)
            sent = await thread.send(**kwargs)
        else:
            sent = await message.reply(mention_author=False, **kwargs)
            if in_thread and message.channel.owner_id == me.id:  # not a thread members started
                self.remember(message.channel.id, question)
        self.remember(sent.id, question)
        await asyncio.to_thread(self.engine.db.set_message, answer_id, sent.id, sent.channel.id)
        log.info("answered %s for %s (found=%s)", message.id, message.author.id, answer.found)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Ask(bot.engine, bot.settings))
    bot.add_dynamic_items(VoteButton)
