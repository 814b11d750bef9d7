"""assisted use requested by the booker: a booking may ask for one of the lab's operators,
and the lab accepts it naming the operator (or declines)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 02:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = "assistance IN ('requested', 'accepted', 'declined')"


def upgrade() -> None:
    # Plain ADD COLUMN (nullable): neither database rewrites the large booking table; SQLite
    # takes a column's CHECK and REFERENCES inline, which Alembic will not write.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE booking ADD COLUMN assistance VARCHAR(32)"
            f" CONSTRAINT ck_booking_assistance CHECK ({STATES})"
        )
        op.execute(
            "ALTER TABLE booking ADD COLUMN operator_id INTEGER"
            " CONSTRAINT fk_booking_operator_id_user REFERENCES user (id)"
        )
        return
    op.add_column("booking", sa.Column("assistance", sa.String(length=32), nullable=True))
    op.create_check_constraint(op.f("ck_booking_assistance"), "booking", STATES)
    op.add_column("booking", sa.Column("operator_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_booking_operator_id_user"), "booking", "user", ["operator_id"], ["id"]
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("fk_booking_operator_id_user"), "booking")
        op.drop_constraint(op.f("ck_booking_assistance"), "booking")
    op.drop_column("booking", "operator_id")
    op.drop_column("booking", "assistance")
