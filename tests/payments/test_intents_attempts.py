"""Intents and attempts: idempotent creation, no card number anywhere, the platform fee, the send
that never resends, and state machines whose every illegal transition raises and changes nothing."""

import pytest
from django.db import transaction

from audit.models import AuditEvent, AuditResult
from backoffice.errors import IdempotencyConflict, IllegalTransition, PolicyDenied, ValidationFailed
from ledger.models import LedgerJournal
from payments.models import (
    AttemptStatus,
    Capability,
    CapabilityRestriction,
    EventSource,
    IntentStatus,
    MethodType,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
)
from payments.providers.base import (
    ProviderProtocolError,
    ProviderRequestRejected,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
)
from payments.services import (
    attempt_capture,
    attempt_create,
    attempt_send,
    attempt_void,
    dispute_open,
    dispute_resolve,
    intent_create,
    platform_fee,
)
from payments.services.recording import payment_command
from tests.factories import payments as f

pytestmark = pytest.mark.django_db

PAN = "4111 1111 1111 1111"  # a test card number: passes Luhn, must be refused wherever it appears


def snapshot(*public_ids: str) -> dict:
    """Everything a refused command must leave as it was: the rows, their timeline, the money, the
    successful audit events."""
    rows = {}
    for model in (PaymentIntent, PaymentAttempt):
        for obj in model.objects.filter(public_id__in=public_ids):
            rows[obj.public_id] = {fld.attname: getattr(obj, fld.attname) for fld in model._meta.concrete_fields}
    return {
        "rows": rows,
        "intents": PaymentIntent.objects.count(),
        "attempts": PaymentAttempt.objects.count(),
        "events": PaymentEvent.objects.count(),
        "journals": LedgerJournal.objects.count(),
        "succeeded_audit": AuditEvent.objects.filter(result=AuditResult.SUCCEEDED).count(),
    }


def last_refusal(event_type: str, target_id: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type, target_id=target_id, result=AuditResult.REFUSED).latest(
        "seq"
    )


def create_intent(merchant, **changes):
    fields = dict(merchant=merchant, amount_minor=1_000_000, currency="IDR", business_type="ORDER",
                  business_id="ORD-1", idempotency_key="order-1", actor=f.system(), now=f.at(0))  # fmt: skip
    fields.update(changes)
    return intent_create(**fields)


def create_attempt(intent, **changes):
    fields = dict(intent=intent, method_type="CARD", provider_code="sim", provider_account="acct_main",
                  idempotency_key="attempt-1", actor=f.system(), now=f.at(1), card_brand="VISA", card_last4="4242",
                  card_fingerprint="fp_test_visa_4242")  # fmt: skip
    fields.update(changes)
    return attempt_create(**fields)


# --- intents -----------------------------------------------------------------------------------------


def test_the_same_key_and_request_returns_the_first_intent():
    merchant = f.merchant()
    first = create_intent(merchant)
    before = snapshot(first.public_id)

    again = create_intent(merchant, now=f.at(5))

    assert again.pk == first.pk
    assert snapshot(first.public_id) == before
    assert (first.status, first.amount_minor, first.currency, first.captured_minor) == (
        "REQUIRES_PAYMENT_METHOD", 1_000_000, "IDR", 0,
    )  # fmt: skip
    assert f.timeline(first.public_id) == [
        ("payment_intent.created", "REQUIRES_PAYMENT_METHOD", "REQUIRES_PAYMENT_METHOD")
    ]
    # The key is the merchant's: another merchant may use the same one.
    assert create_intent(f.merchant()).pk != first.pk


@pytest.mark.parametrize(
    "change", [{"amount_minor": 1_000_001}, {"currency": "PHP"}, {"business_id": "ORD-2"}, {"capture_mode": "MANUAL"}]
)
def test_the_same_key_with_another_request_is_refused(change):
    merchant = f.merchant()
    first = create_intent(merchant)
    before = snapshot(first.public_id)

    with pytest.raises(IdempotencyConflict, match=first.public_id):
        create_intent(merchant, **change)

    assert snapshot(first.public_id) == before
    assert last_refusal("payments.payment_intent_create_refused", merchant.public_id).error_code == (
        "IDEMPOTENCY_CONFLICT"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": 0}, {"amount_minor": -100}, {"amount_minor": 1_000.0}, {"amount_minor": "1000"},
        {"amount_minor": True}, {"currency": "RUPIAH"}, {"capture_mode": "LATER"}, {"business_id": ""},
        {"business_id": f"card {PAN}"}, {"description": f"paid with {PAN}"}, {"idempotency_key": PAN},
    ],
)  # fmt: skip
def test_a_bad_intent_is_refused_and_stores_nothing(change):
    merchant = f.merchant()
    before = snapshot()

    with pytest.raises(ValidationFailed):
        create_intent(merchant, **change)

    assert snapshot() == before
    refusal = last_refusal("payments.payment_intent_create_refused", merchant.public_id)
    assert refusal.error_code == "VALIDATION_FAILED"
    assert "1111 1111" not in refusal.error_message


