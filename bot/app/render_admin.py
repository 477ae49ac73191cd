"""Admins' messages in Discord: /insights, hand-off posts, /settings and /docs add url:; pure
functions."""

from __future__ import annotations

import discord

from bot.app.render import CONTENT_LIMIT, code, escape, shorten
from bot.engine.db import Asked, GuildSettings
from bot.engine.insights import Insights, jump_url, period, rate
from index.indexer import Report
from index.records import Document
from index.web.pages import warning
from index.web.sources import shown_url

FIELD_VALUE_LIMIT = 1024


def _fit_lines(lines: list[str], limit: int, more: str) -> str:
    """As many whole lines as fit in `limit`, then `more` (formatted with how many were left)."""
    out, total = [], 0
    for n, line in enumerate(lines):
        if total + len(line) + 1 + len(more) + 8 > limit:
            out.append(more.format(len(lines) - n))
            break
        out.append(line)
        total += len(line) + 1
    return "\n".join(out)


def render_insights(report: Insights) -> discord.Embed:
    """/insights: totals, unanswered questions by topic, then the most down-voted answers."""
    embed = discord.Embed(title=f"Insights · {period(report.days)}", colour=discord.Colour.gold())
    if not report.asked:
        embed.description = "No questions were asked here in that time."
        return embed
    head = (
        f"**{report.asked}** questions from **{report.members}** members · "
        f"**{rate(report)}** answered · 👍 {report.up} · 👎 {report.down}"
    )
    unanswered = sum(g.count for g in report.groups)
    lines = [
        f"**{g.count}×** {escape(shorten(g.example.question, 150))}"
        + (f" *({g.members} members)*" if g.members > 1 else "")
        for g in report.groups
    ]
    topics = (
        f"**Unanswered, by topic** ({unanswered} questions, {len(report.groups)} topics)\n"
        + _fit_lines(lines, 3000, "…and {} more topics: `statement-bot insights --json` lists all.")
        if lines
        else "Every question was answered."
    )
    embed.description = f"{head}\n\n{topics}"
    worst = [
        f"👎 {a.downs} · {escape(shorten(a.question, 90))}"
        + (f" · [jump]({url})" if (url := jump_url(a)) else " · (private answer)")
        for a in report.downvoted
    ]
    embed.add_field(
        name="Most down-voted answers",
        value=_fit_lines(worst, FIELD_VALUE_LIMIT, "…and {} more.") or "None yet.",
        inline=False,
    )
    if report.handoffs_answered or report.handoffs_open or report.from_moderators:
        embed.add_field(
            name="Hand-offs to moderators",
            value=f"**{report.handoffs_answered}** answered · **{report.handoffs_open}** open\n"
            f"**{report.from_moderators}** later questions answered from moderators' answers",
            inline=False,
        )
    embed.set_footer(text="Add documents that answer the top topics, then /reindex.")
    return embed


def render_handoff(asked: Asked, passed_by: int, role_id: int | None) -> str:
    """The moderators' post: who asked what, the bot's answer and a link to it."""
    url = jump_url(asked)
    lines = [
        (f"<@&{role_id}> " if role_id else "") + "A member would like a moderator's help.",
        f"**Asked by** <@{asked.user_id}> in <#{asked.channel_id}>:",
        "> " + escape(shorten(asked.question, 600)).replace("\n", "\n> "),
        f"**The bot answered:** {escape(shorten(asked.answer, 900))}",
        f"**Answer:** {url}" if url else "**Answer:** (shown privately to the member)",
    ]
    if passed_by != asked.user_id:
        lines.append(f"Passed on by <@{passed_by}>.")
    return shorten("\n".join(lines), CONTENT_LIMIT)


def render_settings(settings: GuildSettings, retention_days: int) -> str:
    """/settings show."""
    if settings.handoff_channel is None:
        handoff = "off (`/settings handoff channel:` turns it on)"
    else:
        handoff = f"to <#{settings.handoff_channel}>" + (
            f", pinging <@&{settings.handoff_role}>" if settings.handoff_role else ", no ping"
        )
    where = " ".join(f"<#{c}>" for c in settings.channels) or "every channel"
    kept = f"{retention_days} days" if retention_days else "forever"
    return (
        f"**Hand-off to moderators:** {handoff}\n"
        f"**@mentions answered in:** {where} (slash commands work everywhere)\n"
        f"**Questions kept for:** {kept} (`RETENTION_DAYS`)"
    )


def render_added_url(report: Report, doc: Document) -> str:
    """/docs add url:, once the page is indexed; a page with little text says so."""
    about = ", ".join(x for x in (doc.author, doc.published and f"dated {doc.published}") if x)
    text = (
        f"Added {code(doc.doc_id)} from <{shown_url(doc.url)}>: “{escape(shorten(doc.title, 150))}”"
        + (f" ({escape(about)})" if about else "")
        + f", {report.embedded} chunks indexed in {report.seconds:.1f} s. Ask away!"
    )
    if note := warning(doc, f"<{shown_url(doc.url)}>"):
        text += f"\n⚠️ {note[0].upper()}{note[1:]}"
    return shorten(text, CONTENT_LIMIT)
