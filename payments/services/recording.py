"""How every payment command writes: its transitions, their payment events and its audit events,
in one transaction, with the audit events last.

    with payment_command(actor=actor, now=now) as command:
        command.transition(attempt, "succeed", source=EventSource.WEBHOOK, provider_event=raw)
        ...post journals...
        command.audit(event_type="payments.capture_posted", target_type="payment_attempt", target_id=...)

`transition` calls the django-fsm transition (an illegal one raises IllegalTransition and, the
block being atomic, nothing the command wrote survives), bumps the row's version, saves it and
writes the PaymentEvent (the timeline's backbone) at once. The audit events are appended when the
block ends: the audit chain is locked from its first append until commit, so appending last keeps
that lock short, as every other app does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models, transaction
from django_fsm import TransitionNotAllowed

from audit.context import current
from audit.models import AuditResult
from audit.services import audit_prepare, audit_record, audit_record_many
from backoffice.actors import Actor
from backoffice.errors import DomainError, IllegalTransition
from payments.models import PaymentAttempt, PaymentEvent, PaymentIntent, Payout, Refund

SUBJECT_TYPES = {PaymentIntent: "payment_intent", PaymentAttempt: "payment_attempt", Refund: "refund", Payout: "payout"}


def subject_type(obj: models.Model) -> str:
    return SUBJECT_TYPES[type(obj)]


def _status_field(obj: models.Model) -> str:
    return "processing_status" if hasattr(obj, "processing_status") else "status"


def _intent_of(obj: models.Model) -> PaymentIntent | None:
    if isinstance(obj, PaymentIntent):
        return obj
    return getattr(obj, "payment_intent", None)


def _merchant_id_of(obj: models.Model) -> int:
    if isinstance(obj, (PaymentIntent, Payout)):
        return obj.merchant_id
    return obj.payment_intent.merchant_id


class PaymentCommand:
    def __init__(self, *, actor: Actor, now: dt.datetime) -> None:
        self.actor = actor
        self.now = now
        self._audit: list = []

    def transition(
        self,
        obj: models.Model,
        name: str,
        *,
        source: str,
        occurred_at: dt.datetime | None = None,
        update_fields: tuple[str, ...] = (),
        idempotency_key: str = "",
        provider_reference: str = "",
        provider_event=None,
        inquiry=None,
        journal_ref: str = "",
        approval_ref: str = "",
        case_ref: str = "",
        data: dict[str, Any] | None = None,
    ) -> PaymentEvent:
        """Move `obj` (locked by the caller) through the transition `name`; write its payment event.
        `update_fields` names other fields the caller set on obj for this transition."""
        field = _status_field(obj)
        before = getattr(obj, field)
        kind = subject_type(obj)
        try:
            getattr(obj, name)()
        except TransitionNotAllowed:
            raise IllegalTransition(
                f"{kind.replace('_', ' ')} {obj.public_id} is {before}; it cannot {name.replace('_', ' ')}"
            ) from None
        obj.version += 1
        obj.updated_at = self.now
        obj.save(update_fields=[field, "version", "updated_at", *update_fields])
        after = getattr(obj, field)
        intent = _intent_of(obj)
        event = PaymentEvent.objects.create(
            merchant_id=_merchant_id_of(obj), payment_intent=intent, subject_type=kind, subject_id=obj.public_id,
            event_type=f"{kind}.{str(after).lower()}", from_status=before, to_status=after,
            occurred_at=occurred_at or self.now, recorded_at=self.now, source=source, actor=self.actor.label,
            correlation_id=current().correlation_id, idempotency_key=idempotency_key,
            provider_reference=provider_reference, provider_event=provider_event, inquiry=inquiry,
            journal_ref=journal_ref, approval_ref=approval_ref, case_ref=case_ref, data=data or {},
        )  # fmt: skip
        self.audit(
            event_type=f"payments.{kind}_{name}", target_type=kind, target_id=obj.public_id, case_ref=case_ref,
            approval_ref=approval_ref, before={"status": before}, after={"status": after, **(data or {})},
        )  # fmt: skip
        return event

    def event(
        self, obj: models.Model, event_type: str, *, source: str, data: dict | None = None, **fields
    ) -> PaymentEvent:
        """A timeline event that is not a status change (a provider answer that changed nothing,
        an inquiry queued, a refund reserved)."""
        intent = _intent_of(obj)
        status = getattr(obj, _status_field(obj))
        return PaymentEvent.objects.create(
            merchant_id=_merchant_id_of(obj), payment_intent=intent, subject_type=subject_type(obj),
            subject_id=obj.public_id, event_type=event_type, from_status=status, to_status=status,
            occurred_at=fields.pop("occurred_at", None) or self.now, recorded_at=self.now, source=source,
            actor=self.actor.label, correlation_id=current().correlation_id, data=data or {}, **fields,
        )  # fmt: skip

    def audit(self, **fields: Any) -> None:
        """An audit event appended when the command's block ends (fields as for audit_prepare)."""
        self._audit.append(audit_prepare(actor=self.actor, now=self.now, **fields))

    def flush(self) -> None:
        if self._audit:
            audit_record_many(self._audit)
            self._audit = []


@contextmanager
def payment_command(*, actor: Actor, now: dt.datetime) -> Iterator[PaymentCommand]:
    """One payment command: an atomic block whose audit events are appended last."""
    with transaction.atomic():
        command = PaymentCommand(actor=actor, now=now)
        yield command
        command.flush()


def refusal_record(
    *,
    event_type: str,
    target_type: str,
    target_id: str,
    exc: DomainError,
    actor: Actor,
    now: dt.datetime,
    **fields: Any,
) -> None:
    """Audit a refused command in its own transaction (the command's own rolled back)."""
    audit_record(
        event_type=event_type, result=AuditResult.REFUSED, actor=actor, now=now, target_type=target_type,
        target_id=target_id, error_code=exc.code, error_message=exc.message, **fields,
    )  # fmt: skip
