"""Money moves once: a capture posts exactly one journal whoever applies the success and however
many times; a provider answer that does not match ours or contradicts our state moves nothing; a
void after capture reverses the capture journal; a lost chargeback posts once."""

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent, AuditResult
from audit.verification import chain_verify
from backoffice.errors import IdempotencyConflict, IllegalTransition, PolicyDenied, ValidationFailed
from ledger.models import LedgerEntry, LedgerJournal
from ledger.verification import ledger_verify
from payments.models import EventSource, PaymentAttempt, PaymentEvent, PaymentIntent, Refund
from payments.services import (
    OutcomeConflict,
    OutcomeMismatch,
    ProviderReferenceClash,
    attempt_apply_outcome,
    attempt_capture,
    attempt_void,
    dispute_open,
    dispute_resolve,
)
from payments.services.outcomes import OutcomeStatus
from tests.factories import payments as f

# The concurrency tests below need committed rows (their own django_db mark); the rest roll back.
pytestmark = pytest.mark.django_db

SOURCES = [EventSource.WEBHOOK, EventSource.INQUIRY, EventSource.SWEEPER, EventSource.PROVIDER_RESPONSE,
           EventSource.WEBHOOK, EventSource.INQUIRY, EventSource.SWEEPER, EventSource.OPERATOR]  # fmt: skip


def run_together(workers: int, work) -> list:
    """Run work(i) in `workers` threads released at the same instant; results or exceptions."""
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


def lines(journal: LedgerJournal) -> list[tuple[str, str, str, int]]:
    return [
        (e.direction, e.account.role, e.account.owner_ref, e.amount_minor)
        for e in LedgerEntry.objects.filter(journal=journal).select_related("account").order_by("id")
    ]


def snapshot(attempt: PaymentAttempt) -> dict:
    """Everything an answer that is refused must leave as it was."""
    fresh = f.fetch_attempt(attempt.public_id)
    intent = fresh.payment_intent
    return {
        "attempt": {fld.attname: getattr(fresh, fld.attname) for fld in PaymentAttempt._meta.concrete_fields},
        "intent": {fld.attname: getattr(intent, fld.attname) for fld in PaymentIntent._meta.concrete_fields},
        "events": PaymentEvent.objects.count(),
        "journals": LedgerJournal.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "succeeded_audit": AuditEvent.objects.filter(result=AuditResult.SUCCEEDED).count(),
    }


def refusal(event_type: str, target_id: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type, target_id=target_id, result=AuditResult.REFUSED).latest(
        "seq"
    )


def apply(attempt: PaymentAttempt, status: str = OutcomeStatus.SUCCEEDED, *, source=EventSource.WEBHOOK,
          minutes: float = 5, **changes):  # fmt: skip
    fresh = f.fetch_attempt(attempt.public_id)
    return attempt_apply_outcome(attempt_id=attempt.public_id, outcome=f.outcome_for(fresh, status, **changes),
                                 source=source, actor=f.system(), now=f.at(minutes))  # fmt: skip


