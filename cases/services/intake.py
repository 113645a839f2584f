"""Exception intake: every sighting of a problem becomes an occurrence on the one open case for its
root cause, so a retry storm is one case with many occurrences, not hundreds of cases."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from django.db import IntegrityError, transaction

from backoffice.actors import Actor
from backoffice.errors import DomainError, ValidationFailed
from backoffice.masking import mask_card_numbers
from cases.models import DONE_STATUSES, CaseLink, CaseType, ExceptionOccurrence, OpsCase, Severity
from cases.services.common import audit_case, audit_refusal, case_snapshot
from cases.services.lifecycle import DEFAULT_TEAM, case_escalate_severity, open_case_row

# Repeats raise severity: at these occurrence counts the case is at least this severe.
REPEAT_ESCALATION = ((5, Severity.MEDIUM), (20, Severity.HIGH))

_VOLATILE = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(z|[+-]\d{2}:?\d{2})?\b"), "<time>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{16,}\b"), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalize_detail(detail: str) -> str:
    """The message without what changes between sightings of the same problem (ids, times,
    numbers), so two retries of one failure normalise to the same text."""
    text = mask_card_numbers(detail or "").strip().lower()
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text.strip()[:2000]


def exception_fingerprint(*, source_system: str, business_key: str, exception_type: str, error_code: str,
                          normalized_detail: str) -> str:  # fmt: skip
    """Same source, business key, type, error code and normalised detail: same root cause. A
    different error on the same business key is a different problem (never merged)."""
    parts = [source_system.strip().upper(), business_key.strip(), exception_type.strip().upper(),
             error_code.strip().upper(), hashlib.sha256(normalized_detail.encode()).hexdigest()]  # fmt: skip
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _open_case_for(fingerprint: str) -> OpsCase | None:
    return (
        OpsCase.objects.select_for_update(of=("self",))
        .filter(fingerprint=fingerprint)
        .exclude(status__in=DONE_STATUSES)
        .first()
    )


def exception_report(
    *, source_system: str, business_key: str, exception_type: str, error_code: str, detail: str, severity: str,
    now: dt.datetime, actor: Actor, case_type: str = CaseType.PAYMENT_INVESTIGATION, title: str = "",
    merchant_ref: str = "", trace_id: str = "", raw_evidence_ref: str = "", occurred_at: dt.datetime | None = None,
) -> tuple[OpsCase, bool]:  # fmt: skip
    """Record one sighting. Returns (case, opened): the open case with this fingerprint gains an
    occurrence (count + 1; severity rises to the reported one and on repeats); otherwise a new case
    opens in the team queue for its type. A resolved or closed case with the same fingerprint is
    linked from the new case (RECURRENCE_OF), never silently reopened. A partial unique index keeps
    one open case per fingerprint when many reporters race; the losers join the winner's case."""
    try:
        return _report(
            source_system=source_system, business_key=business_key, exception_type=exception_type,
            error_code=error_code, detail=detail, severity=severity, now=now, actor=actor, case_type=case_type,
            title=title, merchant_ref=merchant_ref, trace_id=trace_id, raw_evidence_ref=raw_evidence_ref,
            occurred_at=occurred_at,
        )  # fmt: skip
    except DomainError as exc:
        audit_refusal(f"{source_system}:{business_key}"[:64], "EXCEPTION_REPORT", exc, actor=actor, now=now)
        raise


