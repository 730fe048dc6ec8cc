"""Teams activities delivered again: recognised by their activity id, answered without acting twice.

The Bot Framework re-sends an activity it got no answer for, and anyone holding a valid request can send
it again; Teams gives every message and every card click its own activity id, so a second delivery of
the same id is the same click or message. The id is recorded in the database (``bot.chat.seen``), so
another replica, or this one after a restart, recognises it too.
"""

from __future__ import annotations

from botbuilder.schema import Activity, ActivityTypes

from bot.chat.seen import command_key

REPLAY_NOTICE = "This click reached onwatch twice; it acted on it once."
_ACTING = frozenset({ActivityTypes.message, ActivityTypes.invoke})


def delivery_key(activity: Activity) -> str | None:
    """The key of a message or invoke (the activities that act); None for the rest or without an id.

    The timestamp is part of it because ids are only unique together with it in some hosts (botbuilder's
    own ``TestAdapter`` numbers each adapter's activities from 0)."""
    if activity.type not in _ACTING or not activity.id:
        return None
    conversation = activity.conversation.id if activity.conversation else ""
    # a re-delivery carries the same id *and* the same timestamp (the service stamps it once)
    stamp = activity.timestamp.isoformat() if activity.timestamp else ""
    return command_key("teams", f"{activity.channel_id}|{conversation}|{activity.id}|{stamp}")


def is_card_action(activity: Activity) -> bool:
    """An ``Action.Execute`` click, which Teams expects an invoke answer (a card) for, even when replayed."""
    return activity.type == ActivityTypes.invoke and activity.name == "adaptiveCard/action"
