"""watch_item: early warnings from proactive checks (bot.watch), at most one live item per key

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString
LIVE = "status <> 'closed'"


def upgrade() -> None:
    op.create_table(
        "watch_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", S(length=300), nullable=False),
        sa.Column("kind", S(length=16), nullable=False),
        sa.Column("service", S(length=300), nullable=False),
        sa.Column("signal", S(length=200), nullable=False),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("title", S(length=500), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("closed_at", sa.Float(), nullable=True),
        sa.Column("incident_id", S(length=32), nullable=True),
        sa.Column("escalated_at", sa.Float(), nullable=True),
        sa.Column("posts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("watch_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_watch_item_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_watch_item_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_watch_item_service_opened", ["service", "opened_at"], unique=False)
        # The one-live-item-per-key rule, held by the database itself (two replicas observing at once).
        batch_op.create_index("uq_watch_item_live_key", ["key"], unique=True,
                              sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    with op.batch_alter_table("watch_item", schema=None) as batch_op:
        batch_op.drop_index("uq_watch_item_live_key")
        batch_op.drop_index("ix_watch_item_service_opened")
        batch_op.drop_index(batch_op.f("ix_watch_item_incident_id"))
        batch_op.drop_index(batch_op.f("ix_watch_item_status"))
    op.drop_table("watch_item")
