"""Errors whose message is safe to show to a user as it is."""


class Error(Exception):
    """Base for every expected failure; `str(err)` is a complete, user-safe sentence."""


class DocumentError(Error):
    """A document could not be read or is not acceptable (bad type, size, content)."""


class IndexError_(Error):
    """An index on disk is missing, corrupt, or built with other settings."""
