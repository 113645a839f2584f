"""Reads of the audit trail: filtered, keyset-paginated, fixed query count."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from audit.models import AuditEvent
from backoffice.clock import business_timezone

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    event_type: str = ""
    result: str = ""
    date_from: dt.date | None = None  # business-timezone dates, inclusive
    date_to: dt.date | None = None


def _filtered(f: AuditFilter) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if f.actor:
        qs = qs.filter(actor=f.actor)
    if f.target_type:
        qs = qs.filter(target_type=f.target_type)
    if f.target_id:
        qs = qs.filter(target_id=f.target_id)
    if f.event_type:
        qs = qs.filter(event_type=f.event_type)
    if f.result:
        qs = qs.filter(result=f.result)
    tz = business_timezone()
    if f.date_from:
        qs = qs.filter(occurred_at__gte=dt.datetime.combine(f.date_from, dt.time.min, tzinfo=tz))
    if f.date_to:
        qs = qs.filter(occurred_at__lt=dt.datetime.combine(f.date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz))
    return qs


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    next_before: int | None  # pass as ?before= for the next (older) page


def audit_event_page(*, filters: AuditFilter, before: int | None = None, size: int = PAGE_SIZE) -> AuditPage:
    """Newest first; one query whatever the page size (fetches one extra row to know if more exist)."""
    qs = _filtered(filters).order_by("-seq")
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return AuditPage(events=rows, next_before=rows[-1].seq if has_more else None)


def audit_event_export_rows(*, filters: AuditFilter, chunk_size: int = 2000):
    """All matching events, newest first, streamed from a server-side cursor."""
    return _filtered(filters).order_by("-seq").iterator(chunk_size=chunk_size)


def audit_event_get(*, event_id: str) -> AuditEvent | None:
    return AuditEvent.objects.filter(event_id=event_id).first()


def audit_events_for_targets(*, targets: list[tuple[str, str]], limit: int = 100) -> list[AuditEvent]:
    """The events about any of these (target_type, target_id) objects, oldest first (a timeline).
    Uses the (target_type, target_id, seq) index; `limit` keeps a busy object's page bounded."""
    wanted = [(t, i) for t, i in targets if t and i]
    if not wanted:
        return []
    condition = Q()
    for target_type, target_id in wanted:
        condition |= Q(target_type=target_type, target_id=target_id)
    return list(reversed(AuditEvent.objects.filter(condition).order_by("-seq")[:limit]))
