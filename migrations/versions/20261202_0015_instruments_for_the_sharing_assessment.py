"""instruments for the sharing assessment: when each entered service, and its national
classification code (科研设施与仪器分类与代码), both optional until a lab records them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 23:58:38.329811
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: no batch copy of the table on SQLite, which would
    # drop the hand-made expression index ix_instrument_name_order (0012).
    op.add_column("instrument", sa.Column("commissioned_on", sa.Date(), nullable=True))
    op.add_column(
        "instrument",
        sa.Column("classification_code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=True),
    )


def downgrade() -> None:
    # DROP COLUMN too (SQLite 3.35 and later have it), for the same reason.
    op.drop_column("instrument", "classification_code")
    op.drop_column("instrument", "commissioned_on")
