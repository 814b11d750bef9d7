"""billing: an invoice can be partially paid (Stripe's running total short of the total)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 13:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("draft", "finalized", "sent", "paid", "payment_failed")
AFTER = ("draft", "finalized", "sent", "partially_paid", "paid", "payment_failed")


def _allow(values: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{v}'" for v in values)
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_invoice_invoicestatus"), type_="check")
        batch_op.create_check_constraint(op.f("ck_invoice_invoicestatus"), f"status IN ({listed})")


def upgrade() -> None:
    _allow(AFTER)


def downgrade() -> None:
    # A partial payment stays recorded in amount_paid and the ledger; the status says sent.
    op.execute("UPDATE invoice SET status = 'sent' WHERE status = 'partially_paid'")
    _allow(BEFORE)
