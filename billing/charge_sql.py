"""The SQL text of the charge run: which bookings and usage sessions are charged, and at what
price (see billing/charges.py, which runs it).

It reads other domains' tables by name, which no import checker sees, so they are listed in
TABLES_READ with the domain that owns each; tests/billing/test_charge_sql.py fails when a
statement reads a table that is not listed, or a listed table is renamed.
"""

from __future__ import annotations

# The time a lab's training session or a service run holds is the lab's own: never charged
# to its trainer or operator (a service is charged by its request, below).
NOT_TRAINING = (
    "AND NOT EXISTS (SELECT 1 FROM training_session t WHERE t.booking_id = b.id) "
    "AND NOT EXISTS (SELECT 1 FROM service_request r WHERE r.booking_id = b.id)"
)

# Table -> the domain whose models.py defines it.
TABLES_READ: dict[str, str] = {
    "booking": "booking",
    "training_session": "booking",
    "instrument": "instruments",
    "lab": "instruments",
    "institution": "instruments",
    "user": "core",
    "usage_session": "telemetry",
    "charging_policy": "billing",
    "charging_policy_version": "billing",
    "assisted_use": "billing",
    "rate_card": "billing",
    "rate": "instruments",
    "charge": "billing",
    "service_request": "billing",
    "account_link": "billing",
}


class Sql:
    """SQL fragments that differ between PostgreSQL and SQLite."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def seconds(self, start: str, end: str) -> str:
        if self.pg:
            return f"EXTRACT(EPOCH FROM ({end} - {start}))"
        return f"((julianday({end}) - julianday({start})) * 86400.0)"

    def minutes(self, seconds: str) -> str:
        return f"CAST(ROUND(({seconds}) / 60.0) AS BIGINT)"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})" if self.pg else f"MAX({a}, {b})"


# The payer's class, from the payer and provider institutions (pi: payer, provider id given).
def _payer_class(provider: str) -> str:
    return (
        f"CASE WHEN pi.id = {provider} THEN 'internal' "
        "WHEN pi.kind IN ('university', 'institute', 'hospital') THEN 'academic' "
        "WHEN pi.kind = 'small_company' OR pi.is_small_company THEN 'small_company' "
        "ELSE 'company' END"
    )


# Vouchers pay for use by flagged small companies at other institutions, never for fees.
def _eligible(provider: str) -> str:
    return f"CASE WHEN pi.is_small_company AND pi.id <> {provider} THEN true ELSE false END"


CHARGE_COLUMNS = (
    "kind, source_id, period, payer_institution_id, provider_institution_id, lab_id, "
    "instrument_id, user_id, booking_id, usage_session_id, payer_class, unit, quantity, "
    "unit_amount, surcharge_amount, amount, currency, rate_card_id, voucher_eligible, "
    "service_start_at, service_end_at, created_at"
)


def _policy_in_force(sql: Sql) -> str:
    """Each lab's policy versions with the span each was in force (the current one open)."""
    stamp = "TIMESTAMPTZ" if sql.pg else "TIMESTAMP"
    return f"""
    policy_in_force AS (
        SELECT lab_id, basis, no_show_fee, late_cancel_window_minutes, late_cancel_fee,
               bill_overtime, currency, effective_from, CAST(NULL AS {stamp}) AS effective_to
        FROM charging_policy
        UNION ALL
        SELECT lab_id, basis, no_show_fee, late_cancel_window_minutes, late_cancel_fee,
               bill_overtime, currency, effective_from, effective_to
        FROM charging_policy_version
    ),"""


def _bookings_cte(sql: Sql, status: str, kind: str) -> str:
    """Bookings of the month in `status` not yet charged as `kind`, with payer and provider,
    after the policy versions they are priced by."""
    return (
        _policy_in_force(sql)
        + f"""
    bk AS (
        SELECT b.id AS source_id, b.instrument_id, i.lab_id, i.category_id,
               l.institution_id AS provider_id, pi.id AS payer_id, b.user_id,
               b.id AS booking_id, b.start_at AS s_start, b.end_at AS s_end,
               b.cancelled_at, b.cancelled_by_id, b.assistance,
               {_payer_class("l.institution_id")} AS payer_class,
               {_eligible("l.institution_id")} AS eligible,
               {sql.minutes(sql.seconds("b.start_at", "b.end_at"))} AS booked_minutes
        FROM booking b
        JOIN instrument i ON i.id = b.instrument_id
        JOIN lab l ON l.id = i.lab_id
        JOIN "user" u ON u.id = b.user_id
        JOIN institution pi ON pi.id = u.institution_id
        WHERE b.status = '{status}' AND b.start_at >= :start AND b.start_at < :end
          AND NOT EXISTS (
              SELECT 1 FROM charge c WHERE c.kind = '{kind}' AND c.source_id = b.id)
          {NOT_TRAINING}
    )"""
    )


