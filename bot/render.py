"""Answers as Discord messages: pure functions, within Discord's limits, Markdown escaped."""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord

from bot.records import Answer

CONTENT_LIMIT = 2000
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
MAX_FIELDS = 25
MAX_LINK = 500  # characters of a source link shown in Discord (longer ones are left out)
ELLIPSIS = "…"
_SEGMENT = re.compile(r"(.*?\[\d+\])", re.S)  # text up to and including a citation marker


@dataclass(frozen=True)
class Rendered:
    content: str
    embed: discord.Embed | None


def shorten(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters at a word boundary, marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def escape(text: str) -> str:
    return discord.utils.escape_markdown(text, ignore_links=False)


def code(text: str) -> str:
    """`text` as inline code, shown literally: not escaped (a backslash would show), and a
    backtick in it cannot end the span early."""
    return f"`{text.replace('`', 'ˋ')}`"


def fit_answer(text: str, limit: int = CONTENT_LIMIT) -> str:
    """Escape an answer and shorten its cited passages evenly so it fits in `limit`.

    Each citation marker `[n]` is kept whole with the words it follows.
    """
    segments = _SEGMENT.findall(text)
    tail = text[sum(map(len, segments)) :]
    parts = [escape(s) for s in segments] + ([escape(tail)] if tail.strip() else [])
    if sum(map(len, parts)) <= limit:
        return "".join(parts)
    budget = max(20, limit // max(1, len(parts)) - 1)
    out = []
    for part in parts:
        marker = re.search(r"\s*\\?\[\d+\\?\]$", part)
        body, end = (part[: marker.start()], part[marker.start() :]) if marker else (part, "")
        out.append(shorten(body, max(1, budget - len(end))) + end)
    return shorten(" ".join(p.strip() for p in out), limit)


def render_answer(answer: Answer) -> Rendered:
    """The reply: the answer as content, numbered sources with their exact quotes as an embed."""
    content = fit_answer(answer.text)
    if not answer.citations:
        return Rendered(content, None)
    title = "Sources" if answer.found else "Might be related"
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    used = len(embed.title)
    citations = answer.citations[:MAX_FIELDS]
    for i, c in enumerate(citations):
        # A field's name cannot hold a link, so a linked source's title heads its value instead.
        linked = c.url is not None and len(c.url) <= MAX_LINK
        name = shorten(
            f"[{c.n}] " + ("" if linked else f"{c.chunk.title} · ") + c.chunk.location,
            FIELD_NAME_LIMIT,
        )
        url = (c.url or "").replace("(", "%28").replace(")", "%29")
        text = escape(shorten(c.chunk.title, 100)).replace("]", "\\]")
        link = f"[{text}]({url})\n" if linked else ""
        share = (EMBED_TOTAL_LIMIT - used) // (len(citations) - i) - len(name) - len(link)
        value = (
            link
            + "> "
            + escape(shorten(c.quote, min(FIELD_VALUE_LIMIT, share) - 20)).replace("\n", "\n> ")
        )
        value = value[:FIELD_VALUE_LIMIT]
        embed.add_field(name=name, value=value, inline=False)
        used += len(name) + len(value)
    embed.set_footer(text="Quotes are exact; [n] marks where each one is used.")
    return Rendered(content, embed)


def render_documents(docs: list[tuple[str, str, int, str, str]]) -> str:
    """(doc id, title, chunks, indexed at, note) rows as a short list within one message."""
    if not docs:
        return "No documents are indexed yet."
    lines = [
        f"• **{escape(shorten(title, 80))}** ({code(doc_id)}): {chunks} chunks, indexed {when[:10]}"
        + (f"; {note}" if note else "")
        for doc_id, title, chunks, when, note in docs
    ]
    out, total = [], 0
    for line in lines:
        if total + len(line) + 40 > CONTENT_LIMIT:
            out.append(f"…and {len(lines) - len(out)} more.")
            break
        out.append(line)
        total += len(line) + 1
    return "\n".join(out)
