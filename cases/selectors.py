"""Reads for the worklist and the case workbench. Every list has a fixed number of queries."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

from django.contrib.auth.models import Permission
from django.db.models import Exists, OuterRef, Q, QuerySet

from audit.models import AuditEvent
from backoffice.clock import business_day_start, business_timezone
from cases import permissions, registry
from cases.models import (
    DONE_STATUSES,
    CaseEvidence,
    CaseFinding,
    CaseLink,
    CaseNote,
    ExceptionOccurrence,
    OpsCase,
    OpsCaseGroupObjectPermission,
    OpsCaseUserObjectPermission,
    RedactionLevel,
)
from cases.services.lifecycle import TRANSITION_LABELS, legal_transitions, resolution_objections

PAGE_SIZE = 50
VIEWS = {
    "mine": "My cases",
    "team": "My team's queue",
    "unassigned": "Unassigned in my teams",
    "breached": "SLA breached",
    "due_soon": "Due soon",
    "all": "All I can see",
}
# sort key -> ((field, descending), ...); the last key is always the id, so the order is total.
SORTS = {
    "sla": (("sla_due_at", False), ("id", False)),
    "severity": (("severity_rank", True), ("sla_due_at", False), ("id", False)),
    "newest": (("created_at", True), ("id", True)),
    "updated": (("updated_at", True), ("id", True)),
}


def visible_cases(user) -> QuerySet[OpsCase]:
    """Cases the user may see: all with the global view permission (accepted deliberately: auditor,
    finance manager), otherwise those their team's group or they themselves were granted."""
    cases = OpsCase.objects.all()
    if user.has_perm(permissions.VIEW):
        return cases
    view = Permission.objects.filter(content_type__app_label="cases", codename="view_opscase")
    by_group = OpsCaseGroupObjectPermission.objects.filter(
        content_object=OuterRef("pk"), group__in=user.groups.all(), permission__in=view
    )
    by_user = OpsCaseUserObjectPermission.objects.filter(content_object=OuterRef("pk"), user=user, permission__in=view)
    return cases.filter(Q(Exists(by_group)) | Q(Exists(by_user)))


@dataclass
class WorklistFilters:
    view: str = "team"
    status: str = ""
    severity: str = ""
    case_type: str = ""
    owner_team: str = ""
    source_system: str = ""
    min_age_hours: int | None = None
    business_date: dt.date | None = None
    sort: str = "sla"


@dataclass
class WorklistPage:
    cases: list[OpsCase]
    next_cursor: str | None
    counts: dict[str, int] = field(default_factory=dict)


def _encode(values: list) -> str:
    plain = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, keys) -> list:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise ValueError("the page cursor is not valid; start from the first page") from exc
    if not isinstance(raw, list) or len(raw) != len(keys):
        raise ValueError("the page cursor is not valid; start from the first page")
    return [dt.datetime.fromisoformat(v) if name.endswith("_at") else v for (name, _), v in zip(keys, raw, strict=True)]


def _after(keys, values) -> Q:
    """Rows strictly after `values` in the (multi-column) order `keys`."""
    condition = Q()
    for i, (name, descending) in enumerate(keys):
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[i]})
        for j in range(i):
            step &= Q(**{keys[j][0]: values[j]})
        condition |= step
    return condition


