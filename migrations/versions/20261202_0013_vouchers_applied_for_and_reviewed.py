"""vouchers applied for, reviewed and used: the voucher table, what approvals commit of a
programme's budget and of a company's yearly cap, which voucher paid each redemption, and
institutions' credit codes

A small company applies for a voucher (申领); the bureau approves an amount or rejects
with a reason. voucher_programme.committed and voucher_allowance.approved hold what
approvals took, each kept within its limit by a CHECK (the service also locks the rows).
An invoice's voucher share is then drawn from the company's approved vouchers: each
voucher_redemption row names the voucher it used (voucher_id; older rows have none).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 23:08:05.486001
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voucher",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("applicant_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("requested", sa.BigInteger(), nullable=False),
        sa.Column("needs", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                "expired",
                name="voucherstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status <> 'approved' OR amount > 0", name=op.f("ck_voucher_approved_amount")
        ),
        sa.CheckConstraint(
            "amount >= 0 AND used >= 0 AND used <= amount", name=op.f("ck_voucher_balance")
        ),
        sa.CheckConstraint("requested > 0", name=op.f("ck_voucher_requested_positive")),
        sa.ForeignKeyConstraint(
            ["applicant_id"], ["user.id"], name=op.f("fk_voucher_applicant_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["user.id"], name=op.f("fk_voucher_decided_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_voucher_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["voucher_programme.id"],
            name=op.f("fk_voucher_programme_id_voucher_programme"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher")),
    )
    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.create_index(
            "ix_voucher_institution_id_id", ["institution_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_voucher_programme_id"), ["programme_id"], unique=False)
        batch_op.create_index("ix_voucher_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "uq_voucher_one_pending",
            ["institution_id", "programme_id"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    with op.batch_alter_table("voucher_redemption", schema=None) as batch_op:
        batch_op.add_column(sa.Column("voucher_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_voucher_redemption_voucher_id"), ["voucher_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_voucher_redemption_voucher_id_voucher"),
            "voucher",
            ["voucher_id"],
            ["id"],
        )

    with op.batch_alter_table("institution", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("credit_code", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=True)
        )
        batch_op.create_unique_constraint(batch_op.f("uq_institution_credit_code"), ["credit_code"])

    with op.batch_alter_table("voucher_allowance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("approved", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint(
            op.f("ck_voucher_allowance_approved_cap"), "approved >= 0 AND approved <= cap"
        )

    with op.batch_alter_table("voucher_programme", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("committed", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.create_check_constraint(
            op.f("ck_voucher_programme_committed"), "committed >= 0 AND committed <= budget"
        )


def downgrade() -> None:
    with op.batch_alter_table("voucher_programme", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_voucher_programme_committed"), type_="check")
        batch_op.drop_column("committed")

    with op.batch_alter_table("voucher_allowance", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_voucher_allowance_approved_cap"), type_="check")
        batch_op.drop_column("approved")

    with op.batch_alter_table("institution", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_institution_credit_code"), type_="unique")
        batch_op.drop_column("credit_code")

    with op.batch_alter_table("voucher_redemption", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_voucher_redemption_voucher_id_voucher"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_voucher_redemption_voucher_id"))
        batch_op.drop_column("voucher_id")

    with op.batch_alter_table("voucher", schema=None) as batch_op:
        batch_op.drop_index("uq_voucher_one_pending")
        batch_op.drop_index("ix_voucher_status_id")
        batch_op.drop_index(batch_op.f("ix_voucher_programme_id"))
        batch_op.drop_index("ix_voucher_institution_id_id")

    op.drop_table("voucher")
