"""lifecycle_event: the incident lifecycle's outbox (what happened to an incident, rendered by chat once)

Resolved incidents get phase ``resolved`` where an earlier late step left another one (bot.incidents.lifecycle).

Revision ID: 0009
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "lifecycle_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", S(length=32), nullable=False),
        sa.Column("kind", S(length=48), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("claimed_by", S(length=100), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lifecycle_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lifecycle_event_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_lifecycle_event_pending", ["delivered_at", "id"], unique=False)
    # The lifecycle's rule: resolved exactly when the phase is resolved. Before it, an investigation or a
    # verification finishing after the incident resolved could leave another phase on a resolved row.
    op.execute("UPDATE incident SET phase = 'resolved' WHERE status = 'resolved' AND phase <> 'resolved'")


def downgrade() -> None:
    with op.batch_alter_table("lifecycle_event", schema=None) as batch_op:
        batch_op.drop_index("ix_lifecycle_event_pending")
        batch_op.drop_index(batch_op.f("ix_lifecycle_event_incident_id"))
    op.drop_table("lifecycle_event")
