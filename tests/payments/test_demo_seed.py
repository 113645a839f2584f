"""The payments demo: made through the services against the simulated provider, every state
present, the ledger clean, and a second run adding nothing."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from approvals.models import ActionRequest
from audit.models import AuditEvent
from cases.models import CaseLink
from ledger.models import LedgerAccount, LedgerJournal
from ledger.verification import ledger_verify
from payments.models import (
    AttemptStatus,
    IntentStatus,
    Merchant,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    Refund,
    RefundStatus,
)

# Committed transactions: the provider calls the services make after commit must happen here.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(settings):
    # Big enough for chance to add to the planned one-of-each; small enough to take seconds.
    settings.DEMO_PAYMENT_COUNT = 60
    call_command("demo_seed")
    return PaymentIntent.objects.filter(business_type="DEMO_ORDER")


def statuses(model, **filters) -> set[str]:
    return set(model.objects.filter(**filters).values_list("status", flat=True))


def test_the_demo_holds_payments_in_every_state(seeded):
    assert seeded.count() == 60
    assert statuses(PaymentAttempt, payment_intent__in=seeded) == {
        AttemptStatus.SENT_TO_PROVIDER, AttemptStatus.REQUIRES_ACTION, AttemptStatus.AUTHORIZED,
        AttemptStatus.SUCCEEDED, AttemptStatus.DECLINED, AttemptStatus.FAILED, AttemptStatus.UNKNOWN_OUTCOME,
        AttemptStatus.EXPIRED, AttemptStatus.CANCELED,
    }  # fmt: skip
    assert statuses(PaymentIntent, business_type="DEMO_ORDER") >= {
        IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.PROCESSING, IntentStatus.REQUIRES_ACTION,
        IntentStatus.AUTHORIZED, IntentStatus.SUCCEEDED, IntentStatus.CANCELED, IntentStatus.DISPUTED,
    }  # fmt: skip
    assert statuses(PaymentIntent, business_type="DEMO_ORDER") & {IntentStatus.REFUNDED,
                                                                  IntentStatus.PARTIALLY_REFUNDED}  # fmt: skip
    assert RefundStatus.SUCCEEDED in statuses(Refund, payment_intent__in=seeded)
    payouts = statuses(Payout, idempotency_key__startswith="demo:")
    assert {PayoutStatus.SUCCEEDED, PayoutStatus.RETURNED, PayoutStatus.APPROVAL_REQUIRED} <= payouts
    # Every transition is on the timeline: one event at least per attempt beyond its creation.
    for attempt in PaymentAttempt.objects.filter(payment_intent__in=seeded):
        assert PaymentEvent.objects.filter(subject_id=attempt.public_id).count() >= 2, attempt.public_id


def test_the_demo_money_is_in_the_ledger_and_it_verifies_clean(seeded):
    report = ledger_verify()
    assert report.ok, report.breaches
    captured = PaymentAttempt.objects.filter(payment_intent__in=seeded, status=AttemptStatus.SUCCEEDED)
    captures = LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED", source_type="payment_attempt",
                                            source_id__in=captured.values("public_id"))  # fmt: skip
    assert captures.count() == captured.count()
    # The ledger demo's merchants are real merchants now: their accounts belong to someone.
    for public_id in ("m_demo_coffee", "m_demo_books"):
        assert Merchant.objects.filter(public_id=public_id).exists()
        assert LedgerAccount.objects.filter(owner_ref=public_id, role="MERCHANT_PAYABLE").exists()


def test_the_demo_provider_events_include_a_duplicate_a_forgery_and_quarantines_with_cases(seeded):
    events = ProviderEventRaw.objects.all()
    assert events.filter(processing_status="DUPLICATE").count() == 1
    assert events.filter(processing_status="POISON", signature_verdict="BAD_SIGNATURE").count() == 1
    quarantined = events.filter(processing_status="QUARANTINED")
    assert quarantined.count() == 2
    for event in quarantined:
        assert CaseLink.objects.filter(object_type="provider_event", object_id=event.public_id).exists()


def test_the_demo_leaves_merchant_changes_waiting_for_a_second_person(seeded):
    pending = ActionRequest.objects.filter(status="REQUESTED", idempotency_key__startswith="demo-payments:")
    assert set(pending.values_list("action_type", "maker")) == {("CHANGE_MERCHANT_PROFILE", "support"),
                                                                ("HOLD_PAYOUT", "risk")}  # fmt: skip


def test_a_second_demo_seed_adds_nothing(seeded):
    counts = (AuditEvent.objects.count(), LedgerJournal.objects.count(), PaymentEvent.objects.count())
    call_command("demo_seed")
    assert (AuditEvent.objects.count(), LedgerJournal.objects.count(), PaymentEvent.objects.count()) == counts
