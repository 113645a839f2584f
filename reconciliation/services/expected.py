"""Expected internal movements: what our own records say should appear on a source's files.

One INSERT ... SELECT per refresh reads the ledger journals of the period and the payment rows they
were posted for, and creates an INTERNAL item for each movement not yet there (ON CONFLICT DO
NOTHING on the item's (source, internal type, internal id, kind) unique index): a refresh is
idempotent, and refreshing an overlapping period adds only what is new.

- A provider account (kind PROVIDER_ACCOUNT, the source's provider_code): captures (CAPTURE,
  + the attempt's amount, fee = the attempt's fee, reference = the provider's reference) from
  CAPTURE_SUCCEEDED journals, and refunds (REFUND, - the refund's amount, reference = the provider's
  refund reference) from REFUND_SUCCEEDED journals.
- A bank account: payouts (PAYOUT, - the amount, reference = the provider's payout reference, else
  the payout id) from PAYOUT_SENT, returned payouts (PAYOUT_RETURN, +) from PAYOUT_RETURNED, and
  provider settlements (SETTLEMENT, + the net the bank received, gross and fee from the journal's
  other lines) from SETTLEMENT_RECEIVED journals. A settlement has no reference of its own: the
  journal's source id (the provider's settlement batch or payout) is its batch_id, so one bank
  credit for a batch matches all the journals of that batch (BATCH_MANY_TO_ONE), and a batch of
  one matches its line through the batch or the date window. Payouts are
  those of the source's provider when it names one; everything in the source's currency when it
  names one.

A journal that was reversed is not expected outside. The value date is the journal's accounting
date. A reference that looks like a card number is stored as its pseudonym (cardlike), computed in
Python for the few references the database finds card-shaped, so both sides still compare equal.
The items are written under the source's matching lock in shared mode, as an import's are: the next
run finds them above the source's watermark.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from reconciliation.models import ReconciliationSource, SourceKind
from reconciliation.services.cardlike import pseudonymise_text
from reconciliation.services.common import item_statistics_refresh, lock_source_for_new_items


def _ps(expression: str) -> str:
    """SQL for `expression` with a card-number-like value replaced by its pseudonym (table m)."""
    return f"COALESCE((SELECT m.pseudonym FROM m WHERE m.original = {expression}), {expression})"  # noqa: S608


_NOT_REVERSED = "NOT EXISTS (SELECT 1 FROM ledger_ledgerjournal r WHERE r.reverses_id = j.id)"
_PERIOD = "j.accounting_date BETWEEN %(since)s AND %(until)s"

_PROVIDER_MOVES = f"""
SELECT 'payment_attempt' AS internal_type, a.public_id AS internal_id, 'CAPTURE' AS kind,
       a.amount_minor AS amount_minor, a.currency AS currency, a.amount_minor AS gross_minor, a.fee_minor AS fee_minor,
       a.amount_minor - a.fee_minor AS net_minor, j.accounting_date AS value_date, a.provider_reference AS reference,
       jsonb_build_object('payment_intent', pi.public_id, 'journal', j.public_id) AS refs,
       'Capture of ' || a.public_id || ' for ' || pi.public_id AS description, '' AS batch_id
  FROM ledger_ledgerjournal j
  JOIN payments_paymentattempt a ON a.public_id = j.source_id
  JOIN payments_paymentintent pi ON pi.id = a.payment_intent_id
 WHERE j.journal_type = 'CAPTURE_SUCCEEDED' AND j.source_type = 'payment_attempt' AND {_PERIOD} AND {_NOT_REVERSED}
   AND a.provider_code = %(provider)s AND (%(currency)s = '' OR a.currency = %(currency)s)
UNION ALL
SELECT 'refund', rf.public_id, 'REFUND', -rf.amount_minor, rf.currency, NULL, NULL, NULL, j.accounting_date,
       rf.provider_refund_reference,
       jsonb_build_object('payment_attempt', a.public_id, 'payment_reference', {_ps("a.provider_reference")},
                          'journal', j.public_id),
       'Refund ' || rf.public_id || ' of ' || a.public_id, ''
  FROM ledger_ledgerjournal j
  JOIN payments_refund rf ON rf.public_id = j.source_id
  JOIN payments_paymentattempt a ON a.id = rf.payment_attempt_id
 WHERE j.journal_type = 'REFUND_SUCCEEDED' AND j.source_type = 'refund' AND {_PERIOD} AND {_NOT_REVERSED}
   AND rf.provider_code = %(provider)s AND (%(currency)s = '' OR rf.currency = %(currency)s)
"""  # noqa: S608 (constants only)


_ENTRY = (
    "(SELECT e.amount_minor FROM ledger_ledgerentry e JOIN ledger_ledgeraccount acc ON acc.id = e.account_id"
    " WHERE e.journal_id = j.id AND acc.role = 'ROLE' AND e.direction = 'SIDE' ORDER BY e.id LIMIT 1)"
)


def _entry(role: str, direction: str) -> str:
    """The amount of the journal's first line on `role` and `direction` (constants of this module)."""
    return _ENTRY.replace("ROLE", role).replace("SIDE", direction)


