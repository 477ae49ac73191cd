"""Load: many /ask interactions at once, through the loopback Discord stand-in, against the real
bot and engine, while an admin /reindex runs.

    .venv/bin/python bench/load.py [--asks 200] [--concurrency 20] [--reindex-docs 20]

The stand-in (Discord's side) runs in its own thread and event loop, so every time it records
(an interaction sent, the bot's acknowledgement, its answer) is Discord's view, not the bot's.
Prints acknowledgement and answer latency (p50/p95/max), throughput, event-loop lag, peak RSS
growth and fairness, then checks the guarantees and exits 1 if one is broken:

- every interaction is acknowledged (deferred) within 1 s of being sent;
- every interaction is answered (a real answer or the refusal, never the generic error),
  exactly once, and the stand-in rejected none of the bot's requests;
- the re-index finishes and reports its summary while the questions are being answered;
- no question is starved: none is overtaken by more than 2 x concurrency later ones;
- memory stays bounded (peak RSS growth under --max-rss-growth-mb).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import discord  # noqa: E402
import yarl  # noqa: E402

from bot.app.client import StatementBot  # noqa: E402
from bot.app.replies import GENERIC_ERROR  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.engine import Engine  # noqa: E402
from tests.fake_discord import FakeDiscord  # noqa: E402

GUILD = 1_400_000_000_000_000_001
CHANNEL = 1_400_000_000_000_000_002
ADMIN = 1_400_000_000_000_000_003
USERS = 1_400_000_000_000_100_000  # each question comes from its own member (no cooldown)
MANAGE_GUILD = 1 << 5
ACK_BOUND = 1.0  # seconds: Discord drops an interaction not acknowledged within 3 s
QUESTIONS = [
    "How long has Corbyn been the MP for Islington North?",
    "Who is the chair of Momentum?",
    "What did Kate Dove say?",
    "Was the local constituency party consulted about the shortlist?",
    "What did Keir Starmer call Diane Abbott?",
    "Who blocked Jeremy Corbyn from standing?",
    "Could members be expelled for supporting him?",
    "What is the weather in London today?",
    "Who won the 1966 World Cup?",
    "Which board repaired the railway in Hackney?",
]


@dataclass
class Asked:
    """One /ask as Discord saw it (stand-in clock, seconds)."""

    n: int
    sent: float
    token: str = ""
    acked: float | None = None
    answered: float | None = None
    content: str = ""
    messages: int = 0


@dataclass
class Result:
    asks: list[Asked]
    concurrency: int
    wall: float
    reindex_started: float
    reindex_done: float | None
    reindex_summary: str
    failed_requests: list[str]
    rss_start_mb: float
    rss_peak_mb: float
    loop_lag_max: float
    loop_lag_at: float
    violations: list[str] = field(default_factory=list)

    def ack_latencies(self) -> list[float]:
        return [a.acked - a.sent for a in self.asks if a.acked is not None]

    def answer_latencies(self) -> list[float]:
        return [a.answered - a.sent for a in self.asks if a.answered is not None]

    def overtaken(self) -> list[int]:
        """For each question, how many sent after it were answered before it."""
        done = [a.answered if a.answered is not None else float("inf") for a in self.asks]
        return [
            sum(1 for j in range(i + 1, len(done)) if done[j] < done[i]) for i in range(len(done))
        ]

    def check(self, max_rss_growth_mb: float = 1024) -> list[str]:
        """The guarantees; returns (and keeps) what broke."""
        bad = []
        if self.rss_peak_mb - self.rss_start_mb > max_rss_growth_mb:
            bad.append(f"peak RSS grew by {self.rss_peak_mb - self.rss_start_mb:.0f} MB")
        late = [a.n for a in self.asks if a.acked is None or a.acked - a.sent > ACK_BOUND]
        if late:
            bad.append(f"{len(late)} not acknowledged within {ACK_BOUND} s: {late[:10]}")
        unanswered = [a.n for a in self.asks if a.answered is None]
        if unanswered:
            bad.append(f"{len(unanswered)} interactions never answered: {unanswered[:10]}")
        wrong = [
            a.n
            for a in self.asks
            if a.answered is not None
            and (not a.content or GENERIC_ERROR in a.content or a.messages != 1)
        ]
        if wrong:
            bad.append(f"{len(wrong)} answers empty, duplicated or the generic error: {wrong[:10]}")
        if self.failed_requests:
            bad.append(
                f"the stand-in rejected {len(self.failed_requests)} requests: "
                f"{self.failed_requests[:5]}"
            )
        if self.reindex_done is None or not self.reindex_summary.startswith("Indexed"):
            bad.append(f"the re-index did not report its summary: {self.reindex_summary!r}")
        starved = max(self.overtaken(), default=0)
        if starved > 2 * self.concurrency:
            bad.append(f"a question was overtaken by {starved} later ones (starved)")
        self.violations = bad
        return bad

    def report(self) -> str:
        acks, answers = self.ack_latencies(), self.answer_latencies()
        over = self.overtaken()
        rows = [
            ("interactions", f"{len(self.asks)} /ask, {self.concurrency} at a time, + 1 /reindex"),
            ("ack latency", _spread(acks)),
            ("answer latency", _spread(answers)),
            ("throughput", f"{len(answers) / self.wall:.1f} answers/s over {self.wall:.1f} s"),
            (
                "re-index",
                f"{(self.reindex_done or float('nan')) - self.reindex_started:.1f} s, "
                f"{sum(1 for a in self.asks if a.sent < (self.reindex_done or 0))} "
                "questions sent while it ran",
            ),
            (
                "event-loop lag",
                f"max {self.loop_lag_max * 1000:.0f} ms (bot's loop), "
                f"{self.loop_lag_at:.1f} s into the run",
            ),
            (
                "RSS",
                f"{self.rss_start_mb:.0f} MB at start, peak {self.rss_peak_mb:.0f} MB "
                f"(+{self.rss_peak_mb - self.rss_start_mb:.0f} MB)",
            ),
            (
                "fairness",
                f"overtaken by later questions: max {max(over, default=0)}, "
                f"mean {statistics.fmean(over) if over else 0:.1f}",
            ),
            (
                "verdict",
                "all guarantees held"
                if not self.violations
                else "BROKEN: " + "; ".join(self.violations),
            ),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    ms = sorted(v * 1000 for v in values)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"p50 {p(0.5):.0f} ms, p95 {p(0.95):.0f} ms, max {ms[-1]:.0f} ms"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class DiscordThread:
    """The stand-in on its own thread and event loop: Discord's side of the load."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fake-discord", daemon=True
        )
        self.thread.start()
        self.fake = FakeDiscord()

    def call(self, coro: Awaitable[Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.call(self.fake.stop()).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _drive(
    fake: FakeDiscord,
    asks: int,
    concurrency: int,
    seed: int,
    before_reindex: Callable[[], None],
    until_reindex_done: bool,
) -> tuple[list[Asked], float, float | None, str, float]:
    """Discord's side: one /reindex, then questions from `concurrency` members at once, each
    asking again when answered: at least `asks`, and (if asked) until the re-index is done."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    before_reindex()
    reindex_started = loop.time()
    reindex = await fake.interact(
        "reindex", guild_id=GUILD, user_id=ADMIN, permissions=MANAGE_GUILD, channel_id=CHANNEL
    )

    async def reindex_outcome() -> tuple[float | None, str]:
        def final(r) -> bool:  # the summary, or an error from the funnel (a follow-up)
            if r.token != reindex.token or not r.ok or r.route.endswith("/callback"):
                return False
            content = (r.json or {}).get("content") or ""
            return r.method == "POST" or content.startswith("Indexed")

        try:
            rec = await fake.wait_for(final, timeout=600)
        except TimeoutError:
            return None, "(no final message)"
        return rec.at, rec.json["content"]

    reindex_task = asyncio.create_task(reindex_outcome())
    records: list[Asked] = []

    async def one(n: int) -> None:
        asked = Asked(n, loop.time())
        records.append(asked)
        since = len(fake.requests)  # nothing for this interaction can come before it is sent
        ix = await fake.interact(
            "ask",
            {"question": rng.choice(QUESTIONS)},
            guild_id=GUILD,
            user_id=USERS + n,
            channel_id=CHANNEL,
        )
        asked.token = ix.token
        interactions[ix.token] = ix
        try:
            ack = await fake.wait_for(
                lambda r: r.token == ix.token and r.route.endswith("/callback"),
                timeout=60,
                since=since,
            )
            asked.acked = ack.at
            shown = await fake.wait_for(
                lambda r: (
                    r.token == ix.token
                    and r.ok
                    and r.method in ("POST", "PATCH")
                    and not r.route.endswith("/callback")
                ),
                timeout=300,
                since=since,
            )
            asked.answered = shown.at
        except TimeoutError:
            return

    interactions: dict[str, Any] = {}
    numbers = iter(range(10**6))

    async def member() -> None:  # `concurrency` of these: each asks again once answered
        for n in numbers:
            if n >= asks and (not until_reindex_done or reindex_task.done()):
                return
            await one(n)

    started = loop.time()
    await asyncio.gather(*(member() for _ in range(concurrency)))
    wall = loop.time() - started
    reindex_done, summary = await reindex_task
    await asyncio.sleep(0.5)  # a duplicate answer would have arrived by now
    shown: dict[str, set[str]] = {}
    for r in fake.requests:
        if r.token in interactions and r.ok and not r.route.endswith("/callback"):
            if isinstance(r.response, dict) and "id" in r.response:
                shown.setdefault(r.token, set()).add(r.response["id"])
    for asked in records:
        if asked.token:
            asked.messages = len(shown.get(asked.token, ()))
            asked.content = fake.final_content(interactions[asked.token])["content"]
    return records, reindex_started, reindex_done, summary, wall


async def run_load(
    engine: Engine,
    settings: Settings,
    *,
    asks: int = 200,
    concurrency: int = 20,
    before_reindex: Callable[[], None] = lambda: None,
    seed: int = 0,
    until_reindex_done: bool = True,
    max_rss_growth_mb: float = 1024,
) -> Result:
    """Run the bot on this event loop against a stand-in on another thread; measure."""
    discord_side = DiscordThread()
    fake = discord_side.fake
    discord_side.call(fake.start()).result(10)
    fake.add_guild(GUILD, channel_ids=[CHANNEL])
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    lag = [0.0, 0.0]  # the worst lag, and when (seconds after the load started)
    rss = [_rss_mb(), _rss_mb()]
    stop = asyncio.Event()

    async def watch() -> None:  # event-loop lag and memory, sampled on the bot's loop
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.05)
            late = time.perf_counter() - before - 0.05
            if late > lag[0]:
                lag[:] = late, before - watch_started
            rss[1] = max(rss[1], _rss_mb())

    try:
        bot = StatementBot(settings, engine, guild_ready_timeout=0.05)
        async with bot:
            task = asyncio.create_task(bot.start("load-test-token"))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), 30)
                rss[0] = rss[1] = _rss_mb()
                watch_started = time.perf_counter()
                watcher = asyncio.create_task(watch())
                drive = discord_side.call(
                    _drive(fake, asks, concurrency, seed, before_reindex, until_reindex_done)
                )
                records, r_started, r_done, summary, wall = await asyncio.wrap_future(drive)
                stop.set()
                await watcher
            finally:
                await bot.close()
                await task
        failed = [f"{r.method} {r.route} -> {r.status}" for r in fake.requests if r.status >= 400]
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
        discord_side.close()
    result = Result(
        records,
        concurrency,
        wall,
        r_started,
        r_done,
        summary,
        failed,
        rss[0],
        rss[1],
        lag[0],
        lag[1],
    )
    result.check(max_rss_growth_mb)
    return result


def more_documents(folder: Path, docs: int, seed: int = 1) -> None:
    """Synthetic reports for the re-index to embed (about 10 chunks each)."""
    rng = random.Random(seed)
    nouns = "council budget river school library harbour railway garden market bridge".split()
    places = "Hackney Camden Leyton Bow Dalston Stratford Barking Ilford Walworth".split()
    for d in range(docs):
        paras = [
            " ".join(
                f"The {rng.choice(nouns)} board of {rng.choice(places)} repaired the "
                f"{rng.choice(nouns)} in {rng.randint(1990, 2024)} after {rng.randint(2, 90)} "
                f"residents wrote to the {rng.choice(nouns)} office."
                for _ in range(5)
            )
            for _ in range(20)
        ]
        (folder / f"load-{seed}-{d:03d}.txt").write_text("\n\n".join(paras), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--reindex-docs",
        type=int,
        default=20,
        help="new documents the /reindex embeds (about 10 chunks each)",
    )
    parser.add_argument("--max-rss-growth-mb", type=float, default=1024)
    args = parser.parse_args(argv)

    from bot.engine import start

    work = Path(tempfile.mkdtemp(prefix="statement-load-"))
    try:
        data = work / "data"
        data.mkdir()
        shutil.copy(ROOT / "data" / "statement.txt", data)
        settings = Settings(data_dir=data, state_dir=work / "state")
        started = time.perf_counter()
        engine = start(settings)
        engine.ask(QUESTIONS[0])  # warm up the models
        print(
            f"model and index ready in {time.perf_counter() - started:.1f} s; "
            f"the /reindex will embed ~{args.reindex_docs * 20} chunks",
            flush=True,
        )
        result = asyncio.run(
            run_load(
                engine,
                settings,
                asks=args.asks,
                concurrency=args.concurrency,
                before_reindex=lambda: more_documents(data, args.reindex_docs),
                max_rss_growth_mb=args.max_rss_growth_mb,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(result.report())
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