def _used_cte(sql: Sql) -> str:
    """Matched usage per booking: seconds used, samples, seconds past the booking's end."""
    over = sql.seconds(sql.greatest("s.start_at", "bk.s_end"), "s.end_at")
    return f"""
    us AS (
        SELECT s.booking_id, SUM({sql.seconds("s.start_at", "s.end_at")}) AS used_seconds,
               SUM(s.samples) AS samples,
               SUM(CASE WHEN s.end_at > bk.s_end THEN {over} ELSE 0 END) AS over_seconds
        FROM usage_session s JOIN bk ON bk.booking_id = s.booking_id
        WHERE s.end_at IS NOT NULL AND s.review IN ('accepted', 'confirmed')
          -- A gateway's record of a booking outranks the kiosk's and an operator's.
          AND (s.source = 'gateway' OR NOT EXISTS (
              SELECT 1 FROM usage_session g
              WHERE g.booking_id = s.booking_id AND g.source = 'gateway'
                AND g.end_at IS NOT NULL AND g.review IN ('accepted', 'confirmed')))
        GROUP BY s.booking_id
    ),
    bu AS (
        SELECT bk.*, COALESCE(p.basis, 'booked') AS basis,
               COALESCE(p.bill_overtime, true) AS bill_overtime,
               {sql.minutes("COALESCE(us.used_seconds, 0)")} AS used_minutes,
               COALESCE(us.samples, 0) AS samples,
               {sql.minutes("COALESCE(us.over_seconds, 0)")} AS over_minutes,
               -- Assisted: the lab marked it (assisted_use), or accepted the booker's request.
               CASE WHEN a.booking_id IS NOT NULL OR bk.assistance = 'accepted' THEN 1
                    ELSE 0 END AS assisted
        FROM bk
        LEFT JOIN us ON us.booking_id = bk.booking_id
        LEFT JOIN policy_in_force p ON p.lab_id = bk.lab_id
             AND p.effective_from <= bk.s_start
             AND (p.effective_to IS NULL OR p.effective_to > bk.s_start)
        LEFT JOIN assisted_use a ON a.booking_id = bk.booking_id
    )"""


