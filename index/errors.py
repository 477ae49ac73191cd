"""Errors whose message is safe to show to a user as it is."""


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