# --- exactly once, under concurrency ----------------------------------------------------------------


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_eight_sources_applying_one_success_at_once_capture_it_once():
    attempt = f.sent_attempt(amount_minor=1_000_000)  # the provider answered "pending"
    merchant = attempt.payment_intent.merchant
    outcome = f.outcome_for(attempt, OutcomeStatus.SUCCEEDED)

    results = run_together(8, lambda i: attempt_apply_outcome(
        attempt_id=attempt.public_id, outcome=outcome, source=SOURCES[i], actor=f.system(f"source_{i}"),
        now=f.at(5)))  # fmt: skip

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(r.changed for r in results) == [False] * 7 + [True]
    (journal,) = LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED")
    assert (journal.idempotency_key, journal.source_type, journal.source_id) == (
        f"capture:{attempt.public_id}", "payment_attempt", attempt.public_id,
    )  # fmt: skip
    assert {r.journal_ref for r in results} == {journal.public_id}
    assert lines(journal) == [
        ("DEBIT", "PSP_RECEIVABLE", "", 1_000_000),
        ("CREDIT", "MERCHANT_PAYABLE", merchant.public_id, 771_000),
        ("CREDIT", "PLATFORM_FEE_REVENUE", "", 229_000),
    ]
    assert f.payable_minor(merchant) == 771_000
    found = f.fetch_attempt(attempt.public_id)
    assert (found.status, found.capture_journal_ref, found.completed_at) == ("SUCCEEDED", journal.public_id, f.at(5))
    assert (found.payment_intent.status, found.payment_intent.captured_minor) == ("SUCCEEDED", 1_000_000)
    assert PaymentEvent.objects.filter(subject_id=attempt.public_id, to_status="SUCCEEDED").count() == 1
    unchanged = AuditEvent.objects.filter(event_type="payments.payment_attempt_outcome_unchanged")
    assert unchanged.filter(actor__startswith="system:source_").count() == 7
    assert ledger_verify().ok
    assert chain_verify().intact


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_eight_operators_losing_one_dispute_at_once_post_one_chargeback():
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    f.captured_payment(merchant=intent.merchant, amount_minor=2_000_000)  # payable: 771,000 + 1,742,000
    dispute_open(intent_id=intent.public_id, reason_code="FRAUD", reason_text="Card holder disputes",
                 actor=f.system(), now=f.at(10), idempotency_key="dispute-1")  # fmt: skip

    results = run_together(8, lambda i: dispute_resolve(
        intent_id=intent.public_id, won=False, reason_code="FRAUD", reason_text="Issuer upheld the dispute",
        actor=f.system(f"operator_{i}"), now=f.at(20), idempotency_key=f"resolve-{i}").public_id)  # fmt: skip

    assert sorted(type(r).__name__ for r in results) == ["IllegalTransition"] * 7 + ["str"], results
    (chargeback,) = LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST")
    assert chargeback.idempotency_key == f"chargeback:{intent.public_id}"
    assert lines(chargeback) == [
        ("DEBIT", "MERCHANT_PAYABLE", intent.merchant.public_id, 1_000_000),
        ("CREDIT", "PSP_RECEIVABLE", "", 1_000_000),
    ]
    assert f.payable_minor(intent.merchant) == 771_000 + 1_742_000 - 1_000_000
    assert f.fetch_intent(intent.public_id).status == "REFUNDED"
    assert ledger_verify().ok


# --- answers applied once ----------------------------------------------------------------------------


def test_a_success_applied_again_changes_nothing():
    attempt = f.sent_attempt()
    first = apply(attempt)
    before = snapshot(attempt)

    again = apply(attempt, source=EventSource.INQUIRY, minutes=9)

    assert first.changed and not again.changed
    assert again.journal_ref == first.journal_ref
    after = snapshot(attempt)
    assert after.pop("succeeded_audit") == before.pop("succeeded_audit") + 1  # the no-op is audited, nothing else
    assert after == before


def test_a_late_answer_for_a_step_already_passed_changes_nothing():
    attempt = f.sent_attempt()
    apply(attempt, OutcomeStatus.REQUIRES_ACTION)
    apply(attempt, OutcomeStatus.SUCCEEDED)
    before = snapshot(attempt)

    for late in (OutcomeStatus.AUTHORIZED, OutcomeStatus.REQUIRES_ACTION, OutcomeStatus.PENDING):
        assert not apply(attempt, late, minutes=9).changed

    after = snapshot(attempt)
    after.pop("succeeded_audit"), before.pop("succeeded_audit")
    assert after == before


def test_pending_writes_only_a_timeline_event():
    attempt = f.sent_attempt()
    before = snapshot(attempt)

    applied = apply(attempt, OutcomeStatus.PENDING)

    assert not applied.changed
    after = snapshot(attempt)
    assert after.pop("events") == before.pop("events") + 1
    after.pop("succeeded_audit"), before.pop("succeeded_audit")
    assert after == before
    event = PaymentEvent.objects.filter(subject_id=attempt.public_id).latest("id")
    assert (event.event_type, event.from_status, event.to_status, event.source) == (
        "payment_attempt.provider_pending", "SENT_TO_PROVIDER", "SENT_TO_PROVIDER", "WEBHOOK",
    )  # fmt: skip


def test_an_unknown_outcome_settled_by_an_inquiry_captures_once():
    attempt = f.attempt_in("UNKNOWN_OUTCOME")
    assert attempt.provider_reference == ""  # the call timed out: we never learned it

    applied = apply(attempt, source=EventSource.INQUIRY)

    found = f.fetch_attempt(attempt.public_id)
    assert applied.changed and found.status == "SUCCEEDED"
    assert found.provider_reference == f.provider_reference_for(attempt.public_id)  # learned now
    assert LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED").count() == 1
    assert found.next_inquiry_at is None
    assert ledger_verify().ok


