"""Refunds: never more than the refundable amount (the database decides, also for eight at once)
nor than the merchant's available balance (refused at request time, also against a payout racing
it); the merchant's funds set aside at the request (REFUND_RESERVED); sent once; a success posts
REFUND_SUCCEEDED once from those funds (also when applied twice at once, also after the rest of the
balance was paid out) and moves the intent to PARTIALLY_REFUNDED / REFUNDED; a failure or a decline
releases the reservation once; restrictions hold."""

import threading

import pytest
from django.apps import apps as django_apps
from django.db import connection

from audit.models import AuditEvent, AuditResult
from backoffice.actors import system_actor
from backoffice.errors import IdempotencyConflict, IllegalTransition, ValidationFailed
from ledger.chart import ensure_chart
from ledger.models import LedgerEntry, LedgerJournal, PostingRule, PostingRuleLine
from ledger.selectors import merchant_balances
from ledger.verification import ledger_verify
from payments.actions.money import CREATE_REFUND_CORRECTION
from payments.models import (
    Capability,
    EventSource,
    IntentStatus,
    MerchantBeneficiary,
    PaymentEvent,
    PaymentIntent,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
    RestrictionMode,
)
from payments.providers import (
    ProviderAdapter,
    ProviderPayoutResult,
    ProviderRefundResult,
    ProviderStatus,
    ProviderTimeout,
    http,
)
from payments.services.merchants import beneficiary_add
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.payouts import PayoutExceedsAvailable, payout_create, payout_send
from payments.services.refunds import (
    RefundExceedsAvailable,
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
        self.calls.append(req)
        return ProviderPayoutResult(
            status=ProviderStatus.SUCCEEDED, provider_reference=f"prv_{req.payout_id}",
            merchant_reference=req.payout_id, amount_minor=req.amount_minor, currency=req.currency,
            merchant_id=req.merchant_id, provider_status="paid",
        )  # fmt: skip


@pytest.fixture
def configured(monkeypatch):
    """configured(provider): the provider as configured, which the send tasks queued after commit use."""

    def use(provider: FakeProvider) -> FakeProvider:
        monkeypatch.setattr(http, "provider_adapter_from_settings", lambda *, provider_code=None: provider)
        return provider

    return use


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


def lines(journal_key: str) -> list[tuple[str, str, int]]:
    entries = LedgerEntry.objects.filter(journal__idempotency_key=journal_key).select_related("account")
    return [(e.direction, e.account.role, e.amount_minor) for e in entries.order_by("id")]


def balance(merchant, role: str) -> int:
    """A merchant's balance of `role` in IDR, in minor units; 0 before the account exists."""
    found = [b for b in merchant_balances(merchant_ref=merchant.public_id) if (b.account.role, b.account.currency) ==
             (role, "IDR")]  # fmt: skip
    return found[0].balance.amount_minor if found else 0


def beneficiary(merchant):
    active = MerchantBeneficiary.objects.filter(merchant=merchant, currency="IDR", status="ACTIVE").first()
    return active or beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                           account_holder="PT Toko Test", account_number="1234567890", currency="IDR", actor=SUPPORT,
                           now=at(0))  # fmt: skip


