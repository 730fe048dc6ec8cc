"""memory grades, text and postmortems; incident_feedback (docs/memory.md)

A memory may now come from an imported postmortem (no incident), is named by ``ref`` (the incident id or
PM-<file stem>), carries its cause sentence, free text and tags, and a grade: unconfirmed, confirmed by a
person, or verified by its fix's outcome. ``incident_feedback`` holds what people said about a cause and fix.

Revision ID: 0008
Revises: 0007
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("memory", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ref", S(length=200), nullable=True))
        batch_op.add_column(sa.Column("source", S(length=16), nullable=False, server_default="incident"))
        batch_op.add_column(sa.Column("cause_text", S(length=2000), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("text", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("grade", S(length=16), nullable=False, server_default="unconfirmed"))
        batch_op.add_column(sa.Column("graded_by", S(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("graded_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("grade_note", S(length=500), nullable=False, server_default=""))
        batch_op.alter_column("incident_id", existing_type=S(length=32), nullable=True)
    op.execute("UPDATE memory SET ref = incident_id")
    with op.batch_alter_table("memory", schema=None) as batch_op:
        batch_op.alter_column("ref", existing_type=S(length=200), nullable=False)
        batch_op.create_unique_constraint("uq_memory_ref", ["ref"])
    op.create_table(
        "incident_feedback",
        sa.Column("incident_id", S(length=32), nullable=False),
        sa.Column("cause_service", S(length=300), nullable=False),
        sa.Column("cause_kind", S(length=64), nullable=False),
        sa.Column("cause_choice", S(length=16), nullable=False),
        sa.Column("cause_note", S(length=2000), nullable=False),
        sa.Column("cause_by", S(length=200), nullable=False),
        sa.Column("cause_by_name", S(length=200), nullable=False),
        sa.Column("cause_at", sa.Float(), nullable=True),
        sa.Column("fix", S(length=2000), nullable=False),
        sa.Column("fix_proposal_id", S(length=64), nullable=False),
        sa.Column("fix_by", S(length=200), nullable=False),
        sa.Column("fix_by_name", S(length=200), nullable=False),
        sa.Column("fix_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("incident_id"),
    )


def downgrade() -> None:
    op.drop_table("incident_feedback")
    op.execute("DELETE FROM memory WHERE incident_id IS NULL")
    with op.batch_alter_table("memory", schema=None) as batch_op:
        batch_op.drop_constraint("uq_memory_ref", type_="unique")
        batch_op.alter_column("incident_id", existing_type=S(length=32), nullable=False)
        for name in ("grade_note", "graded_at", "graded_by", "grade", "tags", "text", "cause_text", "source", "ref"):
            batch_op.drop_column(name)
