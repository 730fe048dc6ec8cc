"""Where Teams conversations, incident threads and editable messages are remembered (plain dicts; no SDK).

A channel thread in Teams is the channel's conversation id plus ``;messageid=<root activity id>``;
``channel_of`` strips that suffix, ``thread_of`` adds it.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot.store.db import Database
from bot.store.models import ChatMessageRef, ChatThread, ConversationRef

PLATFORM = "teams"
THREAD_SEP = ";messageid="


def channel_of(conversation_id: str) -> str:
    return conversation_id.split(THREAD_SEP, 1)[0]


def thread_of(channel_id: str, root_activity_id: str) -> str:
    return f"{channel_of(channel_id)}{THREAD_SEP}{root_activity_id}"


def with_conversation(reference: dict[str, Any], conversation_id: str) -> dict[str, Any]:
    """A copy of a serialized ConversationReference pointing at another conversation (e.g. a thread)."""
    ref = dict(reference)
    conv = dict(ref.get("conversation") or {})
    conv["id"] = conversation_id
    ref["conversation"] = conv
    ref.pop("activityId", None)
    return ref


async def save_reference(db: Database, conversation_id: str, reference: dict[str, Any]) -> None:
    """Upsert the reference of a conversation (idempotent; the newest serviceUrl wins)."""
    for _ in range(2):  # a concurrent insert of the same id loses the race once, then updates
        try:
            async with db.begin() as s:
                row = (await s.exec(select(ConversationRef)
                                    .where(ConversationRef.conversation_id == conversation_id))).first()
                if row is None:
                    s.add(ConversationRef(platform=PLATFORM, conversation_id=conversation_id, reference=reference))
                else:
                    row.reference = reference
                    row.updated_at = time.time()
                    s.add(row)
                await s.flush()
            return
        except IntegrityError:
            continue


async def load_reference(db: Database, conversation_id: str) -> dict[str, Any] | None:
    async with db.session() as s:
        row = (await s.exec(select(ConversationRef).where(ConversationRef.conversation_id == conversation_id))).first()
    return dict(row.reference) if row is not None else None


async def claim_thread(db: Database, incident_id: str, channel: str) -> bool:
    """Reserve the incident's Teams thread before posting, so two announcers cannot both post a root card."""
    try:
        async with db.begin() as s:
            s.add(ChatThread(incident_id=incident_id, platform=PLATFORM, channel=channel, thread_id=""))
            await s.flush()
    except IntegrityError:
        return False
    return True


async def release_thread(db: Database, incident_id: str) -> None:
    """Undo a claim whose root post failed, so a later announcement can try again."""
    async with db.begin() as s:
        row = (await s.exec(select(ChatThread).where(ChatThread.platform == PLATFORM,
                                                     ChatThread.incident_id == incident_id))).first()
        if row is not None and not row.thread_id:
            await s.delete(row)


async def complete_thread(db: Database, incident_id: str, thread_id: str, root_message_id: str,
                          reference: dict[str, Any]) -> None:
    async with db.begin() as s:
        row = (await s.exec(select(ChatThread).where(ChatThread.platform == PLATFORM,
                                                     ChatThread.incident_id == incident_id))).one()
        row.thread_id = thread_id
        row.root_message_id = root_message_id
        row.reference = reference
        s.add(row)


async def thread_for_incident(db: Database, incident_id: str) -> ChatThread | None:
    async with db.session() as s:
        row = (await s.exec(select(ChatThread).where(ChatThread.platform == PLATFORM,
                                                     ChatThread.incident_id == incident_id))).first()
    return row if row is not None and row.thread_id else None


async def incident_for_conversation(db: Database, conversation_id: str) -> str | None:
    """The incident whose Teams thread (or personal/group chat) this conversation is, if any."""
    async with db.session() as s:
        row = (await s.exec(select(ChatThread).where(ChatThread.platform == PLATFORM,
                                                     ChatThread.thread_id == conversation_id))).first()
    return row.incident_id if row is not None else None


async def remember_message(db: Database, key: str, incident_id: str | None, conversation_id: str,
                           message_id: str) -> None:
    """Remember a posted message under ``key`` so a later update edits it (the newest post wins)."""
    async with db.begin() as s:
        row = (await s.exec(select(ChatMessageRef).where(ChatMessageRef.platform == PLATFORM,
                                                         ChatMessageRef.key == key))).first()
        if row is None:
            s.add(ChatMessageRef(platform=PLATFORM, key=key, incident_id=incident_id, channel=conversation_id,
                                 message_id=message_id))
        else:
            row.channel, row.message_id = conversation_id, message_id
            s.add(row)


async def find_message(db: Database, key: str) -> ChatMessageRef | None:
    async with db.session() as s:
        return (await s.exec(select(ChatMessageRef).where(ChatMessageRef.platform == PLATFORM,
                                                          ChatMessageRef.key == key))).first()
