"""incident_ack: who acknowledged an incident and when (time to acknowledge, docs/reports.md)

Revision ID: 0007
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "incident_ack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("actor_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("incident_id", "actor", name="uq_incident_ack_actor"),
    )
    with op.batch_alter_table("incident_ack", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_ack_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_ack_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incident_ack", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_ack_at"))
        batch_op.drop_index(batch_op.f("ix_incident_ack_incident_id"))
    op.drop_table("incident_ack")