def _priced_sql(sql: Sql, src: str) -> str:
    """Price the rows of CTE `src` (kind, minutes, samples, assisted, apply_minimum) by rate.

    An overtime row shares its booking's source id and rate: only the others pick rates."""
    window = "rc.effective_from <= cls.s_start AND (rc.effective_to IS NULL OR rc.effective_to > cls.s_start)"
    card_cols = (
        "cls.source_id, rc.id AS rate_card_id, rc.unit, rc.amount, rc.minimum_charge, "
        "rc.rounding_minutes, rc.assisted_surcharge, rc.currency"
    )
    total = "pr.base + pr.surcharge"
    return f""",
    cls AS (
        SELECT source_id, instrument_id, lab_id, category_id, payer_class, s_start,
               CASE payer_class WHEN 'internal' THEN 'academic'
                    WHEN 'small_company' THEN 'company' ELSE payer_class END AS fallback_class
        FROM {src} WHERE kind <> 'overtime'
    ),
    cand AS (
        SELECT {card_cols}, CASE WHEN rc.payer_class = cls.payer_class THEN 0 ELSE 2 END AS prio
        FROM cls JOIN rate_card rc ON rc.instrument_id = cls.instrument_id
         AND rc.payer_class IN (cls.payer_class, cls.fallback_class) AND {window}
        UNION ALL
        SELECT {card_cols}, CASE WHEN rc.payer_class = cls.payer_class THEN 1 ELSE 3 END
        FROM cls JOIN rate_card rc ON rc.instrument_id IS NULL AND rc.lab_id = cls.lab_id
         AND rc.category_id = cls.category_id
         AND rc.payer_class IN (cls.payer_class, cls.fallback_class) AND {window}
        UNION ALL
        SELECT cls.source_id, CAST(NULL AS INTEGER), r.unit, r.amount, 0, 1, 0, r.currency,
               CASE WHEN r.payer_class = cls.payer_class THEN 4 ELSE 5 END
        FROM cls JOIN rate r ON r.instrument_id = cls.instrument_id
         AND r.payer_class IN (cls.payer_class, cls.fallback_class)
    ),
    best AS (
        SELECT * FROM (
            SELECT cand.*, ROW_NUMBER() OVER (
                PARTITION BY source_id ORDER BY prio, rate_card_id DESC) AS rn
            FROM cand) ranked
        WHERE rn = 1
    ),
    qty AS (
        SELECT s.*, best.rate_card_id, best.unit AS rate_unit, best.amount AS rate_amount,
               best.minimum_charge, best.assisted_surcharge, best.currency,
               CASE WHEN best.unit = 'sample' THEN s.samples
                    ELSE ((s.minutes + best.rounding_minutes - 1) / best.rounding_minutes)
                         * best.rounding_minutes END AS quantity
        FROM {src} s JOIN best ON best.source_id = s.source_id
    ),
    pr AS (
        SELECT qty.*,
               CASE WHEN rate_unit = 'sample' THEN rate_amount * quantity
                    ELSE (rate_amount * quantity + 30) / 60 END AS base,
               CASE WHEN assisted = 0 THEN 0
                    WHEN rate_unit = 'sample' THEN assisted_surcharge * quantity
                    ELSE (assisted_surcharge * quantity + 30) / 60 END AS surcharge
        FROM qty
    )
    INSERT INTO charge_new ({CHARGE_COLUMNS})
    SELECT pr.kind, pr.source_id, :period, pr.payer_id, pr.provider_id, pr.lab_id,
           pr.instrument_id, pr.user_id, pr.booking_id, pr.usage_session_id, pr.payer_class,
           CASE WHEN pr.rate_unit = 'sample' THEN 'sample' ELSE 'minute' END, pr.quantity,
           pr.rate_amount, pr.surcharge,
           CASE WHEN pr.apply_minimum = 1 THEN {sql.greatest(total, "pr.minimum_charge")}
                ELSE {total} END,
           pr.currency, pr.rate_card_id, pr.eligible, pr.s_start, pr.s_end, :now
    FROM pr WHERE pr.quantity > 0 OR pr.apply_minimum = 1"""


def booking_charges(sql: Sql) -> str:
    """Completed bookings by the lab's basis, and (basis `booked`) the overtime past them."""
    billed = (
        "CASE basis WHEN 'used' THEN used_minutes "
        f"WHEN 'larger' THEN {sql.greatest('used_minutes', 'booked_minutes')} "
        "ELSE booked_minutes END"
    )
    columns = (
        "source_id, instrument_id, lab_id, category_id, provider_id, payer_id, user_id, "
        "booking_id, CAST(NULL AS INTEGER) AS usage_session_id, s_start, s_end, payer_class, "
        "eligible"
    )
    return (
        "WITH "
        + _bookings_cte(sql, "completed", "booking")
        + ","
        + _used_cte(sql)
        + f""",
    src AS (
        SELECT 'booking' AS kind, {columns}, {billed} AS minutes, samples, assisted,
               1 AS apply_minimum
        FROM bu
        UNION ALL
        SELECT 'overtime', {columns}, over_minutes, 0, 0, 0
        FROM bu WHERE basis = 'booked' AND bill_overtime AND over_minutes > 0
    )"""
        + _priced_sql(sql, "src")
    )


def walk_up_charges(sql: Sql) -> str:
    return f"""WITH src AS (
        SELECT 'walk_up' AS kind, s.id AS source_id, s.instrument_id, i.lab_id, i.category_id,
               l.institution_id AS provider_id, pi.id AS payer_id, s.user_id,
               CAST(NULL AS INTEGER) AS booking_id, s.id AS usage_session_id,
               s.start_at AS s_start, s.end_at AS s_end,
               {_payer_class("l.institution_id")} AS payer_class,
               {_eligible("l.institution_id")} AS eligible,
               {sql.minutes(sql.seconds("s.start_at", "s.end_at"))} AS minutes,
               s.samples, 0 AS assisted, 1 AS apply_minimum
        FROM usage_session s
        JOIN instrument i ON i.id = s.instrument_id
        JOIN lab l ON l.id = i.lab_id
        JOIN "user" u ON u.id = s.user_id
        JOIN institution pi ON pi.id = u.institution_id
        WHERE s.kind = 'walk_up' AND s.booking_id IS NULL AND s.end_at IS NOT NULL
          AND s.review IN ('accepted', 'confirmed')
          AND s.start_at >= :start AND s.start_at < :end
          AND NOT EXISTS (
              SELECT 1 FROM charge c WHERE c.kind = 'walk_up' AND c.source_id = s.id)
    )""" + _priced_sql(sql, "src")


