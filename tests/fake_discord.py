"""A loopback stand-in for Discord's REST API and gateway (v10), for the real discord.py client.

It listens on 127.0.0.1 only, records every REST call, keeps the messages the bot creates (so tests
can read what a user would finally see) and dispatches gateway events on the tests' behalf. Point
the client at it with ``discord.http.Route.BASE = fake.api_base`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)``.

Sharded clients (one process or several) work as on Discord: ``GET /gateway/bot`` recommends
``shard_count`` shards, each IDENTIFY with ``shard: [i, n]`` opens its own session, and a guild's
READY entry, GUILD_CREATE and events go only to the session of shard ``(guild_id >> 22) % n``.

Permissions are Discord's (``tests/fake_permissions.py``): guild roles, members' roles (the bot's
too) and channel overwrites. By default @everyone has every permission but Administrator and
Manage Server: the bot may do anything, members are not admins (tests may pass ``permissions=``
for a member instead). Interactions carry the computed ``member.permissions``,
``app_permissions`` and resolved channels' ``permissions``; the bot's posts, threads, typing and
edits are refused with Discord's 403s where it lacks the permission; a message pings only what
``allowed_mentions`` and the roles' mentionability let through (``mentions``, ``mention_roles``).
Changes made while the bot is connected reach it as gateway events before the next event a test
drives. A modal the bot opens (response type 9: action rows of one text input each) is checked
against Discord's limits and kept on its interaction; ``submit`` sends the MODAL_SUBMIT
interaction (type 5) the member's client would, with the button's message when opened from one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import json
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

from tests import fake_permissions as perms

Json = dict[str, Any]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ATTACHMENT_SIZE_LIMIT = 10 * 2**20
# Discord's limits on a modal (interaction response type 9) and its text inputs (type 4).
MODAL_TITLE, MODAL_ITEMS, CUSTOM_ID, INPUT_LABEL, INPUT_PLACEHOLDER, INPUT_TEXT = (
    45,
    5,
    100,
    45,
    100,
    4000,
)
_ids = itertools.count()


def snowflake() -> str:
    """A fresh, unique, realistic (19-digit) Discord snowflake."""
    return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_ids) & 0x3FFFFF))


def _now() -> str:
    """The current time as Discord writes timestamps."""
    return datetime.now(UTC).isoformat()


def _user(user_id: int | str, *, bot: bool = False) -> Json:
    """A user object for the given id."""
    user = {
        "id": str(user_id),
        "username": f"user{user_id}",
        "discriminator": "0",
        "global_name": None,
        "avatar": None,
        "public_flags": 0,
    }
    if bot:
        user.update(username="statement-bot", global_name="Statement Bot", bot=True)
    return user


def _member(permissions: int | None = None, roles: Iterable[str] = ()) -> Json:
    """A guild member object without its user, as gateway messages carry it."""
    member = {
        "roles": list(roles),
        "joined_at": _now(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
    }
    if permissions is not None:
        member["permissions"] = str(permissions)
    return member


class _ApiError(Exception):
    """A Discord JSON error answer: HTTP status, Discord error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.body = status, {"code": code, "message": message}


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response whose Content-Type is exactly ``application/json``, as discord.py expects."""
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


async def _read_body(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    """The JSON body (``payload_json`` for multipart) and uploaded files by filename."""
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        return (json.loads(raw) if raw else None), {}
    payload, files = None, {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
        else:
            files[part.filename or part.name or ""] = bytes(await part.read())
    return payload, files


class _Call(NamedTuple):
    """A parsed request, as the REST handlers see it."""

    method: str
    path: str
    match: Mapping[str, str]  # the route's path parameters
    body: Any  # the JSON body or ``payload_json`` ({} when there is none)
    files: dict[str, bytes]


Handler = Callable[[_Call], Awaitable[Any]]


@dataclass
class Recorded:
    """One HTTP request the stand-in received and the answer it gave."""

    method: str
    path: str  # under the API base (``/channels/1/messages``), or ``/cdn/...``
    route: str  # the matched template, e.g. ``/webhooks/{app_id}/{token}``
    query: dict[str, str]
    json: Any  # the JSON body, or the multipart ``payload_json``
    files: dict[str, bytes]  # uploaded files by filename
    token: str | None  # the interaction token in the path, if any
    at: float  # event-loop time the request arrived
    status: int = 0
    response: Any = None  # the JSON answer or error (None for 204 and binary answers)

    @property
    def ok(self) -> bool:
        """Whether the stand-in answered with a success status."""
        return 200 <= self.status < 300


@dataclass
class FakeInteraction:
    """An interaction the stand-in dispatched, and what the bot has done with it so far."""

    id: str
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete, 5 modal submit
    guild_id: int
    channel_id: int
    user_id: int
    payload: Json = field(repr=False)
    source_message_id: str | None = None  # the message a clicked component is on
    callback_type: int | None = None  # 4 message, 5 deferred, 6 deferred update, 7 update, ...
    original_id: str | None = None  # the message the original response is (or edits)
    loading: bool = False  # deferred with "thinking" and not yet filled in
    followup_ids: list[str] = field(default_factory=list)
    modal: Json | None = None  # the modal the bot opened in answer (callback type 9)


@dataclass
class _Fault:
    """An injected failure for the next ``remaining`` matching requests."""

    method: str
    pattern: str
    remaining: int
    status: int
    retry_after: float

    def response(self) -> web.Response:
        """The error answer: a retryable 429 (with the Via header discord.py requires) or other."""
        if self.status == 429:
            body = {
                "message": "You are being rate limited.",
                "retry_after": self.retry_after,
                "global": False,
            }
            return _json_response(body, 429, {"Via": "1.1 google"})
        return _json_response({"code": 0, "message": "injected failure"}, self.status)


@dataclass(eq=False)
class Session:
    """One gateway session: a shard's (``shard`` is ``(i, n)``) or an unsharded client's."""

    id: str
    shard: tuple[int, int] | None
    ws: web.WebSocketResponse | None
    seq: int = 0
    live: bool = True  # identified (READY and guilds sent) or resumed, and still connected

    def serves(self, guild_id: int | None) -> bool:
        """Whether Discord sends this guild's events here (events without a guild: shard 0)."""
        if self.shard is None:
            return True
        shard, count = self.shard
        return (0 if guild_id is None else shard_of(guild_id, count)) == shard


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (guild_id >> 22) % shard_count


