"""/docs add url: end to end: the real bot on the loopback Discord stand-in, a real engine, and
pages from a local web server (tests/web_server.py). Assertions are on what the bot sent."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.engine import Engine
from index.embedder import Embedder
from index.web.fragments import Directive, resolve
from index.web.pages import sidecar
from tests.discord_harness import (
    EPHEMERAL,
    MANAGE_GUILD,
    REFUSED,
    assert_no_pings,
    assert_within_limits,
    members,
    open_engine,
    running,
    state_snapshot,
)
from tests.fake_discord import FakeDiscord
from tests.web_server import Reply, WebServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("no_errors_logged")]

GUILD_A, CHANNEL_A = 1_310_000_000_000_000_001, 1_310_000_000_000_000_002
GUILD_B, CHANNEL_B = 1_320_000_000_000_000_001, 1_320_000_000_000_000_002
LIMIT = 300_000
STATEMENT_TITLE = "Quenville Tenants’ Union: statement on the riverside estate"
HERONS = (
    "<html><head><title>Herons of Quenville</title></head><body><nav>Home</nav><article>"
    "<h1>Herons of Quenville</h1><p>{}</p></article></body></html>"
)
new_user = members(1_390_000_000_000_000_001)


@pytest.fixture(scope="module")
def web() -> WebServer:
    with WebServer() as server:
        yield server


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    return open_engine(
        tmp_path_factory,
        embedder,
        "discord-web",
        discord_guild_ids=(GUILD_A, GUILD_B),
        max_upload_bytes=LIMIT,
        fetch_timeout=2.0,
        fetch_allow_loopback=True,  # the test web server is on 127.0.0.1
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(engine: Engine) -> AsyncIterator[FakeDiscord]:
    async with running(engine, engine.settings, {GUILD_A: CHANNEL_A, GUILD_B: CHANNEL_B}) as (
        fake,
        _,
    ):
        yield fake


@pytest.fixture(autouse=True)
def no_pings(bot: FakeDiscord):
    """Every message the bot sends during a test forbids all pings."""
    since = len(bot.requests)
    yield
    assert_no_pings(bot, since)


async def command(fake: FakeDiscord, name: str, options=None, *, guild=GUILD_A, **kw) -> dict:
    ix = await fake.interact(name, options, guild_id=guild, user_id=new_user(), **kw)
    return await fake.wait_answered(ix, timeout=30)


async def add(fake: FakeDiscord, url: str, guild: int = GUILD_A, **options: object) -> dict:
    return await command(
        fake, "docs", {"url": url, **options}, guild=guild, subcommand="add",
        permissions=MANAGE_GUILD,
    )  # fmt: skip


async def reindex(fake: FakeDiscord) -> str:
    """Run /reindex and return its summary (after any progress edits)."""
    ix = await fake.interact(
        "reindex", guild_id=GUILD_A, user_id=new_user(), permissions=MANAGE_GUILD
    )
    done = await fake.wait_for(
        lambda r: r.token == ix.token and r.ok and r.method == "PATCH"
        and r.json["content"].startswith("Indexed "),
        timeout=30,
    )  # fmt: skip
    return done.json["content"]


async def remove(fake: FakeDiscord, doc_id: str) -> dict:
    options = {"document": doc_id}
    return await command(fake, "docs", options, subcommand="remove", permissions=MANAGE_GUILD)


async def test_a_link_added_in_discord_is_answered_with_links_to_the_quotes(
    bot: FakeDiscord, engine: Engine, web: WebServer
) -> None:
    url = web.url("/fixture/tricky-statement")
    added = await add(bot, url)
    doc_id = "uploads/127-0-0-1-fixture-tricky-statement.html"
    assert added["flags"] & EPHEMERAL
    assert added["content"].startswith(
        f"Added `{doc_id}` from <{url}>: “{STATEMENT_TITLE}” (Mara Lindqvist, dated 2024-03-14), "
    ) and added["content"].endswith("Ask away!")
    stored = engine.settings.state_dir / "guilds" / str(GUILD_A) / "docs" / doc_id[8:]
    assert stored.is_file() and sidecar(stored).is_file()
    try:
        ix = await bot.interact(
            "ask",
            {"question": "Which viability assessment should the council publish?"},
            guild_id=GUILD_A,
            user_id=new_user(),
        )
        shown = await bot.wait_answered(ix, timeout=30)
        assert_within_limits(shown)
        assert "viability assessment" in shown["content"]
        # Wherever the layout puts it, the source links to the page opened on the quote.
        embeds = json.dumps(shown["embeds"], ensure_ascii=False)
        assert STATEMENT_TITLE in embeds
        [link] = re.findall(
            r"\]\((http://127\.0\.0\.1:\d+/fixture/tricky-statement#[^)]+)\)", embeds
        )
        doc = engine.indexes[str(GUILD_A)].docs[doc_id]
        quote = "publish the full viability assessment, including the land value;"
        # The link opens the page on the quote: the browser's matching finds exactly it.
        directive = Directive.parse(link.split("#:~:text=", 1)[1])
        start = doc.page_text.index(quote)
        assert resolve(doc.page_text, directive) == (start, start + len(quote))

        elsewhere = await bot.interact(
            "ask", {"question": "Which viability assessment should the council publish?"},
            guild_id=GUILD_B, user_id=new_user(),
        )  # fmt: skip
        assert "viability" not in str(await bot.wait_answered(elsewhere, timeout=30))

        listed = await command(bot, "docs", subcommand="list", permissions=0)
        line = next(x for x in listed["content"].splitlines() if doc_id in x)
        assert line.endswith(f"; from <{url}>, fetched today, dated 2024-03-14"), line
    finally:
        removed = await remove(bot, doc_id)
    assert removed["content"] == f"Removed `{doc_id}`."
    assert not stored.exists() and not sidecar(stored).exists()


HOSTILE = [
    ("ftp://example.org/statement.txt", "Only http:// and https:// links can be added;"),
    ("javascript:alert(document.cookie)", "Only http:// and https:// links can be added;"),
    ("www.example.org/statement", "www.example.org/statement is not a web link"),
    (
        "http://admin:hunter2@example.org/",
        "Links with a user name or password in them are refused.",
    ),
    ("http://10.0.0.1/admin", "10.0.0.1 is a private address; links into private networks"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address;"),
    ("http://[fd00::1]/", "fd00::1 is a private address;"),
    ("http://0.0.0.0:{port}/fixture/tricky-statement", "0.0.0.0 is an unspecified address;"),
    ("{base}/redirect/1?to=http://192.168.1.1/router", "192.168.1.1 is a private address;"),
    ("{base}/redirect/6", "{base}/redirect/6 redirects more than 5 times."),
    ("{base}/nothing-here", "{base}/nothing-here answered HTTP 404 Not Found."),
    ("{base}/error", "{base}/error answered HTTP 500 Internal Server Error."),
    ("{base}/drip", "{base}/drip did not answer completely within 2 s."),
    ("{base}/endless", f"{{base}}/endless is larger than the limit of {LIMIT:,} bytes"),
    ("{base}/image", "{base}/image is not a document (image/png);"),
    ("{base}/scripts-only", "{base}/scripts-only has no extractable text"),
    ("http://no-such-host.invalid/", "The server no-such-host.invalid could not be found"),
]


@pytest.mark.parametrize(("url", "message"), HOSTILE)
async def test_hostile_links_are_refused_precisely_and_change_nothing(
    bot: FakeDiscord, engine: Engine, web: WebServer, url: str, message: str
) -> None:
    web.routes["/error"] = Reply(500, b"oops")
    web.routes["/image"] = Reply(
        200, b"\x89PNG\r\n\x1a\n" + bytes(32), {"Content-Type": "image/png"}
    )
    web.routes["/scripts-only"] = Reply(200, b"<html><body><script>app()</script></body></html>")
    port = web.base.rsplit(":", 1)[1]
    url, message = (s.format(base=web.base, port=port) for s in (url, message))
    state, titles = engine.settings.state_dir, engine.db.titles(GUILD_A)
    before = state_snapshot(state)
    shown = await add(bot, url)
    assert shown["content"].startswith(message), shown["content"]
    assert shown["flags"] & EPHEMERAL
    assert state_snapshot(state) == before and engine.db.titles(GUILD_A) == titles


async def test_a_file_and_a_link_together_or_neither_is_refused(bot: FakeDiscord) -> None:
    attachment = bot.add_attachment("notes.txt", b"Some notes.", "text/plain")
    both = await command(
        bot, "docs", {"url": "https://example.org/"}, subcommand="add",
        permissions=MANAGE_GUILD, attachments={"file": attachment},
    )  # fmt: skip
    neither = await command(bot, "docs", {}, subcommand="add", permissions=MANAGE_GUILD)
    for shown in (both, neither):
        assert shown["content"] == "Give either a file or a url to add, not both."


async def test_only_managers_can_add_a_link(bot: FakeDiscord, web: WebServer) -> None:
    hits = web.hits("/fixture/tricky-statement")
    url = web.url("/fixture/tricky-statement")
    shown = await command(bot, "docs", {"url": url}, subcommand="add", permissions=0)
    assert shown["content"] == REFUSED and web.hits("/fixture/tricky-statement") == hits


async def test_reindex_refetches_conditionally_and_reembeds_only_what_changed(
    bot: FakeDiscord, engine: Engine, web: WebServer
) -> None:
    first = "Grey herons nest on the lake islands of Quenville every April, in old willows."
    web.routes["/herons"] = Reply(
        200, HERONS.format(first * 3).encode(), {"Content-Type": "text/html", "ETag": '"v1"'}
    )
    added = await add(bot, web.url("/herons"), title="Herons")
    doc_id = "uploads/127-0-0-1-herons.html"
    assert added["content"].startswith(f"Added `{doc_id}` from <{web.url('/herons')}>: “Herons”")
    try:
        same = await reindex(bot)
        assert "(0 re-embedded)" in same and "Web pages: 1 unchanged." in same
        assert web.requests[-1][1].get("If-None-Match") == '"v1"'  # asked conditionally: 304

        moved = "The herons of Quenville have moved to the reed beds by the old mill this year."
        web.routes["/herons"] = Reply(
            200, HERONS.format(moved * 3).encode(), {"Content-Type": "text/html", "ETag": '"v2"'}
        )
        changed = await reindex(bot)
        assert "Web pages: 1 changed." in changed
        embedded = int(re.search(r"\((\d+) re-embedded\)", changed)[1])
        # Only the paragraph that changed: its heading and every other document keep their vectors.
        assert embedded == 1 and engine.indexes[str(GUILD_A)].infos[doc_id].chunks == 2
        ix = await bot.interact(
            "ask", {"question": "Where have the herons of Quenville moved to?"},
            guild_id=GUILD_A, user_id=new_user(),
        )  # fmt: skip
        assert "reed beds" in (await bot.wait_answered(ix, timeout=30))["content"]

        web.routes["/herons"] = Reply(404, b"gone")
        gone = await reindex(bot)
        assert "Web pages: 1 failed." in gone and f"Not refreshed `{doc_id}`: " in gone
        assert "answered HTTP 404 Not Found. The copy fetched earlier is kept." in gone
        assert doc_id in engine.indexes[str(GUILD_A)].infos

        web.routes["/herons"] = Reply(200, b"", {"ETag": '"v2"'})
        again = await add(bot, web.url("/herons"))
        assert again["content"] == (
            f"{web.url('/herons')} is already indexed here as {doc_id}; /reindex fetches it again."
        )
    finally:
        await remove(bot, doc_id)


CLIMBING = [
    "uploads/../../{other}/docs/{name}",
    "uploads/../../../../data/statement.txt",
    "uploads/../../../bot.sqlite3",
    "uploads/%2e%2e/%2e%2e/{other}/docs/{name}",
    "uploads/..\\..\\{other}\\docs\\{name}",
    "uploads/{name}",  # the other server's document, asked for by name
    "uploads/{name}.web.json",
    "uploads/",
    "uploads/..",
    "uploads/./{name}",
    "uploads//etc/passwd",
    "/etc/passwd",
    "statement.txt",
    "uploads/x\x00y.txt",
    "uploads/" + "../" * 600 + "etc/passwd",
]


async def test_remove_takes_only_this_servers_document_names_whatever_is_typed(
    bot: FakeDiscord, engine: Engine, web: WebServer
) -> None:
    """/docs remove's value is typed (autocomplete only suggests): climbing out of the server's
    folder to another server's document, the shared statement or the database removes nothing."""
    web.routes["/herons"] = Reply(200, HERONS.format("Grey herons nest on the islands.").encode())
    added = await add(bot, web.url("/herons"), guild=GUILD_B)
    doc_id = re.search(r"Added `(uploads/[^`]+)`", added["content"])[1]
    theirs = engine.settings.state_dir / "guilds" / str(GUILD_B) / "docs" / doc_id[8:]
    try:
        state, statement = engine.settings.state_dir, engine.settings.data_dir / "statement.txt"
        before, text = state_snapshot(state), statement.read_bytes()
        for value in CLIMBING:
            value = value.format(other=GUILD_B, name=theirs.name)
            shown = await remove(bot, value)
            assert shown["content"].endswith(
                "is not one of this server's documents; /docs list shows them "
                "(shared documents cannot be removed from a server)."
            ), (value, shown["content"])
            assert "\n" not in shown["content"] and len(shown["content"]) < 300
        assert state_snapshot(state) == before and statement.read_bytes() == text
        assert theirs.is_file() and doc_id in engine.indexes[str(GUILD_B)].infos
        suggested = await bot.autocomplete(
            "docs", "remove", "document", "herons", guild_id=GUILD_A, user_id=new_user(),
            permissions=MANAGE_GUILD,
        )  # fmt: skip
        assert suggested == []  # another server's document is never suggested
    finally:
        removed = await command(
            bot, "docs", {"document": doc_id}, guild=GUILD_B, subcommand="remove",
            permissions=MANAGE_GUILD,
        )  # fmt: skip
    assert removed["content"] == f"Removed `{doc_id}`." and not theirs.exists()


async def test_every_server_is_answered_while_a_hostile_page_is_fetched(bot: FakeDiscord) -> None:
    """A link that drips a byte at a time holds only its own /docs add, up to FETCH_TIMEOUT."""
    with WebServer() as slow:
        adding = await bot.interact(
            "docs", {"url": slow.url("/drip")}, guild_id=GUILD_A, user_id=new_user(),
            subcommand="add", permissions=MANAGE_GUILD,
        )  # fmt: skip
        while not slow.hits("/drip"):
            await asyncio.sleep(0.05)
        for guild in (GUILD_B, GUILD_A):
            asked = await bot.interact(
                "ask", {"question": "Who is standing in Islington North?"},
                guild_id=guild, user_id=new_user(),
            )  # fmt: skip
            shown = await bot.wait_answered(asked, timeout=30)
            assert "Corbyn" in shown["content"]
            assert not bot.final_content(adding)["content"]  # the fetch is still dripping
        refused = await bot.wait_answered(adding, timeout=30)
    assert refused["content"].endswith("did not answer completely within 2 s."), refused
