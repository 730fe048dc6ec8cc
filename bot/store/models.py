"""SQLModel tables for the whole domain. Times are Unix seconds (float, UTC) so every backend agrees.

Schema changes go through Alembic (``migrations/``); a test proves the migrations match these models.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def now() -> float:
    return time.time()


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def json_col() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def json_list_col() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Incident(SQLModel, table=True):
    id: str = Field(default_factory=lambda: f"INC-{secrets.token_hex(3).upper()}", primary_key=True, max_length=32)
    title: str = Field(max_length=500)
    # bot.incidents.lifecycle.IncidentStatus / IncidentPhase, changed only through bot.incidents.lifecycle
    status: str = Field(default="open", index=True, max_length=32)  # open | mitigated | resolved
    phase: str = Field(default="new", max_length=32)  # new | investigating | cause_found | ... (chat root message)
    severity: str = Field(default="warning", max_length=16)  # critical | high | warning | info
    services: list[str] = json_list_col()
    group_key: str = Field(default="", index=True, max_length=200)
    owner: str = Field(default="", max_length=200)
    source: str = Field(default="", max_length=32)  # alertmanager | grafana | generic | chat | adhoc
    alert_count: int = 0
    opened_at: float = Field(default_factory=now, index=True)
    updated_at: float = Field(default_factory=now)
    resolved_at: float | None = None
    summary: str = Field(default="", max_length=4000)


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(max_length=128, unique=True)
    source: str = Field(max_length=32)
    name: str = Field(max_length=300)
    status: str = Field(max_length=16)  # firing | resolved
    severity: str = Field(default="warning", max_length=16)
    service: str = Field(default="", max_length=300)  # not indexed: every storm's insert paid for it (0004)
    labels: dict[str, str] = json_col()
    annotations: dict[str, str] = json_col()
    starts_at: float
    ends_at: float | None = None
    generator_url: str = Field(default="", max_length=2000)
    content_hash: str = Field(default="", max_length=64)
    first_seen: float = Field(default_factory=now)
    last_seen: float = Field(default_factory=now)
    duplicates: int = 0
    flips: list[float] = json_list_col()  # times of firing<->resolved transitions, for flap detection
    suppressed: str = Field(default="", max_length=300)  # reason, empty when not suppressed
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=32)


class IncidentAlert(SQLModel, table=True):
    """Incidents an alert was part of before the one it points at now (``Alert.incident_id``): an alert that
    fires again after its incident went quiet joins another one and stays part of the first. An incident's
    alerts are both kinds (``bot.store.queries.incident_alerts``). Rows written before triage kept links
    for current attachments too, which changes nothing about that union."""

    __tablename__ = "incident_alert"
    incident_id: str = Field(foreign_key="incident.id", primary_key=True, max_length=32)
    alert_id: int = Field(foreign_key="alert.id", primary_key=True)
    attached_at: float = Field(default_factory=now)  # when the link was recorded


class Investigation(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("inv"), primary_key=True, max_length=40)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    status: str = Field(default="queued", max_length=16)  # queued | running | done | failed
    requested_by: str = Field(default="onwatch", max_length=200)
    started_at: float | None = None
    finished_at: float | None = None
    abstained: bool = False
    report: dict[str, Any] = json_col()
    missing: list[str] = json_list_col()
    error: str = Field(default="", max_length=4000)


class Evidence(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    investigation_id: str = Field(foreign_key="investigation.id", index=True, max_length=40)
    key: str = Field(max_length=64)  # the engine's evidence id, e.g. "e3"
    source: str = Field(max_length=64)
    kind: str = Field(default="", max_length=64)
    service: str = Field(default="", max_length=300)
    query: str = Field(default="", max_length=4000)
    summary: str = Field(default="", max_length=4000)
    before: float | None = None
    after: float | None = None
    link: str = Field(default="", max_length=4000)
    data: dict[str, Any] = json_col()


class Finding(SQLModel, table=True):
    """One ranked cause of an investigation."""

    id: int | None = Field(default=None, primary_key=True)
    investigation_id: str = Field(foreign_key="investigation.id", index=True, max_length=40)
    rank: int
    service: str = Field(max_length=300)
    kind: str = Field(max_length=64)
    confidence: float
    evidence_keys: list[str] = json_list_col()
    summary: str = Field(default="", max_length=4000)


class Proposal(SQLModel, table=True):
    """A runbook offered for an incident. ``id`` is the opaque token carried by chat buttons."""

    id: str = Field(default_factory=lambda: secrets.token_urlsafe(16), primary_key=True, max_length=64)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    finding_id: int | None = Field(default=None, foreign_key="finding.id")
    runbook_id: str = Field(max_length=200)
    title: str = Field(default="", max_length=500)
    service: str = Field(default="", max_length=300)
    params: dict[str, Any] = json_col()
    preview: dict[str, Any] = json_col()
    risk: str = Field(default="medium", max_length=16)
    status: str = Field(default="pending", index=True, max_length=16)
    # pending -> approved | rejected | expired -> executing -> succeeded | failed | unknown
    auto: bool = False
    requested_by: str = Field(default="onwatch", max_length=200)
    approvals_needed: int = 1
    created_at: float = Field(default_factory=now)
    expires_at: float
    decided_at: float | None = None
    decided_by: str = Field(default="", max_length=400)
    version: int = 0


class Approval(SQLModel, table=True):
    """One person's decision on a proposal (a high-risk proposal needs two distinct approvers)."""

    __table_args__ = (UniqueConstraint("proposal_id", "actor", name="uq_approval_actor"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: str = Field(foreign_key="proposal.id", index=True, max_length=64)
    actor: str = Field(max_length=200)  # platform:user_id
    actor_name: str = Field(default="", max_length=200)
    decision: str = Field(max_length=16)  # approve | reject
    at: float = Field(default_factory=now)


class Execution(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("exe"), primary_key=True, max_length=40)
    proposal_id: str = Field(foreign_key="proposal.id", unique=True, max_length=64)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    status: str = Field(default="executing", max_length=16)  # executing | succeeded | failed | unknown
    auto: bool = False
    started_at: float = Field(default_factory=now)
    finished_at: float | None = None
    before: dict[str, Any] = json_col()
    after: dict[str, Any] = json_col()
    error: str = Field(default="", max_length=4000)
    verification: str = Field(default="", max_length=32)  # "" | pending | recovered | not_recovered
    verified_at: float | None = None


class AuditEvent(SQLModel, table=True):
    """Append-only and hash-chained. Nothing updates or deletes these rows (PostgreSQL enforces it)."""

    __tablename__ = "audit_event"
    seq: int | None = Field(default=None, primary_key=True)
    at: float
    actor_platform: str = Field(max_length=32)  # onwatch | slack | teams | cli | webhook
    actor_id: str = Field(max_length=200)
    actor_name: str = Field(default="", max_length=200)
    action: str = Field(max_length=100, index=True)
    incident_id: str | None = Field(default=None, max_length=32, index=True)
    params: dict[str, Any] = json_col()
    result: str = Field(default="", max_length=4000)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    reason: str = Field(max_length=4000)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    headers: dict[str, str] = json_col()
    received_at: float = Field(default_factory=now, index=True)


class ChangeRecord(SQLModel, table=True):
    """A change a CI/CD pipeline reported through ``POST /webhooks/change`` (read back as a ChangeEvent)."""

    __tablename__ = "change_record"
    __table_args__ = (Index("ix_change_record_service_time", "service", "time"),)
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(max_length=300)
    version: str = Field(default="", max_length=300)
    kind: str = Field(default="deploy", max_length=16)
    time: float = Field(index=True)
    description: str = Field(default="", max_length=4000)
    url: str = Field(default="", max_length=2000)
    received_at: float = Field(default_factory=now)


class ChatThread(SQLModel, table=True):
    """Where an incident lives in a chat platform: the root message and its thread."""

    __tablename__ = "chat_thread"
    __table_args__ = (UniqueConstraint("platform", "incident_id", name="uq_chat_thread_incident"),)
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    platform: str = Field(max_length=16)  # slack | teams
    channel: str = Field(max_length=300)
    thread_id: str = Field(max_length=300)  # Slack root ts, Teams conversation id of the thread
    root_message_id: str = Field(default="", max_length=300)
    reference: dict[str, Any] = json_col()  # Teams ConversationReference, Slack extras
    created_at: float = Field(default_factory=now)


class ChatMessageRef(SQLModel, table=True):
    """A message onwatch posted that it may edit later (e.g. a proposal card once decided)."""

    __tablename__ = "chat_message_ref"
    __table_args__ = (UniqueConstraint("platform", "key", name="uq_chat_message_key"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    key: str = Field(max_length=200)  # e.g. "proposal:<id>"
    incident_id: str | None = Field(default=None, max_length=32)
    channel: str = Field(max_length=300)
    message_id: str = Field(max_length=300)
    created_at: float = Field(default_factory=now)


class ConversationRef(SQLModel, table=True):
    """A stored Teams conversation reference (installation update or first message), for proactive posts."""

    __tablename__ = "conversation_ref"
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(default="teams", max_length=16)
    conversation_id: str = Field(max_length=500, unique=True)
    reference: dict[str, Any] = json_col()
    updated_at: float = Field(default_factory=now)


class Memory(SQLModel, table=True):
    """A resolved incident (or an imported postmortem) remembered: its cause, its fix, a signature and text to
    find look-alikes, and a grade saying how far its cause can be trusted (``bot.memory.grade``)."""

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=200, unique=True)  # what people name it by: the incident id, or PM-<file stem>
    incident_id: str | None = Field(default=None, foreign_key="incident.id", unique=True, max_length=32)
    source: str = Field(default="incident", max_length=16)  # incident | postmortem
    title: str = Field(default="", max_length=500)
    services: list[str] = json_list_col()
    cause_service: str = Field(default="", max_length=300)
    cause_kind: str = Field(default="", max_length=64)
    cause_text: str = Field(default="", max_length=2000)  # the cause in a sentence (the engine's or a person's)
    fix: str = Field(default="", max_length=2000)
    signature: dict[str, Any] = json_col()  # alertnames, failure_classes, signal_kinds, log_templates, severity
    text: str = Field(default="", sa_column=Column(Text, nullable=False))  # postmortem free text
    tags: list[str] = json_list_col()
    grade: str = Field(default="unconfirmed", max_length=16)  # unconfirmed | confirmed | verified
    graded_by: str = Field(default="", max_length=200)
    graded_at: float | None = None
    grade_note: str = Field(default="", max_length=500)
    resolved_at: float = Field(default_factory=now)


class IncidentFeedback(SQLModel, table=True):
    """What people said about an incident's cause and fix (``bot.memory.feedback``): one row per incident,
    edited in place until the incident is closed; every edit is also an audit row."""

    __tablename__ = "incident_feedback"
    incident_id: str = Field(foreign_key="incident.id", primary_key=True, max_length=32)
    cause_service: str = Field(default="", max_length=300)
    cause_kind: str = Field(default="", max_length=64)
    cause_choice: str = Field(default="", max_length=16)  # "" | confirmed | ranked | free
    cause_note: str = Field(default="", max_length=2000)
    cause_by: str = Field(default="", max_length=200)
    cause_by_name: str = Field(default="", max_length=200)
    cause_at: float | None = None
    fix: str = Field(default="", max_length=2000)
    fix_proposal_id: str = Field(default="", max_length=64)
    fix_by: str = Field(default="", max_length=200)
    fix_by_name: str = Field(default="", max_length=200)
    fix_at: float | None = None
    updated_at: float = Field(default_factory=now)


class Job(SQLModel, table=True):
    """Durable background work: a row first, a task second."""

    __table_args__ = (Index("ix_job_claim", "status", "available_at"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # investigation | execution | verification
    payload: dict[str, Any] = json_col()
    dedup_key: str | None = Field(default=None, unique=True, max_length=200)
    status: str = Field(default="queued", max_length=16)  # queued | running | done | failed | unknown
    attempts: int = 0
    max_attempts: int = 3
    lease_owner: str = Field(default="", max_length=100)
    lease_expires: float | None = None
    available_at: float = Field(default_factory=now)
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    error: str = Field(default="", max_length=4000)


class Silence(SQLModel, table=True):
    """A silence made from chat or the API: alerts matching all ``matchers`` are suppressed until ``ends_at``."""

    id: int | None = Field(default=None, primary_key=True)
    matchers: dict[str, str] = json_col()
    starts_at: float = Field(default_factory=now)
    ends_at: float
    created_by: str = Field(default="", max_length=200)
    comment: str = Field(default="", max_length=1000)


class NoiseCounter(SQLModel, table=True):
    """Daily triage counters (received, duplicates, suppressed, incidents, pages)."""

    __tablename__ = "noise_counter"
    day: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD (UTC)
    name: str = Field(primary_key=True, max_length=32)
    value: int = 0


class RuntimeFlag(SQLModel, table=True):
    """Operator switches that must hold across replicas, e.g. ``auto_execution`` (the kill switch)."""

    __tablename__ = "runtime_flag"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)
    updated_by: str = Field(default="", max_length=200)
    updated_at: float = Field(default_factory=now)


class Acknowledgement(SQLModel, table=True):
    """A person saying "I'm on it" for an incident (the Acknowledge button or ``ack`` command). The first one
    ends the incident's time to acknowledge (docs/reports.md); later ones are kept, once per person."""

    __tablename__ = "incident_ack"
    __table_args__ = (UniqueConstraint("incident_id", "actor", name="uq_incident_ack_actor"),)
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=32)
    actor: str = Field(max_length=200)  # platform:user_id
    actor_name: str = Field(default="", max_length=200)
    at: float = Field(default_factory=now, index=True)


class SeenCommand(SQLModel, table=True):
    """A chat command already handled, keyed by its platform's id for that one request (a Slack ``trigger_id``,
    or the request signature): a signed request replayed within the platform's window is not run again, on
    any replica (``bot.chat.seen``)."""

    __tablename__ = "seen_command"
    key: str = Field(primary_key=True, max_length=128)
    seen_at: float = Field(default_factory=now, index=True)


class LifecycleEvent(SQLModel, table=True):
    """The incident lifecycle's outbox (``bot.incidents.outbox``): one row per thing that happened to an incident,
    written in the transaction that made it happen. The chat hub renders each once, in ``id`` order; a row is
    claimed for ``claimed_until`` while it is rendered, and ``delivered_at`` is set once it was."""

    __tablename__ = "lifecycle_event"
    __table_args__ = (Index("ix_lifecycle_event_pending", "delivered_at", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=32, index=True)
    kind: str = Field(max_length=48)  # bot.incidents.outbox.EventKind
    params: dict[str, Any] = json_col()
    at: float = Field(default_factory=now)
    claimed_by: str = Field(default="", max_length=100)
    claimed_until: float | None = None
    attempts: int = 0
    delivered_at: float | None = None


WATCH_LIVE = "status <> 'closed'"  # a watch item still watching its key: open or escalated


class WatchItem(SQLModel, table=True):
    """An early warning about one service (``bot.watch``): opened once per ``key`` by a proactive check (a
    degradation, an SLO slow burn), held while the check still sees it, escalated when an incident about its
    service is investigated, closed when it recovers. At most one live (not closed) item per key, on every
    backend and however many replicas observe at once: a partial unique index."""

    __tablename__ = "watch_item"
    __table_args__ = (
        Index("uq_watch_item_live_key", "key", unique=True, sqlite_where=text(WATCH_LIVE),
              postgresql_where=text(WATCH_LIVE)),
        Index("ix_watch_item_service_opened", "service", "opened_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300)  # e.g. degradation:<service>:<signal>, slo:<slo name>
    kind: str = Field(max_length=16)  # bot.watch.model.WatchKind: degradation | slo_burn
    service: str = Field(max_length=300)
    signal: str = Field(default="", max_length=200)
    status: str = Field(default="open", index=True, max_length=16)  # bot.watch.model.WatchStatus
    title: str = Field(default="", max_length=500)
    detail: dict[str, Any] = json_col()  # what was seen: summary, started_at, baseline, value, points, changes, ...
    opened_at: float = Field(default_factory=now)
    last_seen_at: float = Field(default_factory=now)
    closed_at: float | None = None
    incident_id: str | None = Field(default=None, foreign_key="incident.id", index=True, max_length=32)
    escalated_at: float | None = None
    posts: list[dict[str, Any]] = json_list_col()  # where it was posted: [{platform, channel, thread}]