# --- mismatches and conflicts move nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount_minor": 999_999}, "amount_minor"),
        ({"amount_minor": None}, "amount_minor"),  # a success must state its amount
        ({"currency": "USD"}, "currency"),
        ({"currency": ""}, "currency"),
        ({"merchant_ref": "m_SOMEONEELSE"}, "merchant"),
        ({"our_reference": "pa_SOMEONEELSE"}, "our_reference"),
        ({"provider_reference": "sim_pay_other"}, "provider_reference"),
        ({"provider_code": "other"}, "provider_code"),
    ],
)
def test_a_mismatching_success_moves_nothing_and_is_audited(changes, field):
    attempt = f.sent_attempt()  # the reference is known from the pending answer
    assert attempt.provider_reference
    before = snapshot(attempt)

    with pytest.raises(OutcomeMismatch) as raised:
        apply(attempt, **changes)

    assert field in raised.value.mismatch
    assert snapshot(attempt) == before
    assert not LedgerJournal.objects.exists()
    audited = refusal("payments.payment_attempt_outcome_refused", attempt.public_id)
    assert audited.error_code == "OUTCOME_MISMATCH"
    assert field in audited.after["mismatch"]


def test_a_provider_reference_of_another_attempt_is_a_clash():
    first = f.sent_attempt()
    second = f.attempt_in("UNKNOWN_OUTCOME")
    before = snapshot(second)

    with pytest.raises(ProviderReferenceClash, match=f"already recorded for {first.public_id}"):
        apply(second, provider_reference=first.provider_reference)

    assert snapshot(second) == before
    assert refusal("payments.payment_attempt_outcome_refused", second.public_id).error_code == (
        "PROVIDER_REFERENCE_CLASH"
    )


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        ("SUCCEEDED", OutcomeStatus.DECLINED),
        ("SUCCEEDED", OutcomeStatus.FAILED),
        ("SUCCEEDED", OutcomeStatus.EXPIRED),
        ("SUCCEEDED", OutcomeStatus.NOT_FOUND),
        ("DECLINED", OutcomeStatus.SUCCEEDED),
        ("FAILED", OutcomeStatus.AUTHORIZED),
        ("CANCELED", OutcomeStatus.SUCCEEDED),
        ("AUTHORIZED", OutcomeStatus.DECLINED),
        ("SENT_TO_PROVIDER", OutcomeStatus.EXPIRED),  # the state machine has no expiry from there
        ("CREATED", OutcomeStatus.SUCCEEDED),  # never sent: the provider cannot know it
    ],
)
def test_an_answer_contradicting_our_state_is_a_conflict_and_moves_nothing(status, answer):
    attempt = f.attempt_in(status)
    before = snapshot(attempt)

    with pytest.raises(OutcomeConflict):
        apply(attempt, answer)

    assert snapshot(attempt) == before
    assert refusal("payments.payment_attempt_outcome_refused", attempt.public_id).error_code == "OUTCOME_CONFLICT"


def test_an_answer_that_is_not_a_payment_outcome_is_refused():
    attempt = f.sent_attempt()
    with pytest.raises(ValidationFailed, match="not an outcome of a payment attempt"):
        apply(attempt, OutcomeStatus.RETURNED)


@pytest.mark.parametrize(
    ("answer", "attempt_status", "intent_status"),
    [
        (OutcomeStatus.AUTHORIZED, "AUTHORIZED", "AUTHORIZED"),
        (OutcomeStatus.REQUIRES_ACTION, "REQUIRES_ACTION", "REQUIRES_ACTION"),
        (OutcomeStatus.DECLINED, "DECLINED", "REQUIRES_PAYMENT_METHOD"),
        (OutcomeStatus.FAILED, "FAILED", "REQUIRES_PAYMENT_METHOD"),
    ],
)
def test_each_answer_moves_attempt_and_intent_without_money(answer, attempt_status, intent_status):
    attempt = f.sent_attempt()
    applied = apply(attempt, answer, decline_code="do_not_honor" if answer == OutcomeStatus.DECLINED else "")
    found = f.fetch_attempt(attempt.public_id)
    assert applied.changed and (found.status, found.payment_intent.status) == (attempt_status, intent_status)
    assert not LedgerJournal.objects.exists()
    if answer == OutcomeStatus.DECLINED:
        assert found.decline_code == "do_not_honor"