def test_a_customer_of_another_merchant_is_refused():
    merchant, other = f.merchant(), f.merchant()
    with pytest.raises(ValidationFailed, match="belongs to another merchant"):
        create_intent(merchant, customer=f.customer(other))
    assert not PaymentIntent.objects.exists()


# --- attempts: creation -----------------------------------------------------------------------------


def test_an_attempt_takes_the_intents_amount_and_the_platform_fee_and_is_idempotent():
    intent = f.intent(amount_minor=1_000_000)
    first = create_attempt(intent)
    before = snapshot(intent.public_id, first.public_id)

    again = create_attempt(intent, now=f.at(9))

    assert again.pk == first.pk
    assert snapshot(intent.public_id, first.public_id) == before
    assert (first.status, first.attempt_no, first.amount_minor, first.currency, first.fee_minor) == (
        "CREATED", 1, 1_000_000, "IDR", 229_000,  # 2.9 % of Rp 10,000 + Rp 2,000
    )  # fmt: skip
    assert (first.card_brand, first.card_last4, first.card_fingerprint) == ("VISA", "4242", "fp_test_visa_4242")
    with pytest.raises(IdempotencyConflict, match=first.public_id):
        create_attempt(intent, provider_account="acct_other")
    assert last_refusal("payments.payment_attempt_create_refused", intent.public_id).error_code == (
        "IDEMPOTENCY_CONFLICT"
    )


@pytest.mark.parametrize(
    "field", ["card_last4", "card_fingerprint", "card_brand", "provider_account", "provider_code", "idempotency_key"]
)
@pytest.mark.parametrize("pan", [PAN, "4111111111111111", "5500-0000-0000-0004", "378282246310005"])
def test_a_card_number_anywhere_is_refused_and_never_stored(field, pan):
    intent = f.intent()
    before = snapshot(intent.public_id)

    with pytest.raises(ValidationFailed, match="card number"):
        create_attempt(intent, **{field: f"x{pan}x" if field != "card_last4" else pan})

    assert snapshot(intent.public_id) == before
    refusal = last_refusal("payments.payment_attempt_create_refused", intent.public_id)
    assert refusal.error_code == "VALIDATION_FAILED"
    digits = pan.replace(" ", "").replace("-", "")
    assert not AuditEvent.objects.filter(error_message__contains=digits[-8:]).exists()


@pytest.mark.parametrize("last4", ["", "424", "42424", "42a2", "\uff14\uff12\uff14\uff12"])
def test_a_card_attempt_needs_exactly_four_digits(last4):
    intent = f.intent()
    with pytest.raises(ValidationFailed, match="last four"):
        create_attempt(intent, card_last4=last4)
    assert not PaymentAttempt.objects.exists()


def test_card_details_belong_to_card_attempts_only():
    intent = f.intent()
    with pytest.raises(ValidationFailed, match="card attempts only"):
        create_attempt(intent, method_type="QRIS")
    qris = create_attempt(intent, method_type="QRIS", card_brand="", card_last4="", card_fingerprint="")
    assert (qris.method_type, qris.fee_minor) == ("QRIS", 7_000)  # 0.7 % of Rp 10,000


