"""What a running process reports about itself, and `statement-bot run --check`."""

from __future__ import annotations

import os
import re
import resource
import sys
import time
from collections.abc import Sized

from bot.config import Settings
from bot.engine import Engine
from index.errors import Error, IndexDamaged
from index.store import Index

# Three dot-separated base64url parts: the bot's id, a timestamp and a signature.
TOKEN = re.compile(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}")


def preflight(settings: Settings) -> None:
    """Refuse at once what cannot work, before the model loads: a missing or malformed token."""
    token = settings.discord_token
    if not token:
        raise Error("DISCORD_TOKEN is not set: put it in .env or the environment (see README).")
    if not TOKEN.fullmatch(token):
        hint = " (without the 'Bot ' prefix)" if token.lower().startswith("bot ") else ""
        raise Error(
            f"DISCORD_TOKEN is not a bot token{hint}: copy it from the developer portal, "
            "Bot → Reset Token (three parts separated by dots; not the client secret)."
        )


def rss() -> int:
    """This process's resident memory in bytes (on Linux; elsewhere its peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def shards(settings: Settings) -> str:
    if not settings.shard_count:
        return "every shard Discord recommends"
    ids = settings.shard_ids or range(settings.shard_count)
    return f"shards {','.join(map(str, ids))} of {settings.shard_count}"


def counted(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) != 1)}"


def describe(engine: Engine) -> str:
    """The engine's share of a health line: corpus version, cached server indexes, memory."""
    cache, shared = engine.guilds, engine.shared
    corpus = f"{counted(shared.infos, 'document')}, {len(shared)} chunks" if shared else "-"
    return (
        f"shared corpus {engine.shared_version or '-'} ({corpus}); "
        f"server indexes in memory: {len(cache.loaded())} "
        f"({cache.bytes / 1e6:.1f} of {cache.budget / 1e6:.0f} MB; "
        f"{cache.loads} loads, {cache.evictions} evicted); RSS {rss() / 1e6:.0f} MB"
    )


def check(settings: Settings) -> list[str]:
    """`run --check`: settings, token format, the reader and the index, without contacting
    Discord."""
    preflight(settings)
    from bot.engine import start

    engine = start(settings, load=False)  # a broken READER folder fails here, clearly
    store = engine.shared_store
    reader = engine.reader
    lines = [
        f"settings ok: {shards(settings)}; state {settings.state_dir}; shared index {store.folder}",
        "token ok (its format; Discord is not contacted)",
        f"reader ok: {reader.card.layers} layers, threshold {engine.threshold}"
        if reader
        else f"no reader (READER=none): similarity scoring, threshold {engine.threshold}",
    ]
    started = time.perf_counter()
    folder = store.current()
    if folder is None:
        raise Error(f"No shared index in {store.folder} yet: run `statement-bot index` first.")
    try:  # checks every file's checksum, and the model and chunking settings
        index = Index.load(folder, engine.params)
    except IndexDamaged as err:
        raise Error(f"{err} `statement-bot index --rebuild` rebuilds it.") from None
    lines.append(
        f"shared index ok: {folder.name}, {counted(index.infos, 'document')}, {len(index)} chunks "
        f"({index.kind}), checked in {time.perf_counter() - started:.2f} s"
    )
    guilds = settings.state_dir / "guilds"
    ids = [
        int(p.name)
        for p in (guilds.iterdir() if guilds.is_dir() else [])
        if p.name.isdigit() and any((p / "docs").glob("[!.]*"))
    ]
    mine = sum(settings.owns(g) for g in ids)
    lines.append(f"servers with uploads here: {len(ids)}, {mine} of them on this process's shards")
    return lines
