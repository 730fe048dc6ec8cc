"""Typed errors shared across onwatch. Each one carries a message meant for an operator."""


class OnwatchError(Exception):
    """Base of every error onwatch raises on purpose."""


class ConfigError(OnwatchError):
    """Settings are missing, malformed or contradictory. ``errors`` lists ``path: message`` lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {e}" for e in errors))


class DatabaseError(OnwatchError):
    """The database cannot be reached, is corrupted, or its schema is not at head."""


class NotFound(OnwatchError):
    """A referenced row does not exist."""
