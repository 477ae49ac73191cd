"""Moderators' answers end to end: a refused question is passed on, a moderator answers it with
the Answer button's modal, the member gets the answer where they asked, and the bot answers the
same question in other words from then on, citing it; through the loopback Discord stand-in
with the real bot, engine, model, FAISS, files and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from bot.app.client import StatementBot
from bot.cli import main
from bot.config import Settings
from bot.engine import Engine
from bot.engine.db import GuildSettings
from bot.engine.extractive import NOT_FOUND
from bot.engine.knowledge import DOC_ID, FILENAME
from index.embedder import Embedder
from tests.conftest import ROOT
from tests.discord_harness import (
    EPHEMERAL,
    MANAGE_GUILD,
    assert_within_limits,
    shown_payload,
    sources,
    unescape,
)
from tests.fake_discord import FakeDiscord, FakeInteraction, connected, snowflake

pytestmark = pytest.mark.asyncio(loop_scope="module")

GUILD_A, ASK_A, MODS_A = (1_510_000_000_000_000_000 + n for n in (1, 2, 3))
GUILD_B, ASK_B = 1_520_000_000_000_000_001, 1_520_000_000_000_000_002
MODS_ROLE = 1_510_000_000_000_000_099
MODERATOR = 1_590_000_000_000_000_000
ASKED = "Where can I buy tickets for the Zorblat parade?"
# Other wordings of ASKED (measured with the real model: cosine 0.94 and 0.88).
PARAPHRASES = [
    "Who sells tickets for the Zorblat parade?",
    "how do i get a ticket for the zorblat parade",
]
HOSTILE = (
    "@everyone Tickets are sold at the **town hall** from 1 March, <@&{role}> <@{other}> "
    "[click here](https://evil.example/phish) ~~or not~~."
)
TODAY = datetime.now(UTC).date().isoformat()
_users = itertools.count(1_590_000_000_000_000_001)
Bot = tuple[FakeDiscord, StatementBot, Engine]


def new_user() -> int:
    return next(_users)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    tmp = tmp_path_factory.mktemp("moderator_answers")
    shutil.copytree(ROOT / "data", tmp / "data")
    settings = Settings(
        data_dir=tmp / "data",
        state_dir=tmp / "state",
        discord_guild_ids=(GUILD_A, GUILD_B),
        cooldown_questions=100,
        handoff_cooldown_seconds=0,
    )
    engine = Engine(settings, embedder)
    engine.open()
    return engine


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]


@contextlib.asynccontextmanager
async def started(engine: Engine, **settings: object) -> AsyncIterator[Bot]:
    """Server A (ask and mods channels, a moderators' role its moderator has) and server B."""
    fake = FakeDiscord()
    await fake.start()
    fake.add_guild(GUILD_A, "Server A", channel_ids=[ASK_A, MODS_A])
    fake.add_role(GUILD_A, MODS_ROLE, "Mods")
    fake.set_roles(GUILD_A, MODERATOR, [MODS_ROLE])
    fake.add_guild(GUILD_B, "Server B", channel_ids=[ASK_B])
    try:
        options = dataclasses.replace(engine.settings, **settings)
        bot = StatementBot(options, engine, guild_ready_timeout=0.01)
        async with connected(fake, bot):
            yield fake, bot, engine
    finally:
        await fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(engine: Engine) -> AsyncIterator[Bot]:
    async with started(engine) as bot:
        fake = bot[0]
        options = {"channel": str(MODS_A), "role": str(MODS_ROLE)}
        await admin(fake, "settings", options, subcommand="handoff")
        yield bot


async def admin(
    fake: FakeDiscord, name: str, options: dict | None = None, *, guild: int = GUILD_A, **kw
) -> dict:
    ix = await fake.interact(
        name, options, guild_id=guild, user_id=new_user(), permissions=MANAGE_GUILD, **kw
    )
    return await fake.wait_answered(ix, timeout=30)


async def ask(
    fake: FakeDiscord, question: str, guild: int = GUILD_A, user: int = 0, **options: object
) -> dict:
    ix = await fake.interact(
        "ask", {"question": question, **options}, guild_id=guild, user_id=user or new_user()
    )
    return await fake.wait_answered(ix, timeout=30)


def buttons(message: dict) -> dict[str, dict]:
    """Every button under a message: {label or emoji: the button}."""
    found = [c for row in message["components"] for c in row["components"] if c["type"] == 2]
    return {b.get("label") or b["emoji"]["name"]: b for b in found}


async def hand_off(
    fake: FakeDiscord, refusal: dict, member: int, guild: int = GUILD_A, mods: int = MODS_A
) -> dict:
    """The member presses "Ask a moderator"; the post in the moderators' channel."""
    since = len(fake.requests)
    custom_id = buttons(refusal)["Ask a moderator"]["custom_id"]
    ix = await fake.click(custom_id, refusal, guild_id=guild, user_id=member)
    await fake.wait_answered(ix, timeout=30)
    [post] = [r for r in fake.requests[since:] if r.ok and r.path == f"/channels/{mods}/messages"]
    return fake.messages[post.response["id"]]


async def press_answer(
    fake: FakeDiscord, post: dict, user: int, guild: int = GUILD_A, **kw
) -> FakeInteraction:
    custom_id = buttons(post)["Answer"]["custom_id"]
    return await fake.click(custom_id, post, guild_id=guild, user_id=user, **kw)


async def answer(
    fake: FakeDiscord, post: dict, text: str, guild: int = GUILD_A, **kw
) -> tuple[dict, FakeInteraction]:
    """The moderator presses Answer and submits `text`; what they are told first."""
    opened = await press_answer(fake, post, kw.pop("user", MODERATOR), guild, **kw)
    modal = await fake.wait_modal(opened)
    [[text_input]] = [row["components"] for row in modal["components"]]
    submitted = await fake.submit(opened, {text_input["custom_id"]: text})
    return await fake.wait_answered(submitted, timeout=60), submitted


def replies_to(fake: FakeDiscord, channel: int, since: int) -> list:
    return [
        r
        for r in fake.requests[since:]
        if r.ok and r.method == "POST" and r.path == f"/channels/{channel}/messages"
    ]


def only_pings(fake: FakeDiscord, since: int, allowed: dict[str, list[int]]) -> None:
    """Every message the bot sent since `since` pings no one, but the ones `allowed` names
    ({message id: the one user or role it may ping})."""
    for rec in fake.requests[since:]:
        shown = shown_payload(rec)
        if shown is None:
            continue
        message = rec.response or {}
        mentions = shown["allowed_mentions"]
        assert mentions["parse"] == [], rec.path
        may = allowed.get(message.get("id"), [])
        assert set(mentions.get("users", [])) | set(mentions.get("roles", [])) <= set(may), rec.path
        assert not message.get("mention_everyone"), rec.path


async def contract(engine: Engine, message: dict) -> dict:
    """The answer a message shows, as the bot recorded it (its JSON contract); the bot stores
    the message's id once Discord has answered its edit."""
    for _ in range(200):
        with sqlite3.connect(engine.db.path) as db:
            row = db.execute(
                "SELECT answer FROM answers WHERE message_id = ?", (int(message["id"]),)
            ).fetchone()
        if row:
            return json.loads(row[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer recorded for message {message['id']}")


# -- in a thread (first in the module: it starts its own bot before the shared one) -------------


async def test_a_question_asked_in_a_thread_is_answered_in_that_thread(engine: Engine) -> None:
    engine.db.save_settings(GUILD_A, GuildSettings(MODS_A, MODS_ROLE), new_user())
    async with started(engine, reply_in_thread=True) as (fake, _, _):
        member = new_user()
        asked = await fake.message(
            "Is the Quenville museum open on Mondays?",
            guild_id=GUILD_A,
            channel_id=ASK_A,
            user_id=member,
        )
        refusal = await fake.wait_for_reply(asked, timeout=30)
        assert refusal["channel_id"] == asked["id"]  # the thread started from the question
        post = await hand_off(fake, refusal, member)
        since = len(fake.requests)
        text = "Closed on Mondays, open 10 to 5 the rest of the week."
        await answer(fake, post, text)
        [sent] = replies_to(fake, int(asked["id"]), since)
        reply = fake.messages[sent.response["id"]]
        assert reply["message_reference"]["message_id"] == refusal["id"]
        assert [u["id"] for u in reply["mentions"]] == [str(member)]
        assert unescape(reply["content"]) == f"<@{member}> A moderator answered:\n{text}"
        assert not replies_to(fake, ASK_A, since)
    for entry in engine.knowledge.entries(GUILD_A):
        engine.remove_entry(GUILD_A, entry.id, new_user())
    engine.db.save_settings(GUILD_A, GuildSettings(), new_user())


# -- the loop -----------------------------------------------------------------------------------


async def test_a_refused_question_answered_by_a_moderator_is_answered_by_the_bot_next_time(
    world: Bot,
) -> None:
    fake, _, engine = world
    since = len(fake.requests)
    member = new_user()
    refusal = await ask(fake, ASKED, user=member)
    assert refusal["content"].startswith(NOT_FOUND)
    post = await hand_off(fake, refusal, member)
    assert buttons(post)["Answer"]["style"] == 1 and not buttons(post)["Answer"].get("disabled")

    # Only moderators: a member with neither the role nor Manage Server is refused, no modal.
    nosy = await press_answer(fake, post, new_user())
    told = await fake.wait_answered(nosy)
    assert nosy.modal is None and told["flags"] & EPHEMERAL
    assert told["content"] == (
        "Only moderators (the hand-off role) and members with Manage Server can answer."
    )

    # The modal: one paragraph input, Discord's limits, prefilled with nothing.
    opened = await press_answer(fake, post, MODERATOR)
    modal = await fake.wait_modal(opened)
    assert fake.responses_for(opened)[0].json["type"] == 9
    assert modal["title"] == "Answer the member"
    [[text_input]] = [row["components"] for row in modal["components"]]
    assert text_input["type"] == 4 and text_input["style"] == 2
    assert text_input["max_length"] == 4000 and text_input["required"] is True
    assert not text_input.get("value")

    other = new_user()
    text = HOSTILE.format(role=MODS_ROLE, other=other)
    # Crafted: the modal submitted by a member, the button pressed in another server.
    crafted = await fake.submit(opened, {text_input["custom_id"]: text}, user_id=other)
    assert (await fake.wait_answered(crafted))["content"].startswith("Only moderators")
    elsewhere = await ask(fake, ASKED, guild=GUILD_B)
    button = buttons(post)["Answer"]["custom_id"]
    foreign = {**elsewhere, "id": snowflake(), "components": post["components"]}
    ix = await fake.click(
        button, foreign, guild_id=GUILD_B, user_id=new_user(), permissions=MANAGE_GUILD
    )
    assert (await fake.wait_answered(ix))["content"] == "That hand-off is not one of this server's."
    assert not engine.knowledge.entries(GUILD_A) and not engine.knowledge.entries(GUILD_B)

    submitted = await fake.submit(opened, {text_input["custom_id"]: text})
    done = await fake.wait_answered(submitted, timeout=60)
    assert done["flags"] & EPHEMERAL

    # The member's answer: a reply to the bot's answer, pinging them and no one else.
    [sent] = replies_to(fake, ASK_A, since)[-1:]
    reply = fake.messages[sent.response["id"]]
    assert reply["message_reference"]["message_id"] == refusal["id"]
    assert sent.json["allowed_mentions"] == {"parse": [], "users": [member]}
    assert [u["id"] for u in reply["mentions"]] == [str(member)]
    assert reply["mention_roles"] == [] and not reply["mention_everyone"]
    head = f"<@{member}> A moderator answered:\n"
    assert reply["content"].startswith(head) and unescape(reply["content"][len(head) :]) == text
    [entry] = engine.knowledge.entries(GUILD_A)
    assert entry.answer == text and entry.question == ASKED and entry.answered_by == MODERATOR
    assert done["content"].splitlines() == [
        f"Sent to <@{member}>: https://discord.com/channels/{GUILD_A}/{ASK_A}/{reply['id']}",
        f"Saved as moderator answer #{entry.id}: I answer this question with it now.",
    ]

    # The post says who answered, and its button is disabled; a second moderator is told.
    post = fake.messages[post["id"]]
    assert post["content"].endswith(
        f"\n✅ **Answered by** <@{MODERATOR}> on {TODAY} (saved as moderator answer #{entry.id})."
    )
    assert buttons(post)["Answered"]["disabled"] is True
    again = await fake.click(
        buttons(post)["Answered"]["custom_id"], post, guild_id=GUILD_A, user_id=new_user(),
        permissions=MANAGE_GUILD,
    )  # fmt: skip
    assert (await fake.wait_answered(again))["content"] == (
        f"This question was already answered by <@{MODERATOR}> on {TODAY}."
    )
    assert again.modal is None
    only_pings(fake, since, {reply["id"]: [member], post["id"]: [MODS_ROLE]})

    # /docs list shows it, with its entries.
    listed = await ask_docs(fake)
    assert f"**Moderator answers** (`{DOC_ID}`)" in listed and "; 1 entry (/answers list)" in listed

    # Another member asks in other words: the moderator's answer, quoted whole and cited.
    for question in PARAPHRASES:
        shown = await ask(fake, question)
        assert_within_limits(shown)
        assert unescape(shown["content"]).endswith(f": {text} [1]")
        assert unescape(shown["content"]).startswith(
            f"According to “Moderator answers” (asked as “{ASKED}”, answered by user{MODERATOR} "
            f"on {TODAY}):"
        )
        [source] = sources(shown)
        assert (source.title, source.location) == (
            "Moderator answers",
            f"answered by user{MODERATOR} on {TODAY}",
        )
        recorded = await contract(engine, shown)
        [citation] = recorded["citations"]
        document = engine.settings.state_dir / "guilds" / str(GUILD_A) / "docs" / FILENAME
        assert (
            citation["quote"] == text == document.read_text()[citation["start"] : citation["end"]]
        )
        assert recorded["entry"] == entry.id and citation["doc_id"] == DOC_ID
    # ...never in another server.
    assert (await ask(fake, PARAPHRASES[0], guild=GUILD_B))["content"].startswith(NOT_FOUND)

    # Admins list and remove it; the bot refuses again.
    listing = await admin(fake, "answers", subcommand="list")
    assert listing["flags"] & EPHEMERAL
    assert f"**#{entry.id}** “{ASKED}” — user{MODERATOR}, {TODAY}:" in listing["content"]
    choices = await fake.autocomplete(
        "answers", "remove", "entry", "zorblat", guild_id=GUILD_A, user_id=new_user(),
        permissions=MANAGE_GUILD,
    )  # fmt: skip
    assert choices == [
        {"name": f"#{entry.id} {ASKED} (user{MODERATOR}, {TODAY})", "value": entry.id}
    ]
    removed = await admin(fake, "answers", {"entry": entry.id}, subcommand="remove")
    assert removed["content"] == f"Removed moderator answer #{entry.id} (“{ASKED}”)."
    assert engine.knowledge.entries(GUILD_A) == []
    assert (await ask(fake, PARAPHRASES[0]))["content"].startswith(NOT_FOUND)
    assert "Moderator answers" not in await ask_docs(fake)


async def ask_docs(fake: FakeDiscord) -> str:
    ix = await fake.interact("docs", guild_id=GUILD_A, user_id=new_user(), subcommand="list")
    return (await fake.wait_answered(ix, timeout=30))["content"]


async def test_a_long_hostile_answer_reaches_the_member_whole_and_is_quoted_exactly(
    world: Bot,
) -> None:
    """4,000 characters of Markdown, mentions and links: split into messages within Discord's
    limit, only the member pinged, nothing lost; stored and quoted exactly."""
    fake, _, engine = world
    since = len(fake.requests)
    member = new_user()
    line = (
        "**Lantern walk** starts at 7 pm @everyone <@&{0}> [map](https://evil.example) _\\_ ~~x~~\n"
    )
    text = (line.format(MODS_ROLE) * 60)[:4000].strip()
    post = await hand_off(fake, await ask(fake, "What time does the Zorblat lantern walk start?",
                                          user=member), member)  # fmt: skip
    done, _ = await answer(fake, post, text)
    assert done["content"].startswith(f"Sent to <@{member}>:")
    parts = [fake.messages[r.response["id"]] for r in replies_to(fake, ASK_A, since)]
    assert len(parts) >= 3 and all(len(p["content"]) <= 2000 for p in parts)
    head = f"<@{member}> A moderator answered:\n"
    assert parts[0]["content"].startswith(head)
    shown = [unescape(parts[0]["content"][len(head) :])] + [
        unescape(p["content"]) for p in parts[1:]
    ]
    assert "".join(shown) == text  # cut at lines: nothing lost, nothing added
    assert [u["id"] for p in parts for u in p["mentions"]] == [str(member)]
    assert not any(p["mention_roles"] or p["mention_everyone"] for p in parts)
    only_pings(fake, since, {parts[0]["id"]: [member], post["id"]: [MODS_ROLE]})

    [entry] = [e for e in engine.knowledge.entries(GUILD_A) if "lantern" in e.question]
    assert entry.answer == text
    later = await ask(fake, "When does the lantern walk begin?")
    assert_within_limits(later)  # the quote moves to the Sources card, shortened evenly
    [citation] = (await contract(engine, later))["citations"]
    assert citation["quote"] == text and citation["doc_id"] == DOC_ID
    await admin(fake, "answers", {"entry": entry.id}, subcommand="remove")


async def test_a_private_question_is_never_answered_in_public(world: Bot) -> None:
    fake, _, engine = world
    since = len(fake.requests)
    member = new_user()
    question = "Can I bring my dog to the Quenville ice rink?"
    refusal = await ask(fake, question, user=member, private=True)
    assert refusal["flags"] & EPHEMERAL
    post = await hand_off(fake, refusal, member)
    text = "Dogs on a lead are welcome on the terrace, not on the ice."
    done, submitted = await answer(fake, post, text)
    assert not replies_to(fake, ASK_A, since)  # nothing in the channel where they asked
    assert done["content"].splitlines()[0] == (
        "They asked privately (`/ask private:true`): I can't answer them where they asked "
        "without showing their question to others. Send them your answer yourself (below); the "
        "hand-off is marked answered."
    )
    await fake.wait_for(lambda r: r.token == submitted.token and len(submitted.followup_ids) == 1)
    [by_hand] = [fake.messages[i] for i in submitted.followup_ids]
    assert unescape(by_hand["content"]) == text and by_hand["flags"] & EPHEMERAL
    assert "Answered by" in fake.messages[post["id"]]["content"]
    # Saved all the same: the question is the server's knowledge, not the member's.
    shown = await ask(fake, "Are dogs allowed at the ice rink in Quenville?")
    assert unescape(shown["content"]).endswith(f": {text} [1]")
    [entry] = [e for e in engine.knowledge.entries(GUILD_A) if e.answer == text]
    await admin(fake, "answers", {"entry": entry.id}, subcommand="remove")


async def test_answering_again_corrects_the_entry(world: Bot) -> None:
    """The bot's answer from an entry is voted down and passed on: the moderator's new answer
    replaces the entry's, which keeps its number and question."""
    fake, _, engine = world
    question = "Is there parking near the Quenville ice rink?"
    member = new_user()
    post = await hand_off(fake, await ask(fake, question, user=member), member)
    await answer(fake, post, "Park behind the library.")
    [entry] = [e for e in engine.knowledge.entries(GUILD_A) if e.question == question]

    voter = new_user()
    wrong = await ask(fake, "Where can I park my car for the ice rink in Quenville?", user=voter)
    assert unescape(wrong["content"]).endswith(": Park behind the library. [1]")
    thanks = await fake.click(
        buttons(wrong)["👎"]["custom_id"], wrong, guild_id=GUILD_A, user_id=voter
    )
    thanks = await fake.wait_answered(thanks)
    post = await hand_off(fake, thanks, voter)
    done, _ = await answer(fake, post, "The library car park closed; park at the station.")
    assert f"Saved as moderator answer #{entry.id}:" in done["content"]
    [corrected] = [e for e in engine.knowledge.entries(GUILD_A) if e.id == entry.id]
    assert corrected.question == question
    assert corrected.answer == "The library car park closed; park at the station."
    again = await ask(fake, "Where can I park my car for the ice rink in Quenville?")
    assert unescape(again["content"]).endswith(
        ": The library car park closed; park at the station. [1]"
    )

    await admin(fake, "answers", {"entry": entry.id}, subcommand="remove")


async def test_insights_count_handoffs_and_export_them_as_regression_cases(
    world: Bot, tmp_path, capsys
) -> None:
    """In server B, moderated by its admins (Manage Server, no role): one hand-off answered,
    one open, one later question answered from the answer; /insights, `statement-bot insights`
    and `feedback export` say so."""
    fake, _, engine = world
    await admin(fake, "settings", {"channel": str(ASK_B)}, subcommand="handoff", guild=GUILD_B)
    member, waiting = new_user(), new_user()
    question = "Does the Quenville ferry run on Sundays?"
    post = await hand_off(fake, await ask(fake, question, GUILD_B, member), member, GUILD_B, ASK_B)
    text = "Yes. The ferry runs hourly on Sundays from 9 am."
    await answer(fake, post, text, GUILD_B, user=new_user(), permissions=MANAGE_GUILD)
    refusal = await ask(fake, "Can I pay for the Quenville ferry by card?", GUILD_B, waiting)
    await hand_off(fake, refusal, waiting, GUILD_B, ASK_B)  # left open
    later = await ask(fake, "Is there a Sunday ferry service in Quenville?", GUILD_B)
    assert unescape(later["content"]).endswith(f": {text} [1]")

    shown = await admin(fake, "insights", guild=GUILD_B)
    [moderators] = [f for f in shown["embeds"][0]["fields"] if f["name"].startswith("Hand-offs")]
    assert moderators == {
        "name": "Hand-offs to moderators",
        "value": "**1** answered · **1** open\n"
        "**1** later questions answered from moderators' answers",
        "inline": False,
    }

    state = ["--state", str(engine.settings.state_dir), "--guild", str(GUILD_B)]
    assert main(["insights", *state]) == 0
    assert "hand-offs 1 answered, 1 open; 1 questions answered from moderators' answers" in (
        capsys.readouterr().out
    )
    out = tmp_path / "feedback.jsonl"
    assert main(["feedback", "export", "--out", str(out), *state]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    [moderated] = [r for r in rows if r["why"] == "answered by a moderator"]
    assert moderated["question"] == question and moderated["answerable"] is True
    assert (moderated["gold"], moderated["key_fact"]) == (text, "Yes.")
    assert moderated["answer_given"].startswith(NOT_FOUND)
    assert question not in [r["question"] for r in rows if r is not moderated]
