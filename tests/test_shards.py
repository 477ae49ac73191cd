"""Several `statement-bot run` processes, each running some shards, through the Discord stand-in:
every server is served exactly once, by the process whose shard it is on; the shared corpus is
written by one process at a time and followed by the others without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from index.store import Store
from tests.conftest import ROOT, STATEMENT
from tests.discord_harness import MANAGE_GUILD
from tests.fake_discord import FakeDiscord, FakeInteraction, guild_on_shard, shard_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "MTM" + "A" * 21 + "." + "GhIjKl" + "." + "z" * 30  # token-shaped, assembled at run time
CORBYN = "How long has Corbyn been the MP for Islington North?"
ZORBLAT = "The Zorblat festival in Quenville is held every March on the frozen lake.\n"
HARBOUR = "The Walthamstow harbour board meets every Thursday at dawn by the old crane.\n"
_users = iter(range(1_390_000_000_000_000_001, 1_400_000_000_000_000_000))


class BotProcess:
    """`statement-bot run` in a process of its own; its log is read as it comes."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name, self.env, self.cwd = name, env, cwd
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        script = Path(sys.executable).with_name("statement-bot")
        self.proc = await asyncio.create_subprocess_exec(
            script,
            "run",
            cwd=self.cwd,
            env=self.env,  # no .env in cwd
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait_for_log(self, pattern: str, timeout: float) -> str:
        """The first log line matching `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if re.search(pattern, line)]
            if found:
                return found[0]
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        tail = "\n".join(self.lines[-30:])
        raise TimeoutError(f"{self.name}: no log line matching {pattern!r}; last lines:\n{tail}")

    def logged(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]

    async def stop(self) -> int:
        """SIGTERM, as systemd or docker stop it; it closes the gateway cleanly."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return self.proc.returncode


@dataclass
class Cluster:
    fake: FakeDiscord
    processes: dict[str, BotProcess]  # by SHARD_IDS
    guilds: dict[int, list[int]]  # shard -> its servers
    tmp: Path
    shard_count: int

    def process_of(self, guild: int) -> BotProcess:
        shard = shard_of(guild, self.shard_count)
        return next(p for ids, p in self.processes.items() if str(shard) in ids.split(","))


@contextlib.asynccontextmanager
async def cluster(
    tmp: Path, shard_count: int, layout: dict[str, dict[str, str]]
) -> AsyncIterator[Cluster]:
    """A stand-in with two servers per shard, and one bot process per SHARD_IDS in `layout`
    (each with its extra environment), all started at once on a fresh state."""
    data = tmp / "data"
    data.mkdir()
    shutil.copy(STATEMENT, data / STATEMENT.name)
    fake = FakeDiscord(shard_count=shard_count, max_concurrency=2)
    await fake.start()
    guilds = {s: [guild_on_shard(s, shard_count, n) for n in range(2)] for s in range(shard_count)}
    for shard_guilds in guilds.values():
        for guild in shard_guilds:
            fake.add_guild(guild, f"Server {guild % 1000}", channel_ids=[guild + 1])
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp),
        "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1", "DISCORD_TOKEN": TOKEN, "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url, "DATA_DIR": str(data),
        "STATE_DIR": str(tmp / "state"), "SHARD_COUNT": str(shard_count), "LOG_LEVEL": "INFO",
    }  # fmt: skip
    processes = {
        ids: BotProcess(f"shards {ids}", {**base, "SHARD_IDS": ids, **extra}, tmp)
        for ids, extra in layout.items()
    }
    try:
        for process in processes.values():
            await process.start()
        for process in processes.values():
            await process.wait_for_log(r"health: shards", timeout=240)
        yield Cluster(fake, processes, guilds, tmp, shard_count)
    finally:
        codes = [await p.stop() for p in processes.values() if p.proc is not None]
        await fake.stop()
    assert codes == [0] * len(processes), codes  # each stopped cleanly on SIGTERM
    for process in processes.values():
        assert not process.logged(r" (ERROR|CRITICAL) |Traceback"), process.lines[-40:]