def restrict(merchant, capability: str, mode: str = "BLOCK") -> CapabilityRestriction:
    """Test set-up: a capability restriction as the restriction service will record it (that service
    belongs to the restrictions work; only the row matters to attempt creation)."""
    return CapabilityRestriction.objects.create(
        merchant=merchant, capability=capability, mode=mode, reason_code="RISK_REVIEW", reason_text="Chargebacks up",
        source="RISK", effective_at=f.at(-60), created_by="risk_user", created_at=f.at(-60),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("capability", "method", "refused"),
    [
        (Capability.ACCEPT_CARD, "CARD", True), (Capability.ACCEPT_QR, "QRIS", True),
        (Capability.ACCEPT_QR, "CARD", False), (Capability.ACCEPT_CARD, "EWALLET", False),
    ],
)  # fmt: skip
def test_a_blocked_capability_refuses_the_attempt(capability, method, refused):
    intent = f.intent()
    restrict(intent.merchant, capability)
    card = {} if method == "CARD" else {"card_brand": "", "card_last4": "", "card_fingerprint": ""}
    before = snapshot(intent.public_id)
    if not refused:
        assert create_attempt(intent, method_type=method, **card).status == "CREATED"
        return
    with pytest.raises(PolicyDenied, match="is blocked for this merchant"):
        create_attempt(intent, method_type=method, **card)
    assert snapshot(intent.public_id) == before
    assert last_refusal("payments.payment_attempt_create_refused", intent.public_id).error_code == "POLICY_DENIED"


def test_a_capability_under_review_lets_the_attempt_through_and_says_so():
    intent = f.intent()
    restrict(intent.merchant, Capability.ACCEPT_CARD, mode="REVIEW")
    attempt = create_attempt(intent)
    event = PaymentEvent.objects.get(subject_id=attempt.public_id, event_type="payment_attempt.created")
    assert "under review" in event.data["capability_review"]


def test_a_second_live_attempt_is_refused():
    intent = f.intent()
    create_attempt(intent)
    with pytest.raises(IllegalTransition):
        create_attempt(intent, idempotency_key="attempt-2")
    assert PaymentAttempt.objects.count() == 1


@pytest.mark.parametrize(
    ("method", "amount", "currency", "fee"),
    [
        ("CARD", 1_000_000, "IDR", 229_000),  # 2.9 % = 29,000 + fixed 200,000
        ("CARD", 50, "IDR", 50),  # the fixed fee is capped at the amount
        ("CARD", 10_000, "USD", 320),  # 2.9 % = 290 + fixed 30
        ("QRIS", 500, "IDR", 4),  # 0.7 % = 3.5, half up to 4
        ("QRIS", 499, "IDR", 3),  # 0.7 % = 3.493, down to 3
        ("QRIS", 50, "IDR", 0),  # 0.35 rounds to nothing
        ("EWALLET", 333_333, "IDR", 5_000),  # 1.5 % = 4,999.995, half up to 5,000
        ("VIRTUAL_ACCOUNT", 100_000, "IDR", 100_000),  # fixed Rp 4,000 capped at a Rp 1,000 payment
        ("VIRTUAL_ACCOUNT", 10_000_000, "IDR", 400_000),
        ("BANK_TRANSFER", 10_000_000, "IDR", 400_000),
    ],
)
def test_the_platform_fee_is_basis_points_plus_fixed_rounded_half_up_and_capped(method, amount, currency, fee):
    assert platform_fee(method_type=method, amount_minor=amount, currency=currency) == fee


def test_a_method_without_a_price_in_the_currency_is_refused():
    with pytest.raises(ValidationFailed, match="no platform price for QRIS payments in USD"):
        platform_fee(method_type="QRIS", amount_minor=1_000, currency="USD")
    intent = f.intent(currency="USD", amount_minor=1_000)
    with pytest.raises(ValidationFailed, match="no platform price"):
        create_attempt(intent, method_type="QRIS", card_brand="", card_last4="", card_fingerprint="")
    assert not PaymentAttempt.objects.exists()


# --- attempts: sending ------------------------------------------------------------------------------


def send(attempt, answer, **kwargs):
    adapter = f.StubAdapter(answer)
    kwargs.setdefault("card_token", f.CARD_TOKEN)
    return adapter, attempt_send(attempt_id=attempt.public_id, actor=f.system(), now=f.at(2), adapter=adapter, **kwargs)


def test_a_declined_answer_declines_the_attempt_and_reopens_the_intent():
    attempt = f.attempt(f.intent())
    adapter, applied = send(attempt, ProviderStatus.DECLINED)

    found = f.fetch_attempt(attempt.public_id)
    assert applied.changed and found.status == "DECLINED" and found.payment_intent.status == "REQUIRES_PAYMENT_METHOD"
    assert found.provider_reference == f.provider_reference_for(attempt.public_id)
    assert [r.idempotency_key for r in adapter.requests] == [attempt.public_id]
    assert adapter.requests[0].card_token == f.CARD_TOKEN and adapter.requests[0].method_type == "card"
    assert not LedgerJournal.objects.exists()
    # A new attempt may follow.
    assert f.attempt(found.payment_intent).attempt_no == 2


