"""Errors whose message is safe to show to a user as it is."""

import unicodedata


class Error(Exception):
    """Base for every expected failure; `str(err)` is a complete, user-safe sentence."""


class DocumentError(Error):
    """A document could not be read or is not acceptable (bad type, size, content)."""


class IndexMismatch(Error):
    """An index on disk was built with another model or other chunking parameters."""


class IndexDamaged(Error):
    """An index on disk is incomplete or fails its checksums."""


class Busy(Error):
    """Another re-index or upload is running, in this process or another one."""

    def __init__(self) -> None:
        super().__init__("A re-index is already running; try again when it has finished.")


def shown(value: str, limit: int = 80) -> str:
    """A value a user or a web server chose, inert inside a message: one line, bounded, in a
    code span (Discord shows no links, mentions or formatting there)."""
    clean = "".join(
        "\ufffd" if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c
        for c in value[: limit + 1]
    ).replace("`", "ˋ")
    return f"`{clean if len(clean) <= limit else clean[: limit - 1] + '…'}`"
