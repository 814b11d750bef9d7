"""billing: charging policies take effect from a moment, and keep the versions they replace

A policy change used to reprice every unbilled source, last week's no-shows included.
Existing policies are in force from 2000-01-01, as they were.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:11:35.274015
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "charging_policy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lab_id", sa.Integer(), nullable=False),
        sa.Column(
            "basis",
            sa.Enum(
                "booked",
                "used",
                "larger",
                name="chargebasis",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("no_show_fee", sa.BigInteger(), nullable=False),
        sa.Column("late_cancel_window_minutes", sa.Integer(), nullable=False),
        sa.Column("late_cancel_fee", sa.BigInteger(), nullable=False),
        sa.Column("bill_overtime", sa.Boolean(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("effective_from", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("effective_to", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "effective_to > effective_from", name=op.f("ck_charging_policy_version_span")
        ),
        sa.ForeignKeyConstraint(
            ["lab_id"], ["lab.id"], name=op.f("fk_charging_policy_version_lab_id_lab")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user.id"],
            name=op.f("fk_charging_policy_version_updated_by_id_user"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charging_policy_version")),
    )
    with op.batch_alter_table("charging_policy_version", schema=None) as batch_op:
        batch_op.create_index(
            "ix_charging_policy_version_lab_id_effective_from",
            ["lab_id", "effective_from"],
            unique=False,
        )

    with op.batch_alter_table("charging_policy", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "effective_from",
                core.db.UTCDateTime(timezone=True),
                nullable=False,
                server_default=sa.text("'2000-01-01 00:00:00'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("charging_policy", schema=None) as batch_op:
        batch_op.drop_column("effective_from")

    with op.batch_alter_table("charging_policy_version", schema=None) as batch_op:
        batch_op.drop_index("ix_charging_policy_version_lab_id_effective_from")

    op.drop_table("charging_policy_version")
