"""The README's pictures come from the real bot: bench/screenshots.py's capture of its payloads
and the HTML they are drawn with (Chromium takes the pictures; these tests do not need it)."""

from __future__ import annotations

import html
import shutil

from bench.screenshots import (
    EPHEMERAL,
    GUILD,
    MEMBER,
    MODERATED,
    Shot,
    capture,
    markdown,
    message_html,
    page,
)
from bot.app.render import escape
from bot.config import Settings
from bot.engine import Engine
from bot.engine.extractive import NOT_FOUND
from tests.conftest import ROOT, STATEMENT
from tests.discord_harness import assert_each_quote_once, sources

STATEMENT_TEXT = STATEMENT.read_text(encoding="utf-8")


async def test_capture_keeps_what_the_real_bot_sent(tmp_path, embedder) -> None:
    shutil.copytree(ROOT / "data", tmp_path / "data")
    settings = Settings(
        data_dir=tmp_path / "data", state_dir=tmp_path / "state", discord_guild_ids=(GUILD,)
    )
    engine = Engine(settings, embedder)
    engine.open()
    shots = {shot.name: shot for shot in await capture(engine)}
    assert list(shots) == [
        "answer", "related", "reindex", "docs-list",
        "moderator-post", "moderator-reply", "moderator-known",
    ]  # fmt: skip

    [answer] = shots["answer"].states
    assert answer["content"].startswith("According to") and "[1]" in answer["content"]
    quoted = assert_each_quote_once(answer, STATEMENT_TEXT)
    assert quoted and all(q in answer["content"] for q in quoted)
    assert [s.n for s in sources(answer)] == list(range(1, len(sources(answer)) + 1))
    assert {b["emoji"]["name"] for b in answer["components"][0]["components"]} == {"👍", "👎"}

    [related] = shots["related"].states
    assert related["content"].startswith(f"{NOT_FOUND} These passages might be related: [1]")
    assert "Kate Dove" in sources(related, "Might be related")[0].quote

    progress, done = shots["reindex"].states
    assert progress["content"] == "Re-indexing… 2/2 chunks embedded."
    assert (
        done["content"].startswith("Indexed 2 documents, ") and "(2 re-embedded)" in done["content"]
    )
    assert all(s["flags"] & EPHEMERAL for s in shots["reindex"].states)

    [listed] = shots["docs-list"].states
    assert (
        "(`herons.txt`): 2 chunks" in listed["content"] and "`statement.txt`" in listed["content"]
    )

    before, after = shots["moderator-post"].states
    assert before["content"].startswith("A member would like a moderator's help.")
    assert [
        (b["label"], b.get("disabled", False)) for b in before["components"][0]["components"]
    ] == [("Answer", False)]
    assert after["content"].startswith(before["content"] + "\n✅ **Answered by** <@")
    assert after["components"][0]["components"][0]["disabled"] is True
    [reply] = shots["moderator-reply"].states
    assert reply["content"] == f"<@{MEMBER}> A moderator answered:\n{escape(MODERATED)}"
    [known] = shots["moderator-known"].states
    assert known["content"].endswith(f"{escape(MODERATED)} [1]")
    assert [s.title for s in sources(known)] == ["Moderator answers"]
    drawn = page(shots["moderator-reply"])
    assert '<span class="mention">@member</span> A moderator answered:' in drawn
    assert "<strong>£5</strong>" not in drawn  # escaped: shown as the moderator typed it

    drawn = page(shots["related"])  # every passage the embed quotes is drawn, as a block quote
    for source in sources(related, "Might be related"):
        assert f"<blockquote>{html.escape(source.quote)}</blockquote>" in drawn


def test_markdown_the_bot_writes_becomes_html() -> None:
    text = '**Title** \\*not bold\\* <b>\n[1] [¶4](https://e.org/?a&b="2") · `x.txt`\n> one\n> two'
    assert markdown(text) == (
        "<div><strong>Title</strong> *not bold* &lt;b&gt;<br>"
        '[1] <a href="https://e.org/?a&amp;b=&quot;2&quot;">¶4</a> · <code>x.txt</code></div>'
        "<blockquote>one<br>two</blockquote>"
    )


def test_a_message_is_drawn_with_its_header_embed_buttons_and_privacy() -> None:
    message = {
        "author": {"username": "statement-bot", "global_name": "Statement Bot"},
        "timestamp": "2026-11-29T14:05:00+00:00",
        "content": "Hello <script>",
        "embeds": [{"title": "Sources", "description": "**Doc**\n[1] ¶2", "color": 0x5865F2}],
        "components": [{"type": 1, "components": [{"type": 2, "emoji": {"name": "👍"}}]}],
        "flags": EPHEMERAL,
    }
    drawn = message_html(message, ("admin", "/reindex"))
    assert '<span class="who">admin</span> used <span class="cmd">/reindex</span>' in drawn
    assert "Statement Bot" in drawn and "Today at 14:05" in drawn
    assert "Hello &lt;script&gt;" in drawn and "<script>" not in drawn
    assert 'style="border-color:#5865f2"' in drawn and "<strong>Doc</strong><br>[1] ¶2" in drawn
    assert '<span class="button">👍</span>' in drawn and "Only you can see this" in drawn
    public = message_html({**message, "flags": 0})
    assert "Only you can see this" not in public and 'class="used"' not in public
    both = page(Shot("x", "admin", "/reindex", (message, {**message, "content": "Done."})))
    assert both.count('class="message"') == 2 and "edited a moment later" in both
