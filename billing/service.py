"""Billing's operations in one place, for callers in other layers (pages, admin)."""

from billing.invoices import (
    invoice_close,
    invoice_mark_failed,
    invoice_mark_paid,
    invoice_run,
)
from billing.ledger import balances, entry_post, entry_reverse, ledger_totals
from billing.rates import (
    assisted_set,
    policy_get,
    policy_set,
    rate_card_create,
    rate_card_end,
    rate_cards_list,
    rates_sync,
)
from billing.views import invoice_csv, invoice_get, invoice_public, invoices_list
from billing.vouchers import programme_create, programmes_list, vouchers_apply

__all__ = [
    "assisted_set",
    "balances",
    "entry_post",
    "entry_reverse",
    "invoice_close",
    "invoice_csv",
    "invoice_get",
    "invoice_mark_failed",
    "invoice_mark_paid",
    "invoice_public",
    "invoice_run",
    "invoices_list",
    "ledger_totals",
    "policy_get",
    "policy_set",
    "programme_create",
    "programmes_list",
    "rate_card_create",
    "rate_card_end",
    "rate_cards_list",
    "rates_sync",
    "vouchers_apply",
]