def pay_out(merchant, amount: int, *, key: str, now=None) -> Payout:
    return payout_create(merchant=merchant, beneficiary=beneficiary(merchant), amount_minor=amount, currency="IDR",
                         idempotency_key=key, actor=SUPPORT, now=now or at(12))  # fmt: skip


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
        # The merchant's funds are set aside at once, from its payable balance.
        reservation = LedgerJournal.objects.get(idempotency_key=f"refund:{refund.public_id}:reserved")
        assert (reservation.journal_type, reservation.source_type, reservation.source_id) == (
            "REFUND_RESERVED", "refund", refund.public_id,
        )  # fmt: skip
        assert lines(reservation.idempotency_key) == [("DEBIT", "MERCHANT_PAYABLE", 300_000),
                                                      ("CREDIT", "MERCHANT_REFUND_RESERVE", 300_000)]  # fmt: skip
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (
            700_000, 300_000,
        )  # fmt: skip
        assert PaymentEvent.objects.get(subject_id=refund.public_id).journal_ref == reservation.public_id
        assert (event.after["available_before_minor"], event.after["available_after_minor"]) == (1_000_000, 700_000)
        assert refund_journals(refund) == []  # nothing is paid to the payer before the provider says so

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

    def test_more_than_the_merchants_available_balance_is_refused_naming_it(self):
        # Given a merchant whose payable holds 771,000 (1,000,000 captured less the 229,000 fee) of
        # which a payout approved and not yet sent holds 100,000.
        pi, _ = captured_payment(amount_minor=1_000_000)
        payout = pay_out(pi.merchant, 100_000, key="po-committed", now=at(5))
        assert (payout.status, payable_minor(pi.merchant)) == (PayoutStatus.APPROVED, 771_000)
        before = (state(), intent_state(pi))

        # When a refund asks for one minor unit more than the 671,000 left,
        with pytest.raises(RefundExceedsAvailable, match=rf"6,710\.01 IDR is more than {pi.merchant.public_id} has "
                           r"available for refunds: 6,710\.00 IDR \(payable 7,710\.00 IDR, committed to payouts not "
                           r"yet sent 1,000\.00 IDR\)") as raised:  # fmt: skip
            create(pi, 671_001)

        # then nothing is written: no refund, no reservation, no journal, the intent as it was.
        assert raised.value.details == {"available_minor": 671_000}
        assert (state(), intent_state(pi)) == before
        assert Refund.objects.count() == 0 and payable_minor(pi.merchant) == 771_000
        event = refused("payments.refund_create_refused")
        assert (event.error_code, event.target_id, event.action_type) == (
            "REFUND_EXCEEDS_AVAILABLE", pi.public_id, "CREATE_REFUND",
        )  # fmt: skip
        # Exactly what is available goes through, and the payout can still be sent.
        assert create(pi, 671_000).status == RefundStatus.REQUESTED
        assert (payable_minor(pi.merchant), balance(pi.merchant, "MERCHANT_REFUND_RESERVE")) == (100_000, 671_000)
        sent = payout_send(payout_id=payout.public_id, actor=SUPPORT, now=at(13), adapter=FakeProvider())
        assert (sent.status, payable_minor(pi.merchant)) == (PayoutStatus.SENT, 0)

    def test_a_refund_correction_above_the_available_balance_is_refused_when_proposed(self):
        pi, _ = captured_payment(amount_minor=1_000_000)  # payable 771,000

        with pytest.raises(ValidationFailed, match=rf"7,710\.01 IDR is more than {pi.merchant.public_id} has available "
                           r"for refunds: 7,710\.00 IDR"):  # fmt: skip
            CREATE_REFUND_CORRECTION.validate({"intent": pi.public_id, "amount_minor": 771_001}, SUPPORT)

        payload = CREATE_REFUND_CORRECTION.validate({"intent": pi.public_id, "amount_minor": 771_000}, SUPPORT)
        preview = CREATE_REFUND_CORRECTION.preview(payload, at(10))
        assert [(ln["journal"], ln["direction"], ln["role"], ln["amount_minor"]) for ln in preview["lines"]] == [
            ("REFUND_RESERVED", "DEBIT", "MERCHANT_PAYABLE", 771_000),
            ("REFUND_RESERVED", "CREDIT", "MERCHANT_REFUND_RESERVE", 771_000),
            ("REFUND_SUCCEEDED", "DEBIT", "MERCHANT_REFUND_RESERVE", 771_000),
            ("REFUND_SUCCEEDED", "CREDIT", "PSP_RECEIVABLE", 771_000),
        ]  # fmt: skip
        assert (preview["available"]["before_minor"], preview["available"]["after_minor"]) == (771_000, 0)
        assert Refund.objects.count() == 0 and LedgerJournal.objects.filter(journal_type="REFUND_RESERVED").count() == 0

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
        # Paid to the payer from the funds set aside when it was requested.
        assert lines(journal.idempotency_key) == [("DEBIT", "MERCHANT_REFUND_RESERVE", 300_000),
                                                  ("CREDIT", "PSP_RECEIVABLE", 300_000)]  # fmt: skip
        assert counters(payment) == (IntentStatus.PARTIALLY_REFUNDED, 1_000_000, 300_000, 300_000)
        assert payable_minor(payment.merchant) == payable - 300_000
        assert balance(payment.merchant, "MERCHANT_REFUND_RESERVE") == 0
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
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (1_000_000, 0)
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

    def test_a_decline_releases_the_reservation_exactly_once(self, payment, send_now):
        # Given a refund handed to the provider, which has not answered yet.
        refund = send_now(create(payment, 300_000), FakeProvider(ProviderStatus.PENDING))
        assert refund.status == RefundStatus.PROCESSING
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (
            700_000, 300_000,
        )  # fmt: skip

        # When the provider declines it,
        declined = apply(refund, OutcomeStatus.DECLINED, decline_code="card_closed")

        # then the refund failed, the refundable amount and the merchant's funds are given back by
        # the reversal of the reservation, and the payer is paid nothing.
        assert (declined.status, declined.failure_code) == (RefundStatus.FAILED, "card_closed")
        reserved = LedgerJournal.objects.get(idempotency_key=f"refund:{refund.public_id}:reserved")
        (reversal,) = LedgerJournal.objects.filter(reverses=reserved)
        assert (reversal.idempotency_key, reversal.journal_type) == (f"refund:{refund.public_id}:reserved:reversal",
                                                                     "REVERSAL")  # fmt: skip
        assert lines(reversal.idempotency_key) == [("CREDIT", "MERCHANT_PAYABLE", 300_000),
                                                   ("DEBIT", "MERCHANT_REFUND_RESERVE", 300_000)]  # fmt: skip
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (1_000_000, 0)
        assert counters(payment) == (IntentStatus.SUCCEEDED, 1_000_000, 0, 0)
        assert refund_journals(refund) == []
        released = PaymentEvent.objects.get(subject_id=payment.public_id, event_type="payment_intent.refund_released")
        assert released.journal_ref == reversal.public_id

        # A replayed decline (a webhook delivered again, an inquiry) changes nothing.
        before = (state(), intent_state(payment))
        assert apply(refund, OutcomeStatus.DECLINED, decline_code="card_closed", now=at(30)).status == (
            RefundStatus.FAILED
        )
        assert (state(), intent_state(payment)) == before
        assert LedgerJournal.objects.filter(reverses=reserved).count() == 1
        assert ledger_verify().ok

    def test_a_success_after_the_rest_of_the_balance_was_paid_out_still_posts(self, payment, send_now):
        # Given a refund of 300,000 in flight and the merchant's whole remaining balance paid out.
        refund = send_now(create(payment, 300_000), FakeProvider(ProviderStatus.PENDING))
        with pytest.raises(PayoutExceedsAvailable):
            pay_out(payment.merchant, 700_001, key="po-too-much")  # the refund's funds are not available
        payout = pay_out(payment.merchant, 700_000, key="po-rest")
        payout_send(payout_id=payout.public_id, actor=SUPPORT, now=at(13), adapter=FakeProvider())
        assert payable_minor(payment.merchant) == 0

        # When the provider confirms the refund (the payer already has the money back),
        done = apply(refund, OutcomeStatus.SUCCEEDED)

        # then REFUND_SUCCEEDED posts from the funds set aside, and the payable stays at zero.
        assert done.status == RefundStatus.SUCCEEDED
        (journal,) = refund_journals(refund)
        assert lines(journal.idempotency_key) == [("DEBIT", "MERCHANT_REFUND_RESERVE", 300_000),
                                                  ("CREDIT", "PSP_RECEIVABLE", 300_000)]  # fmt: skip
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (0, 0)
        assert counters(payment) == (IntentStatus.PARTIALLY_REFUNDED, 1_000_000, 300_000, 300_000)
        assert ledger_verify().ok

    def test_a_refund_requested_before_reservations_existed_sets_its_funds_aside_when_it_succeeds(self, payment):
        # Given a refund in flight recorded as refunds were before they set funds aside: its amount
        # reserved on the intent, no REFUND_RESERVED journal (test set-up writes those rows directly).
        PaymentIntent.objects.filter(pk=payment.pk).update(refund_reserved_minor=300_000)
        refund = Refund.objects.create(
            public_id="rf_01LEGACYREFUND0000000000", payment_intent=payment,
            payment_attempt=payment.attempts.get(), amount_minor=300_000, currency="IDR",
            reason_code="CUSTOMER_REQUEST", provider_code="sim", idempotency_key="legacy-1",
            requested_by=SUPPORT.label, created_at=at(1), updated_at=at(1),
        )  # fmt: skip

        # When the provider confirms it, its funds are set aside from the payable and paid from there.
        assert apply(refund, OutcomeStatus.SUCCEEDED).status == RefundStatus.SUCCEEDED

        assert lines(f"refund:{refund.public_id}:reserved") == [
            ("DEBIT", "MERCHANT_PAYABLE", 300_000), ("CREDIT", "MERCHANT_REFUND_RESERVE", 300_000),
        ]  # fmt: skip
        assert lines(f"refund:{refund.public_id}") == [
            ("DEBIT", "MERCHANT_REFUND_RESERVE", 300_000), ("CREDIT", "PSP_RECEIVABLE", 300_000),
        ]  # fmt: skip
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (700_000, 0)
        assert ledger_verify().ok

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
        assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (1_000_000, 0)
        assert LedgerJournal.objects.filter(idempotency_key=f"refund:{refund.public_id}:reserved:reversal").count() == 1


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
def test_eight_refunds_at_once_reserve_exactly_the_refundable_amount(payment, configured):
    # Each refund created is handed to the provider once its creation commits; it answers "pending".
    provider = configured(FakeProvider(ProviderStatus.PENDING))
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
    # The merchant's funds were set aside for exactly the refunds made, and each was sent once.
    assert (payable_minor(payment.merchant), balance(payment.merchant, "MERCHANT_REFUND_RESERVE")) == (0, 1_000_000)
    made = sorted(Refund.objects.values_list("public_id", flat=True))
    assert sorted(call.refund_id for call in provider.calls) == made
    assert set(Refund.objects.values_list("status", flat=True)) == {RefundStatus.PROCESSING}
    assert ledger_verify().ok


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_success_applied_twice_at_once_posts_once(payment, configured):
    provider = configured(FakeProvider(ProviderStatus.PENDING))
    refund = create(payment, 400_000)
    assert (fetch(refund).status, len(provider.calls)) == (RefundStatus.PROCESSING, 1)  # sent after commit

    results = run_together(2, lambda i: apply(refund, OutcomeStatus.SUCCEEDED, now=at(20 + i)).status)

    assert results == [RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED], results
    assert len(refund_journals(refund)) == 1
    assert counters(payment) == (IntentStatus.PARTIALLY_REFUNDED, 1_000_000, 400_000, 400_000)
    assert len(provider.calls) == 1
    assert ledger_verify().ok


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_refund_and_a_payout_racing_for_one_balance_exactly_one_goes_through(payment, configured):
    # Given a payable balance of 1,000,000 and a refund and a payout of 600,000 each, released together.
    provider = configured(FakeProvider(ProviderStatus.PENDING))
    ben = beneficiary(payment.merchant)

    def work(i: int):
        if i == 0:
            return create(payment, 600_000, key="race-refund")
        return payout_create(merchant=payment.merchant, beneficiary=ben, amount_minor=600_000, currency="IDR",
                             idempotency_key="race-payout", actor=SUPPORT, now=at(12))  # fmt: skip

    results = run_together(2, work)

    # Then exactly one went through (and was sent), the other was refused naming what was left.
    made = [r for r in results if isinstance(r, (Refund, Payout))]
    refusals = [r for r in results if isinstance(r, (RefundExceedsAvailable, PayoutExceedsAvailable))]
    assert (len(made), len(refusals)) == (1, 1), results
    assert refusals[0].details["available_minor"] == 400_000
    assert Refund.objects.count() + Payout.objects.count() == 1
    assert len(provider.calls) == 1
    # The payable went down by 600,000 once and never below zero; the books verify.
    assert payable_minor(payment.merchant) == 400_000
    report = ledger_verify()
    assert report.ok, report
    refused_event = "payments.refund_create_refused" if isinstance(refusals[0], RefundExceedsAvailable) else (
        "payments.payout_create_refused")  # fmt: skip
    assert refused(refused_event).error_code == refusals[0].code