@pytest.mark.parametrize(
    "error",
    [
        ProviderTimeout(provider_code="sim", phase="read", elapsed_ms=10_000),
        ProviderProtocolError("garbled", provider_code="sim", http_status=200, raw_body=b"<html>"),
        ProviderRequestRejected("reused", provider_code="sim", error_code="idempotency_key_reused", http_status=409),
        ProviderRequestRejected("dup", provider_code="sim", error_code="duplicate_merchant_reference"),
    ],
)
def test_no_usable_answer_is_an_unknown_outcome_and_never_resent(error):
    attempt = f.attempt(f.intent())
    adapter, applied = send(attempt, error)

    found = f.fetch_attempt(attempt.public_id)
    assert applied.changed
    assert (found.status, found.payment_intent.status, found.next_inquiry_at) == (
        "UNKNOWN_OUTCOME", "PROCESSING", f.at(2),
    )  # fmt: skip
    event = PaymentEvent.objects.get(subject_id=attempt.public_id, to_status="UNKNOWN_OUTCOME")
    assert event.data["error"] == error.code
    before = snapshot(attempt.public_id, found.payment_intent.public_id)

    # Sending again is refused before the provider is called: the outcome is settled by inquiry only.
    again = f.StubAdapter(ProviderStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition, match="UNKNOWN_OUTCOME"):
        attempt_send(attempt_id=attempt.public_id, actor=f.system(), now=f.at(3), adapter=again,
                     card_token=f.CARD_TOKEN)  # fmt: skip
    assert again.requests == [] and len(adapter.requests) == 1
    assert snapshot(attempt.public_id, found.payment_intent.public_id) == before
    assert last_refusal("payments.payment_attempt_send_refused", attempt.public_id).error_code == "ILLEGAL_TRANSITION"


@pytest.mark.parametrize(
    "error",
    [
        ProviderUnavailable("503", provider_code="sim", http_status=503),
        ProviderRequestRejected("bad credentials", provider_code="sim", error_code="unauthorized", http_status=401),
    ],
)
def test_a_provider_that_processed_nothing_fails_the_attempt_for_a_new_one(error):
    attempt = f.attempt(f.intent())
    _, applied = send(attempt, error)

    found = f.fetch_attempt(attempt.public_id)
    assert applied.changed
    assert (found.status, found.payment_intent.status, found.decline_code) == (
        "FAILED", "REQUIRES_PAYMENT_METHOD", error.code.lower(),
    )  # fmt: skip
    assert found.next_inquiry_at is None
    assert f.attempt(found.payment_intent).attempt_no == 2


def test_an_unexpected_error_is_recorded_as_unknown_and_raised():
    attempt = f.attempt(f.intent())
    with pytest.raises(ConnectionResetError):
        send(attempt, ConnectionResetError("reset by peer"))
    assert f.fetch_attempt(attempt.public_id).status == "UNKNOWN_OUTCOME"


def test_a_card_attempt_without_its_token_is_not_sent():
    attempt = f.attempt(f.intent())
    before = snapshot(attempt.public_id, attempt.payment_intent.public_id)
    adapter = f.StubAdapter()
    with pytest.raises(ValidationFailed, match="card token"):
        attempt_send(attempt_id=attempt.public_id, actor=f.system(), now=f.at(2), adapter=adapter)
    assert adapter.requests == []
    assert snapshot(attempt.public_id, attempt.payment_intent.public_id) == before


def test_an_adapter_of_another_provider_is_refused():
    attempt = f.attempt(f.intent())
    adapter = f.StubAdapter(provider_code="other")
    with pytest.raises(ValidationFailed, match="not other"):
        attempt_send(attempt_id=attempt.public_id, actor=f.system(), now=f.at(2), adapter=adapter,
                     card_token=f.CARD_TOKEN)  # fmt: skip
    assert adapter.requests == [] and f.fetch_attempt(attempt.public_id).status == "CREATED"


