"""reminders: each person's offsets before a booking and their language; a reminder's
identity, so it is one notification however many senders find it due; a sender's lease on
the rows it is sending (SQLite)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 01:18:47.164866
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN and CREATE INDEX: SQLite copies neither table.
    op.add_column(
        "notification",
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    )
    op.create_index("uq_notification_dedupe_key", "notification", ["dedupe_key"], unique=True)
    op.add_column(
        "notification",
        sa.Column("lease_until", core.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "user",
        sa.Column(
            "reminder_minutes",
            sqlmodel.sql.sqltypes.AutoString(length=100),
            server_default="1440,60",
            nullable=False,
        ),
    )
    op.add_column(
        "user",
        sa.Column(
            "language",
            sqlmodel.sql.sqltypes.AutoString(length=8),
            server_default="en",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("user", "language")
    op.drop_column("user", "reminder_minutes")
    op.drop_column("notification", "lease_until")
    op.drop_index("uq_notification_dedupe_key", table_name="notification")
    op.drop_column("notification", "dedupe_key")
