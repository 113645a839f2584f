"""Payment test data, made only through the payment services: merchants, customers, intents,
attempts, and captured payments sent through a test double of the provider adapter.

    merchant = payments.merchant()
    intent, attempt = payments.captured_payment(merchant=merchant, amount_minor=1_000_000)
    merchant = payments.merchant_with_balance(amount_minor=1_000_000)   # payable = amount - fee
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

from backoffice.actors import Actor, system_actor
from ledger.selectors import merchant_balances
from payments.models import (
    AttemptStatus,
    Customer,
    Merchant,
    MethodType,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
)
from payments.providers.base import (
    ProviderAdapter,
    ProviderObjectKind,
    ProviderPaymentRequest,
    ProviderPaymentResult,
    ProviderPayoutRequest,
    ProviderPayoutResult,
    ProviderRefundRequest,
    ProviderRefundResult,
    ProviderStatus,
    ProviderStatusResult,
    ProviderTimeout,
)
from payments.services import (
    ProviderOutcome,
    attempt_apply_outcome,
    attempt_create,
    attempt_send,
    attempt_void,
    customer_create,
    intent_create,
    merchant_create,
)
from payments.services.outcomes import OutcomeStatus

# Monday 2 March 2026, 09:00 in Asia/Manila (the business timezone): mid-morning of a business day.
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
PROVIDER = "sim"
CARD_TOKEN = "tok_test_visa"
_seq = itertools.count(1)


def at(minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def system(name: str = "payments_tests") -> Actor:
    """The system actor test set-up acts as."""
    return system_actor(name)


def new_key(prefix: str = "idem") -> str:
    return f"{prefix}_{next(_seq)}"


def fetch_attempt(public_id: str) -> PaymentAttempt:
    """A fresh copy (refresh_from_db cannot reset a protected status field)."""
    return PaymentAttempt.objects.select_related("payment_intent__merchant").get(public_id=public_id)


def fetch_intent(public_id: str) -> PaymentIntent:
    return PaymentIntent.objects.select_related("merchant").get(public_id=public_id)


# --- the provider test double ------------------------------------------------------------------------


class StubAdapter(ProviderAdapter):
    """A provider that answers create_payment with what the test says: a ProviderStatus (answered
    with the request's own amount, currency, merchant and references), an exception to raise, or
    a callable(request) returning a result. Records every request it received."""

    def __init__(self, answer: ProviderStatus | BaseException | Callable = ProviderStatus.SUCCEEDED, *,
                 provider_code: str = PROVIDER, decline_code: str = "") -> None:  # fmt: skip
        self.provider_code = provider_code
        self.answer = answer
        self.decline_code = decline_code
        self.requests: list[ProviderPaymentRequest] = []

    def create_payment(self, req: ProviderPaymentRequest) -> ProviderPaymentResult:
        self.requests.append(req)
        if isinstance(self.answer, BaseException):
            raise self.answer
        if callable(self.answer) and not isinstance(self.answer, ProviderStatus):
            return self.answer(req)
        return payment_result(req, status=self.answer, decline_code=self.decline_code)

    def query_status(self, *, provider_reference=None, merchant_reference=None, kind=ProviderObjectKind.PAYMENT):
        raise NotImplementedError("StubAdapter answers create_payment only")

    def refund(self, req: ProviderRefundRequest) -> ProviderRefundResult:
        raise NotImplementedError("StubAdapter answers create_payment only")

    def payout(self, req: ProviderPayoutRequest) -> ProviderPayoutResult:
        raise NotImplementedError("StubAdapter answers create_payment only")


def provider_reference_for(attempt_id: str) -> str:
    return f"sim_pay_{attempt_id.removeprefix('pa_')}"


def payment_result(req: ProviderPaymentRequest, *, status: ProviderStatus, decline_code: str = "",
                   **changes) -> ProviderPaymentResult:  # fmt: skip
    fields = dict(
        status=status, provider_reference=provider_reference_for(req.attempt_id), merchant_reference=req.attempt_id,
        amount_minor=req.amount_minor, currency=req.currency, merchant_id=req.merchant_id,
        provider_status=status.value.lower(), decline_code=decline_code, http_status=200, raw_body=b"{}",
    )  # fmt: skip
    fields.update(changes)
    return ProviderPaymentResult(**fields)


def status_result(status: ProviderStatus = ProviderStatus.SUCCEEDED, **fields) -> ProviderStatusResult:
    return ProviderStatusResult(status=status, provider_reference=None, merchant_reference=None, amount_minor=None,
                                currency=None, merchant_id=None, **fields)  # fmt: skip


def outcome_for(attempt: PaymentAttempt, status: str = OutcomeStatus.SUCCEEDED, **changes) -> ProviderOutcome:
    """What the provider says about `attempt`, matching our records unless `changes` say otherwise."""
    intent = attempt.payment_intent
    fields = dict(
        status=status, provider_code=attempt.provider_code,
        provider_reference=attempt.provider_reference or provider_reference_for(attempt.public_id),
        our_reference=attempt.public_id, merchant_ref=intent.merchant.public_id, amount_minor=attempt.amount_minor,
        currency=attempt.currency, raw_status=status.lower(),
    )  # fmt: skip
    fields.update(changes)
    return ProviderOutcome(**fields)


# --- merchants and customers -----------------------------------------------------------------------


def merchant(*, name: str | None = None, region: str = "ID", default_currency: str = "IDR",
             now: dt.datetime = T0, **fields) -> Merchant:  # fmt: skip
    n = next(_seq)
    return merchant_create(
        name=name or f"Toko Test {n}", region=region, default_currency=default_currency, actor=system(), now=now,
        idempotency_key=fields.pop("idempotency_key", f"merchant_{n}"), **fields,
    )  # fmt: skip


make_merchant = merchant  # for helpers whose `merchant` argument hides the function


def customer(merchant: Merchant, *, reference: str | None = None, now: dt.datetime = T0, **contact) -> Customer:
    return customer_create(merchant=merchant, reference=reference or f"cust-{next(_seq)}", actor=system(), now=now,
                           **contact)  # fmt: skip


# --- payments -----------------------------------------------------------------------------------------


def intent(*, merchant: Merchant | None = None, amount_minor: int = 1_000_000, currency: str = "IDR",
           now: dt.datetime = T0, **fields) -> PaymentIntent:  # fmt: skip
    n = next(_seq)
    return intent_create(
        merchant=merchant or make_merchant(), amount_minor=amount_minor, currency=currency,
        business_type=fields.pop("business_type", "ORDER"), business_id=fields.pop("business_id", f"ORD-{n}"),
        idempotency_key=fields.pop("idempotency_key", f"intent_{n}"), actor=system(), now=now, **fields,
    )  # fmt: skip


def attempt(payment_intent: PaymentIntent, *, method_type: str = MethodType.CARD, now: dt.datetime = T0,
            **fields) -> PaymentAttempt:  # fmt: skip
    if method_type == MethodType.CARD:
        fields.setdefault("card_brand", "VISA")
        fields.setdefault("card_last4", "4242")
        fields.setdefault("card_fingerprint", "fp_test_visa_4242")
    return attempt_create(
        intent=payment_intent, method_type=method_type, provider_code=fields.pop("provider_code", PROVIDER),
        provider_account=fields.pop("provider_account", "acct_main"),
        idempotency_key=fields.pop("idempotency_key", new_key("attempt")), actor=system(), now=now, **fields,
    )  # fmt: skip


def sent_attempt(*, answer=ProviderStatus.PENDING, now: dt.datetime = T0, **intent_fields) -> PaymentAttempt:
    """An attempt sent to the provider, which answered `answer` (PENDING: it stays SENT_TO_PROVIDER)."""
    created = attempt(intent(now=now, **intent_fields), now=now)
    attempt_send(attempt_id=created.public_id, actor=system(), now=now, adapter=StubAdapter(answer),
                 card_token=CARD_TOKEN)  # fmt: skip
    return fetch_attempt(created.public_id)


def attempt_in(status: str, *, now: dt.datetime = T0, **intent_fields) -> PaymentAttempt:
    """An attempt driven to `status` through the services, as the provider would drive it."""
    if status == AttemptStatus.CREATED:
        return fetch_attempt(attempt(intent(now=now, **intent_fields), now=now).public_id)
    if status == AttemptStatus.UNKNOWN_OUTCOME:
        return sent_attempt(answer=ProviderTimeout(provider_code=PROVIDER), now=now, **intent_fields)
    sent = sent_attempt(now=now, **intent_fields)
    steps = {
        AttemptStatus.SENT_TO_PROVIDER: [],
        AttemptStatus.REQUIRES_ACTION: [OutcomeStatus.REQUIRES_ACTION],
        AttemptStatus.AUTHORIZED: [OutcomeStatus.AUTHORIZED],
        AttemptStatus.SUCCEEDED: [OutcomeStatus.SUCCEEDED],
        AttemptStatus.DECLINED: [OutcomeStatus.DECLINED],
        AttemptStatus.FAILED: [OutcomeStatus.FAILED],
        AttemptStatus.EXPIRED: [OutcomeStatus.REQUIRES_ACTION, OutcomeStatus.EXPIRED],
        AttemptStatus.CANCELED: [OutcomeStatus.AUTHORIZED],
    }[status]
    for step in steps:
        attempt_apply_outcome(attempt_id=sent.public_id, outcome=outcome_for(fetch_attempt(sent.public_id), step),
                              source="WEBHOOK", actor=system(), now=now)  # fmt: skip
    if status == AttemptStatus.CANCELED:
        attempt_void(attempt_id=sent.public_id, reason_code="CUSTOMER_REQUEST", reason_text="Order canceled",
                     actor=system(), now=now, idempotency_key=new_key("void"))  # fmt: skip
    found = fetch_attempt(sent.public_id)
    assert found.status == status, (found.status, status)
    return found


def captured_payment(
    *, merchant: Merchant | None = None, amount_minor: int = 1_000_000, currency: str = "IDR",
    method_type: str = MethodType.CARD, now: dt.datetime = T0,
) -> tuple[PaymentIntent, PaymentAttempt]:  # fmt: skip
    """An intent and its attempt, sent and captured (the provider answered SUCCEEDED): the merchant's
    payable rose by amount - fee through CAPTURE_SUCCEEDED."""
    if merchant is None:
        merchant = make_merchant(default_currency=currency)
    created = attempt(intent(merchant=merchant, amount_minor=amount_minor, currency=currency, now=now),
                      method_type=method_type, now=now)  # fmt: skip
    attempt_send(attempt_id=created.public_id, actor=system(), now=now, adapter=StubAdapter(),
                 card_token=CARD_TOKEN if method_type == MethodType.CARD else "")  # fmt: skip
    captured = fetch_attempt(created.public_id)
    assert captured.status == AttemptStatus.SUCCEEDED, captured.status
    return captured.payment_intent, captured


def merchant_with_balance(*, amount_minor: int = 1_000_000, currency: str = "IDR", now: dt.datetime = T0,
                          **merchant_fields) -> Merchant:  # fmt: skip
    """A merchant with one captured payment of `amount_minor`: its payable balance is the amount
    minus the platform fee (payable_minor reads it)."""
    found = merchant(default_currency=currency, now=now, **merchant_fields)
    captured_payment(merchant=found, amount_minor=amount_minor, currency=currency, now=now)
    return found


def payable_minor(merchant: Merchant, currency: str = "IDR") -> int:
    """The merchant's available (payable) balance in minor units; 0 before the account exists."""
    for balance in merchant_balances(merchant_ref=merchant.public_id):
        if balance.account.role == "MERCHANT_PAYABLE" and balance.account.currency == currency:
            return balance.balance.amount_minor
    return 0


def timeline(subject_id: str) -> list[tuple[str, str, str]]:
    """(event type, from status, to status) of a payment subject, oldest first."""
    return list(PaymentEvent.objects.filter(subject_id=subject_id).order_by("id").values_list(
        "event_type", "from_status", "to_status"))  # fmt: skip