def test_sending_inside_a_callers_transaction_is_refused():
    # The send must commit before the provider call; inside a caller's transaction it cannot.
    attempt = f.attempt(f.intent())
    adapter = f.StubAdapter()
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        attempt_send(attempt_id=attempt.public_id, actor=f.system(), now=f.at(2), adapter=adapter,
                     card_token=f.CARD_TOKEN)  # fmt: skip
    assert adapter.requests == [] and f.fetch_attempt(attempt.public_id).status == "CREATED"


# --- state machines ---------------------------------------------------------------------------------

A = AttemptStatus
I = IntentStatus  # noqa: E741 (short alias, as in the models)
ATTEMPT_LEGAL = {
    "send": {A.CREATED},
    "require_action": {A.SENT_TO_PROVIDER, A.UNKNOWN_OUTCOME},
    "authorize": {A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME},
    "succeed": {A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME, A.AUTHORIZED},
    "decline": {A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME},
    "fail": {A.CREATED, A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME},
    "lose_track": {A.SENT_TO_PROVIDER, A.REQUIRES_ACTION},
    "expire": {A.REQUIRES_ACTION, A.AUTHORIZED, A.UNKNOWN_OUTCOME},
    "cancel": {A.CREATED, A.AUTHORIZED, A.SUCCEEDED},
}
INTENT_LEGAL = {
    "start_processing": {I.REQUIRES_PAYMENT_METHOD, I.REQUIRES_ACTION},
    "require_action": {I.PROCESSING},
    "authorize": {I.PROCESSING, I.REQUIRES_ACTION},
    "succeed": {I.PROCESSING, I.REQUIRES_ACTION, I.AUTHORIZED},
    "retry_with_new_method": {I.PROCESSING, I.REQUIRES_ACTION},
    "fail": {I.REQUIRES_PAYMENT_METHOD, I.PROCESSING, I.REQUIRES_ACTION},
    "cancel": {I.REQUIRES_PAYMENT_METHOD, I.AUTHORIZED, I.SUCCEEDED},
    "refund_partially": {I.SUCCEEDED, I.PARTIALLY_REFUNDED},
    "refund_fully": {I.SUCCEEDED, I.PARTIALLY_REFUNDED},
    "dispute": {I.SUCCEEDED, I.PARTIALLY_REFUNDED},
    "win_dispute": {I.DISPUTED},
    "lose_dispute": {I.DISPUTED},
}


def intent_in(status: str) -> PaymentIntent:
    """An intent driven to `status` through the services. FAILED (intent expiry) and
    PARTIALLY_REFUNDED (refunds) are reached by other services and tested with them."""
    attempt_status = {I.REQUIRES_PAYMENT_METHOD: A.DECLINED, I.PROCESSING: A.SENT_TO_PROVIDER,
                      I.REQUIRES_ACTION: A.REQUIRES_ACTION, I.AUTHORIZED: A.AUTHORIZED, I.SUCCEEDED: A.SUCCEEDED,
                      I.CANCELED: A.CANCELED, I.DISPUTED: A.SUCCEEDED, I.REFUNDED: A.SUCCEEDED}[status]  # fmt: skip
    attempt = f.attempt_in(attempt_status)
    intent = attempt.payment_intent
    if status in (I.DISPUTED, I.REFUNDED):
        # A second captured payment keeps the merchant's payable above the chargeback.
        f.captured_payment(merchant=intent.merchant, amount_minor=5_000_000)
        dispute_open(intent_id=intent.public_id, reason_code="FRAUD", reason_text="Card holder disputes",
                     actor=f.system(), now=f.at(1), idempotency_key=f.new_key("dispute"))  # fmt: skip
    if status == I.REFUNDED:
        dispute_resolve(intent_id=intent.public_id, won=False, reason_code="FRAUD", reason_text="Issuer upheld it",
                        actor=f.system(), now=f.at(2), idempotency_key=f.new_key("resolve"))  # fmt: skip
    found = f.fetch_intent(intent.public_id)
    assert found.status == status
    return found


def attempt_transitions(obj) -> set[str]:
    return {t.name for t in obj.get_available_status_transitions()}


def assert_every_illegal_transition_changes_nothing(obj, fetch, legal: dict[str, set[str]]):
    assert attempt_transitions(obj) == {name for name, sources in legal.items() if obj.status in sources}
    related = [obj.public_id] + ([obj.payment_intent.public_id] if isinstance(obj, PaymentAttempt) else [])
    for name in sorted(name for name, sources in legal.items() if obj.status not in sources):
        fresh = fetch(obj.public_id)
        before = snapshot(*related)
        with (
            pytest.raises(IllegalTransition, match=f"is {obj.status}; it cannot"),
            payment_command(actor=f.system(), now=f.at(30)) as command,
        ):
            command.transition(fresh, name, source=EventSource.SYSTEM)
        assert snapshot(*related) == before, name