def fee_charges(sql: Sql, kind: str) -> str:
    if kind == "no_show":
        status, fee, condition = "no_show", "p.no_show_fee", "p.no_show_fee > 0"
    else:
        status, fee = "cancelled", "p.late_cancel_fee"
        # Cancelled by its own booker inside the window before the start (or after it began);
        # a lab's cancellation, or one nobody recorded, costs the researcher nothing.
        condition = (
            "p.late_cancel_fee > 0 AND p.late_cancel_window_minutes > 0 "
            "AND bk.cancelled_by_id = bk.user_id "
            "AND bk.cancelled_at IS NOT NULL AND "
            f"{sql.seconds('bk.cancelled_at', 'bk.s_start')} < p.late_cancel_window_minutes * 60"
        )
    return (
        "WITH "
        + _bookings_cte(sql, status, kind)
        + f"""
    INSERT INTO charge_new ({CHARGE_COLUMNS})
    SELECT '{kind}', bk.source_id, :period, bk.payer_id, bk.provider_id, bk.lab_id,
           bk.instrument_id, bk.user_id, bk.booking_id, CAST(NULL AS INTEGER), bk.payer_class,
           'fee', 1, {fee}, 0, {fee}, p.currency, CAST(NULL AS INTEGER), false,
           bk.s_start, bk.s_end, :now
    FROM bk JOIN policy_in_force p ON p.lab_id = bk.lab_id
         AND p.effective_from <= bk.s_start
         AND (p.effective_to IS NULL OR p.effective_to > bk.s_start)
    WHERE {condition}"""
    )


def service_charges(sql: Sql) -> str:
    """Service requests completed in the month, at the total of the quote they accepted."""
    return f"""
    INSERT INTO charge_new ({CHARGE_COLUMNS})
    SELECT 'service', r.id, :period, pi.id, l.institution_id, r.lab_id, r.instrument_id,
           r.requester_id, r.booking_id, CAST(NULL AS INTEGER), r.payer_class, 'sample', r.units,
           CASE WHEN r.units > 0 THEN r.quote_total / r.units ELSE r.quote_total END, 0,
           r.quote_total, r.currency, CAST(NULL AS INTEGER), {_eligible("l.institution_id")},
           COALESCE(r.run_started_at, r.received_at, r.completed_at), r.completed_at, :now
    FROM service_request r
    JOIN lab l ON l.id = r.lab_id
    JOIN "user" u ON u.id = r.requester_id
    JOIN institution pi ON pi.id = u.institution_id
    WHERE r.status = 'completed' AND r.completed_at >= :start AND r.completed_at < :end
      AND r.quote_total IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM charge c WHERE c.kind = 'service' AND c.source_id = r.id)"""


# The project account each new charge goes to: its booking's or its service request's
# account, where that charge is approved (pending or declined ones go to the institution).
ACCOUNTS = """
    UPDATE charge_new SET account_id = (
        SELECT l.account_id FROM account_link l
        WHERE l.status = 'approved'
          AND ((charge_new.kind = 'service' AND l.kind = 'service_request'
                AND l.source_id = charge_new.source_id)
               OR (charge_new.kind <> 'service' AND l.kind = 'booking'
                   AND l.source_id = charge_new.booking_id)))
    WHERE charge_new.booking_id IS NOT NULL OR charge_new.kind = 'service'
"""


# Sources of a month left uncharged (no rate, or no payer institution).
UNPRICED = (
    """
        SELECT
          (SELECT COUNT(*) FROM booking b WHERE b.status = 'completed'
             AND b.start_at >= :start AND b.start_at < :end
             """
    + NOT_TRAINING
    + """
             AND NOT EXISTS (SELECT 1 FROM charge c WHERE c.kind = 'booking'
                             AND c.source_id = b.id))
        + (SELECT COUNT(*) FROM usage_session s WHERE s.kind = 'walk_up'
             AND s.booking_id IS NULL AND s.end_at IS NOT NULL
             AND s.review IN ('accepted', 'confirmed')
             AND s.start_at >= :start AND s.start_at < :end
             AND NOT EXISTS (SELECT 1 FROM charge c WHERE c.kind = 'walk_up'
                             AND c.source_id = s.id))
"""
)
