"""drop incident.stats: triage works out an incident's figures from its alerts (a GROUP BY), not running aggregates

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy of ``incident`` would drop the table
    # the alerts' foreign keys point at.
    op.drop_column("incident", "stats")


def downgrade() -> None:
    # Empty aggregates: the triage that used them recounted an incident with none from its alerts.
    op.add_column("incident", sa.Column("stats", sa.JSON(), server_default=sa.text("'{}'"), nullable=False))
