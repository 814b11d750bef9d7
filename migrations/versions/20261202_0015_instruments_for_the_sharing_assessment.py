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
    with op.batch_alter_table("instrument", schema=None) as batch_op:
        batch_op.add_column(sa.Column("commissioned_on", sa.Date(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "classification_code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("instrument", schema=None) as batch_op:
        batch_op.drop_column("classification_code")
        batch_op.drop_column("commissioned_on")
