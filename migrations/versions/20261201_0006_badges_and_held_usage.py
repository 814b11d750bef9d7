"""telemetry: registered badges replace user.badge; usage sessions can be held for review

A gateway could name anyone in `user` (a raw user id was accepted) and bill them. Now it
can only name a badge the network registered; a session it cannot vouch for is stored
but held (review = 'held') until the lab confirms or dismisses it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:26:26.715848
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REVIEW = sa.Enum(
    "accepted",
    "held",
    "confirmed",
    "dismissed",
    name="usagereview",
    native_enum=False,
    create_constraint=True,
    length=32,
)


def upgrade() -> None:
    op.create_table(
        "badge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lab_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["user.id"], name=op.f("fk_badge_created_by_id_user")
        ),
        sa.ForeignKeyConstraint(["lab_id"], ["lab.id"], name=op.f("fk_badge_lab_id_lab")),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_badge_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badge")),
        sa.UniqueConstraint("code", name=op.f("uq_badge_code")),
    )
    with op.batch_alter_table("badge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_badge_lab_id"), ["lab_id"], unique=False)
        batch_op.create_index("ix_badge_user_id", ["user_id"], unique=False)

    # The badges people already had become network-registered ones.
    op.execute(
        'INSERT INTO badge (code, user_id, created_at) SELECT badge, id, created_at FROM "user"'
        " WHERE badge IS NOT NULL"
    )

    with op.batch_alter_table("usage_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review", REVIEW, nullable=False, server_default="accepted"))
        batch_op.add_column(
            sa.Column("hold_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(sa.Column("reviewed_by_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("reviewed_at", core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_usage_session_held",
            ["instrument_id"],
            unique=False,
            sqlite_where=sa.text("review = 'held'"),
            postgresql_where=sa.text("review = 'held'"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_usage_session_reviewed_by_id_user"), "user", ["reviewed_by_id"], ["id"]
        )

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_user_badge"), type_="unique")
        batch_op.drop_column("badge")


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("badge", sa.VARCHAR(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_user_badge"), ["badge"])
    # Each person keeps their earliest badge.
    op.execute(
        'UPDATE "user" SET badge = (SELECT b.code FROM badge b WHERE b.user_id = "user".id'
        " ORDER BY b.id LIMIT 1)"
    )

    with op.batch_alter_table("usage_session", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_usage_session_reviewed_by_id_user"), type_="foreignkey"
        )
        batch_op.drop_index(
            "ix_usage_session_held",
            sqlite_where=sa.text("review = 'held'"),
            postgresql_where=sa.text("review = 'held'"),
        )
        batch_op.drop_constraint(op.f("ck_usage_session_usagereview"), type_="check")
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("reviewed_by_id")
        batch_op.drop_column("hold_reason")
        batch_op.drop_column("review")

    with op.batch_alter_table("badge", schema=None) as batch_op:
        batch_op.drop_index("ix_badge_user_id")
        batch_op.drop_index(batch_op.f("ix_badge_lab_id"))

    op.drop_table("badge")