def worklist(*, user, filters: WorklistFilters, now: dt.datetime, cursor: str = "", size: int = PAGE_SIZE):
    """A page of the worklist. Two queries whatever the page size (cases with owners; then the
    next-page probe is the extra row)."""
    cases = visible_cases(user)
    teams = sorted(permissions.user_teams(user))
    view = filters.view if filters.view in VIEWS else "team"
    if view == "mine":
        cases = cases.filter(owner_user=user)
    elif view == "team":
        cases = cases.filter(owner_team__in=teams)
    elif view == "unassigned":
        cases = cases.filter(owner_team__in=teams, owner_user__isnull=True)
    elif view == "breached":
        cases = cases.filter(sla_due_at__lt=now)
    elif view == "due_soon":
        cases = cases.filter(sla_warn_at__lte=now, sla_due_at__gte=now)
    if view != "all" and not filters.status:
        cases = cases.exclude(status__in=DONE_STATUSES)
    if filters.status:
        cases = cases.filter(status=filters.status)
    if filters.severity:
        cases = cases.filter(severity=filters.severity)
    if filters.case_type:
        cases = cases.filter(case_type=filters.case_type)
    if filters.owner_team:
        cases = cases.filter(owner_team=filters.owner_team)
    if filters.source_system:
        cases = cases.filter(source_system__iexact=filters.source_system)
    if filters.min_age_hours is not None:
        cases = cases.filter(created_at__lte=now - dt.timedelta(hours=filters.min_age_hours))
    if filters.business_date is not None:
        start = business_day_start(dt.datetime.combine(filters.business_date, dt.time(12), tzinfo=business_timezone()))
        cases = cases.filter(created_at__gte=start, created_at__lt=start + dt.timedelta(days=1))
    keys = SORTS.get(filters.sort, SORTS["sla"])
    if cursor:
        cases = cases.filter(_after(keys, _decode(cursor, keys)))
    order = [f"-{name}" if descending else name for name, descending in keys]
    rows = list(cases.select_related("owner_user").order_by(*order)[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = _encode([getattr(rows[-1], name) for name, _ in keys]) if has_more and rows else None
    return WorklistPage(cases=rows, next_cursor=next_cursor)


def case_for_user(*, user, case_number: str) -> OpsCase | None:
    """The case if this user may see it, else None (the view answers 404 either way)."""
    case = OpsCase.objects.select_related("owner_user").filter(case_number=case_number).first()
    if case is None or not permissions.can_view(user, case):
        return None
    return case


@dataclass(frozen=True)
class TimelineItem:
    at: dt.datetime
    kind: str  # event, note, evidence, finding, link, occurrence
    title: str
    actor: str
    body: str = ""
    detail: dict = field(default_factory=dict)
    obj: object = None


# Audit events whose content the timeline shows from the record itself (note text, file, ...).
_SHOWN_AS_RECORDS = {"case.note_added", "case.evidence_added", "case.finding_added", "case.linked"}


@dataclass
class Workbench:
    case: OpsCase
    timeline: list[TimelineItem]
    links: list[tuple[CaseLink, registry.LinkedObjectView | None]]
    evidence: list[CaseEvidence]
    findings: list[CaseFinding]
    occurrence_count: int
    transitions: list[tuple[str, str]]  # (name, label) legal now
    can_work: bool
    can_take: bool
    can_assign: bool
    team_members: list
    objections: list[str]


def case_workbench(*, user, case: OpsCase, occurrence_limit: int = 50, event_limit: int = 200) -> Workbench:
    notes = list(CaseNote.objects.filter(case=case))
    evidence = list(CaseEvidence.objects.filter(case=case))
    findings = list(CaseFinding.objects.filter(case=case).select_related("evidence"))
    links = list(CaseLink.objects.filter(case=case).order_by("id"))
    occurrences = list(ExceptionOccurrence.objects.filter(case=case).order_by("-id")[:occurrence_limit])
    events = list(
        AuditEvent.objects.filter(
            Q(target_type="ops_case", target_id=case.case_number) | Q(case_ref=case.case_number)
        ).order_by("-seq")[:event_limit]
    )
    timeline: list[TimelineItem] = []
    for ev in events:
        if ev.event_type in _SHOWN_AS_RECORDS:
            continue
        timeline.append(TimelineItem(
            at=ev.occurred_at, kind="event", title=ev.event_type, actor=ev.actor,
            body=ev.reason_text or ev.error_message,
            detail={"result": ev.result, "error_code": ev.error_code, "event_id": ev.event_id,
                    "correlation_id": ev.correlation_id, "before": ev.before, "after": ev.after,
                    "target": f"{ev.target_type} {ev.target_id}"},
        ))  # fmt: skip
    # A RESTRICTED note is read by the case's team, its assignee and auditors; other readers (a
    # checker with global view) see that it exists, not what it says.
    reads_restricted = (
        permissions.can_work(user, case)
        or permissions.is_team_member(user, case.owner_team)
        or user.has_perm("audit.view_auditevent")
    )
    for note in notes:
        hidden = note.redaction_level == RedactionLevel.RESTRICTED and not reads_restricted
        body = (
            f"Restricted note ({len(note.body)} characters): readable by the case's team, its assignee and auditors."
            if hidden
            else note.body
        )
        detail = {"redaction_level": note.redaction_level, "hidden": hidden}
        timeline.append(TimelineItem(note.created_at, "note", note.get_note_type_display(), note.created_by,
                                     body, detail, note))  # fmt: skip
    for item in evidence:
        detail = {"name": item.original_name, "sha256": item.sha256}
        timeline.append(TimelineItem(item.uploaded_at, "evidence", item.get_evidence_type_display(),
                                     item.uploaded_by, item.description, detail, item))  # fmt: skip
    for finding in findings:
        timeline.append(TimelineItem(finding.created_at, "finding", finding.get_finding_type_display(),
                                     finding.created_by, finding.conclusion,
                                     {"source": finding.source, "external_reference": finding.external_reference},
                                     finding))  # fmt: skip
    for link in links:
        timeline.append(TimelineItem(link.created_at, "link", f"{link.relation_type} {link.object_type}",
                                     link.created_by, link.object_id, {}, link))  # fmt: skip
    for occ in occurrences:
        timeline.append(TimelineItem(occ.occurred_at, "occurrence", f"{occ.error_code} ({occ.source_system})",
                                     "system", occ.normalized_message,
                                     {"trace_id": occ.trace_id, "severity": occ.reported_severity,
                                      "business_key": occ.business_key}, occ))  # fmt: skip
    timeline.sort(key=lambda item: item.at, reverse=True)
    described = registry.describe_links(links)
    worker = permissions.can_work(user, case)
    member = permissions.is_team_member(user, case.owner_team)
    return Workbench(
        case=case,
        timeline=timeline,
        links=[(link, described.get(link.pk)) for link in links],
        evidence=evidence,
        findings=findings,
        occurrence_count=case.occurrence_count,
        transitions=[(name, TRANSITION_LABELS[name]) for name in legal_transitions(case)] if worker else [],
        can_work=worker,
        can_take=case.is_open and member and case.owner_user_id is None,
        can_assign=case.is_open and (worker or (member and case.owner_user_id is None)),
        team_members=list(permissions.team_members(case.owner_team)) if (worker or member) else [],
        objections=resolution_objections(case) if worker and case.is_open else [],
    )


@dataclass(frozen=True)
class SlaState:
    """Where a case stands against its SLA at `now`, for the screens."""

    marker: str  # "breached", "due_soon", "stopped" (resolved, closed, cancelled) or "" (on time)
    remaining: dt.timedelta  # time left until due; negative when overdue

    @property
    def overdue(self) -> dt.timedelta:
        return -self.remaining


def sla_state(case: OpsCase, now: dt.datetime) -> SlaState:
    remaining = case.sla_due_at - now
    if case.status in DONE_STATUSES:
        return SlaState("stopped", remaining)
    if case.sla_breached_at is not None or remaining < dt.timedelta(0):
        return SlaState("breached", remaining)
    if case.sla_warn_at <= now:
        return SlaState("due_soon", remaining)
    return SlaState("", remaining)
