"""The README's pictures: the real bot's messages, drawn as Discord's dark theme draws them.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots]

Runs StatementBot and a real Engine over a copy of data/ against the loopback Discord stand-in
(tests/fake_discord.py), sends it an /ask that is answered, one that is refused with passages
that might be related, a /reindex after a document was added, /docs list, and the moderators'
loop (a refusal passed on, answered with the Answer button's modal, then asked in other words),
and keeps the message payloads the bot sent. Each is laid out by a small HTML template in
Discord's dark theme and photographed by headless Chromium (Debian: `apt-get install -y
chromium fonts-noto-color-emoji`). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.config import Settings  # noqa: E402
from bot.engine import Engine  # noqa: E402
from tests.discord_harness import running  # noqa: E402

Json = dict[str, Any]
GUILD, CHANNEL = 1_500_000_000_000_000_001, 1_500_000_000_000_000_002
MEMBER, ADMIN = 1_500_000_000_000_000_003, 1_500_000_000_000_000_004
MANAGE_GUILD, EPHEMERAL = 1 << 5, 1 << 6
ANSWERED = "What does Momentum say about Keir Starmer?"
RELATED = "When did Kate Dove become chair of Momentum?"
ADDED = "herons.txt", "Herons of Quenville\n\nGrey herons nest on the lake islands in April.\n"
HANDED_OFF = "Where can I buy tickets for the Zorblat parade?"
MODERATED = "Tickets are sold at the Quenville town hall from 1 March, **£5** for adults."
ASKED_AGAIN = "Who sells tickets for the Zorblat parade?"
NAMES = {MEMBER: "member", ADMIN: "admin"}  # mentions as Discord draws them
CHROMIUM = "/usr/bin/chromium"
WIDTH = 760  # CSS pixels; pictures are taken at twice that


@dataclass(frozen=True)
class Shot:
    """One picture: the command someone ran and the bot's reply, in each state it showed."""

    name: str
    who: str  # "member" or "admin"
    command: str
    states: tuple[Json, ...]


async def capture(engine: Engine) -> list[Shot]:
    """Drive the real bot through the scenes and keep what it showed. `engine`'s data folder
    is scratch: a document is added to it for the re-index."""
    settings = engine.settings
    async with running(engine, settings, {GUILD: CHANNEL}) as (fake, _):

        async def command(name: str, options: Json | None = None, **kw: Any):
            ix = await fake.interact(name, options, guild_id=GUILD, **kw)
            return ix, await fake.wait_answered(ix, timeout=60)

        shots = []
        for name, question in (("answer", ANSWERED), ("related", RELATED)):
            _, shown = await command("ask", {"question": question}, user_id=MEMBER)
            shots.append(Shot(name, "member", f"/ask question: {question}", (shown,)))

        (settings.data_dir / ADDED[0]).write_text(ADDED[1], encoding="utf-8")
        ix, _ = await command("reindex", user_id=ADMIN, permissions=MANAGE_GUILD)
        await fake.wait_for(
            lambda r: r.token == ix.token and r.ok and r.method == "PATCH"
            and r.json["content"].startswith("Indexed "),
            timeout=60,
        )  # fmt: skip
        final = fake.final_content(ix)
        edits = [r.json for r in fake.responses_for(ix) if r.method == "PATCH"]
        shots.append(Shot("reindex", "admin", "/reindex", tuple({**final, **e} for e in edits)))

        _, listed = await command("docs", subcommand="list", user_id=MEMBER)
        shots.append(Shot("docs-list", "member", "/docs list", (listed,)))
        shots += await moderated(fake, command)
    return shots


