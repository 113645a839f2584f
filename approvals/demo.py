"""Demo maker-checker requests for `manage.py demo_seed`: ledger adjustments pending for the finance
manager, and one each approved (posted), rejected and failed. Proposed by the finance ops demo user
on a demo case, decided by the finance manager, through the same services as the screens.
Idempotent: fixed idempotency keys, and a second run finds the requests and adds nothing."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model

from approvals.models import ActionRequest
from approvals.services import request_approve, request_reject, request_submit
from backoffice.actors import Actor
from cases.services import case_open


def _actor(username: str) -> Actor:
    return Actor.from_user(get_user_model().objects.get(username=username))


def approvals_demo_seed(*, actor: Actor, now: dt.datetime) -> str:
    existing = ActionRequest.objects.filter(idempotency_key__startswith="demo:").count()
    if existing:
        return f"{existing} demo requests already in place"
    finops, manager = _actor("finops"), _actor("finmanager")
    case = case_open(
        case_type="RECONCILIATION_BREAK", severity="MEDIUM", actor=finops, now=now - dt.timedelta(hours=3),
        title="[demo] Fees charged twice on the 2026-11-18 settlement",
        description="The provider's settlement report shows the processing fee deducted twice for two merchants.",
    )  # fmt: skip

    def propose(key, merchant, currency, amount, kind, reason, text, hours_ago):
        return request_submit(
            action_type="CREATE_LEDGER_ADJUSTMENT", actor=finops, now=now - dt.timedelta(hours=hours_ago),
            payload={"merchant_ref": merchant, "currency": currency, "amount_minor": amount, "adjustment_type": kind},
            reason_code=reason, reason_text=text, case_ref=case.case_number, idempotency_key=f"demo:{key}",
        )  # fmt: skip

    # Pending for the finance manager.
    propose("fee-refund-coffee", "m_demo_coffee", "IDR", 250_000, "FEE_REFUND", "FEE_CORRECTION",
            "Processing fee of 2,500.00 IDR deducted twice on the 2026-11-18 settlement", 2)  # fmt: skip
    propose("goodwill-books", "m_demo_books", "USD", 1_500, "MERCHANT_CREDIT", "GOODWILL",
            "Goodwill credit agreed with the merchant after the 2026-11-17 outage", 1)  # fmt: skip
    # Decided: one approved and posted, one rejected; one that failed when executed.
    approved = propose("fee-refund-coffee-earlier", "m_demo_coffee", "USD", 1_200, "MERCHANT_CREDIT",
                       "SETTLEMENT_CORRECTION", "Settlement short by 12.00 USD on 2026-11-16", 3)  # fmt: skip
    request_approve(public_id=approved.public_id, actor=manager, now=now - dt.timedelta(hours=2, minutes=30))
    rejected = propose("reserve-release-books", "m_demo_books", "IDR", 100_000, "RESERVE_RELEASE_CORRECTION",
                       "SETTLEMENT_CORRECTION", "Release reserve early", 3)  # fmt: skip
    request_reject(public_id=rejected.public_id, actor=manager, now=now - dt.timedelta(hours=2, minutes=20),
                   reason_text="The reserve period has not ended; no evidence of an error")  # fmt: skip
    failing = propose("debit-books", "m_demo_books", "IDR", 999_999_900, "MERCHANT_DEBIT", "OPERATIONAL_LOSS",
                      "Recover a duplicated payout", 3)  # fmt: skip
    request_approve(public_id=failing.public_id, actor=manager, now=now - dt.timedelta(hours=2, minutes=10))
    total = ActionRequest.objects.filter(idempotency_key__startswith="demo:").count()
    return f"{total} demo requests (2 pending for finmanager, 1 approved, 1 rejected, 1 failed) on {case.case_number}"
