"""Demo ledger data for `manage.py demo_seed`: a few days of captures, refunds, a payout and a
reversed duplicate for two demo merchants, posted through the posting rules like production.
Idempotent: a second run (on any later day) finds the demo journals and posts nothing."""

from __future__ import annotations

import datetime as dt

from backoffice.actors import Actor
from ledger.models import LedgerJournal
from ledger.services import Source, journal_post_rule, journal_reverse

MERCHANTS = (("m_demo_coffee", "IDR", 100), ("m_demo_books", "USD", 1))  # (owner, currency, minor-unit scale)


def ledger_demo_seed(*, actor: Actor, now: dt.datetime) -> str:
    # The journals' dates are relative to the first run, so a later run must not post them again
    # (the same keys with other dates would rightly be refused as idempotency conflicts).
    existing = LedgerJournal.objects.filter(idempotency_key__startswith="demo:").count()
    if existing:
        return f"{existing} demo journals already in place"
    posted = 0
    for merchant, currency, scale in MERCHANTS:
        for day in range(5, 0, -1):
            date = (now - dt.timedelta(days=day)).date()
            for n in range(3):
                gross = (125_000 + 17_500 * n + 3_000 * day) * scale
                journal_post_rule(
                    rule_code="CAPTURE_SUCCEEDED", currency=currency, merchant_ref=merchant,
                    amounts={"GROSS": gross, "FEE": gross * 29 // 1000},
                    source=Source("payment_attempt", f"pa_demo_{merchant}_{day}_{n}"), accounting_date=date,
                    idempotency_key=f"demo:{merchant}:capture:{day}:{n}", actor=actor, now=now,
                    description=f"Demo capture {n + 1} on {date:%Y-%m-%d}",
                )  # fmt: skip
                posted += 1
        refund_date = (now - dt.timedelta(days=2)).date()
        # A refund sets the merchant's funds aside when requested and pays the payer from them.
        for rule_code, key, description in (
            ("REFUND_RESERVED", f"demo:{merchant}:refund:reserved", "Demo partial refund requested"),
            ("REFUND_SUCCEEDED", f"demo:{merchant}:refund", "Demo partial refund"),
        ):
            journal_post_rule(
                rule_code=rule_code, currency=currency, merchant_ref=merchant, amounts={"AMOUNT": 40_000 * scale},
                source=Source("refund", f"rf_demo_{merchant}"), accounting_date=refund_date, idempotency_key=key,
                actor=actor, now=now, description=description,
            )  # fmt: skip
        journal_post_rule(
            rule_code="PAYOUT_SENT", currency=currency, merchant_ref=merchant, amounts={"AMOUNT": 300_000 * scale},
            source=Source("payout", f"po_demo_{merchant}"), accounting_date=(now - dt.timedelta(days=1)).date(),
            idempotency_key=f"demo:{merchant}:payout", actor=actor, now=now, description="Demo payout",
        )  # fmt: skip
        duplicate = journal_post_rule(
            rule_code="MERCHANT_CREDIT", currency=currency, merchant_ref=merchant, amounts={"AMOUNT": 10_000 * scale},
            source=Source("case", f"CASE-DEMO-{merchant}"), accounting_date=now.date(),
            idempotency_key=f"demo:{merchant}:goodwill-duplicate", actor=actor, now=now,
            description="Demo goodwill credit posted twice by mistake",
        )  # fmt: skip
        journal_reverse(
            journal=duplicate, reason_code="DUPLICATE", reason_text="the goodwill credit was posted twice",
            idempotency_key=f"demo:{merchant}:goodwill-duplicate:reversal", actor=actor, now=now,
        )  # fmt: skip
        posted += 5
    return f"{posted} demo journals posted for {len(MERCHANTS)} merchants"
