"""Settings from the environment and `.env`, in one typed object built at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from dotenv import dotenv_values

from index.errors import Error
from index.store import ANN_THRESHOLD


class ConfigError(Error):
    """A setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Every knob, with its environment variable name in upper case."""

    data_dir: Path = Path("data")
    state_dir: Path = Path("state")
    model: str = "bundled"  # or a local sentence-transformers folder
    chunk_size: int = 800  # characters
    chunk_overlap: int = 1  # sentences shared by consecutive chunks of a long paragraph
    index_type: str = "auto"  # auto | flat | hnsw | ivf
    ann_threshold: int = ANN_THRESHOLD  # chunks; auto switches from exact to IVF above it
    search_mode: str = "hybrid"  # hybrid | dense | lexical
    top_k: int = 5
    max_question_chars: int = 1000
    # "none" (similarity scoring: measured better, see README), "bundled" (the reader this
    # project trained) or a reader model folder
    reader: str = "none"
    # Unset: the reader's calibrated threshold (in its reader.json), or 0.217 without a reader.
    answer_threshold: float | None = None
    max_upload_bytes: int = 5_000_000  # also the largest page fetched from the web
    fetch_timeout: float = 20.0  # seconds for a whole fetch, redirects included
    fetch_connect_timeout: float = 5.0
    fetch_allow_loopback: bool = False  # for tests only: lets links reach 127.0.0.1
    max_documents_per_server: int = 300  # a server's own documents (uploads and links)
    max_bytes_per_server: int = 250_000_000  # bytes of a server's stored documents
    shared_index_dir: Path | None = None  # the shared corpus's index; default state_dir/indexes
    guild_index_cache: int = 256_000_000  # bytes of servers' indexes kept loaded (LRU)
    shard_count: int = 0  # 0: as many shards as Discord recommends, all in this process
    shard_ids: tuple[int, ...] = ()  # the shards this process runs; () for all of them
    discord_token: str = field(default="", repr=False)  # a secret: never logged
    discord_guild_ids: tuple[int, ...] = ()
    discord_api_base: str = ""
    discord_gateway_url: str = ""
    reply_in_thread: bool = False
    cooldown_seconds: float = 5.0
    cooldown_questions: int = 3  # per member within cooldown_seconds
    handoff_cooldown_seconds: float = 600.0  # one hand-off to moderators per member per this
    retention_days: int = 90  # questions older than this are deleted; 0 keeps them forever
    llm_base_url: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = 20.0
    log_level: str = ""  # default: INFO for the bot, WARNING for other commands

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: object) -> Settings:
        """Settings from `.env`, then the process environment (which wins), then overrides."""
        env: dict[str, str | None] = {}
        if env_file and Path(env_file).is_file():
            env.update(dotenv_values(env_file))
        env.update(os.environ)
        return cls.from_mapping(env, **overrides)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str | None], **overrides: object) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        count, ids = self.shard_count, self.shard_ids
        if count < 0:
            raise ConfigError(f"SHARD_COUNT={count} must be 1 or more (or unset).")
        if ids and not count:
            raise ConfigError("SHARD_IDS needs SHARD_COUNT: the total number of shards.")
        if bad := [i for i in ids if not 0 <= i < count]:
            raise ConfigError(f"SHARD_IDS {bad} are outside 0..{count - 1} (SHARD_COUNT={count}).")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"SHARD_IDS lists a shard twice: {','.join(map(str, ids))}.")
        if self.guild_index_cache < 0:
            raise ConfigError("GUILD_INDEX_CACHE must be a number of bytes, 0 or more.")

    def owns(self, guild_id: int) -> bool:
        """Whether this process serves the guild: its shard, (id >> 22) % SHARD_COUNT, is ours."""
        return not self.shard_ids or (guild_id >> 22) % self.shard_count in self.shard_ids


def _parse(name: str, kind: str, raw: str) -> object:
    try:
        if kind in ("Path", "Path | None"):
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind in ("float", "float | None"):
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes", "on")
        if kind == "tuple[int, ...]":
            return tuple(int(x) for x in raw.replace(",", " ").split())
        return raw
    except ValueError:
        raise ConfigError(f"{name.upper()}={raw!r} is not a valid {kind}.") from None
