"""Processing a stored provider event: map it (once per mapper version), apply it through the
attempt/refund/payout services, and end it PROCESSED or QUARANTINED.

One transaction per run, holding the raw event's row lock throughout, so two runs of the same event
(a redelivered task, a replay, a release) are serialised and the second finds it no longer
RECEIVED and does nothing. Inside it the application runs in a savepoint: when it is refused, its
writes roll back alone while the quarantine, the case occurrence and their audit events commit.

Lock order: raw event, then what the subject's service locks (intent, attempt, ledger accounts),
then the audit chain. On a refusal the savepoint's rollback gives back every lock the service took,
the audit chain's included, so the case is locked before the chain is taken again, the order every
case command uses. The service's own refusal event is rolled back with the savepoint; the
quarantine's audit event records the same code, message, mismatch and reference in its place.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import DatabaseError, transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, NotFound
from backoffice.masking import mask_card_numbers
from cases.models import CaseType, Severity
from cases.services import case_link_record, exception_report
from payments.models import EventProcessing, ProviderEventNormalized, ProviderEventRaw
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch
from payments.webhooks import apply
from payments.webhooks.mappers import current_mapper

logger = logging.getLogger(__name__)

TARGET_TYPE = "provider_event"
SOURCE_SYSTEM = "payments.webhooks"
EXCEPTION_TYPE = "WEBHOOK_QUARANTINED"
MAX_MESSAGE = 2000  # a failure message is shown to operators; an error quoting a huge field is cut


class ProcessResult:
    PROCESSED = "PROCESSED"
    QUARANTINED = "QUARANTINED"
    NO_CHANGE = "NO_CHANGE"


@dataclass(frozen=True)
class WebhookOutcome:
    """What a processing run (or a replay) did to one event."""

    event: ProviderEventRaw
    result: str  # a ProcessResult value
    message: str
    case_number: str = ""

    @property
    def changed(self) -> bool:
        return self.result != ProcessResult.NO_CHANGE


def lock_event(event_id: str) -> ProviderEventRaw:
    # FOR NO KEY UPDATE: only status columns change, and a duplicate delivery committing meanwhile
    # must still be able to reference this row (its foreign key check takes FOR KEY SHARE at
    # commit, after its audit event took the chain lock this run is about to wait for).
    event = ProviderEventRaw.objects.select_for_update(no_key=True).filter(public_id=event_id).first()
    if event is None:
        raise NotFound(f"no provider event {event_id}")
    return event


def record_progress(event: ProviderEventRaw, transition: str, *, fields: tuple[str, ...] = ()) -> None:
    """Move a locked event through `transition` and save it (only the columns the immutability
    trigger lets change); every change bumps the version the recorded actions compare."""
    before = event.processing_status
    getattr(event, transition)()
    event.version += 1
    event.save(update_fields=["processing_status", "version", *fields])
    logger.info("provider event %s %s -> %s", event.public_id, before, event.processing_status)


def snapshot(event: ProviderEventRaw) -> dict:
    return {"status": event.processing_status, "failure_code": event.failure_code,
            "processing_count": event.processing_count, "version": event.version}  # fmt: skip


def webhook_process(*, event_id: str, actor: Actor, now: dt.datetime) -> WebhookOutcome:
    """Process one stored event if it is RECEIVED; any other status is left as it is (NO_CHANGE),
    so running this twice, or after a replay, has one effect.

    Success: the normalized row for the current mapper version (written once, reused on a later
    run), the subject's transition and journals through its service, the event PROCESSED. A
    mapping error, OutcomeMismatch, OutcomeConflict, an unknown reference or any other DomainError:
    nothing applied, the event QUARANTINED with the error's code and message, and an occurrence
    reported to cases (fingerprint: provider, error code and reference, so repeats join one case).
    Raises NotFound for an unknown event id; database errors propagate (the task retries)."""
    with transaction.atomic():
        event = lock_event(event_id)
        if event.processing_status != EventProcessing.RECEIVED:
            return WebhookOutcome(
                event=event, result=ProcessResult.NO_CHANGE,
                message=f"{event.public_id} is {event.processing_status}; nothing to process",
            )  # fmt: skip
        return process_locked(event, actor=actor, now=now)


def process_locked(event: ProviderEventRaw, *, actor: Actor, now: dt.datetime) -> WebhookOutcome:
    """Run the pipeline on a RECEIVED event the caller has locked, inside the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("process_locked runs inside the caller's transaction")
    normalized = None
    try:
        normalized = _normalize(event, now=now)
        with transaction.atomic():
            applied = apply.apply_normalized(normalized=normalized, raw=event, actor=actor, now=now)
    except DomainError as exc:
        return _quarantine(event, exc, normalized=normalized, actor=actor, now=now)
    except DatabaseError:
        raise
    except Exception as exc:
        # A defect, not a refusal: quarantined (visible, replayable once fixed) rather than left
        # RECEIVED for ever behind a failing task.
        logger.exception("provider event %s: unexpected error while processing", event.public_id)
        error = DomainError(f"unexpected {exc.__class__.__name__} while processing: {exc}")
        error.code = "PROCESSING_ERROR"
        return _quarantine(event, error, normalized=normalized, actor=actor, now=now)
    before = snapshot(event)
    event.failure_code, event.failure_message = "", ""
    event.processed_at = now
    event.processing_count += 1
    record_progress(event, "mark_processed",
                    fields=("failure_code", "failure_message", "processed_at", "processing_count"))  # fmt: skip
    message = (
        f"{normalized.get_event_type_display()} applied to {applied.subject_id} "
        f"({applied.status_before} -> {applied.status_after}) by mapper {normalized.mapper_version}"
    )
    audit_record(
        event_type="payments.webhook_processed", actor=actor, now=now, target_type=TARGET_TYPE,
        target_id=event.public_id, action_type="PROCESS_WEBHOOK", before=before,
        after={**snapshot(event), "mapper_version": normalized.mapper_version, "event_type": normalized.event_type,
               "subject_type": applied.subject_type, "subject_id": applied.subject_id,
               "subject_status": applied.status_after},
    )  # fmt: skip
    return WebhookOutcome(event=event, result=ProcessResult.PROCESSED, message=message)


