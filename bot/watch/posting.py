"""Where watch items are posted: the incident channel of each chat platform, outside any incident's thread.

The watch speaks the neutral message model; a ``WatchPoster`` (one per platform, ``bot.chat.watch_posters``) starts a
post in the platform's incident channel and replies under it. Posters log and swallow their platform's
failures (chat is an edge): ``start`` gives None and ``reply`` False, and the item stays as it is.
"""

from __future__ import annotations

from typing import Protocol

from bot.messages.model import Message
from bot.watch.model import PostRef


class WatchPoster(Protocol):
    platform: str

    async def start(self, message: Message) -> PostRef | None:
        """Post ``message`` as a new post in the incident channel; where it went, or None if it did not."""
        ...

    async def reply(self, ref: PostRef, message: Message) -> bool:
        """Post ``message`` under the post ``ref`` names (its thread); False if it could not."""
        ...
