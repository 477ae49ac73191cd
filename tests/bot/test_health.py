"""Shard settings, the token check, `run --check`, health lines and the IDENTIFY pacing."""

from __future__ import annotations

import asyncio
import re

import pytest

import bot.engine.answering
from bot.app.client import IdentifyLimiter
from bot.cli import main
from bot.config import ConfigError, Settings
from bot.health import describe, preflight, rss
from index.errors import Error
from tests.conftest import ROOT

TOKEN = "MTM" + "A" * 21 + "." + "GhIjKl" + "." + "z" * 30  # token-shaped, assembled at run time


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_IDS": "0"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,2"}, r"SHARD_IDS \[2\] are outside 0..1"),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "1,1"}, "lists a shard twice"),
        ({"SHARD_COUNT": "-1"}, "must be 1 or more"),
        ({"SHARD_COUNT": "two"}, "SHARD_COUNT='two' is not a valid int"),
        ({"GUILD_INDEX_CACHE": "-5"}, "GUILD_INDEX_CACHE must be"),
    ],
)
def test_bad_shard_settings_are_refused_clearly(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_mapping(env)


def test_a_server_belongs_to_the_shard_discord_sends_it_to():
    both = [Settings.from_mapping({"SHARD_COUNT": "2", "SHARD_IDS": str(i)}) for i in (0, 1)]
    guilds = [(n << 22) | 12345 for n in range(1_400_000_000_000, 1_400_000_000_010)]
    for guild in guilds:  # every server exactly once
        assert [s.owns(guild) for s in both].count(True) == 1
        assert both[(guild >> 22) % 2].owns(guild)
    assert all(Settings().owns(g) for g in guilds)  # unset: every shard in this process
    assert all(Settings(shard_count=4).owns(g) for g in guilds)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "DISCORD_TOKEN is not set"),
        ("Bot " + TOKEN, "not a bot token \\(without the 'Bot ' prefix\\)"),
        ("0123456789abcdef0123456789abcdef", "not a bot token: copy it"),  # a client secret
        (TOKEN + "\n", "not a bot token"),
    ],
)
def test_a_missing_or_malformed_token_is_refused_before_anything_loads(token, message):
    with pytest.raises(Error, match=message) as caught:
        preflight(Settings(discord_token=token))
    assert TOKEN not in str(caught.value)


def test_a_well_formed_token_passes():
    preflight(Settings(discord_token=TOKEN))


@pytest.fixture
def check(tmp_path, embedder, monkeypatch, capsys):
    # the session's model, not a second one: `bot.engine.start` builds its embedder by this name
    monkeypatch.setattr(bot.engine.answering, "Embedder", lambda name="bundled": embedder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("SHARD_COUNT", "2")
    monkeypatch.setenv("SHARD_IDS", "1")

    def run(*args: str) -> tuple[int, str, str]:
        base = ["--data", str(ROOT / "data"), "--state", str(tmp_path / "state")]
        code = main([*base, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_run_check_validates_settings_token_and_index_then_exits(check, tmp_path, monkeypatch):
    code, _, err = check("run", "--check")
    assert code == 2 and "No shared index in" in err and "statement-bot index" in err
    assert check("index")[0] == 0
    (tmp_path / "state" / "guilds" / str((3 << 22) | 1) / "docs").mkdir(parents=True)
    (tmp_path / "state" / "guilds" / str((3 << 22) | 1) / "docs" / "a.txt").write_text("x")
    code, out, err = check("run", "--check")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("settings ok: shards 1 of 2; state ")
    assert lines[1] == "token ok (its format; Discord is not contacted)"
    assert lines[2] == "no reader (READER=none): similarity scoring, threshold 0.217"
    assert lines[3].startswith("shared index ok: v") and "1 document, " in lines[3]
    assert lines[4] == "servers with uploads here: 1, 1 of them on this process's shards"
    assert TOKEN not in out + err
    monkeypatch.setenv("READER", "bundled")
    assert check("run", "--check")[1].splitlines()[2].startswith("reader ok: 3 layers, threshold")
    monkeypatch.setenv("READER", str(tmp_path))
    code, _, err = check("run", "--check")
    assert code == 2 and "is not a reader model folder" in err
    monkeypatch.delenv("READER")

    version = next(p for p in (tmp_path / "state" / "indexes" / "shared").iterdir() if p.is_dir())
    (version / "vectors.npy").write_bytes(b"damaged")
    code, _, err = check("run", "--check")
    assert code == 2 and "fails its checksum" in err and "--rebuild" in err


def test_health_line_names_corpus_cache_and_memory(make_engine):
    engine = make_engine(guild_index_cache=50_000_000)
    engine.add_document(7, "notes.md", b"# Notes\n\nThe quorum is twelve.", user_id=1)
    line = describe(engine)
    assert line.startswith(f"shared corpus {engine.shared_version} (1 document, ")
    assert "server indexes in memory: 1 (" in line and " of 50 MB; " in line
    assert 100e6 < rss() < 100e9 and re.search(r"; RSS \d+ MB$", line)


async def test_identify_waits_only_for_shards_in_the_same_bucket():
    """Discord's limit: `max_concurrency` IDENTIFYs per 5 s, one per bucket (id % max)."""
    loop = asyncio.get_running_loop()
    limiter = IdentifyLimiter(concurrency=2, every=0.3)
    started = loop.time()
    times = {}
    for shard in range(4):  # buckets 0, 1, 0, 1
        await limiter.wait(shard)
        times[shard] = loop.time() - started
    assert times[0] < 0.05 and times[1] < 0.05  # different buckets: at once
    assert 0.28 < times[2] < 0.5 and times[3] < 0.5  # each waits for its bucket's slot
    one = IdentifyLimiter(concurrency=1, every=0.2)
    await asyncio.gather(one.wait(0), one.wait(1), one.wait(2))  # reconnects all at once
    assert loop.time() - started - times[3] > 0.38  # still one per 0.2 s