async def ask(fake: FakeDiscord, guild: int, question: str) -> tuple[FakeInteraction, dict]:
    ix = await fake.interact(
        "ask", {"question": question}, guild_id=guild, user_id=next(_users), channel_id=guild + 1
    )
    return ix, await fake.wait_answered(ix, timeout=30)


async def admin(fake: FakeDiscord, guild: int, name: str, **kwargs: object) -> dict:
    ix = await fake.interact(
        name,
        guild_id=guild,
        user_id=next(_users),
        permissions=MANAGE_GUILD,
        channel_id=guild + 1,
        **kwargs,
    )

    def outcome(r) -> bool:  # the message shown after the defer, not a progress edit
        shown = r.token == ix.token and r.ok and not r.route.endswith("/callback")
        return shown and not (r.json or {}).get("content", "").startswith("Re-indexing")

    await fake.wait_for(outcome, timeout=60)
    return fake.final_content(ix)


def shows(shown: dict, text: str) -> bool:
    """Whether the message a member sees (its content or embeds) holds `text`."""
    return text in shown["content"] or text in json.dumps(shown["embeds"], ensure_ascii=False)


def has_sources(shown: dict) -> bool:
    return any(embed.get("title") == "Sources" for embed in shown["embeds"])


def answered_once(fake: FakeDiscord, ix: FakeInteraction) -> bool:
    """Acknowledged exactly once: no other process answered the same interaction."""
    return len([r for r in fake.responses_for(ix) if r.route.endswith("/callback")]) == 1


def answered_servers(state: Path) -> set[int]:
    with sqlite3.connect(state / "bot.sqlite3") as db:
        return {g for (g,) in db.execute("SELECT DISTINCT guild_id FROM answers")}


# -- two processes with two shards each, each with its own state folder (as on two machines) ---


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def four(tmp_path_factory) -> AsyncIterator[Cluster]:
    tmp = tmp_path_factory.mktemp("four-shards")
    corpus = str(tmp / "corpus")  # the shared corpus's index: a shared mount on two machines
    layout = {
        "0,1": {"STATE_DIR": str(tmp / "state-a"), "SHARED_INDEX_DIR": corpus},
        "2,3": {"STATE_DIR": str(tmp / "state-b"), "SHARED_INDEX_DIR": corpus},
    }
    async with cluster(tmp, 4, layout) as running:
        yield running


async def test_every_server_is_answered_once_by_the_process_running_its_shard(four):
    fake = four.fake
    assert sorted(fake.shards) == [(0, 4), (1, 4), (2, 4), (3, 4)]  # each shard identified once
    for ids, process in four.processes.items():
        for shard in map(int, ids.split(",")):
            assert process.logged(rf"shard {shard} of 4 ready: 2 servers")
        assert process.logged(r"health: shards " + ids + r" of 4, 4 servers")
    for guilds in four.guilds.values():
        for guild in guilds:
            ix, shown = await ask(fake, guild, CORBYN)
            assert "over 40 years" in shown["content"] and has_sources(shown)
            assert answered_once(fake, ix)
    await asyncio.sleep(0.5)  # a second answer, were there one, would have come by now
    assert all(answered_once(fake, ix) for ix in fake.interactions.values())
    owned = {
        ids: {g for s in map(int, ids.split(",")) for g in four.guilds[s]} for ids in ("0,1", "2,3")
    }
    assert answered_servers(four.tmp / "state-a") == owned["0,1"]
    assert answered_servers(four.tmp / "state-b") == owned["2,3"]
    assert len(fake.requests) and not [r for r in fake.requests if r.status >= 500]


