"""Audit checkpoints outside the database: the chain's row count and head hash, logged and posted.

Whoever holds the database can delete the newest audit rows, or all of them, and what is left still
chains. A checkpoint kept elsewhere — the log pipeline and a chat channel — says how long the chain was and
how it ended; ``onwatch audit verify --checkpoint COUNT:HEAD`` then finds the deletion or a rewrite before
that point. The leader writes one every ``audit.checkpoint_every_s``, to the log and to the Slack
and Teams audit channels that are configured.
"""

from __future__ import annotations

import logging

from bot.audit import Checkpoint, current_checkpoint
from bot.chat.notes import audit_channels, post_to_channels
from bot.context import AppContext

log = logging.getLogger("onwatch.audit")


def checkpoint_text(cp: Checkpoint) -> str:
    return (f"onwatch audit checkpoint {cp.token} — keep this line; `onwatch audit verify --checkpoint "
            f"{cp.count}:{cp.head}` checks the chain against it")


async def write_checkpoint(ctx: AppContext) -> Checkpoint:
    """Log the checkpoint (always) and post it to ``audit.slack_channel`` / ``audit.teams_channel`` when set."""
    cp = await current_checkpoint(ctx.db)
    log.info("audit checkpoint %s", cp.token)
    await post_to_channels(ctx.chat.adapters, audit_channels(ctx.settings), checkpoint_text(cp))
    return cp