async def moderated(fake, command) -> list[Shot]:
    """A refusal passed on to the moderators (here the admin, in the same channel), answered
    with the Answer button's modal, then the same question asked in other words."""
    await command("settings", {"channel": str(CHANNEL)}, subcommand="handoff", user_id=ADMIN,
                  permissions=MANAGE_GUILD)  # fmt: skip
    _, refusal = await command("ask", {"question": HANDED_OFF}, user_id=MEMBER)
    since = len(fake.requests)
    handoff = [c for row in refusal["components"] for c in row["components"]][-1]
    ix = await fake.click(handoff["custom_id"], refusal, guild_id=GUILD, user_id=MEMBER)
    await fake.wait_answered(ix, timeout=60)
    [rec] = [r for r in fake.requests[since:] if r.route == "/channels/{channel_id}/messages"]
    post = fake.messages[rec.response["id"]]
    before = {**post}
    [button] = post["components"][0]["components"]
    opened = await fake.click(button["custom_id"], post, guild_id=GUILD, user_id=ADMIN,
                              permissions=MANAGE_GUILD)  # fmt: skip
    modal = await fake.wait_modal(opened)
    since = len(fake.requests)
    text_input = modal["components"][0]["components"][0]["custom_id"]
    await fake.wait_answered(await fake.submit(opened, {text_input: MODERATED}), timeout=60)
    [rec] = [r for r in fake.requests[since:] if r.route == "/channels/{channel_id}/messages"]
    reply = fake.messages[rec.response["id"]]
    _, again = await command("ask", {"question": ASKED_AGAIN}, user_id=ADMIN + 1)
    return [
        Shot("moderator-post", "", "", (before, fake.messages[post["id"]])),
        Shot("moderator-reply", "", "", (reply,)),
        Shot("moderator-known", "member", f"/ask question: {ASKED_AGAIN}", (again,)),
    ]


# -- drawing ------------------------------------------------------------------------------------

_ESCAPED = re.compile(r"\\([^\w\s])")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MENTION = re.compile(r"&lt;@&?(\d+)&gt;")
_CHANNEL = re.compile(r"&lt;#\d+&gt;")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")


def inline(text: str) -> str:
    """One line of Discord Markdown as HTML: escapes, `code`, **bold** and [links](url)."""
    kept: list[str] = []

    def keep(m: re.Match[str]) -> str:  # an escaped character never starts markup
        kept.append(m[1])
        return f"\x00{len(kept) - 1}\x00"

    text = html.escape(_ESCAPED.sub(keep, text))  # quotes too: a URL may become an attribute
    text = _CODE.sub(r"<code>\1</code>", text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _LINK.sub(r'<a href="\2">\1</a>', text)
    text = _CHANNEL.sub('<span class="mention">#questions</span>', text)
    text = _MENTION.sub(
        lambda m: f'<span class="mention">@{NAMES.get(int(m[1]), "user")}</span>', text
    )
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(kept[int(m[1])]), text)


