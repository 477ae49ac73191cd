"""Moderators' answers as messages: pure rendering within Discord's limits, nothing lost."""

from __future__ import annotations

import pytest

from bot.app.render_known import answered_post, member_reply, pieces, render_entries
from bot.engine.knowledge_db import Entry
from tests.discord_harness import unescape

HOSTILE = "**bold** _x_ `c` > quote\n# heading @everyone <@&1> [l](https://e.org) ~~s~~ ||p|| "


@pytest.mark.parametrize(
    "text",
    [HOSTILE * 60, "*" * 4000, "word " * 800, "\n".join(["line"] * 900), "é" * 4000],
)
def test_pieces_fit_and_hold_the_whole_answer(text: str) -> None:
    parts = member_reply(42, text.strip())
    assert all(len(p) <= 2000 for p in parts) and parts[0].startswith(
        "<@42> A moderator answered:\n"
    )
    head = len("<@42> A moderator answered:\n")
    assert unescape(parts[0][head:]) + "".join(unescape(p) for p in parts[1:]) == text.strip()
    assert pieces("short", 2000) == ["short"]


def test_an_answered_post_keeps_its_line_within_the_limit() -> None:
    post = answered_post("x" * 2000, 7, "2026-12-01", 3)
    assert len(post) <= 2000
    assert post.endswith("\n✅ **Answered by** <@7> on 2026-12-01 (saved as moderator answer #3).")
    assert answered_post("Hi", 7, "2026-12-01", None).endswith("on 2026-12-01.")


def test_the_list_of_entries_fits_one_message() -> None:
    entries = [
        Entry(n, 1, HOSTILE * 5, HOSTILE * 50, 2, "Mod *x*", "2026-12-01T00:00") for n in range(100)
    ]
    shown = render_entries(entries)
    assert len(shown) <= 2000 and shown.endswith(" more.") and "**#0** “" in shown
    assert "@everyone" in shown and "\\*\\*bold" in shown  # escaped, and sent with no pings
    assert render_entries([]).startswith("No moderator's answer is saved here yet")
