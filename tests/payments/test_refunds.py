"""Refunds: never more than the refundable amount (the database decides, also for eight at once);
sent once; a success posts REFUND_SUCCEEDED once (also when applied twice at once) and moves the
intent to PARTIALLY_REFUNDED / REFUNDED; a failure releases the reservation; restrictions hold."""

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent, AuditResult
from backoffice.actors import system_actor
from backoffice.errors import IdempotencyConflict, IllegalTransition, ValidationFailed
from ledger.errors import InsufficientFunds
from ledger.models import LedgerEntry, LedgerJournal
from ledger.verification import ledger_verify
from payments.models import Capability, EventSource, IntentStatus, PaymentEvent, Refund, RefundStatus, RestrictionMode
from payments.providers import ProviderAdapter, ProviderRefundResult, ProviderStatus, ProviderTimeout
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.refunds import (
    RefundExceedsRefundable,
    refund_apply_outcome,
    refund_cancel,
    refund_create,
    refund_send,
)
from payments.services.restrictions import CapabilityRestricted, restriction_impose
from tests.factories.approvals import money_state
from tests.factories.ledger import credit_merchant
from tests.factories.payments import at, captured_payment, fetch_intent, intent, payable_minor, timeline

SUPPORT = system_actor("refund_api")
WEBHOOK = system_actor("webhook")


class FakeProvider(ProviderAdapter):
    """A provider that answers every refund with `answer` (a ProviderStatus) or raises it."""

    provider_code = "sim"

    def __init__(self, answer=ProviderStatus.SUCCEEDED):
        self.answer = answer
        self.calls = []

    def refund(self, req):
        self.calls.append(req)
        if isinstance(self.answer, Exception):
            raise self.answer
        return ProviderRefundResult(
            status=self.answer, provider_reference=f"sim_rf_{req.refund_id}", merchant_reference=req.refund_id,
            amount_minor=req.amount_minor, currency=req.currency, merchant_id=req.merchant_id,
            provider_status=self.answer.value.lower(), decline_code="",
            error_code="insufficient_balance" if self.answer == ProviderStatus.FAILED else "",
        )  # fmt: skip

    def create_payment(self, req):
        raise NotImplementedError

    def query_status(self, **kwargs):
        raise NotImplementedError

    def payout(self, req):
        raise NotImplementedError


@pytest.fixture
def payment():
    """A captured payment of 1,000,000 minor units; the merchant's payable covers a full refund."""
    pi, attempt = captured_payment(amount_minor=1_000_000)
    # The capture credited the amount net of the platform's fee; a refund is borne in full.
    credit_merchant(pi.merchant.public_id, attempt.fee_minor)
    return fetch_intent(pi.public_id)


_keys = iter(range(1, 10_000))


def create(pi, amount: int, *, key: str | None = None, now=None, **kwargs) -> Refund:
    return refund_create(intent=pi, amount_minor=amount, reason_code=kwargs.pop("reason_code", "CUSTOMER_REQUEST"),
                         reason_text="Customer returned the goods", idempotency_key=key or f"rf-key-{next(_keys)}",
                         actor=SUPPORT, now=now or at(10), **kwargs)  # fmt: skip


def fetch(refund: Refund) -> Refund:
    return Refund.objects.get(pk=refund.pk)


def counters(pi) -> tuple[str, int, int, int]:
    fresh = fetch_intent(pi.public_id)
    return fresh.status, fresh.captured_minor, fresh.refund_reserved_minor, fresh.refunded_minor


def outcome(refund: Refund, status: str, **changes) -> ProviderOutcome:
    fields = {"provider_code": "sim", "provider_reference": f"sim_rf_{refund.public_id}",
              "our_reference": refund.public_id, "merchant_ref": refund.payment_intent.merchant.public_id,
              "amount_minor": refund.amount_minor, "currency": refund.currency}  # fmt: skip
    return ProviderOutcome(status=status, **{**fields, **changes})


def apply(refund: Refund, status: str, *, now=None, **changes) -> Refund:
    return refund_apply_outcome(refund_id=refund.public_id, outcome=outcome(refund, status, **changes),
                                source=EventSource.WEBHOOK, actor=WEBHOOK, now=now or at(20))  # fmt: skip


