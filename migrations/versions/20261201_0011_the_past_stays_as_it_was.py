"""guards: on SQLite too, the past cannot be edited; on both, closed months' charges and invoices

PostgreSQL already refused edits of the audit log, finalized settlements and their lines,
and ledger rows; SQLite refused only ledger updates. Now SQLite refuses the same (ledger
deletes included), and both refuse to insert, change or delete a charge of a closed
billing month, or to change the amounts of (or delete) its invoices: their status,
Stripe ids and payments still move on.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What an invoice says about money and who owes it; the rest (status, Stripe, payments)
# still changes after the month closes.
INVOICE_TERMS = (
    "number, payer_institution_id, period, currency, line_count, subtotal, voucher_total, total"
)
CLOSED = "SELECT 1 FROM billing_period WHERE period = {row}.period AND status = 'closed'"


def _abort(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


SQLITE = [
    # The audit log: never edited or deleted.
    "CREATE TRIGGER tr_audit_entry_no_update BEFORE UPDATE ON audit_entry "
    + _abort("audit entries are never edited or deleted"),
    "CREATE TRIGGER tr_audit_entry_no_delete BEFORE DELETE ON audit_entry "
    + _abort("audit entries are never edited or deleted"),
    # Ledger rows: never deleted either (updates were refused already).
    "CREATE TRIGGER tr_posting_no_delete BEFORE DELETE ON posting "
    + _abort("ledger rows are never deleted; post a correcting entry"),
    "CREATE TRIGGER tr_journal_entry_no_delete BEFORE DELETE ON journal_entry "
    + _abort("ledger rows are never deleted; post a correcting entry"),
    # A finalized settlement and its lines.
    "CREATE TRIGGER tr_settlement_no_update BEFORE UPDATE ON settlement "
    "WHEN OLD.status = 'finalized' " + _abort("the settlement is finalized"),
    "CREATE TRIGGER tr_settlement_no_delete BEFORE DELETE ON settlement "
    "WHEN OLD.status = 'finalized' " + _abort("the settlement is finalized"),
    *[
        f"CREATE TRIGGER tr_{table}_{op_name.lower()} BEFORE {op_name} ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM settlement WHERE id = {row}.settlement_id "
        "AND status = 'finalized') " + _abort("the settlement is finalized")
        for table in ("settlement_institution", "settlement_instrument")
        for op_name, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD"))
    ],
    # Closed months: their charges and the terms of their invoices.
    "CREATE TRIGGER tr_charge_closed_insert BEFORE INSERT ON charge "
    f"WHEN EXISTS ({CLOSED.format(row='NEW')}) " + _abort("the billing month is closed"),
    "CREATE TRIGGER tr_charge_closed_update BEFORE UPDATE ON charge "
    f"WHEN EXISTS ({CLOSED.format(row='OLD')}) " + _abort("the billing month is closed"),
    "CREATE TRIGGER tr_charge_closed_delete BEFORE DELETE ON charge "
    f"WHEN EXISTS ({CLOSED.format(row='OLD')}) " + _abort("the billing month is closed"),
    f"CREATE TRIGGER tr_invoice_closed_update BEFORE UPDATE OF {INVOICE_TERMS} ON invoice "
    f"WHEN EXISTS ({CLOSED.format(row='OLD')}) " + _abort("the billing month is closed"),
    "CREATE TRIGGER tr_invoice_closed_delete BEFORE DELETE ON invoice "
    f"WHEN EXISTS ({CLOSED.format(row='OLD')}) " + _abort("the billing month is closed"),
]
SQLITE_NAMES = [statement.split()[2] for statement in SQLITE]

# Charges come half a million at a time: one check per statement, over its transition
# table, instead of one per row.
PG = [
    """CREATE FUNCTION labshare_charge_closed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM changed c JOIN billing_period p ON p.period = c.period
                   WHERE p.status = 'closed') THEN
            RAISE EXCEPTION 'the billing month is closed: its charges are final'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER tr_charge_closed_insert AFTER INSERT ON charge
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION labshare_charge_closed()""",
    """CREATE TRIGGER tr_charge_closed_update AFTER UPDATE ON charge
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION labshare_charge_closed()""",
    """CREATE TRIGGER tr_charge_closed_delete AFTER DELETE ON charge
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION labshare_charge_closed()""",
    f"""CREATE FUNCTION labshare_invoice_closed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS ({CLOSED.format(row="OLD")}) AND (TG_OP = 'DELETE' OR
            (OLD.number, OLD.payer_institution_id, OLD.period, OLD.currency, OLD.line_count,
             OLD.subtotal, OLD.voucher_total, OLD.total)
            IS DISTINCT FROM
            (NEW.number, NEW.payer_institution_id, NEW.period, NEW.currency, NEW.line_count,
             NEW.subtotal, NEW.voucher_total, NEW.total)) THEN
            RAISE EXCEPTION 'the billing month of invoice % is closed', OLD.number
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END $$""",
    """CREATE TRIGGER tr_invoice_closed BEFORE UPDATE OR DELETE ON invoice
    FOR EACH ROW EXECUTE FUNCTION labshare_invoice_closed()""",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS tr_invoice_closed ON invoice",
    "DROP FUNCTION IF EXISTS labshare_invoice_closed()",
    "DROP TRIGGER IF EXISTS tr_charge_closed_delete ON charge",
    "DROP TRIGGER IF EXISTS tr_charge_closed_update ON charge",
    "DROP TRIGGER IF EXISTS tr_charge_closed_insert ON charge",
    "DROP FUNCTION IF EXISTS labshare_charge_closed()",
]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG if postgres else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_DROP:
            op.execute(statement)
    else:
        for name in reversed(SQLITE_NAMES):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
