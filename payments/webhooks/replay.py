"""Operator commands on stored provider events: replay, release from quarantine, mark poison.

A replay re-runs the stored raw event through the same pipeline as a first delivery (the current
mapper, the same apply services); there is no shortcut that changes a payment's state directly,
and nothing here can edit a raw event or apply one whose signature did not verify. Each command
locks the event row, so a replay racing the task, a release or another replay has one effect.
Refusals change nothing and are audited in their own transaction.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, IllegalTransition, ValidationFailed
from backoffice.masking import find_card_numbers
from payments.models import EventProcessing, ProviderEventRaw
from payments.services.recording import refusal_record
from payments.webhooks.ingest import enqueue_processing
from payments.webhooks.process import (
    TARGET_TYPE,
    ProcessResult,
    WebhookOutcome,
    lock_event,
    process_locked,
    record_progress,
    snapshot,
)

E = EventProcessing


def _reason(reason_text: str) -> str:
    text = (reason_text or "").strip()
    if not text:
        raise ValidationFailed("say why: a reason is required")
    if find_card_numbers(text):
        raise ValidationFailed("the reason contains what looks like a card number; use the last four digits")
    return text


def _refuse(action: str, event_id: str, exc: DomainError, *, actor: Actor, now: dt.datetime, reason_text: str) -> None:
    refusal_record(
        event_type=f"payments.webhook_{action}_refused", target_type=TARGET_TYPE, target_id=str(event_id)[:128],
        exc=exc, actor=actor, now=now, action_type=_ACTION_TYPES[action], reason_text=reason_text,
    )  # fmt: skip


_ACTION_TYPES = {"replay": "REPLAY_WEBHOOK", "release": "RELEASE_WEBHOOK_FROM_QUARANTINE",
                 "poison": "MARK_WEBHOOK_POISON"}  # fmt: skip


def replay_refusal(event: ProviderEventRaw) -> IllegalTransition | None:
    """Why `event` cannot be replayed, or None. Shared with the action's validation."""
    if event.processing_status == E.POISON:
        why = f" ({event.failure_code})" if event.failure_code else ""
        return IllegalTransition(f"{event.public_id} is POISON{why}: it is never applied; nothing was replayed")
    if event.processing_status == E.DUPLICATE:
        first = event.duplicate_of.public_id if event.duplicate_of_id else "the first delivery"
        return IllegalTransition(
            f"{event.public_id} is a DUPLICATE delivery of {first}; replay {first} instead; nothing was replayed"
        )
    return None


def webhook_replay(*, event_id: str, actor: Actor, now: dt.datetime, reason_text: str) -> WebhookOutcome:
    """Re-run a stored event through the current pipeline.

    QUARANTINED: released and processed at once (PROCESSED, or QUARANTINED again with the new error
    and another case occurrence). RECEIVED (its task was lost): processed. PROCESSED: nothing
    changes (NO_CHANGE), so a second replay is harmless. POISON and DUPLICATE: refused with
    IllegalTransition. Raises NotFound, ValidationFailed (no reason); refusals are audited."""
    try:
        reason_text = _reason(reason_text)
        with transaction.atomic():
            event = lock_event(event_id)
            refusal = replay_refusal(event)
            if refusal is not None:
                raise refusal
            before = snapshot(event)
            if event.processing_status == E.PROCESSED:
                outcome = WebhookOutcome(
                    event=event, result=ProcessResult.NO_CHANGE,
                    message=f"{event.public_id} was already PROCESSED; replaying it changed nothing",
                )  # fmt: skip
            else:
                if event.processing_status == E.QUARANTINED:
                    record_progress(event, "release")
                outcome = process_locked(event, actor=actor, now=now)
            audit_record(
                event_type="payments.webhook_replayed", actor=actor, now=now, target_type=TARGET_TYPE,
                target_id=event.public_id, action_type="REPLAY_WEBHOOK", reason_text=reason_text,
                case_ref=outcome.case_number, before=before,
                after={**snapshot(event), "result": outcome.result, "message": outcome.message},
            )  # fmt: skip
            return outcome
    except DomainError as exc:
        _refuse("replay", event_id, exc, actor=actor, now=now, reason_text=reason_text)
        raise


def webhook_release(*, event_id: str, actor: Actor, now: dt.datetime, reason_text: str) -> ProviderEventRaw:
    """Move a QUARANTINED event back to RECEIVED and queue its processing after commit (the retry
    queue), for when the cause was outside the event (a missing reference since created, a fix
    deployed). Anything else is refused with IllegalTransition; refusals are audited."""
    try:
        reason_text = _reason(reason_text)
        with transaction.atomic():
            event = lock_event(event_id)
            if event.processing_status != E.QUARANTINED:
                raise IllegalTransition(
                    f"{event.public_id} is {event.processing_status}; only a QUARANTINED event can be released"
                )
            before = snapshot(event)
            record_progress(event, "release")
            audit_record(
                event_type="payments.webhook_released", actor=actor, now=now, target_type=TARGET_TYPE,
                target_id=event.public_id, action_type="RELEASE_WEBHOOK_FROM_QUARANTINE", reason_text=reason_text,
                before=before, after=snapshot(event),
            )  # fmt: skip
            enqueue_processing(event.public_id)
            return event
    except DomainError as exc:
        _refuse("release", event_id, exc, actor=actor, now=now, reason_text=reason_text)
        raise


def webhook_mark_poison(*, event_id: str, actor: Actor, now: dt.datetime, reason_text: str) -> ProviderEventRaw:
    """After investigation, mark a RECEIVED or QUARANTINED event POISON: it is never applied and
    never replayed. The reason is kept as its failure message. Refused (IllegalTransition) for a
    PROCESSED, DUPLICATE or already POISON event; refusals are audited."""
    try:
        reason_text = _reason(reason_text)
        with transaction.atomic():
            event = lock_event(event_id)
            if event.processing_status not in (E.RECEIVED, E.QUARANTINED):
                raise IllegalTransition(
                    f"{event.public_id} is {event.processing_status}; only a RECEIVED or QUARANTINED event can be "
                    "marked poison"
                )
            before = snapshot(event)
            event.failure_code, event.failure_message = "MARKED_POISON", reason_text
            event.processed_at = now
            record_progress(event, "poison", fields=("failure_code", "failure_message", "processed_at"))
            audit_record(
                event_type="payments.webhook_marked_poison", actor=actor, now=now, target_type=TARGET_TYPE,
                target_id=event.public_id, action_type="MARK_WEBHOOK_POISON", reason_text=reason_text,
                before=before, after=snapshot(event),
            )  # fmt: skip
            return event
    except DomainError as exc:
        _refuse("poison", event_id, exc, actor=actor, now=now, reason_text=reason_text)
        raise