def test_an_expired_authorization_cancels_the_intent():
    attempt = f.attempt_in("AUTHORIZED")
    apply(attempt, OutcomeStatus.EXPIRED)
    found = f.fetch_attempt(attempt.public_id)
    assert (found.status, found.payment_intent.status) == ("EXPIRED", "CANCELED")


# --- manual capture ---------------------------------------------------------------------------------


def test_a_manual_capture_posts_once_and_a_retry_returns_it():
    attempt = f.attempt_in("AUTHORIZED", capture_mode="MANUAL")

    done = attempt_capture(attempt_id=attempt.public_id, actor=f.system(), now=f.at(30), idempotency_key="cap-1")
    replay = attempt_capture(attempt_id=attempt.public_id, actor=f.system(), now=f.at(31), idempotency_key="cap-1")

    assert done.changed and not replay.changed and replay.journal_ref == done.journal_ref
    (journal,) = LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED")
    assert journal.public_id == done.journal_ref == f.fetch_attempt(attempt.public_id).capture_journal_ref
    assert f.fetch_intent(attempt.payment_intent.public_id).captured_minor == attempt.amount_minor
    with pytest.raises(IllegalTransition, match="only an AUTHORIZED attempt is captured"):
        attempt_capture(attempt_id=attempt.public_id, actor=f.system(), now=f.at(32), idempotency_key="cap-2")
    assert LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED").count() == 1


# --- void ------------------------------------------------------------------------------------------


def void(attempt, *, key: str = "void-1", minutes: float = 30, **kwargs):
    fields = dict(reason_code="CUSTOMER_REQUEST", reason_text="Order canceled before shipping")
    fields.update(kwargs)
    return attempt_void(attempt_id=attempt.public_id, actor=f.system(), now=f.at(minutes), idempotency_key=key,
                        **fields)  # fmt: skip


def test_a_void_after_capture_posts_the_reversal_of_the_capture():
    intent, attempt = f.captured_payment(amount_minor=1_000_000)
    capture = LedgerJournal.objects.get(public_id=attempt.capture_journal_ref)
    assert f.payable_minor(intent.merchant) == 771_000

    done = void(attempt)

    reversal = LedgerJournal.objects.get(reverses=capture)
    assert done.changed and done.journal_ref == reversal.public_id
    assert (reversal.journal_type, reversal.idempotency_key) == ("REVERSAL", f"void:{attempt.public_id}")
    assert lines(reversal) == [
        ("CREDIT" if d == "DEBIT" else "DEBIT", role, owner, amount) for d, role, owner, amount in lines(capture)
    ]
    assert f.payable_minor(intent.merchant) == 0
    found = f.fetch_attempt(attempt.public_id)
    assert (found.status, found.payment_intent.status, found.payment_intent.captured_minor) == (
        "CANCELED", "CANCELED", 0,
    )  # fmt: skip
    assert ledger_verify().ok

    # The same key again is the same void, with another reason a conflict; another key is refused;
    # the capture is reversed once.
    assert not void(attempt, minutes=31).changed
    with pytest.raises(IdempotencyConflict):
        void(attempt, minutes=31, reason_code="DUPLICATE_ORDER")
    with pytest.raises(IllegalTransition, match="is CANCELED"):
        void(attempt, key="void-2", minutes=32)
    assert LedgerJournal.objects.filter(reverses=capture).count() == 1


def test_a_void_of_an_authorization_moves_no_money():
    attempt = f.attempt_in("AUTHORIZED")
    done = void(attempt)
    assert done.changed and done.journal_ref == ""
    assert not LedgerJournal.objects.exists()
    assert f.fetch_intent(attempt.payment_intent.public_id).status == "CANCELED"


def test_a_captured_payment_is_not_voided_after_its_business_day():
    _, attempt = f.captured_payment()
    before = snapshot(attempt)
    with pytest.raises(PolicyDenied, match="returned by a refund, not voided"):
        void(attempt, minutes=24 * 60)
    assert snapshot(attempt) == before
    assert refusal("payments.payment_attempt_void_refused", attempt.public_id).error_code == "POLICY_DENIED"


