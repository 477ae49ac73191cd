"""Answers as Discord messages: pure functions, within Discord's limits, Markdown escaped."""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord

from bot.engine.answers import Answer, Citation

CONTENT_LIMIT = 2000
DESCRIPTION_LIMIT = 4096  # an embed's description; the whole embed may hold 6000
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
    """The reply: the answer once, as content, and an embed that lists each source once.

    A quote the content already shows is not repeated: its source gets one line (title,
    location, link). The embed quotes only what the content doesn't: the passages of a refusal
    that might be related, a generated answer's sources, or every quote of an answer too long
    for one message, whose content is then just its lead and markers.
    """
    text = answer.text
    if not answer.citations:
        return Rendered(fit_answer(text), None)
    shown = {c.n for c in answer.citations if c.quote in text}
    if shown and len(escape(text)) > CONTENT_LIMIT:
        for c in answer.citations:
            text = text.replace(c.quote, "", 1) if c.n in shown else text
        text, shown = " ".join(text.split()), set()
    embed = discord.Embed(
        title="Sources" if answer.found else "Might be related",
        description=sources(answer.citations, shown),
        colour=discord.Colour.blurple(),
    )
    return Rendered(fit_answer(text), embed)


def sources(citations: tuple[Citation, ...], shown: set[int]) -> str:
    """Each document's title once; then `[n] location` for the citations in `shown` (their
    quotes are in the content) on one line, and each other citation with its quote below."""
    by_doc: dict[str, list[Citation]] = {}
    for c in citations:
        by_doc.setdefault(c.chunk.doc_id, []).append(c)
    lines: list[str | Citation] = []  # a Citation stands for its quote, sized below
    for group in by_doc.values():
        lines.append(f"**{escape(shorten(group[0].chunk.title, 200))}**")
        if places := [_place(c) for c in group if c.n in shown]:
            lines.append(" · ".join(places))
        for c in group:
            if c.n not in shown:
                lines += [_place(c), c]
    quoted = sorted((c for c in lines if isinstance(c, Citation)), key=lambda c: len(c.quote))
    left = DESCRIPTION_LIMIT - sum(len(line) + 1 for line in lines if isinstance(line, str))
    quotes = {}
    for i, c in enumerate(quoted):  # shortest first, so what they leave goes to longer ones
        quotes[c.n] = _blockquote(c.quote, left // (len(quoted) - i) - 1)
        left -= len(quotes[c.n]) + 1
    text = "\n".join(quotes[x.n] if isinstance(x, Citation) else x for x in lines)
    return shorten(text, DESCRIPTION_LIMIT)


def _place(c: Citation) -> str:
    """`[n] location`, the location linked to the passage when its document has an address."""
    return f"[{c.n}] " + _link(escape(shorten(c.chunk.location, 100)), c.url)


def _blockquote(text: str, limit: int) -> str:
    """`text` escaped as a block quote of at most `limit` characters, shortened at a word."""
    cut = limit = max(0, limit)
    while True:  # escapes and "> " prefixes lengthen it: cut by the excess until it fits
        out = "> " + escape(shorten(text, max(1, cut))).replace("\n", "\n> ")
        if len(out) <= limit or cut <= 1:
            return out[:limit]
        cut -= len(out) - limit


def _link(text: str, url: str | None) -> str:
    """`text` as a Markdown link to `url` (spaces and parentheses encoded), or plain."""
    if not url:
        return text
    return f"[{text}]({url.replace(' ', '%20').replace('(', '%28').replace(')', '%29')})"


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
