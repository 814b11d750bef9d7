"""voucher claims and notices: providers claim the voucher share of their services (兑付)

voucher_claim holds a provider's claim for a month, voucher_claim_line one use each (the
voucher's share of one charge) with the digest of its evidence; a (charge, voucher) is
claimed once. voucher_notice is a published list of reviewed claims (公示); once its
notice has run, a settlement pays a claim, and settlement_claim records that it did.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 23:26:18.041980
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voucher_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("published_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("approved", sa.BigInteger(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["voucher_programme.id"],
            name=op.f("fk_voucher_notice_programme_id_voucher_programme"),
        ),
        sa.ForeignKeyConstraint(
            ["published_by_id"], ["user.id"], name=op.f("fk_voucher_notice_published_by_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_notice")),
    )
    with op.batch_alter_table("voucher_notice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_voucher_notice_programme_id"), ["programme_id"], unique=False
        )

    op.create_table(
        "voucher_claim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("provider_institution_id", sa.Integer(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "submitted",
                "reviewed",
                "noticed",
                name="claimstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("claimed", sa.BigInteger(), nullable=False),
        sa.Column("approved", sa.BigInteger(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["voucher_notice.id"],
            name=op.f("fk_voucher_claim_notice_id_voucher_notice"),
        ),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["voucher_programme.id"],
            name=op.f("fk_voucher_claim_programme_id_voucher_programme"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_institution_id"],
            ["institution.id"],
            name=op.f("fk_voucher_claim_provider_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"], ["user.id"], name=op.f("fk_voucher_claim_submitted_by_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_claim")),
    )
    with op.batch_alter_table("voucher_claim", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voucher_claim_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_voucher_claim_programme_id"), ["programme_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_voucher_claim_provider_institution_id"),
            ["provider_institution_id"],
            unique=False,
        )

    op.create_table(
        "voucher_claim_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.Column("charge_id", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("evidence_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "decision",
            sa.Enum(
                "pending",
                "approved",
                "rejected",
                name="linedecision",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_voucher_claim_line_positive")),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charge.id"], name=op.f("fk_voucher_claim_line_charge_id_charge")
        ),
        sa.ForeignKeyConstraint(
            ["claim_id"],
            ["voucher_claim.id"],
            name=op.f("fk_voucher_claim_line_claim_id_voucher_claim"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["user.id"], name=op.f("fk_voucher_claim_line_decided_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoice.id"], name=op.f("fk_voucher_claim_line_invoice_id_invoice")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["voucher.id"], name=op.f("fk_voucher_claim_line_voucher_id_voucher")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_claim_line")),
        sa.UniqueConstraint("charge_id", "voucher_id", name="uq_voucher_claim_line_use"),
    )
    with op.batch_alter_table("voucher_claim_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_voucher_claim_line_claim_id"), ["claim_id"], unique=False
        )
    # A claim a finalized settlement paid, once.
    op.create_table(
        "settlement_claim",
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("claim_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["claim_id"],
            ["voucher_claim.id"],
            name=op.f("fk_settlement_claim_claim_id_voucher_claim"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlement.id"],
            name=op.f("fk_settlement_claim_settlement_id_settlement"),
        ),
        sa.PrimaryKeyConstraint("settlement_id", "claim_id", name=op.f("pk_settlement_claim")),
        sa.UniqueConstraint("claim_id", name=op.f("uq_settlement_claim_claim_id")),
    )


def downgrade() -> None:
    op.drop_table("settlement_claim")
    with op.batch_alter_table("voucher_claim_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_claim_line_claim_id"))

    op.drop_table("voucher_claim_line")
    with op.batch_alter_table("voucher_claim", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_claim_provider_institution_id"))
        batch_op.drop_index(batch_op.f("ix_voucher_claim_programme_id"))
        batch_op.drop_index(batch_op.f("ix_voucher_claim_notice_id"))

    op.drop_table("voucher_claim")
    with op.batch_alter_table("voucher_notice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voucher_notice_programme_id"))

    op.drop_table("voucher_notice")
