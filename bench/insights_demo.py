"""A real /insights run: members ask, vote and hand a question off, then an admin asks for insights.

    .venv/bin/python bench/insights_demo.py [--json] [--state DIR]

Runs the real bot, engine and model against the loopback Discord stand-in (in a fresh state
folder: a temporary one, or DIR to try `statement-bot insights --state DIR` on) and prints what
the stand-in received: the /insights message as an admin would read it (title, description,
fields), and the hand-off post with its allowed mentions. `--json` prints the raw request
bodies instead. The README shows its output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.app.client import StatementBot  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import Engine, start  # noqa: E402
from tests.fake_discord import FakeDiscord, connected  # noqa: E402

GUILD, ASK, MODS, ROLE = (1_610_000_000_000_000_000 + n for n in (1, 2, 3, 9))
MANAGE_GUILD = 0x20
# (question, 👎 votes on its answer) as members of a server about the statement ask them.
ASKED = [
    ("How long has Corbyn been an MP?", 0),
    ("Who called Diane Abbott a trailblazer?", 0),
    ("When is the general election?", 0),
    ("what date is the general election", 0),
    ("when is polling day for the election", 1),
    ("Where is my polling station?", 0),
    ("which polling station do I go to", 0),
    ("How do I register to vote?", 2),
    ("Who is Labour's candidate in Islington North?", 0),
    ("who is standing for labour against corbyn", 0),
    ("How can I donate to Jeremy's campaign?", 0),
    ("What is Corbyn's position on NATO?", 0),
    ("Why was Corbyn suspended from Labour?", 1),
    ("how many candidates are on the islington north shortlist", 0),
]


async def scenario(engine: Engine, as_json: bool) -> None:
    fake = FakeDiscord()
    await fake.start()
    fake.add_guild(GUILD, "Statement readers", channel_ids=[ASK, MODS])
    fake.add_role(GUILD, ROLE, "Moderators")
    users = iter(range(1_690_000_000_000_000_001, 1_690_000_000_000_001_000))
    try:
        bot = StatementBot(engine.settings, engine, guild_ready_timeout=0.01)
        async with connected(fake, bot):
            setup = await fake.interact(
                "settings",
                {"channel": str(MODS), "role": str(ROLE)},
                subcommand="handoff",
                guild_id=GUILD,
                user_id=next(users),
                permissions=MANAGE_GUILD,
            )
            await fake.wait_answered(setup)
            for question, downs in ASKED:
                member = next(users)
                ix = await fake.interact(
                    "ask", {"question": question}, guild_id=GUILD, user_id=member
                )
                shown = await fake.wait_answered(ix, timeout=60)
                buttons = {
                    b.get("label") or b["emoji"]["name"]: b["custom_id"]
                    for row in shown["components"]
                    for b in row["components"]
                }
                for _ in range(downs):
                    vote = await fake.click(
                        buttons["👎"], shown, guild_id=GUILD, user_id=next(users)
                    )
                    await fake.wait_answered(vote)
                if question.startswith("Where is my polling"):  # this member wants a human
                    press = await fake.click(
                        buttons["Ask a moderator"], shown, guild_id=GUILD, user_id=member
                    )
                    await fake.wait_answered(press)
            ix = await fake.interact(
                "insights", {}, guild_id=GUILD, user_id=next(users), permissions=MANAGE_GUILD
            )
            report = await fake.wait_answered(ix, timeout=120)
        posts = [
            r.json
            for r in fake.requests
            if r.method == "POST" and r.path == f"/channels/{MODS}/messages"
        ]
    finally:
        await fake.stop()
    if as_json:
        print(json.dumps({"insights": report["embeds"], "handoffs": posts}, indent=1))
        return
    [embed] = report["embeds"]
    print(f"/insights (ephemeral: {bool(report['flags'] & 64)})\n")
    print(f"**{embed['title']}**\n{embed['description']}\n")
    for field in embed.get("fields", []):
        print(f"**{field['name']}**\n{field['value']}\n")
    print(f"_{embed['footer']['text']}_\n")
    for post in posts:
        print(f"hand-off post in #mods (allowed_mentions {json.dumps(post['allowed_mentions'])}):")
        print(post["content"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the raw request bodies")
    parser.add_argument(
        "--state", type=Path, help="a new state folder to keep (default: temporary)"
    )
    args = parser.parse_args()
    if args.state and args.state.exists():
        parser.error(f"{args.state} exists: give a new folder")
    with tempfile.TemporaryDirectory() as tmp:
        state = args.state or Path(tmp)
        settings = Settings(data_dir=ROOT / "data", state_dir=state, discord_guild_ids=(GUILD,))
        engine = start(settings)
        asyncio.run(scenario(engine, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