async def test_an_upload_is_stored_and_answered_by_the_process_of_its_server(four):
    fake = four.fake
    guild, neighbour = four.guilds[3]  # process "2,3"
    attachment = fake.add_attachment("zorblat.txt", ZORBLAT.encode(), "text/plain")
    shown = await admin(fake, guild, "docs", subcommand="add", attachments={"file": attachment})
    assert shown["content"].startswith("Added `zorblat.txt`"), shown["content"]
    assert (four.tmp / "state-b" / "guilds" / str(guild) / "docs" / "zorblat.txt").is_file()
    assert not (four.tmp / "state-a" / "guilds").exists()  # the other process wrote nothing
    question = "When is the Zorblat festival held?"
    _, shown = await ask(fake, guild, question)
    assert "every March" in shown["content"]
    assert shows(shown, "frozen lake")
    for other in (neighbour, four.guilds[0][0]):  # same process, and the other one
        _, shown = await ask(fake, other, question)
        assert not shows(shown, "Zorblat") and not shows(shown, "frozen lake")


async def test_a_shared_reindex_in_one_process_is_answered_from_by_the_other(four):
    fake, writer_guild, reader_guild = four.fake, four.guilds[0][0], four.guilds[2][0]
    corpus = Store(four.tmp / "corpus")
    with corpus.lock():  # as when a third process (say `statement-bot index`) is writing it
        shown = await admin(fake, writer_guild, "reindex")
    assert shown["content"] == "A re-index is already running; try again when it has finished."

    (four.tmp / "data" / "harbour.txt").write_text(HARBOUR, encoding="utf-8")
    question = "When does the harbour board meet?"
    _, shown = await ask(fake, reader_guild, question)
    assert not shows(shown, "old crane")
    shown = await admin(fake, writer_guild, "reindex")
    published = time.monotonic()
    assert shown["content"].startswith("Indexed 2 documents"), shown["content"]
    while True:
        _, shown = await ask(fake, reader_guild, question)
        waited = time.monotonic() - published
        if shows(shown, "old crane"):
            break
        assert waited < 5, "the other process still answers from the old corpus"
        await asyncio.sleep(0.2)
    print(f"the other process answered from the new corpus {waited:.2f} s after it was published")
    assert "every Thursday" in shown["content"]
    reader = four.process_of(reader_guild)
    assert reader.logged(r"answering from shared version v\d+ \(\d+ chunks\)")
    versions = [p.name for p in corpus.folder.iterdir() if p.is_dir()]
    assert versions == [corpus.current().name]  # the writer removed the old one


# -- the issue's own layout: SHARD_COUNT=2, SHARD_IDS=0 and 1, one state folder ----------------


async def test_two_processes_of_one_shard_each_serve_every_server_exactly_once(tmp_path):
    async with cluster(tmp_path, 2, {"0": {}, "1": {}}) as two:
        fake = two.fake
        assert sorted(fake.shards) == [(0, 2), (1, 2)]
        builds = [p for p in two.processes.values() if p.logged(r"indexed .*shared")]
        assert len(builds) == 1  # both started on a fresh state: one built, the other waited
        for guilds in two.guilds.values():
            for guild in guilds:
                ix, shown = await ask(fake, guild, CORBYN)
                assert "over 40 years" in shown["content"] and answered_once(fake, ix)
        guild = two.guilds[1][1]
        attachment = fake.add_attachment("zorblat.txt", ZORBLAT.encode(), "text/plain")
        shown = await admin(fake, guild, "docs", subcommand="add", attachments={"file": attachment})
        assert shown["content"].startswith("Added `zorblat.txt`")
        _, shown = await ask(fake, guild, "When is the Zorblat festival held?")
        assert shows(shown, "frozen lake")
        assert two.process_of(guild).logged(rf"adds zorblat.txt in guild {guild}")
        assert not two.processes["0"].logged(r"adds zorblat.txt")
        await asyncio.sleep(0.5)
        assert all(answered_once(fake, ix) for ix in fake.interactions.values())
        assert answered_servers(tmp_path / "state") == {g for gs in two.guilds.values() for g in gs}
