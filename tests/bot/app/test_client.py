"""The client's own promises, through the loopback Discord stand-in with the real bot, engine and
model: every shard Discord recommends in one process, and the health line in the log."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re

import pytest

import bot.app.client
from bot.app.client import StatementBot
from bot.engine import Engine
from index.embedder import Embedder
from tests import discord_harness
from tests.discord_harness import members, open_engine
from tests.fake_discord import FakeDiscord, guild_on_shard

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.usefixtures("no_errors_logged")]

CORBYN = "How long has Corbyn been an MP?"
new_user = members(1_590_000_000_000_000_001)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Engine:
    return open_engine(tmp_path_factory, embedder, "client")


def started(
    engine: Engine, guilds: list[int], shard_count: int = 1
) -> contextlib.AbstractAsyncContextManager[tuple[FakeDiscord, StatementBot]]:
    """A stand-in recommending `shard_count` shards (all IDENTIFYs at once), with `guilds`
    (each with a channel of id guild + 1), and the bot on it with SHARD_COUNT unset."""
    assert engine.settings.shard_count == 0 and not engine.settings.shard_ids

    def build(fake: FakeDiscord) -> None:
        for guild in guilds:
            fake.add_guild(guild, f"Server {guild % 1000}", channel_ids=[guild + 1])

    return discord_harness.started(
        engine, build, shard_count=shard_count, max_concurrency=shard_count
    )


def logged(caplog: pytest.LogCaptureFixture, pattern: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.app.client" and re.search(pattern, r.msg)]


async def test_unset_shard_count_runs_every_recommended_shard_and_serves_each_server_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    guilds = {shard: [guild_on_shard(shard, 2, n) for n in range(2)] for shard in (0, 1)}
    async with started(engine, [g for gs in guilds.values() for g in gs], 2) as (fake, bot):
        assert sorted(fake.shards) == [(0, 2), (1, 2)]  # each shard identified once, here
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert {g.id: g.shard_id for g in bot.guilds} == {
            g: s for s, gs in guilds.items() for g in gs
        }
        asked = []
        for guild in (g for gs in guilds.values() for g in gs):
            ix = await fake.interact(
                "ask", {"question": CORBYN}, guild_id=guild, channel_id=guild + 1,
                user_id=new_user(),
            )  # fmt: skip
            shown = await fake.wait_answered(ix, timeout=30)
            assert "over 40 years" in shown["content"]
            asked.append(ix)
        await asyncio.sleep(0.3)  # a second answer, were there one, would have come by now
        for ix in asked:  # acknowledged once: by the one shard that serves its server
            assert len([r for r in fake.responses_for(ix) if r.route.endswith("/callback")]) == 1
    [start] = [r.getMessage() for r in logged(caplog, r"^starting ")]
    assert start.startswith("starting every shard of 2 (Discord recommends 2; ")
    for shard in (0, 1):
        assert any(r.getMessage() == f"shard {shard} of 2 ready: 2 servers" for r in caplog.records)


async def test_the_health_line_is_logged_when_ready_and_every_interval(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: every 5 minutes. The interval is the module's HEALTH_EVERY, shortened here."""
    assert bot.app.client.HEALTH_EVERY == 300
    monkeypatch.setattr(bot.app.client, "HEALTH_EVERY", 0.25)
    guild = guild_on_shard(0, 1)
    async with started(engine, [guild]):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(logged(caplog, r"^health: ")) < 4 and loop.time() < deadline:
            await asyncio.sleep(0.05)
    lines = logged(caplog, r"^health: ")
    assert len(lines) >= 4  # one when ready, then one per interval
    for line in lines:
        assert re.fullmatch(
            r"health: shards 0 of 1, 1 servers, latency (\d+ ms|-); shared corpus v\d+ "
            r"\(1 document, \d+ chunks\); server indexes in memory: \d+ \([\d.]+ of 256 MB; "
            r"\d+ loads, \d+ evicted\); RSS \d+ MB",
            line.getMessage(),
        ), line.getMessage()
    periodic = [r.created for r in lines[1:]]
    gaps = [b - a for a, b in itertools.pairwise(periodic)]
    assert gaps and all(0.2 <= gap < 2 for gap in gaps), gaps
