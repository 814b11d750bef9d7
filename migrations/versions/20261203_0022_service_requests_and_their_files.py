"""service requests (送样检测): a lab's services, requests from draft to result with their
quote and run, their files; a charge can be a service request's

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 03:40:55
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db
from migrations import sqlite_guards

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lab_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("prices", sa.JSON(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("turnaround_days", sa.Integer(), nullable=False),
        sa.Column("sample_types", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("form", sa.JSON(), nullable=False),
        sa.Column("max_units", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("max_units >= 1", name=op.f("ck_service_max_units")),
        sa.CheckConstraint("turnaround_days >= 0", name=op.f("ck_service_turnaround")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user.id"], name=op.f("fk_service_created_by_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"], ["instrument.id"], name=op.f("fk_service_instrument_id_instrument")
        ),
        sa.ForeignKeyConstraint(["lab_id"], ["lab.id"], name=op.f("fk_service_lab_id_lab")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service")),
    )
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_instrument_id"), ["instrument_id"], unique=False
        )
        batch_op.create_index("ix_service_lab_id_active", ["lab_id", "active"], unique=False)

    op.create_table(
        "service_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("lab_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "submitted",
                "quoted",
                "accepted",
                "received",
                "in_progress",
                "completed",
                "cancelled",
                "rejected",
                name="requeststatus",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("payer_class", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("estimate_total", sa.BigInteger(), nullable=False),
        sa.Column("quote_lines", sa.JSON(), nullable=False),
        sa.Column("quote_total", sa.BigInteger(), nullable=True),
        sa.Column("quote_voucher", sa.BigInteger(), nullable=False),
        sa.Column("quote_valid_until", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("quote_note", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("run_started_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_ended_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "quote_total IS NULL OR quote_total >= 0", name=op.f("ck_service_request_quote")
        ),
        sa.CheckConstraint(
            "rating IS NULL OR (rating >= 1 AND rating <= 5)",
            name=op.f("ck_service_request_rating"),
        ),
        sa.CheckConstraint("units >= 1", name=op.f("ck_service_request_units")),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["booking.id"], name=op.f("fk_service_request_booking_id_booking")
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name=op.f("fk_service_request_instrument_id_instrument"),
        ),
        sa.ForeignKeyConstraint(["lab_id"], ["lab.id"], name=op.f("fk_service_request_lab_id_lab")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["user.id"], name=op.f("fk_service_request_operator_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["user.id"], name=op.f("fk_service_request_requester_id_user")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_service_request_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_request")),
    )
    with op.batch_alter_table("service_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_request_booking_id"), ["booking_id"], unique=False
        )
        batch_op.create_index(
            "ix_service_request_lab_id_status", ["lab_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_service_request_requester_id_id", ["requester_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_request_service_id"), ["service_id"], unique=False
        )
        batch_op.create_index(
            "ix_service_request_status_completed_at", ["status", "completed_at"], unique=False
        )

    op.create_table(
        "service_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "attachment",
                "result",
                name="filekind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("storage_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["service_request.id"],
            name=op.f("fk_service_file_request_id_service_request"),
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"], ["user.id"], name=op.f("fk_service_file_uploaded_by_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_file")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_service_file_storage_key")),
    )
    with op.batch_alter_table("service_file", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_file_request_id"), ["request_id"], unique=False
        )

    _charge_kinds(KINDS_AFTER)


KINDS_BEFORE = ("booking", "overtime", "no_show", "late_cancel", "walk_up")
KINDS_AFTER = (*KINDS_BEFORE, "service")


def _charge_kinds(kinds: tuple[str, ...]) -> None:
    # SQLite rewrites the charge table to change its CHECK; PostgreSQL swaps the constraint.
    listed = ", ".join(f"'{k}'" for k in kinds)
    with op.batch_alter_table("charge", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_charge_chargekind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_charge_chargekind"), f"kind IN ({listed})")
    if op.get_bind().dialect.name == "sqlite":
        # The rebuilt table lost its closed-month guards (revision 0011): put them back.
        for statement in sqlite_guards("charge"):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DELETE FROM charge WHERE kind = 'service' AND invoice_id IS NULL")
    _charge_kinds(KINDS_BEFORE)
    with op.batch_alter_table("service_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_file_request_id"))

    op.drop_table("service_file")
    with op.batch_alter_table("service_request", schema=None) as batch_op:
        batch_op.drop_index("ix_service_request_status_completed_at")
        batch_op.drop_index(batch_op.f("ix_service_request_service_id"))
        batch_op.drop_index("ix_service_request_requester_id_id")
        batch_op.drop_index("ix_service_request_lab_id_status")
        batch_op.drop_index(batch_op.f("ix_service_request_booking_id"))

    op.drop_table("service_request")
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.drop_index("ix_service_lab_id_active")
        batch_op.drop_index(batch_op.f("ix_service_instrument_id"))

    op.drop_table("service")
