"""Typed errors shared across onwatch. Each one carries a message meant for an operator.

Messages are masked (``bot.masking``): a value echoed back never shows a password.
"""

from bot.masking import mask


class OnwatchError(Exception):
    """Base of every error onwatch raises on purpose."""


class ConfigError(OnwatchError):
    """Settings are missing, malformed or contradictory. ``errors`` lists ``path: message`` lines."""

    def __init__(self, errors: list[str]):
        self.errors = [mask(e) for e in errors]
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {e}" for e in self.errors))


class DatabaseError(OnwatchError):
    """The database cannot be reached, is corrupted, or its schema is not at head."""

    def __init__(self, message: str):
        super().__init__(mask(message))


class ListenError(OnwatchError):
    """The server cannot listen on its address (the port is taken, or the address is not this host's)."""


class NotFound(OnwatchError):
    """A referenced row does not exist."""