@pytest.mark.django_db
def test_a_chart_seeded_before_reservations_gets_the_new_refund_rules_once():
    # Given REFUND_SUCCEEDED as first seeded (version 1: from the payable), and no REFUND_RESERVED.
    rule = PostingRule.objects.get(code="REFUND_SUCCEEDED")
    rule.lines.all().delete()
    for line_no, (direction, role) in enumerate([("DEBIT", "MERCHANT_PAYABLE"), ("CREDIT", "PSP_RECEIVABLE")], 1):
        PostingRuleLine.objects.create(rule=rule, line_no=line_no, direction=direction, account_role=role,
                                       component="AMOUNT")  # fmt: skip
    PostingRule.objects.filter(pk=rule.pk).update(version=1)
    PostingRule.objects.filter(code="REFUND_RESERVED").delete()

    # When the chart is ensured (migration 0008, and after every migrate), twice,
    ensure_chart(django_apps)
    once = list(PostingRuleLine.objects.order_by("pk").values_list("pk", "rule__code", "line_no"))
    ensure_chart(django_apps)

    # then both rules read as the chart says, and the second run changed nothing.
    def rule_lines(code: str) -> list[tuple[str, str, str]]:
        found = PostingRule.objects.get(code=code).lines.order_by("line_no")
        return [(ln.direction, ln.account_role, ln.component) for ln in found]

    assert PostingRule.objects.get(code="REFUND_SUCCEEDED").version == 2
    assert rule_lines("REFUND_SUCCEEDED") == [("DEBIT", "MERCHANT_REFUND_RESERVE", "AMOUNT"),
                                              ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]  # fmt: skip
    assert rule_lines("REFUND_RESERVED") == [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"),
                                             ("CREDIT", "MERCHANT_REFUND_RESERVE", "AMOUNT")]  # fmt: skip
    assert list(PostingRuleLine.objects.order_by("pk").values_list("pk", "rule__code", "line_no")) == once
