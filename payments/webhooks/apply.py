"""Applying a normalized provider event: the one place the webhook pipeline reaches into the
attempt, refund and payout services.

A webhook moves nothing by itself. It becomes a `ProviderOutcome` and goes through the same
`*_apply_outcome` service as the provider's answer to our call and an inquiry, with source WEBHOOK
and the raw event linked, so a webhook, its replay, an inquiry and a direct apply racing each
other have one effect: the services lock the object, and an answer already applied is a no-op.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backoffice.actors import Actor
from backoffice.errors import DomainError
from payments.models import (
    EventSource,
    NormalizedEventType,
    PaymentAttempt,
    Payout,
    ProviderEventNormalized,
    ProviderEventRaw,
    Refund,
)
from payments.services.attempts import attempt_apply_outcome
from payments.services.outcomes import OutcomeStatus, ProviderOutcome
from payments.services.payouts import payout_apply_outcome
from payments.services.refunds import refund_apply_outcome

_E = NormalizedEventType
# What each normalized event says, as (subject type, outcome status).
EVENT_OUTCOMES: dict[str, tuple[str, str]] = {
    _E.PAYMENT_AUTHORIZED: ("payment_attempt", OutcomeStatus.AUTHORIZED),
    _E.PAYMENT_SUCCEEDED: ("payment_attempt", OutcomeStatus.SUCCEEDED),
    _E.PAYMENT_DECLINED: ("payment_attempt", OutcomeStatus.DECLINED),
    _E.PAYMENT_FAILED: ("payment_attempt", OutcomeStatus.FAILED),
    _E.PAYMENT_EXPIRED: ("payment_attempt", OutcomeStatus.EXPIRED),
    _E.PAYMENT_CANCELED: ("payment_attempt", OutcomeStatus.CANCELED),
    _E.REFUND_SUCCEEDED: ("refund", OutcomeStatus.SUCCEEDED),
    _E.REFUND_FAILED: ("refund", OutcomeStatus.FAILED),
    _E.PAYOUT_PAID: ("payout", OutcomeStatus.SUCCEEDED),
    _E.PAYOUT_FAILED: ("payout", OutcomeStatus.FAILED),
    _E.PAYOUT_RETURNED: ("payout", OutcomeStatus.RETURNED),
}
_PREFIX = {"payment_attempt": "pa_", "refund": "rf_", "payout": "po_"}


class UnknownReference(DomainError):
    code = "UNKNOWN_REFERENCE"
    default_message = "The provider event names an object we do not have."


class UnsupportedEvent(DomainError):
    code = "UNSUPPORTED_EVENT_TYPE"
    default_message = "Events of this type are not applied automatically."


@dataclass(frozen=True)
class Applied:
    subject_type: str
    subject_id: str
    status_before: str
    status_after: str


def subject_of(normalized: ProviderEventNormalized) -> tuple[str, str]:
    """(subject type, our public id) the event is about; UnsupportedEvent or UnknownReference."""
    if normalized.event_type not in EVENT_OUTCOMES:
        raise UnsupportedEvent(
            f"{normalized.get_event_type_display()} events are not applied automatically; "
            "handle the event by hand and mark it poison"
        )
    subject_type, _ = EVENT_OUTCOMES[normalized.event_type]
    model, reference_field = _MODELS[subject_type]
    reference = normalized.our_reference
    if reference:
        if not reference.startswith(_PREFIX[subject_type]):
            raise UnknownReference(f"{reference} is not a {subject_type.replace('_', ' ')} id")
        if not model.objects.filter(public_id=reference).exists():
            raise UnknownReference(f"no {subject_type.replace('_', ' ')} {reference}")
        return subject_type, reference
    # A provider that names only its own reference: the one we recorded when it answered us.
    found = model.objects.filter(
        provider_code=normalized.provider_code, **{reference_field: normalized.provider_reference}
    ).values_list("public_id", flat=True)
    if not normalized.provider_reference or not found:
        raise UnknownReference(
            f"no {subject_type.replace('_', ' ')} with provider reference {normalized.provider_reference!r}"
        )
    return subject_type, found[0]


def outcome_of(normalized: ProviderEventNormalized) -> ProviderOutcome:
    _, status = EVENT_OUTCOMES[normalized.event_type]
    return ProviderOutcome(
        status=status, provider_code=normalized.provider_code, provider_reference=normalized.provider_reference,
        our_reference=normalized.our_reference, merchant_ref=normalized.merchant_ref,
        amount_minor=normalized.amount_minor, currency=normalized.currency, fee_minor=normalized.fee_minor,
        decline_code=normalized.reason_code, raw_status=str(normalized.data.get("provider_status", ""))[:64],
        occurred_at=normalized.occurred_at, data={"normalized_event": normalized.pk,
                                                  "mapper_version": normalized.mapper_version},
    )  # fmt: skip


def apply_normalized(
    *, normalized: ProviderEventNormalized, raw: ProviderEventRaw, actor: Actor, now: dt.datetime
) -> Applied:
    """Apply one normalized event through its subject's service. Raises what the service raises
    (OutcomeMismatch, OutcomeConflict, any DomainError) with nothing changed, and UnknownReference
    or UnsupportedEvent before calling anything."""
    subject_type, subject_id = subject_of(normalized)
    model, _ = _MODELS[subject_type]
    before = model.objects.filter(public_id=subject_id).values_list("status", flat=True).first()
    after = _SERVICES[subject_type](
        subject_id, outcome=outcome_of(normalized), source=EventSource.WEBHOOK, actor=actor, now=now,
        provider_event=raw,
    )  # fmt: skip
    return Applied(subject_type=subject_type, subject_id=subject_id, status_before=str(before), status_after=str(after))


_MODELS: dict[str, tuple[Any, str]] = {
    "payment_attempt": (PaymentAttempt, "provider_reference"),
    "refund": (Refund, "provider_refund_reference"),
    "payout": (Payout, "provider_payout_reference"),
}


def _apply_to_attempt(subject_id: str, **arguments) -> str:
    return attempt_apply_outcome(attempt_id=subject_id, **arguments).attempt.status


def _apply_to_refund(subject_id: str, **arguments) -> str:
    return refund_apply_outcome(refund_id=subject_id, **arguments).status


def _apply_to_payout(subject_id: str, **arguments) -> str:
    return payout_apply_outcome(payout_id=subject_id, **arguments).status


_SERVICES: dict[str, Callable[..., str]] = {
    "payment_attempt": _apply_to_attempt,
    "refund": _apply_to_refund,
    "payout": _apply_to_payout,
}