def test_a_payment_with_a_refund_is_not_voided():
    intent, attempt = f.captured_payment()
    # Test set-up: a refund row as the refund service records it (that service is tested with refunds).
    Refund.objects.create(
        public_id="rf_01TESTREFUND0000000000000", payment_intent=intent, payment_attempt=attempt, amount_minor=1_000,
        currency="IDR", reason_code="CUSTOMER_REQUEST", provider_code="sim", idempotency_key="refund-1",
        requested_by="system:payments_tests", created_at=f.at(10), updated_at=f.at(10),
    )  # fmt: skip
    before = snapshot(attempt)
    with pytest.raises(PolicyDenied, match="has refunds"):
        void(attempt)
    assert snapshot(attempt) == before
    assert refusal("payments.payment_attempt_void_refused", attempt.public_id).error_code == "POLICY_DENIED"


def test_a_void_needs_a_reason():
    _, attempt = f.captured_payment()
    with pytest.raises(ValidationFailed, match="reason"):
        void(attempt, reason_text="  ")
    assert f.fetch_attempt(attempt.public_id).status == "SUCCEEDED"


# --- disputes ----------------------------------------------------------------------------------------


def open_dispute(intent, key: str = "dispute-1"):
    return dispute_open(intent_id=intent.public_id, reason_code="FRAUD", reason_text="Card holder disputes",
                        actor=f.system(), now=f.at(10), idempotency_key=key)  # fmt: skip


def resolve(intent, *, won: bool, key: str = "resolve-1", **kwargs):
    return dispute_resolve(intent_id=intent.public_id, won=won, reason_code="FRAUD", reason_text="Issuer decided",
                           actor=f.system(), now=f.at(20), idempotency_key=key, **kwargs)  # fmt: skip


def test_a_lost_chargeback_posts_once():
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    f.captured_payment(merchant=intent.merchant, amount_minor=2_000_000)
    open_dispute(intent)
    assert f.fetch_intent(intent.public_id).status == "DISPUTED"

    resolve(intent, won=False)
    resolve(intent, won=False)  # the same key: the same resolution

    (chargeback,) = LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST")
    assert (chargeback.idempotency_key, chargeback.source_type, chargeback.source_id) == (
        f"chargeback:{intent.public_id}", "payment_intent", intent.public_id,
    )  # fmt: skip
    assert lines(chargeback)[0] == ("DEBIT", "MERCHANT_PAYABLE", intent.merchant.public_id, 1_000_000)
    assert f.fetch_intent(intent.public_id).status == "REFUNDED"
    with pytest.raises(IllegalTransition, match="is REFUNDED"):
        resolve(intent, won=False, key="resolve-2")
    with pytest.raises(IdempotencyConflict):
        resolve(intent, won=True)  # the key that lost it cannot now win it
    assert LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST").count() == 1
    event = PaymentEvent.objects.get(subject_id=intent.public_id, to_status="REFUNDED")
    assert (event.journal_ref, event.data["chargeback_minor"]) == (chargeback.public_id, 1_000_000)
    assert ledger_verify().ok


def test_a_won_dispute_restores_the_payment_and_posts_nothing():
    intent, _ = f.captured_payment()
    open_dispute(intent)
    journals = LedgerJournal.objects.count()
    resolve(intent, won=True)
    assert f.fetch_intent(intent.public_id).status == "SUCCEEDED"
    assert LedgerJournal.objects.count() == journals


@pytest.mark.parametrize("amount", [0, -1, 1_000_001, 1.5])
def test_a_chargeback_above_the_captured_amount_is_refused(amount):
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    f.captured_payment(merchant=intent.merchant, amount_minor=2_000_000)
    open_dispute(intent)
    with pytest.raises(ValidationFailed, match="up to 1000000"):
        resolve(intent, won=False, amount_minor=amount)
    assert f.fetch_intent(intent.public_id).status == "DISPUTED"
    assert not LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST").exists()


def test_a_partial_chargeback_posts_its_amount():
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    open_dispute(intent)
    resolve(intent, won=False, amount_minor=500_000)
    (chargeback,) = LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST")
    assert lines(chargeback)[0][3] == 500_000
    assert f.payable_minor(intent.merchant) == 271_000
