"""Opening a case about a payment from its page: the case and its link to the payment in one
transaction, so a case never exists without the payment it is about."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.urls import NoReverseMatch, reverse

from backoffice.actors import Actor
from backoffice.errors import NotFound
from backoffice.money import Money
from cases.models import OpsCase
from cases.services import case_link_record, case_open
from payments.models import PaymentAttempt, PaymentIntent

PAYMENT_INTENT = "payment_intent"


def payment_case_open(
    *, intent_id: str, case_type: str, severity: str, title: str, description: str, actor: Actor, now: dt.datetime,
    idempotency_key: str,
) -> OpsCase:  # fmt: skip
    """Open a case for the payment's merchant and customer and link the payment to it (AFFECTS).
    The same idempotency key returns the case it opened, linked once. Raises what case_open raises
    (PermissionMissing without cases.add_opscase, ValidationFailed) and NotFound for an unknown
    payment; nothing is written then."""
    intent = PaymentIntent.objects.select_related("merchant", "customer").filter(public_id=intent_id).first()
    if intent is None:
        raise NotFound(f"no payment intent {intent_id}")
    customer_ref = intent.customer.public_id if intent.customer_id else ""
    with transaction.atomic():
        case = case_open(
            case_type=case_type, severity=severity, title=title, description=description, actor=actor, now=now,
            merchant_ref=intent.merchant.public_id, customer_ref=customer_ref, idempotency_key=idempotency_key,
        )  # fmt: skip
        case_link_record(case_number=case.case_number, object_type=PAYMENT_INTENT, object_id=intent.public_id,
                         relation_type="AFFECTS", actor=actor, now=now)  # fmt: skip
    return case


def _payment_url(intent_id: str) -> str:
    try:
        return reverse("payments:payment_detail", args=[intent_id])
    except NoReverseMatch:
        return ""


def describe_intents(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked payment intent (one query per page)."""
    return {
        i.public_id: {"label": i.public_id, "status": i.status, "url": _payment_url(i.public_id),
                      "detail": f"{Money(i.amount_minor, i.currency)} · {i.merchant.name} · {i.business_id}"}
        for i in PaymentIntent.objects.filter(public_id__in=ids).select_related("merchant")
    }  # fmt: skip


def describe_attempts(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked payment attempt (one query per page)."""
    return {
        a.public_id: {"label": a.public_id, "status": a.status, "url": _payment_url(a.payment_intent.public_id),
                      "detail": f"{Money(a.amount_minor, a.currency)} of {a.payment_intent.public_id}"}
        for a in PaymentAttempt.objects.filter(public_id__in=ids).select_related("payment_intent")
    }  # fmt: skip
