"""Moderators' answers as Discord messages: the member's reply, the answered hand-off post and
/answers list; pure functions, within Discord's limits, Markdown escaped."""

from __future__ import annotations

from bot.app.render import CONTENT_LIMIT, escape, shorten
from bot.engine.knowledge_db import Entry


def one_line(text: str) -> str:
    return " ".join(text.split())


def pieces(text: str, limit: int, first: int | None = None) -> list[str]:
    """`text` escaped, in messages of at most `limit` characters (the first `first`), each cut
    at a line or a space where one is near: the pieces together hold all of it."""
    out, rest = [], text
    while rest:
        room = first if first is not None and not out else limit
        if len(escape(rest)) <= room:
            out.append(escape(rest))
            break
        low, high = 1, len(rest)  # the longest beginning that fits once escaped
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if len(escape(rest[:mid])) <= room else (low, mid - 1)
        cut = low
        for sep in ("\n", " "):
            at = rest.rfind(sep, 0, cut)
            if at > cut // 2:
                cut = at + 1
                break
        out.append(escape(rest[:cut]))
        rest = rest[cut:]
    return out


def member_reply(member_id: int, answer: str) -> list[str]:
    """The moderator's answer for the member who asked, attributed; more than one message
    when it is longer than one holds (an answer holds up to 4,000 characters)."""
    head = f"<@{member_id}> A moderator answered:\n"
    parts = pieces(answer, CONTENT_LIMIT, CONTENT_LIMIT - len(head))
    return [head + parts[0], *parts[1:]]


def answered_post(content: str, moderator_id: int, date: str, entry_id: int | None) -> str:
    """The hand-off post once answered: what it said, then who answered it and when."""
    saved = f" (saved as moderator answer #{entry_id})" if entry_id is not None else ""
    line = f"✅ **Answered by** <@{moderator_id}> on {date}{saved}."
    return shorten(content, CONTENT_LIMIT - len(line) - 1) + "\n" + line


def render_entries(entries: list[Entry]) -> str:
    """/answers list: each entry's number, question, who answered and when, and its answer's
    beginning, as many as one message holds."""
    if not entries:
        return (
            "No moderator's answer is saved here yet: answers given with the **Answer** button "
            "of a hand-off post are."
        )
    lines = [f"**Moderator answers** ({len(entries)}): `/answers remove` takes the number."]
    for n, e in enumerate(entries):
        line = (
            f"**#{e.id}** “{escape(shorten(one_line(e.question), 150))}” — "
            f"{escape(shorten(e.answerer, 40))}, {e.date}: "
            f"{escape(shorten(one_line(e.answer), 120))}"
        )
        if sum(len(x) + 1 for x in lines) + len(line) + 30 > CONTENT_LIMIT:
            lines.append(f"…and {len(entries) - n} more.")
            break
        lines.append(line)
    return "\n".join(lines)