def state() -> dict:
    return {"refunds": sorted(Refund.objects.values_list("public_id", "status", "version")),
            "events": PaymentEvent.objects.count(), **money_state()}  # fmt: skip


def intent_state(pi) -> tuple:
    fresh = fetch_intent(pi.public_id)
    return counters(pi), fresh.version


def refused(event_type: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type, result=AuditResult.REFUSED).latest("seq")


def restrict(pi, mode=RestrictionMode.BLOCK, *, now=None):
    return restriction_impose(merchant=pi.merchant, capability=Capability.CREATE_REFUND, mode=mode,
                              reason_code="FRAUD_SUSPECTED", reason_text="Refund abuse pattern", source="RISK",
                              actor=SUPPORT, now=now or at(1))  # fmt: skip


@pytest.fixture
def send_now(django_capture_on_commit_callbacks):
    """Send and run what waits for the commit (the provider call), as a real commit would."""

    def run(refund: Refund, provider: FakeProvider, *, now=None) -> Refund:
        with django_capture_on_commit_callbacks(execute=True):
            refund_send(refund_id=refund.public_id, actor=SUPPORT, now=now or at(11), adapter=provider)
        return fetch(refund)

    return run


def refund_journals(refund: Refund) -> list[LedgerJournal]:
    return list(LedgerJournal.objects.filter(idempotency_key=f"refund:{refund.public_id}"))


@pytest.mark.django_db
class TestCreate:
    def test_a_refund_reserves_its_amount(self, payment):
        refund = create(payment, 300_000)

        assert (refund.status, refund.amount_minor, refund.currency, refund.provider_code) == (
            RefundStatus.REQUESTED, 300_000, "IDR", "sim",
        )  # fmt: skip
        assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 300_000, 0)
        assert fetch_intent(payment.public_id).refundable_minor == 700_000
        assert timeline(refund.public_id) == [("refund.requested", "REQUESTED", "REQUESTED")]
        event = AuditEvent.objects.get(event_type="payments.refund_created")
        assert (event.target_id, event.after["refundable_after_minor"]) == (refund.public_id, 700_000)

    def test_more_than_the_refundable_amount_is_refused_and_changes_nothing(self, payment):
        create(payment, 300_000)
        before = (state(), intent_state(payment))

        with pytest.raises(RefundExceedsRefundable, match=r"7,000\.01 IDR is more than the refundable amount of "
                           rf"{payment.public_id}: 7,000\.00 IDR \(captured 10,000\.00 IDR, already refunded or in "
                           r"flight 3,000\.00 IDR\)"):  # fmt: skip
            create(payment, 700_001)

        assert (state(), intent_state(payment)) == before
        event = refused("payments.refund_create_refused")
        assert (event.error_code, event.target_id) == ("REFUND_EXCEEDS_REFUNDABLE", payment.public_id)
        assert create(payment, 700_000).status == RefundStatus.REQUESTED  # exactly the rest

    def test_an_intent_not_captured_is_refused(self):
        pending = intent()
        with pytest.raises(IllegalTransition, match="only a captured payment can be refunded"):
            create(pending, 1_000)
        assert Refund.objects.count() == 0
        assert refused("payments.refund_create_refused").error_code == "ILLEGAL_TRANSITION"

    @pytest.mark.parametrize("amount", [0, -1, 10.0, True])
    def test_the_amount_is_a_positive_whole_number(self, payment, amount):
        with pytest.raises(ValidationFailed, match="positive whole number"):
            create(payment, amount)
        assert counters(payment)[2] == 0 and Refund.objects.count() == 0

    def test_idempotent_by_key(self, payment):
        first = create(payment, 100_000, key="rf-once")

        assert create(payment, 100_000, key="rf-once", now=at(12)) == first
        with pytest.raises(IdempotencyConflict, match=first.public_id):
            create(payment, 200_000, key="rf-once")
        assert counters(payment)[2] == 100_000 and Refund.objects.count() == 1

    def test_refused_while_create_refund_is_blocked(self, payment):
        restrict(payment)
        before = (state(), intent_state(payment))

        with pytest.raises(CapabilityRestricted, match="Create refunds is blocked for this merchant: FRAUD_SUSPECTED"):
            create(payment, 100_000)

        assert (state(), intent_state(payment)) == before
        assert refused("payments.refund_create_refused").error_code == "CAPABILITY_RESTRICTED"

    def test_under_review_only_an_approved_refund(self, payment):
        restrict(payment, RestrictionMode.REVIEW)

        with pytest.raises(CapabilityRestricted, match="propose a refund correction for approval instead"):
            create(payment, 100_000)
        refund = create(payment, 100_000, approval_ref="act_01APPROVED", case_ref="CASE-2026-000001")

        assert (refund.status, refund.approval_ref, refund.case_ref) == (
            RefundStatus.REQUESTED, "act_01APPROVED", "CASE-2026-000001",
        )  # fmt: skip


