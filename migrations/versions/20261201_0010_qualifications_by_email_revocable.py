"""instruments: qualifications granted by email (before an account exists), revoked with a reason

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:35:00.990722
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("qualification", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True)
        )
        batch_op.add_column(
            sa.Column("revoked_at", core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("revoked_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("revoke_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.drop_constraint(batch_op.f("uq_qualification_user_instrument"), type_="unique")
        batch_op.create_index(
            "uq_qualification_in_force_email",
            ["email", "instrument_id"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL AND user_id IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL AND user_id IS NULL"),
        )
        batch_op.create_index(
            "uq_qualification_in_force_user",
            ["user_id", "instrument_id"],
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_qualification_revoked_by_id_user"), "user", ["revoked_by_id"], ["id"]
        )


def downgrade() -> None:
    # The old table knew neither grants waiting for an account nor revoked ones.
    op.execute("DELETE FROM qualification WHERE user_id IS NULL OR revoked_at IS NOT NULL")
    with op.batch_alter_table("qualification", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_qualification_revoked_by_id_user"), type_="foreignkey"
        )
        batch_op.drop_index(
            "uq_qualification_in_force_user",
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        )
        batch_op.drop_index(
            "uq_qualification_in_force_email",
            sqlite_where=sa.text("revoked_at IS NULL AND user_id IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL AND user_id IS NULL"),
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_qualification_user_instrument"), ["user_id", "instrument_id"]
        )
        batch_op.alter_column("user_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("revoke_reason")
        batch_op.drop_column("revoked_by_id")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("email")
