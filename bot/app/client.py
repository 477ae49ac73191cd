"""The Discord client: wiring, shards, command sync, `statement-bot run`. It loads the features
(bot/app/exts/) by name and imports none of them."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable

import discord
import yarl
from discord.ext import commands

from bot.app.replies import NO_PINGS, on_app_command_error
from bot.config import Settings
from bot.engine import Engine
from bot.health import describe, preflight, shards
from index.errors import Error

log = logging.getLogger(__name__)

CORPUS_POLL = 2.0  # seconds between looks at the shared corpus's CURRENT pointer
HEALTH_EVERY = 300.0  # seconds between health lines in the log
# bot/app/exts/NAME.py, each with setup()
EXTENSIONS = ("ask", "handoff", "answers", "docs", "insights")


def point_at(api_base: str, gateway_url: str) -> None:
    """Send REST and gateway traffic to a stand-in or proxy instead of discord.com."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class IdentifyLimiter:
    """Discord allows `concurrency` IDENTIFYs per 5 s: one per bucket, shard id % concurrency.

    discord.py's default waits 5 s before every shard but the first; big bots get a
    max_concurrency of 16 or more, and their shards need not wait for each other.
    """

    def __init__(self, concurrency: int = 1, every: float = 5.0) -> None:
        self.concurrency, self.every = concurrency, every
        self._next: dict[int, float] = {}  # bucket -> earliest time of its next IDENTIFY

    async def wait(self, shard_id: int) -> None:
        loop = asyncio.get_running_loop()
        bucket = shard_id % max(1, self.concurrency)
        start = max(loop.time(), self._next.get(bucket, 0.0))
        self._next[bucket] = start + self.every
        await asyncio.sleep(start - loop.time())


class StatementBot(commands.AutoShardedBot):
    """Answers questions about the indexed documents; admins manage the documents.

    It runs SHARD_IDS of SHARD_COUNT shards (unset: every shard Discord recommends), and serves
    exactly the servers on them: Discord sends a server's events only to its shard.
    """

    def __init__(self, settings: Settings, engine: Engine, **options: object) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # to read the question in an @mention
        if settings.shard_count:
            options.setdefault("shard_count", settings.shard_count)
            if settings.shard_ids:
                options.setdefault("shard_ids", list(settings.shard_ids))
        super().__init__(
            command_prefix=lambda bot, message: [],  # slash commands and mentions only
            intents=intents,
            allowed_mentions=NO_PINGS,
            help_command=None,
            **options,
        )
        self.settings = settings
        self.engine = engine
        self.identify = IdentifyLimiter()
        self._chores: list[asyncio.Task] = []

    async def setup_hook(self) -> None:
        for name in EXTENSIONS:
            await self.load_extension(f"bot.app.exts.{name}")
        self.tree.on_error = on_app_command_error
        for guild_id in self.settings.discord_guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        if not self.settings.discord_guild_ids:
            await self.tree.sync()
        recommended, _, limits = await self.http.get_bot_gateway()
        if self.shard_count is None:  # then discord.py connects to DEFAULT_GATEWAY, as set
            self.shard_count = recommended
        self.identify.concurrency = limits["max_concurrency"]
        log.info(
            "starting %s of %d (Discord recommends %d; %d session starts left)",
            "shards " + ",".join(map(str, self.shard_ids)) if self.shard_ids else "every shard",
            self.shard_count,
            recommended,
            limits["remaining"],
        )
        self._chores = [
            asyncio.create_task(self._every(CORPUS_POLL, self._follow_corpus)),
            asyncio.create_task(self._every(HEALTH_EVERY, self._log_health)),
        ]

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        await self.identify.wait(shard_id or 0)

    async def on_shard_ready(self, shard_id: int) -> None:
        servers = sum(1 for g in self.guilds if g.shard_id == shard_id)
        log.info("shard %d of %d ready: %d servers", shard_id, self.shard_count, servers)

    async def on_ready(self) -> None:
        log.info("connected as %s (%s)", self.user, self.user.id)
        await self._log_health()

    async def close(self) -> None:
        for chore in self._chores:
            chore.cancel()
        await super().close()

    async def _follow_corpus(self) -> None:
        """Answer from a shared corpus version another process published (off the loop)."""
        await asyncio.to_thread(self.engine.refresh)

    async def _log_health(self) -> None:
        latency = "-" if math.isnan(self.latency) else f"{self.latency * 1000:.0f} ms"
        log.info(
            "health: shards %s of %s, %d servers, latency %s; %s",
            ",".join(map(str, sorted(self.shards))) or "-",
            self.shard_count,
            len(self.guilds),
            latency,
            await asyncio.to_thread(describe, self.engine),
        )

    @staticmethod
    async def _every(seconds: float, chore: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await chore()
            except Exception:  # a failed round is logged; the next one may succeed
                log.exception("%s failed", chore.__name__)


def run(settings: Settings) -> int:
    """Load the models and the shared index once, then serve Discord until interrupted."""
    preflight(settings)
    from bot.engine import start

    point_at(settings.discord_api_base, settings.discord_gateway_url)
    engine = start(settings)
    log.info("process %d serving %s: %s", os.getpid(), shards(settings), describe(engine))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly, as on Ctrl-C
    # The model's many long-lived objects make each full garbage collection pause the event
    # loop ~250 ms; freezing them keeps interaction acks fast (bench/load.py: max 316 -> 52 ms).
    gc.freeze()
    bot = StatementBot(settings, engine)
    try:
        bot.run(settings.discord_token, log_handler=None)
    except discord.LoginFailure:
        raise Error("Discord rejected DISCORD_TOKEN: check it in the developer portal.") from None
    return 0