@pytest.mark.django_db
class TestSendAndOutcomes:
    def test_a_partial_then_the_rest_refunded(self, payment, send_now):
        payable = payable_minor(payment.merchant)
        provider = FakeProvider()

        first = send_now(create(payment, 300_000), provider)

        assert (first.status, first.provider_refund_reference) == (RefundStatus.SUCCEEDED, f"sim_rf_{first.public_id}")
        (journal,) = refund_journals(first)
        assert first.journal_ref == journal.public_id and journal.journal_type == "REFUND_SUCCEEDED"
        assert [(e.direction, e.account.role, e.amount_minor) for e in
                LedgerEntry.objects.filter(journal=journal).select_related("account").order_by("id")] == [
            ("DEBIT", "MERCHANT_PAYABLE", 300_000), ("CREDIT", "PSP_RECEIVABLE", 300_000),
        ]  # fmt: skip
        assert counters(payment) == (IntentStatus.PARTIALLY_REFUNDED, 1_000_000, 300_000, 300_000)
        assert payable_minor(payment.merchant) == payable - 300_000
        (request,) = provider.calls
        assert (request.idempotency_key, request.payment_provider_reference) == (
            first.public_id, first.payment_attempt.provider_reference,
        )  # fmt: skip

        second = send_now(create(payment, 700_000), provider)

        assert second.status == RefundStatus.SUCCEEDED
        assert counters(payment) == (IntentStatus.REFUNDED, 1_000_000, 1_000_000, 1_000_000)
        assert [e[1:] for e in timeline(payment.public_id) if "refund" in e[0] and e[1] != e[2]] == [
            ("SUCCEEDED", "PARTIALLY_REFUNDED"), ("PARTIALLY_REFUNDED", "REFUNDED"),
        ]  # fmt: skip
        # Nothing is left to refund.
        with pytest.raises(IllegalTransition):
            create(payment, 1)
        assert ledger_verify().ok

    def test_a_success_applied_again_is_a_no_op(self, payment, send_now):
        refund = send_now(create(payment, 300_000), FakeProvider())
        before = (state(), intent_state(payment))

        assert apply(refund, OutcomeStatus.SUCCEEDED).status == RefundStatus.SUCCEEDED
        assert send_now(refund, FakeProvider()).status == RefundStatus.SUCCEEDED  # sending again sends nothing

        assert (state(), intent_state(payment)) == before
        assert len(refund_journals(refund)) == 1

    def test_a_failure_releases_the_reservation(self, payment, send_now):
        refund = send_now(create(payment, 300_000), FakeProvider(ProviderStatus.FAILED))

        assert (refund.status, refund.failure_code) == (RefundStatus.FAILED, "insufficient_balance")
        assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 0, 0)
        assert refund_journals(refund) == []
        assert ("payment_intent.refund_released", "SUCCEEDED", "SUCCEEDED") in timeline(payment.public_id)
        # A replayed failure changes nothing; a late success contradicts it and changes nothing.
        assert apply(refund, OutcomeStatus.FAILED).status == RefundStatus.FAILED
        before = (state(), intent_state(payment))
        with pytest.raises(OutcomeConflict):
            apply(refund, OutcomeStatus.SUCCEEDED)
        assert (state(), intent_state(payment)) == before
        assert refused("payments.refund_outcome_refused").error_code == "OUTCOME_CONFLICT"

    def test_a_timeout_is_unknown_never_sent_again_and_an_inquiry_settles_it(self, payment, send_now):
        provider = FakeProvider(ProviderTimeout(provider_code="sim"))
        refund = send_now(create(payment, 300_000), provider)

        assert refund.status == RefundStatus.UNKNOWN_OUTCOME
        assert send_now(refund, provider, now=at(12)).status == RefundStatus.UNKNOWN_OUTCOME
        assert len(provider.calls) == 1
        assert counters(payment)[2] == 300_000  # still reserved: it may have been paid

        # The provider never got it: FAILED, released.
        assert apply(refund, OutcomeStatus.NOT_FOUND, amount_minor=None, currency="").status == RefundStatus.FAILED
        assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 0, 0)

    def test_a_mismatching_answer_changes_nothing(self, payment, send_now):
        refund = send_now(create(payment, 300_000), FakeProvider(ProviderStatus.PENDING))
        assert refund.status == RefundStatus.PROCESSING
        before = (state(), intent_state(payment))

        with pytest.raises(OutcomeMismatch) as raised:
            apply(refund, OutcomeStatus.SUCCEEDED, currency="USD")
        with pytest.raises(OutcomeMismatch):
            apply(refund, OutcomeStatus.SUCCEEDED, amount_minor=None)  # money moves on a stated amount only

        assert raised.value.mismatch == {"currency": {"ours": "IDR", "theirs": "USD"}}
        assert (state(), intent_state(payment)) == before
        assert refused("payments.refund_outcome_refused").error_code == "OUTCOME_MISMATCH"

    def test_a_success_the_merchants_payable_cannot_bear_is_refused_and_kept_in_flight(self, send_now):
        pi, _ = captured_payment(amount_minor=1_000_000)  # payable: the amount net of the fee
        refund = send_now(create(pi, 1_000_000), FakeProvider(ProviderStatus.PENDING))
        before = (state(), intent_state(pi))

        with pytest.raises(InsufficientFunds):
            apply(refund, OutcomeStatus.SUCCEEDED)

        # Nothing moved; the refund stays PROCESSING with its reservation, for an operator's case.
        assert (state(), intent_state(pi)) == before
        assert fetch(refund).status == RefundStatus.PROCESSING
        assert refused("payments.refund_outcome_refused").error_code == "INSUFFICIENT_FUNDS"

    def test_sending_rechecks_the_restriction_and_a_stopped_refund_can_be_canceled(self, payment, send_now):
        refund = create(payment, 300_000)
        restrict(payment, now=at(10.5))
        provider = FakeProvider()
        before = (state(), intent_state(payment))

        with pytest.raises(CapabilityRestricted):
            send_now(refund, provider)

        assert (state(), intent_state(payment)) == before
        assert provider.calls == []
        assert refused("payments.refund_send_refused").error_code == "CAPABILITY_RESTRICTED"
        canceled = refund_cancel(refund_id=refund.public_id, reason_text="Merchant under review", actor=SUPPORT,
                                 now=at(12))  # fmt: skip
        assert canceled.status == RefundStatus.CANCELED
        assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 0, 0)