def markdown(text: str) -> str:
    """Discord Markdown as HTML: the subset the bot writes, plus line breaks and `> ` quotes."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.split("\n"):
        kind = "blockquote" if line.startswith("> ") else "div"
        if not blocks or blocks[-1][0] != kind:
            blocks.append((kind, []))
        blocks[-1][1].append(inline(line.removeprefix("> ")))
    return "".join(f"<{kind}>{'<br>'.join(lines)}</{kind}>" for kind, lines in blocks)


def _embed(embed: Json) -> str:
    colour = f"#{embed.get('color', 0x1E1F22):06x}"
    parts = [f'<div class="embed" style="border-color:{colour}">']
    if title := embed.get("title"):
        parts.append(f'<div class="embed-title">{html.escape(title)}</div>')
    if description := embed.get("description"):
        parts.append(f'<div class="embed-text">{markdown(description)}</div>')
    for field in embed.get("fields", []):
        parts.append(f'<div class="field-name">{inline(field["name"])}</div>')
        parts.append(f'<div class="embed-text">{markdown(field["value"])}</div>')
    if footer := embed.get("footer", {}).get("text"):
        parts.append(f'<div class="embed-footer">{html.escape(footer)}</div>')
    return "".join(parts) + "</div>"


def _buttons(message: Json) -> str:
    rows = []
    for row in message.get("components", []):
        buttons = "".join(
            f'<span class="button{" primary" * (b.get("style") == 1)}'
            f'{" disabled" * bool(b.get("disabled"))}">'
            f"{html.escape((b.get('emoji') or {}).get('name', ''))}"
            f"{html.escape(b.get('label') or '')}</span>"
            for b in row["components"]
        )
        rows.append(f'<div class="buttons">{buttons}</div>')
    return "".join(rows)


def _replied(message: Json) -> str:
    """The line above a reply: whose message it answers, and how that began."""
    ref = message.get("referenced_message")
    if not ref:
        return ""
    author = ref["author"].get("global_name") or ref["author"]["username"]
    text = re.sub(r"\s+", " ", ref.get("content") or "")
    text = text if len(text) <= 70 else text[:69] + "…"
    return (
        f'<div class="used"><span class="mini"></span><span class="who">{html.escape(author)}'
        f"</span> {html.escape(text)}</div>"
    )


def message_html(message: Json, used: tuple[str, str] | None = None) -> str:
    """One bot message as Discord draws it, under a "who used /command" line if `used` is
    (who, command)."""
    author = message["author"].get("global_name") or message["author"]["username"]
    when = datetime.fromisoformat(message["timestamp"]).strftime("Today at %H:%M")
    head = ""
    if used:
        who, (name, _, options) = used[0], used[1].partition(" ")
        head = (
            f'<div class="used"><span class="mini"></span><span class="who">{who}</span> used '
            f'<span class="cmd">{html.escape(name)}</span> {html.escape(options)}</div>'
        )
    only_you = (
        '<div class="only-you">👁 Only you can see this · <a>Dismiss message</a></div>'
        if message.get("flags", 0) & EPHEMERAL
        else ""
    )
    return (
        f'<div class="message">{head}{_replied(message)}'
        f'<div class="row"><div class="avatar">SB</div><div>'
        f'<div class="meta"><span class="author">{html.escape(author)}</span>'
        f'<span class="app">APP</span><span class="time">{when}</span></div>'
        f'<div class="content">{markdown(message.get("content") or "")}</div>'
        + "".join(_embed(e) for e in message.get("embeds", []))
        + _buttons(message)
        + only_you
        + "</div></div></div>"
    )


def page(shot: Shot) -> str:
    """A whole picture as an HTML page; a message edited while it ran shows each state."""
    bodies = [message_html(shot.states[0], (shot.who, shot.command) if shot.command else None)]
    bodies += [
        '<div class="then">edited a moment later:</div>' + message_html(s) for s in shot.states[1:]
    ]
    return f"<!doctype html><meta charset=utf-8><style>{STYLE}</style><body>{''.join(bodies)}"


STYLE = f"""
body {{ margin: 0; width: {WIDTH}px; background: #313338; color: #dbdee1; padding: 8px 0 12px;
  font: 16px/1.375 "Noto Sans", "Liberation Sans", Arial, sans-serif, "Noto Color Emoji"; }}
