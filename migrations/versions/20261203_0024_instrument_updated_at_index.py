"""an index on instrument.updated_at: the newest change to any instrument in one entry,
which the per-process caches of instrument rules check against (booking.elsewhere)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 07:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instrument_updated_at", "instrument", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_instrument_updated_at", table_name="instrument")