def _normalize(event: ProviderEventRaw, *, now: dt.datetime) -> ProviderEventNormalized:
    """The event as the current mapper reads it: its row for that version, written on first use.
    The raw row is locked, so two runs never race to write the same version."""
    mapper = current_mapper(event.provider_code)
    existing = ProviderEventNormalized.objects.filter(raw_event=event, mapper_version=mapper.version).first()
    if existing is not None:
        return existing
    fields = mapper.map(bytes(event.body))
    return ProviderEventNormalized.objects.create(
        raw_event=event, mapper_version=mapper.version, event_type=fields.event_type,
        provider_code=event.provider_code, provider_reference=fields.provider_reference,
        our_reference=fields.our_reference, merchant_ref=fields.merchant_ref, amount_minor=fields.amount_minor,
        currency=fields.currency, fee_minor=fields.fee_minor, reason_code=fields.reason_code,
        occurred_at=fields.occurred_at, data=fields.data, created_at=now,
    )  # fmt: skip


def _severity(exc: DomainError) -> str:
    # A disagreement about money or about a final state is a possible loss; the rest blocks a
    # state change until someone looks.
    return Severity.HIGH if isinstance(exc, (OutcomeMismatch, OutcomeConflict)) else Severity.MEDIUM


def _reference(event: ProviderEventRaw, exc: DomainError, normalized: ProviderEventNormalized | None) -> str:
    if normalized is not None:
        return normalized.our_reference or normalized.provider_reference or event.provider_event_id or event.public_id
    return getattr(exc, "reference", "") or event.provider_event_id or event.public_id


def _quarantine(
    event: ProviderEventRaw, exc: DomainError, *, normalized: ProviderEventNormalized | None, actor: Actor,
    now: dt.datetime,
) -> WebhookOutcome:  # fmt: skip
    code = (exc.code or "DOMAIN_ERROR")[:64]
    message = mask_card_numbers(exc.message, standalone=True)[:MAX_MESSAGE]  # keeps references whole
    reference = _reference(event, exc, normalized)
    merchant_ref = normalized.merchant_ref if normalized is not None else getattr(exc, "merchant_ref", "")
    case_number = _report(event, code=code, message=message, reference=reference, merchant_ref=merchant_ref,
                          severity=_severity(exc), actor=actor, now=now)  # fmt: skip
    before = snapshot(event)
    event.failure_code, event.failure_message = code, message
    event.processed_at = now
    event.processing_count += 1
    record_progress(event, "quarantine",
                    fields=("failure_code", "failure_message", "processed_at", "processing_count"))  # fmt: skip
    audit_record(
        event_type="payments.webhook_quarantined", result=AuditResult.FAILED, actor=actor, now=now,
        target_type=TARGET_TYPE, target_id=event.public_id, action_type="PROCESS_WEBHOOK", case_ref=case_number,
        error_code=code, error_message=message, before=before,
        after={**snapshot(event), "reference": reference, "mismatch": getattr(exc, "mismatch", None),
               "mapper_version": normalized.mapper_version if normalized is not None else None},
    )  # fmt: skip
    logger.warning("provider event %s quarantined: %s %s", event.public_id, code, message)
    return WebhookOutcome(event=event, result=ProcessResult.QUARANTINED, message=f"{code}: {message}",
                          case_number=case_number)  # fmt: skip


def _report(
    event: ProviderEventRaw, *, code: str, message: str, reference: str, merchant_ref: str, severity: str,
    actor: Actor, now: dt.datetime,
) -> str:  # fmt: skip
    """An occurrence on the open case for (provider, error code, reference), linked to the event.
    The detail is fixed per error code so the fingerprint is exactly those three; the message of
    each sighting is on the event and in the audit trail. A refusal by cases leaves the event
    quarantined without a case (logged): the quarantine queue still shows it."""
    try:
        with transaction.atomic():
            case, _ = exception_report(
                source_system=SOURCE_SYSTEM, business_key=f"{event.provider_code}:{reference}"[:128],
                exception_type=EXCEPTION_TYPE, error_code=code, detail=f"provider event quarantined: {code}",
                severity=severity, now=now, actor=actor, case_type=CaseType.PAYMENT_INVESTIGATION,
                title=f"Webhook quarantined ({code}) for {reference}: {message}"[:200], merchant_ref=merchant_ref,
                trace_id=event.public_id, raw_evidence_ref=f"provider_event:{event.public_id}",
                occurred_at=event.received_at,
            )  # fmt: skip
            case_link_record(case_number=case.case_number, object_type=TARGET_TYPE, object_id=event.public_id,
                             relation_type="RELATES_TO", actor=actor, now=now)  # fmt: skip
    except DomainError as exc:
        logger.error("provider event %s: no case for its quarantine: %s %s", event.public_id, exc.code, exc.message)
        return ""
    return case.case_number
