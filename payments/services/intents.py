"""Payment intents: the obligation to collect an amount for a merchant's business reference.

An intent moves no money; its attempts do (payments.services.attempts). Creating one is
idempotent per merchant and key, enforced by the unique (merchant, idempotency_key) constraint,
so two concurrent submissions of one key are one intent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction

from backoffice.actors import Actor
from backoffice.errors import DomainError, IdempotencyConflict, PolicyDenied, ValidationFailed
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers
from backoffice.money import CurrencyError, currency_exponent
from payments.models import CaptureMode, Customer, EventSource, Merchant, MerchantStatus, PaymentIntent
from payments.services.recording import payment_command, refusal_record


def require_no_card_numbers(**fields: Any) -> None:
    """Refuse any text that looks like a card number (13-19 digits passing Luhn, the platform's
    one detector). The message names the field, never the value."""
    for name, value in fields.items():
        if isinstance(value, str) and find_card_numbers(value):
            raise ValidationFailed(
                f"{name.replace('_', ' ')} contains what looks like a card number; cards are kept as brand, "
                "last four digits and the provider's fingerprint only"
            )


def require_amount(amount_minor: Any) -> int:
    # bool is an int subclass: True minor units is a bug, not an amount; floats are never rounded.
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ValidationFailed("the amount is a positive whole number of minor units")
    return amount_minor


def require_currency(currency: Any) -> str:
    code = str(currency or "").strip().upper()
    try:
        currency_exponent(code)
    except CurrencyError as exc:
        raise ValidationFailed(str(exc)) from exc
    return code


def _text(value: Any, label: str, *, max_length: int, required: bool) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ValidationFailed(f"{label} is required")
    if len(text) > max_length:
        raise ValidationFailed(f"{label} is longer than {max_length} characters")
    return text


def intent_create(
    *, merchant: Merchant, amount_minor: int, currency: str, business_type: str, business_id: str,
    idempotency_key: str, actor: Actor, now: dt.datetime, customer: Customer | None = None,
    capture_mode: str = CaptureMode.AUTOMATIC, description: str = "", source: str = EventSource.API,
) -> PaymentIntent:  # fmt: skip
    """Create a payment intent (REQUIRES_PAYMENT_METHOD) for an ACTIVE merchant.

    Idempotent per merchant and key: the same key with the same request returns the first intent
    (also when both arrive at once); with a different request it raises IdempotencyConflict.
    Raises ValidationFailed for a bad amount, currency, capture mode or reference, a customer of
    another merchant, or a card number anywhere; PolicyDenied for a merchant that is not active.
    Refusals are audited and change nothing."""
    try:
        key = _text(idempotency_key, "the idempotency key", max_length=128, required=True)
        request = {
            "amount_minor": require_amount(amount_minor),
            "currency": require_currency(currency),
            "business_type": _text(business_type, "the business type", max_length=48, required=True).upper(),
            "business_id": _text(business_id, "the business id", max_length=128, required=True),
            "customer_id": customer.pk if customer is not None else None,
            "capture_mode": str(capture_mode),
            "description": _text(description, "the description", max_length=200, required=False),
        }
        if request["capture_mode"] not in CaptureMode.values:
            raise ValidationFailed(f"the capture mode is one of {', '.join(CaptureMode.values)}")
        require_no_card_numbers(
            idempotency_key=key, business_type=request["business_type"], business_id=request["business_id"],
            description=request["description"],
        )  # fmt: skip
        if customer is not None and customer.merchant_id != merchant.pk:
            raise ValidationFailed(f"customer {customer.public_id} belongs to another merchant")
        existing = PaymentIntent.objects.filter(merchant=merchant, idempotency_key=key).first()
        if existing is not None:
            return _replay(existing, request)
        if merchant.status != MerchantStatus.ACTIVE:
            raise PolicyDenied(f"merchant {merchant.public_id} is {merchant.status.lower()}; it cannot take payments")
        with payment_command(actor=actor, now=now) as command:
            try:
                with transaction.atomic():
                    intent = PaymentIntent.objects.create(
                        public_id=new_public_id("pi"), merchant=merchant, idempotency_key=key, created_at=now,
                        updated_at=now, **request,
                    )  # fmt: skip
            except IntegrityError:
                # The same key committed first in another transaction: that intent is the answer.
                existing = PaymentIntent.objects.filter(merchant=merchant, idempotency_key=key).first()
                if existing is None:
                    raise
                return _replay(existing, request)
            data = {"amount_minor": intent.amount_minor, "currency": intent.currency,
                    "business_type": intent.business_type, "business_id": intent.business_id,
                    "capture_mode": intent.capture_mode}  # fmt: skip
            command.event(intent, "payment_intent.created", source=source, idempotency_key=key, data=data)
            command.audit(
                event_type="payments.payment_intent_created", action_type="CREATE_PAYMENT_INTENT",
                target_type="payment_intent", target_id=intent.public_id,
                after={**data, "merchant": merchant.public_id, "status": intent.status},
            )  # fmt: skip
        return intent
    except DomainError as exc:
        refusal_record(event_type="payments.payment_intent_create_refused", target_type="merchant",
                       target_id=merchant.public_id, exc=exc, actor=actor, now=now)  # fmt: skip
        raise


def _replay(existing: PaymentIntent, request: dict[str, Any]) -> PaymentIntent:
    differs = sorted(name for name, value in request.items() if getattr(existing, name) != value)
    if differs:
        raise IdempotencyConflict(
            f"this idempotency key created {existing.public_id} with a different request ({', '.join(differs)})"
        )
    return existing