_PAYOUT_REFERENCE = "COALESCE(NULLIF(p.provider_payout_reference, ''), p.public_id)"
_BANK_MOVES = f"""
SELECT 'payout' AS internal_type, p.public_id AS internal_id, 'PAYOUT' AS kind, -p.amount_minor AS amount_minor,
       p.currency AS currency, NULL::bigint AS gross_minor, NULL::bigint AS fee_minor, NULL::bigint AS net_minor,
       j.accounting_date AS value_date, {_PAYOUT_REFERENCE} AS reference,
       jsonb_build_object('payout', p.public_id, 'journal', j.public_id) AS refs,
       'Payout ' || p.public_id AS description, '' AS batch_id
  FROM ledger_ledgerjournal j
  JOIN payments_payout p ON p.public_id = j.source_id
 WHERE j.journal_type = 'PAYOUT_SENT' AND j.source_type = 'payout' AND {_PERIOD} AND {_NOT_REVERSED}
   AND (%(provider)s = '' OR p.provider_code = %(provider)s) AND (%(currency)s = '' OR p.currency = %(currency)s)
UNION ALL
SELECT 'payout', p.public_id, 'PAYOUT_RETURN', p.amount_minor, p.currency, NULL, NULL, NULL, j.accounting_date,
       {_PAYOUT_REFERENCE}, jsonb_build_object('payout', p.public_id, 'journal', j.public_id),
       'Payout ' || p.public_id || ' returned', ''
  FROM ledger_ledgerjournal j
  JOIN payments_payout p ON p.public_id = j.source_id
 WHERE j.journal_type = 'PAYOUT_RETURNED' AND j.source_type = 'payout' AND {_PERIOD} AND {_NOT_REVERSED}
   AND (%(provider)s = '' OR p.provider_code = %(provider)s) AND (%(currency)s = '' OR p.currency = %(currency)s)
UNION ALL
SELECT 'ledger_journal', s.public_id, 'SETTLEMENT', s.net, s.currency, s.gross, s.fee, s.net, s.accounting_date,
       '', jsonb_build_object('journal', s.public_id, 'source_type', s.source_type, 'source_id', s.source_id),
       'Settlement ' || s.source_id, LEFT(s.source_id, 64)
  FROM (SELECT j.public_id, j.source_id, j.source_type, j.accounting_date,
               (SELECT e.currency FROM ledger_ledgerentry e WHERE e.journal_id = j.id ORDER BY e.id LIMIT 1)
                   AS currency,
               {_entry("BANK_CASH", "DEBIT")} AS net, {_entry("PROVIDER_FEE_EXPENSE", "DEBIT")} AS fee,
               {_entry("PSP_RECEIVABLE", "CREDIT")} AS gross
          FROM ledger_ledgerjournal j
         WHERE j.journal_type = 'SETTLEMENT_RECEIVED' AND {_PERIOD} AND {_NOT_REVERSED}) s
 WHERE s.net IS NOT NULL AND (%(currency)s = '' OR s.currency = %(currency)s)
"""  # noqa: S608 (constants only)

_MAP = "m AS (SELECT * FROM unnest(%(originals)s::text[], %(pseudonyms)s::text[]) AS m(original, pseudonym))"
_CARD_SHAPED = r"[0-9]([ -]?[0-9]){12}"

# New items are the next run's work by being above the source's watermark (written under its lock).
_INSERT = """
WITH {map}, moves AS ({moves})
INSERT INTO reconciliation_reconciliationitem
       (side, source_id, statement_file_id, line_no, internal_type, internal_id, kind, amount_minor, currency,
        gross_minor, fee_minor, net_minor, value_date, reference, "references", counterparty, description,
        batch_id, reversal, created_at)
SELECT 'INTERNAL', %(source)s, NULL, NULL, internal_type, internal_id, kind, amount_minor, currency, gross_minor,
       fee_minor, net_minor, value_date, LEFT({reference}, 140), refs, '', description, batch_id, false, %(now)s
  FROM moves
ON CONFLICT (source_id, internal_type, internal_id, kind) WHERE side = 'INTERNAL' DO NOTHING
"""

_CANDIDATES = """
WITH {map}, moves AS ({moves})
SELECT DISTINCT v.value FROM moves, LATERAL (VALUES (moves.reference), (moves.refs ->> 'payment_reference')) v(value)
 WHERE v.value ~ %(card_shaped)s
"""


def expected_items_refresh(
    *, source: ReconciliationSource, since: dt.date, until: dt.date, actor: Actor, now: dt.datetime
) -> int:
    """Create the INTERNAL items of `source` for the movements of [since, until] (accounting dates)
    that do not have one yet; returns how many were created. Set-based and idempotent (see the
    module docstring). Raises ValidationFailed for an empty period or a provider source without a
    provider code. Audited (one event)."""
    if since > until:
        raise ValidationFailed(f"the period {since} .. {until} is empty")
    if source.kind == SourceKind.PROVIDER_ACCOUNT:
        if not source.provider_code:
            raise ValidationFailed(f"provider source {source.code} names no provider code")
        moves = _PROVIDER_MOVES
    else:
        moves = _BANK_MOVES
    params = {"source": source.pk, "since": since, "until": until, "provider": source.provider_code,
              "currency": source.currency, "now": now, "originals": [], "pseudonyms": [],
              "card_shaped": _CARD_SHAPED}  # fmt: skip
    with transaction.atomic():
        lock_source_for_new_items(source.pk)
        with connection.cursor() as cursor:
            cursor.execute(_CANDIDATES.format(map=_MAP, moves=moves), params)
            for (value,) in cursor.fetchall():
                masked = pseudonymise_text(value)
                if masked != value:
                    params["originals"].append(value)
                    params["pseudonyms"].append(masked)
            cursor.execute(_INSERT.format(map=_MAP, moves=moves, reference=_ps("moves.reference")), params)
            created = cursor.rowcount
        audit_record(
            event_type="reconciliation.expected_items_refreshed", actor=actor, action_type="RECONCILIATION_RUN",
            target_type="reconciliation_source", target_id=source.code, now=now,
            after={"since": since.isoformat(), "until": until.isoformat(), "created": created,
                   "pseudonymised_references": len(params["originals"])},
        )  # fmt: skip
    item_statistics_refresh(created)
    return created