def guild_on_shard(shard: int, shard_count: int, n: int = 0) -> int:
    """The `n`-th of a series of realistic guild ids whose events go to `shard` of `shard_count`."""
    created = 1_400_000_000_000 + n * shard_count  # ms since the Discord epoch (2024)
    return ((created + (shard - created) % shard_count) << 22) | 1


class FakeDiscord:
    """Discord's REST API and gateway on 127.0.0.1, for one client or several sharded ones."""

    def __init__(
        self,
        *,
        bot_user_id: int = 1_300_000_000_000_000_001,
        application_id: int | None = None,
        heartbeat_interval_ms: int = 41_250,
        echo_bot_messages: bool = True,
        shard_count: int = 1,
        max_concurrency: int = 1,
    ) -> None:
        """Set ids; ``echo_bot_messages`` dispatches MESSAGE_CREATE for the bot's own posts;
        ``GET /gateway/bot`` recommends ``shard_count`` shards and allows ``max_concurrency``
        IDENTIFYs per 5 s."""
        self.bot_user_id = bot_user_id
        self.application_id = application_id or bot_user_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_bot_messages = echo_bot_messages
        self.shard_count, self.max_concurrency = shard_count, max_concurrency
        self.requests: list[Recorded] = []
        self.identifies = 0
        self.resumes = 0
        self.sessions: list[Session] = []  # every session identified, oldest first
        self.guilds: dict[int, Json] = {}  # guild payloads without channels
        self.channels: dict[str, Json] = {}  # channel (and thread) objects by id
        self.messages: dict[str, Json] = {}  # current state of every message, by id
        self.commands: dict[int | None, list[Json]] = {}  # synced commands; None = global
        self.interactions: dict[str, FakeInteraction] = {}  # by token
        self.member_roles: dict[tuple[int, int], list[str]] = {}  # (guild, user) -> role ids
        self._outbox: list[tuple[str, Json]] = []  # world changes the bot has yet to hear of
        self._files: dict[str, tuple[bytes, str]] = {}  # attachment id -> (data, content type)
        self._faults: list[_Fault] = []
        self._waiters: list[tuple[Callable[[Recorded], bool], asyncio.Future[Recorded]]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._send_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the gateway connections and stop listening."""
        for ws in list(self._sockets):
            await ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_base(self) -> str:
        """The REST base URL, for ``discord.http.Route.BASE``."""
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The gateway URL, for ``DiscordWebSocket.DEFAULT_GATEWAY``."""
        return f"ws://127.0.0.1:{self._port}/gateway"

    @property
    def bot_user(self) -> Json:
        """The bot's user object."""
        return _user(self.bot_user_id, bot=True)

    # -- world set-up ------------------------------------------------------------------------

    def add_guild(
        self,
        guild_id: int,
        name: str = "Test Server",
        *,
        channel_ids: Iterable[int] = (),
        member_count: int = 2,
    ) -> list[int]:
        """Add a guild (sent at the next IDENTIFY) with text channels; return their ids."""
        ids = [int(c) for c in channel_ids] or [int(snowflake())]
        self.guilds[guild_id] = {
            "id": str(guild_id),
            "name": name,
            "icon": None,
            "owner_id": str(guild_id + 1),
            "roles": [
                {
                    "id": str(guild_id),
                    "name": "@everyone",
                    "permissions": str(perms.EVERYONE_DEFAULT),
                    "position": 0,
                    "colors": {"primary_color": 0},
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "member_count": member_count,
            "large": False,
            "unavailable": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "mfa_level": 0,
            "explicit_content_filter": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": str(ids[0]),
            "joined_at": _now(),
        }
        for position, channel_id in enumerate(ids):
            self.channels[str(channel_id)] = {
                "id": str(channel_id),
                "type": 0,
                "guild_id": str(guild_id),
                "name": f"channel-{position}",
                "position": position,
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "last_message_id": None,
                "rate_limit_per_user": 0,
                "permission_overwrites": [],
            }
        return ids

    def add_role(
        self,
        guild_id: int,
        role_id: int,
        name: str,
        *,
        mentionable: bool = True,
        permissions: int = 0,
    ) -> Json:
        """Add a role with its own permission bits to a guild; return it."""
        role = {
            **self.guilds[guild_id]["roles"][0],
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": len(self.guilds[guild_id]["roles"]),
            "mentionable": mentionable,
        }
        self.guilds[guild_id]["roles"].append(role)
        self._emit("GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role})
        return role

    def edit_role(
        self,
        guild_id: int,
        role_id: int,
        *,
        permissions: int | None = None,
        mentionable: bool | None = None,
    ) -> Json:
        """Change a role's permissions or mentionability (``role_id=guild_id``: @everyone)."""
        role = next(r for r in self.guilds[guild_id]["roles"] if r["id"] == str(role_id))
        if permissions is not None:
            role["permissions"] = str(permissions)
        if mentionable is not None:
            role["mentionable"] = mentionable
        self._emit("GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": role})
        return role

    def set_roles(self, guild_id: int, user_id: int, role_ids: Iterable[int]) -> None:
        """Give a member (the bot too: ``bot_user_id``) exactly these roles."""
        roles = [str(r) for r in role_ids]
        self.member_roles[(guild_id, user_id)] = roles
        if user_id == self.bot_user_id:  # Discord tells a bot of its own member's changes
            update = {**_member(roles=roles), "guild_id": str(guild_id), "user": self.bot_user}
            self._emit("GUILD_MEMBER_UPDATE", update)

    def set_overwrite(
        self,
        channel_id: int,
        target_id: int,
        *,
        allow: int = 0,
        deny: int = 0,
        type: int | None = None,
    ) -> None:
        """Set a channel's overwrite for a role (type 0; @everyone's id is the guild's) or a
        member (type 1; by default, whichever the id is); allow=deny=0 removes it."""
        channel = self.channels[str(channel_id)]
        if type is None:
            roles = self.guilds[int(channel["guild_id"])]["roles"]
            type = perms.ROLE if any(r["id"] == str(target_id) for r in roles) else perms.MEMBER
        kept = [o for o in channel["permission_overwrites"] if o["id"] != str(target_id)]
        if allow or deny:
            kept.append(
                {"id": str(target_id), "type": type, "allow": str(allow), "deny": str(deny)}
            )
        channel["permission_overwrites"] = kept
        self._emit("CHANNEL_UPDATE", channel)

    def permissions_in(self, channel_id: int, user_id: int) -> int:
        """A member's (or the bot's) permissions in a channel or thread, as Discord has them."""
        channel = self.channels[str(channel_id)]
        guild_id = int(channel["guild_id"])
        parent = self.channels.get(str(channel.get("parent_id")))
        roles = self.member_roles.get((guild_id, user_id), [])
        return perms.compute(self.guilds[guild_id], channel, parent, user_id, roles)

    def add_attachment(
        self, filename: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> Json:
        """Serve ``data`` from the stand-in's CDN (call after :meth:`start`); return its Discord
        attachment object."""
        if not self._port:
            raise RuntimeError("start the stand-in first: attachment URLs carry its port")
        attachment_id = snowflake()
        self._files[attachment_id] = (data, content_type)
        url = f"http://127.0.0.1:{self._port}/cdn/attachments/{attachment_id}/{filename}"
        return {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    def fail_next(
        self,
        method: str,
        path_glob: str,
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float = 0.05,
    ) -> None:
        """Answer the next ``times`` requests matching method and glob (on ``Recorded.path``)
        with ``status`` (429 carries ``retry_after``; discord.py sleeps 1, 3, 5... s after 5xx)."""
        self._faults.append(_Fault(method.upper(), path_glob, times, status, retry_after))

    # -- driving the bot ---------------------------------------------------------------------

    async def interact(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        guild_id: int,
        user_id: int,
        permissions: int | None = None,
        channel_id: int | None = None,
        subcommand: str | None = None,
        attachments: dict[str, Json] | None = None,
    ) -> FakeInteraction:
        """Invoke a synced slash command; ``subcommand`` may be "sub" or "group sub";
        ``attachments`` maps ATTACHMENT option names to objects from :meth:`add_attachment`;
        ``permissions`` are the member's (everywhere), instead of those their roles give them."""
        command = self._command(name, guild_id)
        opts, resolved = self._options(command, subcommand, options or {}, attachments or {})
        resolved.update(self._resolved(guild_id, opts, user_id, permissions))
        data = self._command_data(command, opts)
        if resolved:
            data["resolved"] = resolved
        return await self._interact(2, data, guild_id, user_id, permissions, channel_id)

    async def autocomplete(
        self,
        name: str,
        subcommand: str | None,
        focused_option: str,
        value: str,
        options: dict[str, Any] | None = None,
        *,
        guild_id: int,
        user_id: int,
        permissions: int | None = None,
        channel_id: int | None = None,
        timeout: float = 10.0,
    ) -> list[Json]:
        """Ask for autocomplete choices while ``focused_option`` holds ``value``; return them."""
        command = self._command(name, guild_id)
        opts, _ = self._options(command, subcommand, options or {}, {}, (focused_option, value))
        data = self._command_data(command, opts)
        ix = await self._interact(4, data, guild_id, user_id, permissions, channel_id)
        rec = await self.wait_for(lambda r: r.token == ix.token and r.ok, timeout=timeout)
        return rec.json["data"]["choices"]

    async def click(
        self,
        custom_id: str,
        message: Json,
        *,
        guild_id: int,
        user_id: int,
        permissions: int | None = None,
    ) -> FakeInteraction:
        """Click the button ``custom_id`` on ``message`` (a message dict from the stand-in)."""
        message = self.messages.get(message["id"], message)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(
            3, data, guild_id, user_id, permissions, int(message["channel_id"]), message
        )

    async def select(
        self,
        custom_id: str,
        message: Json,
        channel_ids: list[int],
        *,
        guild_id: int,
        user_id: int,
        permissions: int | None = None,
    ) -> FakeInteraction:
        """Pick ``channel_ids`` in the channel select ``custom_id`` on ``message``."""
        message = self.messages.get(message["id"], message)
        data: Json = {
            "custom_id": custom_id,
            "component_type": 8,
            "values": [str(c) for c in channel_ids],
            "resolved": {
                "channels": {
                    str(c): self._partial_channel(c, user_id, permissions) for c in channel_ids
                }
            },
        }
        return await self._interact(
            3, data, guild_id, user_id, permissions, int(message["channel_id"]), message
        )

    async def submit(
        self,
        opened: FakeInteraction,
        values: dict[str, str],
        *,
        user_id: int | None = None,
        permissions: int | None = None,
    ) -> FakeInteraction:
        """Submit the modal the bot opened in answer to ``opened`` (MODAL_SUBMIT, type 5) with
        ``values`` by text input custom id, as ``opened``'s member (with their permissions)
        unless ``user_id`` is given.
        The client enforces the inputs' lengths and required flags, so this refuses to send
        what Discord's client would not."""
        modal = opened.modal
        if modal is None:
            raise LookupError(f"interaction {opened.id} opened no modal")
        inputs = [c for row in modal["components"] for c in _modal_inputs(row)]
        rows = []
        for spec in inputs:
            value = values.get(spec["custom_id"], "")
            low, high = spec.get("min_length", 0), spec.get("max_length", INPUT_TEXT)
            if (value or spec.get("required", True)) and not low <= len(value) <= high:
                raise ValueError(f"{spec['custom_id']}: {len(value)} characters, not {low}-{high}")
            rows.append({"type": 1, "components": [
                {"type": 4, "id": spec.get("id", 0), "custom_id": spec["custom_id"], "value": value}
            ]})  # fmt: skip
        if unknown := set(values) - {c["custom_id"] for c in inputs}:
            raise LookupError(f"the modal has no inputs {sorted(unknown)}")
        data = {"custom_id": modal["custom_id"], "components": rows}
        source = self.messages.get(opened.source_message_id or "")
        if user_id is None and permissions is None:  # the same member, as permitted as before
            permissions = int(opened.payload["member"]["permissions"])
        return await self._interact(
            5,
            data,
            opened.guild_id,
            opened.user_id if user_id is None else user_id,
            permissions,
            opened.channel_id,
            source,  # a modal opened from a button carries the button's message
        )

    async def wait_modal(self, ix: FakeInteraction, timeout: float = 10.0) -> Json:
        """Wait until the bot answers ``ix`` with a modal; return the modal."""
        await self.wait_for(
            lambda r: r.token == ix.token and r.ok and r.route.endswith("/callback"),
            timeout=timeout,
        )
        if ix.modal is None:
            raise AssertionError(f"interaction {ix.id} was answered without a modal")
        return ix.modal

    async def message(
        self,
        content: str,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        mention_bot: bool = True,
        reply_to: Json | None = None,
        attachments: list[Json] | None = None,
    ) -> Json:
        """Post a user's message (MESSAGE_CREATE). A mention not in a reply is prefixed to
        ``content`` as ``<@bot>`` unless already there; a reply is type 19 to ``reply_to``.
        The member must be allowed to post there."""
        channel = self._guild_channel(guild_id, channel_id)
        if not self.permissions_in(channel_id, user_id) & perms.sending(channel):
            raise PermissionError(f"member {user_id} may not post in channel {channel_id}")
        mention = f"<@{self.bot_user_id}>"
        if mention_bot and reply_to is None and mention not in content:
            content = f"{mention} {content}"
        msg = self._new_message(str(channel_id), {"content": content}, {}, _user(user_id))
        msg.update(
            guild_id=str(guild_id),
            member=_member(roles=self.member_roles.get((guild_id, user_id), [])),
            attachments=attachments or [],
            mentions=[self.bot_user] if mention_bot else [],
        )
        if reply_to is not None:
            msg.update(
                type=19,
                referenced_message=self.messages.get(reply_to["id"], reply_to),
                message_reference={
                    "type": 0,
                    "message_id": reply_to["id"],
                    "channel_id": reply_to["channel_id"],
                    "guild_id": str(guild_id),
                },
            )
        await self._dispatch("MESSAGE_CREATE", msg)
        return msg

    async def drop_connection(
        self,
        code: int = 4000,
        *,
        wait: bool = True,
        timeout: float = 10.0,
        guild_id: int | None = None,
    ) -> None:
        """Close the gateway connection serving ``guild_id`` (default: shard 0's) as Discord
        would; by default wait for the bot to resume (or re-identify)."""
        session = self._live_session(guild_id)
        if session is None or session.ws is None:
            raise RuntimeError("no gateway connection to drop")
        session.live = False
        await session.ws.close(code=code, message=b"dropped by the test")
        if wait:
            await self.wait_connected(timeout, guild_id=guild_id)

    async def wait_connected(self, timeout: float = 10.0, *, guild_id: int | None = None) -> None:
        """Wait until the session serving ``guild_id`` (default: shard 0's) is live."""
        await self._session_for(guild_id, timeout)

    @property
    def shards(self) -> list[tuple[int, int] | None]:
        """The ``[i, n]`` of every IDENTIFY so far (None for unsharded ones), in order."""
        return [s.shard for s in self.sessions]

    # -- reading what happened ---------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], *, timeout: float = 10.0, since: int = 0
    ) -> Recorded:
        """The first request from index ``since`` on (failed ones too) matching ``predicate``,
        waiting for it up to ``timeout`` seconds."""
        for rec in self.requests[since:]:
            if predicate(rec):
                return rec
        waiter = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        except TimeoutError:
            seen = "; ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:])
            raise TimeoutError(f"no matching request in {timeout}s; last seen: {seen}") from None
        finally:
            self._waiters.remove(waiter)

    def responses_for(self, ix: FakeInteraction) -> list[Recorded]:
        """The successful callback and webhook calls for this interaction, in order."""
        return [r for r in self.requests if r.token == ix.token and r.ok]

    def final_content(self, ix: FakeInteraction) -> Json:
        """The original response message as it stands now (content, embeds, components, flags
        ...); after a "thinking" defer, the first follow-up fills it, as on Discord."""
        if ix.original_id is None or ix.original_id not in self.messages:
            raise LookupError(f"interaction {ix.id} has no response message")
        return self.messages[ix.original_id]

    def messages_for(self, ix: FakeInteraction) -> list[Json]:
        """The original response (if any) and follow-up messages, as they stand now."""
        ids = ([ix.original_id] if ix.original_id else []) + ix.followup_ids
        return [self.messages[i] for i in ids]

    async def wait_answered(self, ix: FakeInteraction, timeout: float = 10.0) -> Json:
        """Wait until the bot shows the user a message for this interaction (not just a defer)
        and return :meth:`final_content`; later edits need :meth:`wait_for`."""

        def shows(r: Recorded) -> bool:
            if r.token != ix.token or not r.ok:
                return False
            if r.route.endswith("/callback"):
                return r.json["type"] in (4, 7)
            return r.method in ("POST", "PATCH")

        await self.wait_for(shows, timeout=timeout)
        return self.final_content(ix)

    async def wait_for_reply(self, message: Json, timeout: float = 10.0) -> Json:
        """The bot's first channel post replying to ``message`` or in the thread started from it."""

        def replies(r: Recorded) -> bool:
            if not (r.ok and r.method == "POST" and r.route == "/channels/{channel_id}/messages"):
                return False
            ref = r.response.get("message_reference") or {}
            return message["id"] in (ref.get("message_id"), r.response["channel_id"])

        rec = await self.wait_for(replies, timeout=timeout)
        return self.messages[rec.response["id"]]

    def channel_messages(self, channel_id: int) -> list[Json]:
        """Every message in a channel or thread, oldest first, as it stands now."""
        return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    # -- helpers for the driving side --------------------------------------------------------

    def _command(self, name: str, guild_id: int) -> Json:
        """The synced chat-input command ``name`` visible in the guild (guild scope first)."""
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        raise LookupError(f"/{name} was not synced globally or to guild {guild_id}")

    @staticmethod
    def _options(
        command: Json,
        subcommand: str | None,
        values: dict[str, Any],
        attachments: dict[str, Json],
        focused: tuple[str, str] | None = None,
    ) -> tuple[list[Json], Json]:
        """Interaction options (nested under the subcommand path) and ``resolved`` data,
        typed from the synced schema."""
        top: list[Json] = []
        level, schema = top, command.get("options", [])
        for part in (subcommand or "").split():
            spec = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
            if spec is None:
                raise LookupError(f"/{command['name']} has no subcommand {part!r}")
            node: Json = {"name": part, "type": spec["type"], "options": []}
            level.append(node)
            level, schema = node["options"], spec.get("options", [])
        types = {o["name"]: o["type"] for o in schema}
        given = list(values) + list(attachments) + ([focused[0]] if focused else [])
        if unknown := set(given) - set(types):
            raise LookupError(f"unknown options {sorted(unknown)}; the schema has {sorted(types)}")
        level += [{"name": k, "type": types[k], "value": v} for k, v in values.items()]
        level += [{"name": k, "type": 11, "value": a["id"]} for k, a in attachments.items()]
        if focused:
            level.append(
                {
                    "name": focused[0],
                    "type": types[focused[0]],
                    "value": focused[1],
                    "focused": True,
                }
            )
        if not attachments:
            return top, {}
        return top, {"attachments": {a["id"]: a for a in attachments.values()}}

    def _guild_channel(self, guild_id: int, channel_id: int | None) -> Json:
        """A channel or thread of the guild (by default its first text channel)."""
        if channel_id is None:
            channel_id = next(
                (
                    int(c["id"])
                    for c in self.channels.values()
                    if c["guild_id"] == str(guild_id) and c["type"] == 0
                ),
                None,
            )
        channel = self.channels.get(str(channel_id))
        if channel is None or channel["guild_id"] != str(guild_id):
            raise LookupError(f"no channel {channel_id} in guild {guild_id}; see add_guild()")
        return channel

    def _partial_channel(self, channel_id: int | str, user_id: int, given: int | None) -> Json:
        """A channel as interactions resolve it: with the member's permissions there."""
        if given is None:
            given = self.permissions_in(int(channel_id), user_id)
        return {**self.channels[str(channel_id)], "permissions": str(given)}

    def _resolved(
        self, guild_id: int, options: list[Json], user_id: int, given: int | None
    ) -> Json:
        """``resolved`` channels (type 7) and roles (type 8) named by options, nested too."""
        resolved: Json = {}
        roles = {r["id"]: r for r in self.guilds[guild_id]["roles"]}
        for option in options:
            nested = self._resolved(guild_id, option.get("options", []), user_id, given)
            for key, value in nested.items():
                resolved.setdefault(key, {}).update(value)
            if option["type"] == 7:
                channel = self._partial_channel(option["value"], user_id, given)
                resolved.setdefault("channels", {})[str(option["value"])] = channel
            elif option["type"] == 8:
                resolved.setdefault("roles", {})[str(option["value"])] = roles[str(option["value"])]
        return resolved

    @staticmethod
    def _command_data(command: Json, options: list[Json]) -> Json:
        """The ``data`` of a chat-input interaction for ``command``."""
        data = {"id": command["id"], "name": command["name"], "type": 1, "options": options}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    async def _interact(
        self,
        kind: int,
        data: Json,
        guild_id: int,
        user_id: int,
        permissions: int | None,
        channel_id: int | None,
        message: Json | None = None,
    ) -> FakeInteraction:
        """Dispatch INTERACTION_CREATE (with the member's and the bot's permissions in the
        channel) and remember the interaction by token."""
        channel = self._guild_channel(guild_id, channel_id)
        where = int(channel["id"])
        if permissions is None:
            permissions = self.permissions_in(where, user_id)
        roles = self.member_roles.get((guild_id, user_id), [])
        ix_id, token = snowflake(), f"itoken{secrets.token_hex(16)}"
        payload = {
            "id": ix_id,
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": channel,
            "token": token,
            "version": 1,
            "member": {**_member(permissions, roles), "user": _user(user_id)},
            "app_permissions": str(self.permissions_in(where, self.bot_user_id)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if message is not None:
            payload["message"] = message
        ix = FakeInteraction(
            ix_id,
            token,
            kind,
            guild_id,
            int(channel["id"]),
            user_id,
            payload,
            message["id"] if message else None,
        )
        self.interactions[token] = ix
        await self._dispatch("INTERACTION_CREATE", payload)
        return ix

    # -- gateway -----------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """One gateway connection: HELLO, then IDENTIFY/RESUME and heartbeats until closed."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Session | None = None
        await self._send(ws, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    session = await self._on_gateway(ws, session, json.loads(msg.data))
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws, session.live = None, False
        return ws

    async def _on_gateway(
        self, ws: web.WebSocketResponse, session: Session | None, payload: Json
    ) -> Session | None:
        """Answer one client opcode: heartbeat, identify or resume (others are ignored); return
        the session this connection now carries."""
        op = payload.get("op")
        if op == 1:
            await self._send(ws, {"op": 11})
        elif op == 2:
            self.identifies += 1
            shard = payload["d"].get("shard")
            session = Session(
                secrets.token_hex(16), tuple(shard) if shard else None, ws, live=False
            )
            self.sessions.append(session)
            guilds = [g for g in self.guilds if session.serves(g)]
            ready = {
                "v": 10,
                "user": self.bot_user,
                "session_id": session.id,
                "resume_gateway_url": self.gateway_url,
                "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
                "application": {"id": str(self.application_id), "flags": 0},
            }
            if shard:
                ready["shard"] = list(shard)
            await self._send(ws, {"op": 0, "t": "READY", "d": ready}, session)
            for guild_id in guilds:
                payload = {"op": 0, "t": "GUILD_CREATE", "d": self._guild(guild_id)}
                await self._send(ws, payload, session)
            session.live = True  # events only once the guilds are there, as on Discord
        elif op == 6:
            self.resumes += 1
            wanted = payload["d"].get("session_id")
            resumed = next((s for s in self.sessions if s.id == wanted), None)
            if resumed is None:
                await self._send(ws, {"op": 9, "d": False})  # invalid session: identify again
                return session
            session, resumed.ws, resumed.live = resumed, ws, True
            await self._send(ws, {"op": 0, "t": "RESUMED", "d": {}}, session)
        return session

    def _guild(self, guild_id: int) -> Json:
        """The full GUILD_CREATE payload, with the bot's member, channels and threads."""
        mine = [c for c in self.channels.values() if c["guild_id"] == str(guild_id)]
        return {
            **self.guilds[guild_id],
            "members": [{**_member(roles=self._bot_roles(guild_id)), "user": self.bot_user}],
            "channels": [c for c in mine if c["type"] not in (10, 11, 12)],
            "threads": [c for c in mine if c["type"] in (10, 11, 12)],
        }

    async def _send(
        self, ws: web.WebSocketResponse, payload: Json, session: Session | None = None
    ) -> None:
        """Send one gateway payload, numbering dispatches in their session."""
        async with self._send_lock:
            if payload["op"] == 0 and session is not None:
                session.seq += 1
                payload["s"] = session.seq
            await ws.send_str(json.dumps(payload))

    def _live_session(self, guild_id: int | None) -> Session | None:
        """The live session Discord would send this guild's events to, if any."""
        return next((s for s in reversed(self.sessions) if s.live and s.serves(guild_id)), None)

    async def _session_for(self, guild_id: int | None, timeout: float) -> Session:
        """The live session serving ``guild_id``, waiting up to ``timeout`` for one."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (session := self._live_session(guild_id)) is None:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the bot did not (re)connect within {timeout}s")
            await asyncio.sleep(0.01)
        return session

    @staticmethod
    def _guild_of(data: Json) -> int | None:
        return int(data["guild_id"]) if data.get("guild_id") else None

    def _bot_roles(self, guild_id: int) -> list[str]:
        return self.member_roles.get((guild_id, self.bot_user_id), [])

    def _emit(self, event: str, data: Json) -> None:
        """Queue a change of the world for a connected bot (one that connects later gets the
        world in GUILD_CREATE)."""
        if self._live_session(self._guild_of(data)) is not None:
            self._outbox.append((event, data))

    async def flush(self) -> None:
        """Send the bot the changes of the world made since the last event; done before every
        event a test drives, as Discord's events arrive in order."""
        while self._outbox:
            event, data = self._outbox.pop(0)
            await self._dispatch_if_live(event, data)

    async def _dispatch(self, event: str, data: Json, *, timeout: float = 10.0) -> None:
        """Dispatch an event to its guild's session once it is live (waiting up to ``timeout``)."""
        await self.flush()
        session = await self._session_for(self._guild_of(data), timeout)
        assert session.ws is not None
        await self._send(session.ws, {"op": 0, "t": event, "d": data}, session)

    async def _dispatch_if_live(self, event: str, data: Json) -> None:
        """Dispatch an event the bot caused, unless it is disconnected (events are not replayed)."""
        session = self._live_session(self._guild_of(data))
        if session is not None and session.ws is not None:
            try:
                await self._send(session.ws, {"op": 0, "t": event, "d": data}, session)
            except ConnectionError:
                pass

    # -- REST plumbing -----------------------------------------------------------------------

    def _app(self) -> web.Application:
        """The aiohttp application: gateway, CDN, REST routes and a JSON 404 catch-all."""
        app = web.Application(client_max_size=64 * 2**20)
        api = API_PREFIX
        routes = [
            ("GET", "/cdn/attachments/{attachment_id}/{filename}", self._cdn),
            ("GET", api + "/users/@me", self._get_me),
            ("GET", api + "/gateway/bot", self._get_gateway_bot),
            ("GET", api + "/oauth2/applications/@me", self._get_application),
            ("GET", api + "/applications/{app_id}/commands", self._get_commands),
            ("PUT", api + "/applications/{app_id}/commands", self._put_commands),
            ("GET", api + "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands),
            ("PUT", api + "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands),
            ("POST", api + "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", api + "/webhooks/{app_id}/{token}", self._post_followup),
            (
                "GET",
                api + "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._get_webhook_msg,
            ),
            (
                "PATCH",
                api + "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._edit_webhook_msg,
            ),
            ("GET", api + "/channels/{channel_id}", self._get_channel),
            ("POST", api + "/channels/{channel_id}/messages", self._post_message),
            ("GET", api + "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", api + "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("POST", api + "/channels/{channel_id}/typing", self._typing),
            (
                "POST",
                api + "/channels/{channel_id}/messages/{message_id}/threads",
                self._start_thread,
            ),
        ]
        app.router.add_get("/gateway", self._gateway)
        for method, path, handler in routes:
            app.router.add_route(method, path, self._recorded(handler))
        app.router.add_route("*", "/{unknown:.*}", self._recorded(self._unknown))
        return app

    def _recorded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler: parse and record the request, inject faults, render JSON and errors."""

        async def run(request: web.Request) -> web.StreamResponse:
            body, files = await _read_body(request)
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else request.path
            rec = Recorded(
                request.method,
                request.path.removeprefix(API_PREFIX),
                route.removeprefix(API_PREFIX),
                dict(request.query),
                body,
                files,
                request.match_info.get("token"),
                asyncio.get_running_loop().time(),
            )
            call = _Call(
                request.method,
                request.path,
                request.match_info,
                body if body is not None else {},
                files,
            )
            fault = self._take_fault(rec)
            response = fault.response() if fault else await self._answer(handler, call, rec)
            rec.status = response.status
            self._record(rec)
            return response

        return run

    @staticmethod
    async def _answer(handler: Handler, call: _Call, rec: Recorded) -> web.StreamResponse:
        """Run a handler and render its result (JSON, or 204 for None) or error as Discord does;
        a malformed request body fails fast with 400 rather than a retried 500."""
        try:
            result = await handler(call)
        except (_ApiError, KeyError, TypeError, ValueError) as exc:
            err = (
                exc
                if isinstance(exc, _ApiError)
                else _ApiError(400, 50035, f"Invalid Form Body ({exc!r})")
            )
            rec.response = err.body
            return _json_response(err.body, err.status)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        rec.response = result
        return _json_response(result)

    def _take_fault(self, rec: Recorded) -> _Fault | None:
        """The injected failure this request should get, if any (used up as it goes)."""
        for fault in self._faults:
            if fault.method == rec.method and fnmatch.fnmatchcase(rec.path, fault.pattern):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _record(self, rec: Recorded) -> None:
        """Log a request and wake the waiters whose predicate it matches."""
        self.requests.append(rec)
        for predicate, future in self._waiters:
            if future.done():
                continue
            try:
                if predicate(rec):
                    future.set_result(rec)
            except Exception as exc:  # a broken predicate fails its own wait, not the server
                future.set_exception(exc)

    # -- REST handlers -----------------------------------------------------------------------

    async def _unknown(self, call: _Call) -> Any:
        """Any route the stand-in does not serve."""
        raise _ApiError(404, 0, f"404: Not Found ({call.method} {call.path})")

    async def _cdn(self, call: _Call) -> web.Response:
        """An attachment's bytes."""
        try:
            data, content_type = self._files[call.match["attachment_id"]]
        except KeyError:
            raise _ApiError(404, 0, "404: Not Found") from None
        return web.Response(body=data, content_type=content_type)

    async def _get_me(self, call: _Call) -> Json:
        """The bot's user (login)."""
        return self.bot_user

    async def _get_gateway_bot(self, call: _Call) -> Json:
        """The recommended shard count, the gateway URL and the IDENTIFY limits."""
        return {
            "url": self.gateway_url,
            "shards": self.shard_count,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000 - self.identifies,
                "reset_after": 86_400_000,
                "max_concurrency": self.max_concurrency,
            },
        }

    async def _get_application(self, call: _Call) -> Json:
        """The bot's application (login)."""
        return {
            "id": str(self.application_id),
            "name": "statement-bot",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": _user(self.application_id + 1),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
        }

    def _scope(self, call: _Call) -> int | None:
        """The guild of a command route, or None for global commands."""
        if call.match["app_id"] != str(self.application_id):
            raise _ApiError(403, 50001, "Missing Access")
        guild_id = call.match.get("guild_id")
        return int(guild_id) if guild_id else None

    async def _get_commands(self, call: _Call) -> list[Json]:
        """The commands last synced to a scope."""
        return self.commands.get(self._scope(call), [])

    async def _put_commands(self, call: _Call) -> list[Json]:
        """Overwrite a scope's commands; echo them with ids (stable per name and type)."""
        scope = self._scope(call)
        old = {(c["name"], c.get("type", 1)): c["id"] for c in self.commands.get(scope, [])}
        synced = []
        for command in call.body:
            key = (command["name"], command.get("type", 1))
            echoed = {
                **command,
                "id": old.get(key) or snowflake(),
                "version": snowflake(),
                "application_id": str(self.application_id),
            }
            if scope is not None:
                echoed["guild_id"] = str(scope)
            synced.append(echoed)
        self.commands[scope] = synced
        return synced

    def _interaction(self, call: _Call) -> FakeInteraction:
        """The interaction a callback or webhook route names, or Discord's 404."""
        ix = self.interactions.get(call.match["token"])
        if ix is None or call.match.get("interaction_id", ix.id) != ix.id:
            raise _ApiError(404, 10062, "Unknown interaction")
        if call.match.get("app_id", str(self.application_id)) != str(self.application_id):
            raise _ApiError(404, 10015, "Unknown Webhook")
        return ix

    async def _callback(self, call: _Call) -> Json:
        """The interaction's initial response (types 4-9); answers ``?with_response=1`` style."""
        ix = self._interaction(call)
        if ix.callback_type is not None:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = call.body["type"], call.body.get("data") or {}
        if kind == 9:
            _check_modal(ix, data)
            ix.modal = data
        ix.callback_type = kind
        message = None
        if kind in (4, 5):
            message = self._new_message(
                str(ix.channel_id), data, call.files, self.bot_user, webhook=True
            )
            message["type"] = 20 if ix.type == 2 else 0
            ix.original_id, ix.loading = message["id"], kind == 5
            if ix.loading:
                message["flags"] |= LOADING
        elif kind in (6, 7) and ix.source_message_id:
            ix.original_id = ix.source_message_id
            if kind == 7:
                message = self.messages[ix.source_message_id]
                self._edit(message, data, call.files)
        flags = message["flags"] if message else 0
        resource: Json = {"type": kind}
        if message is not None:
            resource["message"] = message
        return {
            "interaction": {
                "id": ix.id,
                "type": ix.type,
                "response_message_id": ix.original_id,
                "response_message_loading": ix.loading,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": resource,
        }

    async def _post_followup(self, call: _Call) -> Json:
        """A follow-up; the first one after a "thinking" defer fills the loading message."""
        ix = self._interaction(call)
        if ix.callback_type is None:
            raise _ApiError(404, 10015, "Unknown Webhook")
        if ix.loading and ix.original_id:
            return self._fill(ix, call)
        message = self._new_message(
            str(ix.channel_id), call.body, call.files, self.bot_user, webhook=True
        )
        ix.followup_ids.append(message["id"])
        return message

    def _webhook_message(self, ix: FakeInteraction, call: _Call) -> Json:
        """The ``@original`` or follow-up message a webhook route names, or Discord's 404."""
        message_id = call.match["message_id"]
        if message_id == "@original":
            message_id = ix.original_id or ""
        if message_id not in self.messages or message_id not in (ix.original_id, *ix.followup_ids):
            raise _ApiError(404, 10008, "Unknown Message")
        return self.messages[message_id]

    async def _get_webhook_msg(self, call: _Call) -> Json:
        """Fetch the original response or a follow-up."""
        ix = self._interaction(call)
        return self._webhook_message(ix, call)

    async def _edit_webhook_msg(self, call: _Call) -> Json:
        """Edit the original response (filling a loading one) or a follow-up."""
        ix = self._interaction(call)
        message = self._webhook_message(ix, call)
        if ix.loading and message["id"] == ix.original_id:
            return self._fill(ix, call)
        return self._edit(message, call.body, call.files)

    def _fill(self, ix: FakeInteraction, call: _Call) -> Json:
        """Replace the "thinking" message; it keeps the defer's ephemerality."""
        assert ix.original_id is not None
        body = dict(call.body)
        body["flags"] = (body.get("flags") or 0) & ~EPHEMERAL
        message = self._edit(self.messages[ix.original_id], body, call.files)
        message["flags"] &= ~LOADING
        message["edited_timestamp"] = None
        ix.loading = False
        return message

    def _channel(self, call: _Call) -> Json:
        """The channel a route names, or Discord's 404."""
        try:
            return self.channels[call.match["channel_id"]]
        except KeyError:
            raise _ApiError(404, 10003, "Unknown Channel") from None

    def _channel_message(self, call: _Call) -> Json:
        """The message a channel route names, or Discord's 404."""
        channel = self._channel(call)
        message = self.messages.get(call.match["message_id"])
        if message is None or message["channel_id"] != channel["id"]:
            raise _ApiError(404, 10008, "Unknown Message")
        return message

    async def _get_channel(self, call: _Call) -> Json:
        """A channel or thread."""
        return self._channel(call)

    def _require(self, channel: Json, needed: int) -> None:
        """Discord's 403s where the bot may not see the channel or lacks `needed` there."""
        have = self.permissions_in(int(channel["id"]), self.bot_user_id)
        if not have & perms.VIEW_CHANNEL:
            raise _ApiError(403, 50001, "Missing Access")
        if needed & ~have:
            raise _ApiError(403, 50013, "Missing Permissions")

    async def _get_message(self, call: _Call) -> Json:
        """A message (the bot needs Read Message History)."""
        self._require(self._channel(call), perms.READ_MESSAGE_HISTORY)
        return self._channel_message(call)

    async def _post_message(self, call: _Call) -> Json:
        """The bot posts in a channel or thread, or replies (which needs Read Message History)."""
        channel = self._channel(call)
        body, ref = call.body, call.body.get("message_reference")
        self._require(channel, perms.sending(channel) | (perms.READ_MESSAGE_HISTORY if ref else 0))
        message = self._new_message(channel["id"], body, call.files, self.bot_user)
        if ref:
            referenced = self.messages.get(str(ref["message_id"]))
            allowed = body.get("allowed_mentions")
            if referenced and (allowed is None or allowed.get("replied_user")):
                message["mentions"].append(referenced["author"])  # a reply pings its author
            message.update(
                type=19,
                referenced_message=referenced,
                message_reference={
                    "type": 0,
                    "message_id": str(ref["message_id"]),
                    "channel_id": channel["id"],
                    "guild_id": channel["guild_id"],
                },
            )
        channel["last_message_id"] = message["id"]
        if self.echo_bot_messages:
            await self._dispatch_if_live(
                "MESSAGE_CREATE",
                {
                    **message,
                    "guild_id": channel["guild_id"],
                    "member": _member(roles=self._bot_roles(int(channel["guild_id"]))),
                },
            )
        return message

    async def _edit_message(self, call: _Call) -> Json:
        """The bot edits one of the messages in a channel (its own need no Send Messages)."""
        self._require(self._channel(call), 0)
        return self._edit(self._channel_message(call), call.body, call.files)

    async def _typing(self, call: _Call) -> None:
        """The bot shows "typing..." (where it may post)."""
        channel = self._channel(call)
        self._require(channel, perms.sending(channel))

    async def _start_thread(self, call: _Call) -> Json:
        """A public thread from a message (with the message's id); also THREAD_CREATE."""
        parent, starter, body = self._channel(call), self._channel_message(call), call.body
        self._require(parent, perms.CREATE_PUBLIC_THREADS)
        thread_id = starter["id"]
        if thread_id in self.channels:
            raise _ApiError(400, 160004, "A thread has already been created for this message")
        now = _now()
        thread = {
            "id": thread_id,
            "type": 11,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": str(self.bot_user_id),
            "name": body["name"],
            "last_message_id": None,
            "rate_limit_per_user": body.get("rate_limit_per_user") or 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "locked": False,
                "archive_timestamp": now,
                "auto_archive_duration": body.get("auto_archive_duration") or 1440,
                "create_timestamp": now,
            },
            "member": {
                "id": thread_id,
                "user_id": str(self.bot_user_id),
                "join_timestamp": now,
                "flags": 0,
            },
        }
        self.channels[thread_id] = starter["thread"] = thread
        await self._dispatch_if_live("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    # -- messages ----------------------------------------------------------------------------

    def _new_message(
        self,
        channel_id: str,
        body: Json,
        files: dict[str, bytes],
        author: Json,
        *,
        webhook: bool = False,
    ) -> Json:
        """Create and keep a message from a send payload."""
        message: Json = {
            "id": snowflake(),
            "type": 0,
            "channel_id": channel_id,
            "author": author,
            "content": "",
            "embeds": [],
            "components": [],
            "attachments": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": bool(body.get("tts")),
            "timestamp": _now(),
            "edited_timestamp": None,
            "flags": 0,
        }
        if webhook:
            message["webhook_id"] = message["application_id"] = str(self.application_id)
        self.messages[message["id"]] = message
        self._apply(message, body, files)
        self._mention(message, body)
        return message

    def _edit(self, message: Json, body: Json, files: dict[str, bytes]) -> Json:
        """Apply an edit payload to a kept message."""
        self._apply(message, body, files)
        if "content" in body or "allowed_mentions" in body:
            self._mention(message, body)
        message["edited_timestamp"] = _now()
        return message

    def _apply(self, message: Json, body: Json, files: dict[str, bytes]) -> None:
        """Copy the fields a send/edit payload sets; turn uploads into served attachments."""
        for key, empty in (("content", ""), ("embeds", []), ("components", [])):
            if key in body:
                message[key] = body[key] if body[key] is not None else empty
        if body.get("flags") is not None:
            message["flags"] = (message["flags"] & (EPHEMERAL | LOADING)) | body["flags"]
        if files or "attachments" in body:
            kept = {a["id"]: a for a in message["attachments"]}
            uploads, attachments = dict(files), []
            for meta in body.get("attachments") or []:
                if str(meta.get("id")) in kept:
                    attachments.append(kept[str(meta["id"])])
                elif meta.get("filename") in uploads:
                    name = meta["filename"]
                    attachments.append(self._upload(name, uploads.pop(name)))
            attachments += [self._upload(name, data) for name, data in uploads.items()]
            message["attachments"] = attachments

    def _mention(self, message: Json, body: Json) -> None:
        """Record whom the message pings (for its author's permissions in its channel)."""
        channel = self.channels[message["channel_id"]]
        author = int(message["author"]["id"])
        may_all = bool(self.permissions_in(int(channel["id"]), author) & perms.MENTION_EVERYONE)
        guild = self.guilds[int(channel["guild_id"])]
        pinged = perms.mentions(message["content"], body.get("allowed_mentions"), guild, may_all)
        pinged["mentions"] = [_user(u) for u in pinged["mentions"]]
        message.update(pinged)

    def _upload(self, filename: str, data: bytes) -> Json:
        """Serve a file the bot uploaded."""
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return self.add_attachment(filename, data, content_type)


def _modal_inputs(row: Json) -> list[Json]:
    """The text inputs of a modal's top-level component: an action row's, or a label's."""
    children = row.get("components", []) if row.get("type") == 1 else [row.get("component")]
    return [c for c in children if c and c.get("type") == 4]


def _check_modal(ix: FakeInteraction, data: Json) -> None:
    """Discord's 400 for a modal it would refuse: answering a modal submit (or an autocomplete)
    with one, or a title, custom id, item count or text input past its limits."""

    def invalid(why: str) -> _ApiError:
        return _ApiError(400, 50035, f"Invalid Form Body (modal: {why})")

    if ix.type not in (2, 3):
        raise invalid(f"interaction type {ix.type} cannot open a modal")
    if not 1 <= len(data.get("title") or "") <= MODAL_TITLE:
        raise invalid("title")
    if not 1 <= len(data.get("custom_id") or "") <= CUSTOM_ID:
        raise invalid("custom_id")
    rows = data.get("components") or []
    if not 1 <= len(rows) <= MODAL_ITEMS:
        raise invalid("components")
    for row in rows:
        inputs = _modal_inputs(row)
        if len(inputs) != 1:
            raise invalid(f"each row holds one text input: {row}")
        spec = inputs[0]
        low, high = spec.get("min_length", 0), spec.get("max_length", INPUT_TEXT)
        if (
            spec.get("style") not in (1, 2)
            or not 1 <= len(spec.get("custom_id") or "") <= CUSTOM_ID
            or not 1 <= len(spec.get("label") or "x") <= INPUT_LABEL
            or not 0 <= low <= INPUT_TEXT
            or not 1 <= high <= INPUT_TEXT
            or len(spec.get("value") or "") > INPUT_TEXT
            or len(spec.get("placeholder") or "") > INPUT_PLACEHOLDER
        ):
            raise invalid(f"text input {spec}")


@contextlib.asynccontextmanager
async def connected(
    fake: FakeDiscord, bot: discord.Client, timeout: float = 10
) -> AsyncIterator[None]:
    """Point discord.py at a started stand-in, run `bot` until ready, then close and restore."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        async with bot:
            task = asyncio.create_task(bot.start("token"))
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout)
                yield
            finally:
                await bot.close()
                await task
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