.message {{ padding: 6px 48px 6px 16px; }}
.row {{ display: flex; gap: 16px; }}
.avatar {{ flex: none; width: 40px; height: 40px; border-radius: 50%; background: #5865f2;
  color: #fff; font: 600 15px/40px sans-serif; text-align: center; }}
.meta {{ display: flex; align-items: baseline; gap: 6px; }}
.author {{ color: #f2f3f5; font-weight: 600; }}
.app {{ background: #5865f2; color: #fff; font-size: 10px; font-weight: 700; padding: 1px 4px;
  border-radius: 3px; position: relative; top: -2px; }}
.time {{ color: #949ba4; font-size: 12px; }}
.used {{ color: #949ba4; font-size: 14px; margin: 0 0 4px 56px; position: relative; }}
.used::before {{ content: ""; position: absolute; left: -36px; top: 9px; width: 30px;
  height: 12px; border: 2px solid #4e5058; border-width: 2px 0 0 2px; border-radius: 6px 0 0; }}
.mini {{ display: inline-block; width: 16px; height: 16px; border-radius: 50%;
  background: #80848e; vertical-align: -3px; margin-right: 4px; }}
.who {{ color: #f2f3f5; }}
.cmd {{ color: #00a8fc; }}
.mention {{ background: #3c4270; color: #c9cdfb; border-radius: 3px; padding: 0 2px; }}
.button.disabled {{ opacity: 0.5; }}
.content {{ overflow-wrap: anywhere; }}
blockquote {{ margin: 2px 0; padding: 0 8px 0 12px; border-left: 4px solid #4e5058;
  border-radius: 4px; }}
strong {{ font-weight: 700; color: #f2f3f5; }}
a {{ color: #00a8fc; text-decoration: none; }}
code {{ background: #2b2d31; border: 1px solid #1e1f22; border-radius: 4px; padding: 0 3px;
  font: 85% "DejaVu Sans Mono", monospace; }}
.embed {{ background: #2b2d31; border-left: 4px solid; border-radius: 4px; max-width: 516px;
  margin-top: 4px; padding: 8px 16px 12px 12px; font-size: 14px; line-height: 1.45; }}
.embed-title {{ color: #f2f3f5; font-weight: 600; font-size: 16px; margin: 2px 0 6px; }}
.field-name {{ color: #f2f3f5; font-weight: 600; margin-top: 6px; }}
.embed-footer {{ color: #949ba4; font-size: 12px; margin-top: 8px; }}
.buttons {{ display: flex; gap: 8px; margin-top: 8px; }}
.button {{ background: #4e5058; border-radius: 8px; min-width: 52px; height: 32px; display: flex;
  align-items: center; justify-content: center; gap: 6px; box-sizing: border-box;
  padding: 0 12px; color: #fff; font-size: 16px; font-weight: 500; }}
.button.primary {{ background: #5865f2; }}
.only-you {{ color: #949ba4; font-size: 12px; margin-top: 6px; }}
.then {{ color: #949ba4; font-size: 12px; font-style: italic; margin: 10px 0 0 72px; }}
"""


def photograph(html_path: Path, png: Path, profile: Path) -> None:
    """Screenshot a page with headless Chromium, as tall as its content."""
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
    ]  # fmt: skip
    # First pass: the page's height, which a script writes into the DOM before it is dumped.
    measure = html_path.with_suffix(".measure.html")
    script = "<script>document.title = document.documentElement.scrollHeight</script>"
    measure.write_text(html_path.read_text(encoding="utf-8") + script, encoding="utf-8")
    dom = subprocess.run(
        [*flags, f"--window-size={WIDTH},100", "--dump-dom", measure.as_uri()],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    # Headless Chromium draws nothing in a window much shorter than ~150 CSS pixels.
    height = max(160, int(re.search(r"<title>(\d+)</title>", dom)[1]))
    subprocess.run(
        [*flags, f"--window-size={WIDTH},{height}", "--force-device-scale-factor=2",
         f"--screenshot={png}", html_path.as_uri()],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    from bot.engine import start

    work = Path(tempfile.mkdtemp(prefix="statement-shots-"))
    try:
        shutil.copytree(ROOT / "data", work / "data")
        settings = Settings(
            data_dir=work / "data", state_dir=work / "state", discord_guild_ids=(GUILD,)
        )
        engine = start(settings)
        shots = asyncio.run(capture(engine))
        args.out.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            source, png = work / f"{shot.name}.html", args.out / f"{shot.name}.png"
            source.write_text(page(shot), encoding="utf-8")
            photograph(source, png, work / "chromium")
            print(f"{png} ({png.stat().st_size // 1024} KB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