def run_together(workers: int, work) -> list:
    barrier = threading.Barrier(workers)
    results: list = [None] * workers

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_eight_refunds_at_once_reserve_exactly_the_refundable_amount(payment):
    # 8 x 150,000 = 1,200,000 asked of 1,000,000 captured, 100,000 of it already refunded or in flight.
    create(payment, 100_000, key="earlier")

    results = run_together(8, lambda i: create(payment, 150_000, key=f"storm-{i}").public_id)

    created = [r for r in results if isinstance(r, str)]
    refusals = [r for r in results if isinstance(r, RefundExceedsRefundable)]
    assert (len(created), len(refusals)) == (6, 2), results
    assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 1_000_000, 0)
    assert sum(Refund.objects.values_list("amount_minor", flat=True)) == 1_000_000
    assert all(f"refundable amount of {payment.public_id}: 0.00 IDR (captured" in r.message for r in refusals)
    assert AuditEvent.objects.filter(event_type="payments.refund_create_refused").count() == 2


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_success_applied_twice_at_once_posts_once(payment):
    refund = create(payment, 400_000)

    results = run_together(2, lambda i: apply(refund, OutcomeStatus.SUCCEEDED, now=at(20 + i)).status)

    assert results == [RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED], results
    assert len(refund_journals(refund)) == 1
    assert counters(payment) == (IntentStatus.PARTIALLY_REFUNDED, 1_000_000, 400_000, 400_000)
    assert ledger_verify().ok
