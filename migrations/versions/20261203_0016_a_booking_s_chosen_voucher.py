"""a booking's chosen voucher: a small company picks the voucher that pays a booking's
share, and the invoice draws it from that voucher first

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 00:05:43.398165
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "booking_voucher",
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("chosen_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_booking_voucher_booking_id_booking")
        ),
        sa.ForeignKeyConstraint(
            ["chosen_by_id"], ["user.id"], name=op.f("fk_booking_voucher_chosen_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_booking_voucher_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint("booking_id", name=op.f("pk_booking_voucher")),
    )
    with op.batch_alter_table("booking_voucher", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_booking_voucher_voucher_id"), ["voucher_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("booking_voucher", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_voucher_voucher_id"))

    op.drop_table("booking_voucher")