def _report(*, source_system, business_key, exception_type, error_code, detail, severity, now, actor, case_type,
            title, merchant_ref, trace_id, raw_evidence_ref, occurred_at) -> tuple[OpsCase, bool]:  # fmt: skip
    for name, value in (("source_system", source_system), ("business_key", business_key),
                        ("exception_type", exception_type), ("error_code", error_code)):  # fmt: skip
        if not (value or "").strip():
            raise ValidationFailed(f"an exception report needs {name}")
    if severity not in Severity.values or case_type not in CaseType.values:
        raise ValidationFailed(f"unknown severity {severity!r} or case type {case_type!r}")
    # Whatever a reporting system sends, no card number is stored or fingerprinted.
    business_key, trace_id = mask_card_numbers(business_key.strip()), mask_card_numbers(trace_id)
    title, raw_evidence_ref = mask_card_numbers(title), mask_card_numbers(raw_evidence_ref)
    normalized = normalize_detail(detail)
    fingerprint = exception_fingerprint(
        source_system=source_system, business_key=business_key, exception_type=exception_type,
        error_code=error_code, normalized_detail=normalized,
    )  # fmt: skip
    with transaction.atomic():
        case, opened = _open_case_for(fingerprint), False
        if case is None:
            try:
                with transaction.atomic():  # a savepoint: a racing reporter may win the insert
                    case = _open_new(fingerprint, source_system, business_key, exception_type, error_code, normalized,
                                     severity, case_type, title, merchant_ref, actor, now)  # fmt: skip
                    opened = True
            except IntegrityError as exc:
                if "cases_one_open_case_per_fingerprint" not in str(exc):
                    raise
                case = _open_case_for(fingerprint)  # the winner has committed; join its case
                if case is None:
                    raise
        ExceptionOccurrence.objects.create(
            case=case, occurred_at=occurred_at or now, recorded_at=now, source_system=source_system,
            business_key=business_key, exception_type=exception_type, error_code=error_code,
            normalized_message=normalized, reported_severity=severity, raw_evidence_ref=raw_evidence_ref[:200],
            trace_id=trace_id[:64],
        )  # fmt: skip
        case.occurrence_count += 1
        case.last_occurred_at = max(filter(None, [case.last_occurred_at, occurred_at or now]))
        case.version += 1
        case.updated_at = now
        case.save(update_fields=["occurrence_count", "last_occurred_at", "version", "updated_at"])
        if not opened:
            audit_case(
                case, "case.occurrence_recorded", actor=actor, now=now, action_type="EXCEPTION_REPORT",
                after={"occurrence_count": case.occurrence_count, "error_code": error_code, "trace_id": trace_id},
            )  # fmt: skip
            wanted = max(
                [severity] + [level for count, level in REPEAT_ESCALATION if case.occurrence_count >= count],
                key=lambda s: ["LOW", "MEDIUM", "HIGH", "CRITICAL"].index(s),
            )
            case_escalate_severity(
                case, wanted, actor=actor, now=now,
                why=f"{case.occurrence_count} occurrences; latest reported as {severity}",
            )  # fmt: skip
        return case, opened


def _open_new(fingerprint, source_system, business_key, exception_type, error_code, normalized, severity, case_type,
              title, merchant_ref, actor, now) -> OpsCase:  # fmt: skip
    case = open_case_row(
        case_type=case_type, severity=severity,
        title=(title or f"{source_system} {exception_type} {error_code} on {business_key}")[:200],
        description=normalized, owner_team=DEFAULT_TEAM[CaseType(case_type)], actor=actor, now=now,
        merchant_ref=merchant_ref, source_system=source_system, business_key=business_key, fingerprint=fingerprint,
    )  # fmt: skip
    previous = (
        OpsCase.objects.filter(fingerprint=fingerprint, status__in=DONE_STATUSES)
        .exclude(pk=case.pk)
        .order_by("-id")
        .first()
    )
    if previous is not None:
        CaseLink.objects.create(
            case=case, object_type="ops_case", object_id=previous.case_number, relation_type="RECURRENCE_OF",
            created_by=actor.label, created_at=now,
        )  # fmt: skip
    audit_case(
        case, "case.opened", actor=actor, now=now, action_type="EXCEPTION_REPORT",
        after={**case_snapshot(case), "fingerprint": fingerprint,
               "recurrence_of": previous.case_number if previous else None},
    )  # fmt: skip
    return case
