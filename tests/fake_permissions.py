"""Discord's permission arithmetic, for the loopback stand-in: roles, overwrites, implicit rules.

It follows Discord's documented order: the @everyone role and the member's roles OR'd together
(the owner and Administrator get everything, overwrites notwithstanding), then the channel's
@everyone overwrite, the member's role overwrites combined, and the member's own overwrite; each
overwrite first denies, then allows. A thread has its parent's overwrites. Implicit rules as
clients apply them: without Send Messages (Send Messages in Threads in a thread) no embeds, files,
TTS or Mention All Roles; without View Channel no channel permission at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import discord

Json = dict[str, Any]

ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL = (1 << 53) - 1
# Members are not admins unless a test says so; everything else (and everything for the bot) is
# allowed by default.
EVERYONE_DEFAULT = ALL & ~(ADMINISTRATOR | MANAGE_GUILD)
_NEED_SEND = MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES | EMBED_LINKS
_CHANNEL_ONLY = discord.Permissions.all_channel().value  # what View Channel gates
THREADS = (10, 11, 12)  # announcement, public and private thread channel types
ROLE, MEMBER = 0, 1  # overwrite types


def sending(channel: Json) -> int:
    """The permission that lets one post in a channel or thread."""
    return SEND_MESSAGES_IN_THREADS if channel["type"] in THREADS else SEND_MESSAGES


def _overwrite(perms: int, allow: int, deny: int) -> int:
    return (perms & ~deny) | allow


def compute(
    guild: Json, channel: Json, parent: Json | None, user_id: int, role_ids: Iterable[Any]
) -> int:
    """A member's permissions in `channel` (a thread has its `parent`'s overwrites); `guild` and
    the channels are the stand-in's payloads."""
    if int(guild["owner_id"]) == user_id:
        return ALL
    everyone = guild["id"]
    roles = {r["id"]: int(r["permissions"]) for r in guild["roles"]}
    mine = {str(r) for r in role_ids} & roles.keys() - {everyone}
    perms = roles[everyone]
    for role in mine:
        perms |= roles[role]
    if perms & ADMINISTRATOR:
        return ALL
    source = parent if channel["type"] in THREADS else channel
    overwrites = {
        (o["type"], o["id"]): (int(o["allow"]), int(o["deny"]))
        for o in (source or {}).get("permission_overwrites", [])
    }
    perms = _overwrite(perms, *overwrites.get((ROLE, everyone), (0, 0)))
    allow = deny = 0
    for role in mine:
        role_allow, role_deny = overwrites.get((ROLE, role), (0, 0))
        allow, deny = allow | role_allow, deny | role_deny
    perms = _overwrite(perms, allow, deny)
    perms = _overwrite(perms, *overwrites.get((MEMBER, str(user_id)), (0, 0)))
    if not perms & sending(channel):
        perms &= ~_NEED_SEND
    if not perms & VIEW_CHANNEL:
        perms &= ~_CHANNEL_ONLY
    return perms


def mentions(content: str, allowed: Json | None, guild: Json, may_mention_all: bool) -> Json:
    """Who a message pings, as Discord decides: what ``allowed_mentions`` lets through (all when
    absent), and roles only if mentionable or the author may Mention All Roles (otherwise they
    are silently not pinged); returns ``mentions`` (user ids), ``mention_roles`` and
    ``mention_everyone``."""
    allowed = {"parse": ["users", "roles", "everyone"]} if allowed is None else allowed
    parse = allowed.get("parse") or []
    users = {str(u) for u in allowed.get("users") or []}
    roles = {str(r) for r in allowed.get("roles") or []}
    mentionable = {r["id"]: r["mentionable"] for r in guild["roles"] if r["id"] != guild["id"]}
    return {
        "mentions": [
            u
            for u in dict.fromkeys(re.findall(r"<@!?(\d+)>", content))
            if "users" in parse or u in users
        ],
        "mention_roles": [
            r
            for r in dict.fromkeys(re.findall(r"<@&(\d+)>", content))
            if r in mentionable
            and ("roles" in parse or r in roles)
            and (mentionable[r] or may_mention_all)
        ],
        "mention_everyone": "everyone" in parse
        and may_mention_all
        and bool(re.search(r"@(everyone|here)\b", content)),
    }