@pytest.mark.parametrize("status", AttemptStatus.values)
def test_every_illegal_attempt_transition_raises_and_changes_nothing(status):
    attempt = f.attempt_in(status)
    assert_every_illegal_transition_changes_nothing(attempt, f.fetch_attempt, ATTEMPT_LEGAL)


@pytest.mark.parametrize("status", sorted(set(IntentStatus.values) - {I.FAILED, I.PARTIALLY_REFUNDED}))
def test_every_illegal_intent_transition_raises_and_changes_nothing(status):
    intent = intent_in(status)
    assert_every_illegal_transition_changes_nothing(intent, f.fetch_intent, INTENT_LEGAL)


# The payment commands refuse, audited, from every state their transition does not start from.
COMMANDS = {
    "attempt_send": ({A.CREATED}, lambda a: attempt_send(
        attempt_id=a.public_id, actor=f.system(), now=f.at(40), adapter=f.StubAdapter(), card_token=f.CARD_TOKEN)),
    "attempt_capture": ({A.AUTHORIZED}, lambda a: attempt_capture(
        attempt_id=a.public_id, actor=f.system(), now=f.at(40), idempotency_key=f.new_key("capture"))),
    "attempt_void": ({A.AUTHORIZED, A.SUCCEEDED}, lambda a: attempt_void(
        attempt_id=a.public_id, reason_code="CUSTOMER_REQUEST", reason_text="Order canceled", actor=f.system(),
        now=f.at(40), idempotency_key=f.new_key("void"))),
}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "status"),
    [(name, status) for name, (legal, _) in sorted(COMMANDS.items()) for status in AttemptStatus.values
     if status not in legal],
)  # fmt: skip
def test_an_attempt_command_from_a_wrong_state_is_refused_audited_and_changes_nothing(command, status):
    _, run = COMMANDS[command]
    attempt = f.attempt_in(status)
    before = snapshot(attempt.public_id, attempt.payment_intent.public_id)

    with pytest.raises(IllegalTransition, match=f"is {status}"):
        run(attempt)

    assert snapshot(attempt.public_id, attempt.payment_intent.public_id) == before
    event = command.replace("attempt_", "payments.payment_attempt_") + "_refused"
    assert last_refusal(event, attempt.public_id).error_code == "ILLEGAL_TRANSITION"


@pytest.mark.parametrize("status", [I.REQUIRES_PAYMENT_METHOD, I.PROCESSING, I.AUTHORIZED, I.CANCELED, I.DISPUTED])
def test_a_dispute_of_an_intent_not_captured_is_refused(status):
    intent = intent_in(status)
    before = snapshot(intent.public_id)
    with pytest.raises(IllegalTransition, match=f"is {status}"):
        dispute_open(intent_id=intent.public_id, reason_code="FRAUD", reason_text="Card holder disputes",
                     actor=f.system(), now=f.at(40), idempotency_key=f.new_key("dispute"))  # fmt: skip
    assert snapshot(intent.public_id) == before
    assert last_refusal("payments.dispute_open_refused", intent.public_id).error_code == "ILLEGAL_TRANSITION"


def test_the_intent_lifecycle_and_its_timeline_for_a_captured_card_payment():
    intent, attempt = f.captured_payment(amount_minor=1_000_000)
    assert f.timeline(intent.public_id) == [
        ("payment_intent.created", "REQUIRES_PAYMENT_METHOD", "REQUIRES_PAYMENT_METHOD"),
        ("payment_intent.processing", "REQUIRES_PAYMENT_METHOD", "PROCESSING"),
        ("payment_intent.succeeded", "PROCESSING", "SUCCEEDED"),
    ]
    assert f.timeline(attempt.public_id) == [
        ("payment_attempt.created", "CREATED", "CREATED"),
        ("payment_attempt.sent_to_provider", "CREATED", "SENT_TO_PROVIDER"),
        ("payment_attempt.succeeded", "SENT_TO_PROVIDER", "SUCCEEDED"),
    ]
    assert intent.captured_minor == 1_000_000 and attempt.method_type == MethodType.CARD
