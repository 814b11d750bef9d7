"""project accounts: a PI's grant or cost centre with a budget, members and approvals;
bookings and service requests charged to one; a charge and an invoice may be an account's

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 03:55:45.880099
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db
from migrations import sqlite_guards

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "project_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("grant_number", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("cost_centre", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("po_number", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("budget", sa.BigInteger(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column(
            "approval",
            sa.Enum(
                "never",
                "always",
                "above",
                name="approvalrule",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("approval_threshold", sa.BigInteger(), nullable=False),
        sa.Column("allow_overspend", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "budget >= 0 AND approval_threshold >= 0", name=op.f("ck_project_account_amounts")
        ),
        sa.CheckConstraint("valid_until >= valid_from", name=op.f("ck_project_account_validity")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_project_account_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_project_account_owner_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_account")),
    )
    with op.batch_alter_table("project_account", schema=None) as batch_op:
        batch_op.create_index(
            "ix_project_account_institution_id_name", ["institution_id", "name"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_project_account_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "account_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "booking",
                "service_request",
                name="linkkind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("chosen_by_id", sa.Integer(), nullable=False),
        sa.Column("estimate", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "approved",
                "pending",
                "declined",
                "released",
                name="linkstatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("estimate >= 0", name=op.f("ck_account_link_estimate")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["project_account.id"],
            name=op.f("fk_account_link_account_id_project_account"),
        ),
        sa.ForeignKeyConstraint(
            ["chosen_by_id"], ["user.id"], name=op.f("fk_account_link_chosen_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["user.id"], name=op.f("fk_account_link_decided_by_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_link")),
        sa.UniqueConstraint("kind", "source_id", name="uq_account_link_source"),
    )
    with op.batch_alter_table("account_link", schema=None) as batch_op:
        batch_op.create_index(
            "ix_account_link_account_id_status", ["account_id", "status"], unique=False
        )

    op.create_table(
        "project_member",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["project_account.id"],
            name=op.f("fk_project_member_account_id_project_account"),
        ),
        sa.ForeignKeyConstraint(
            ["added_by_id"], ["user.id"], name=op.f("fk_project_member_added_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_project_member_user_id_user")
        ),
        sa.PrimaryKeyConstraint("account_id", "user_id", name=op.f("pk_project_member")),
    )
    with op.batch_alter_table("project_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_member_user_id"), ["user_id"], unique=False)

    op.add_column("charge", sa.Column("account_id", sa.Integer(), nullable=True))
    # The invoice table is small: SQLite rebuilds it to drop the old unique constraint.
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_invoice_payer"), type_="unique")
        batch_op.create_foreign_key(
            batch_op.f("fk_invoice_account_id_project_account"),
            "project_account",
            ["account_id"],
            ["id"],
        )
    if op.get_bind().dialect.name == "sqlite":
        # The rebuilt table lost its closed-month guards (revision 0011): put them back.
        for statement in sqlite_guards("invoice"):
            op.execute(statement)
    # One invoice per payer, account (none: 0), month and currency.
    op.create_index(
        "uq_invoice_payer_account",
        "invoice",
        ["payer_institution_id", sa.text("COALESCE(account_id, 0)"), "period", "currency"],
        unique=True,
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE service_request ADD COLUMN account_id INTEGER CONSTRAINT"
            " fk_service_request_account_id_project_account REFERENCES project_account (id)"
        )
    else:
        op.add_column("service_request", sa.Column("account_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_service_request_account_id_project_account"),
            "service_request",
            "project_account",
            ["account_id"],
            ["id"],
        )


def downgrade() -> None:
    # An account's invoice cannot fold back into its institution's without rewriting bills
    # already sent: refuse rather than lose them.
    held = (
        op.get_bind()
        .execute(sa.text("SELECT COUNT(*) FROM invoice WHERE account_id IS NOT NULL"))
        .scalar_one()
    )
    if held:
        raise RuntimeError(f"{held} invoices belong to project accounts: not downgrading")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("fk_service_request_account_id_project_account"), "service_request")
    op.drop_column("service_request", "account_id")
    op.drop_index("uq_invoice_payer_account", table_name="invoice")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_invoice_account_id_project_account"), type_="foreignkey"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_invoice_payer"), ["payer_institution_id", "period", "currency"]
        )
        batch_op.drop_column("account_id")
    if op.get_bind().dialect.name == "sqlite":
        for statement in sqlite_guards("invoice"):
            op.execute(statement)
    op.drop_column("charge", "account_id")

    with op.batch_alter_table("project_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_member_user_id"))

    op.drop_table("project_member")
    with op.batch_alter_table("account_link", schema=None) as batch_op:
        batch_op.drop_index("ix_account_link_account_id_status")

    op.drop_table("account_link")
    with op.batch_alter_table("project_account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_account_owner_id"))
        batch_op.drop_index("ix_project_account_institution_id_name")

    op.drop_table("project_account")
