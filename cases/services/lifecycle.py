"""Opening, assigning and moving cases through their states; the SLA sweep."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, connection, transaction
from django_fsm import TransitionNotAllowed, can_proceed

from backoffice.actors import Actor
from backoffice.clock import business_timezone
from backoffice.errors import IllegalTransition, PolicyDenied, ValidationFailed
from backoffice.masking import find_card_numbers
from cases import permissions, registry
from cases.models import (
    PRIORITY_FOR_SEVERITY,
    SEVERITY_RANK,
    CaseStatus,
    CaseType,
    FindingType,
    OpsCase,
    ResolutionCode,
    Severity,
    Team,
)
from cases.services.common import (
    acting_user,
    audit_case,
    audit_refusal,
    case_snapshot,
    check_version,
    lock_case,
    replayed,
    require_global,
    require_visible,
    require_worker,
    run_command,
    save_case,
)
from cases.sla import sla_clock

# Which team's queue a new case lands in, by type (a case can be routed elsewhere afterwards).
DEFAULT_TEAM = {
    CaseType.SUPPORT: Team.SUPPORT_OPS,
    CaseType.PAYMENT_INVESTIGATION: Team.PAYMENT_OPS,
    CaseType.RECONCILIATION_BREAK: Team.FINANCE_OPS,
    CaseType.SETTLEMENT_EXCEPTION: Team.FINANCE_OPS,
    CaseType.RISK_REVIEW: Team.RISK_OPS,
    CaseType.COMPLIANCE_REVIEW: Team.COMPLIANCE_OPS,
    CaseType.DISPUTE: Team.PAYMENT_OPS,
    CaseType.INCIDENT: Team.SRE,
}

# Transitions an operator may ask for by name. WAITING_APPROVAL is entered and left by the
# approvals engine, not by hand.
OPERATOR_TRANSITIONS = ("triage", "start", "wait_external", "resume", "resolve", "close", "reopen", "cancel")
TRANSITION_LABELS = {
    "triage": "Triage", "start": "Start work", "wait_external": "Wait on external party", "resume": "Resume",
    "resolve": "Resolve", "close": "Close", "reopen": "Reopen", "cancel": "Cancel",
    "wait_approval": "Wait on approval",
}  # fmt: skip


def next_case_number(now: dt.datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('cases_case_number_seq')")
        (n,) = cursor.fetchone()
    return f"CASE-{now.astimezone(business_timezone()).year}-{n:06d}"


def _validate_text(value: str, field: str, *, required: bool = True, limit: int = 10_000) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationFailed(f"{field} is required")
    if len(value) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters")
    if find_card_numbers(value):
        raise ValidationFailed(
            f"{field} contains what looks like a full card number; never paste a card number into a case "
            "(use the last four digits)"
        )
    return value


def open_case_row(
    *, case_type: str, severity: str, title: str, description: str, owner_team: str, actor: Actor,
    now: dt.datetime, merchant_ref: str = "", customer_ref: str = "", source_system: str = "",
    business_key: str = "", fingerprint: str = "", open_key: str = "",
) -> OpsCase:  # fmt: skip
    """Insert a case and grant its team the view; the caller owns the transaction and the audit."""
    clock = sla_clock(severity=severity, case_type=case_type, start=now)
    case = OpsCase(
        case_number=next_case_number(now), case_type=case_type, severity=severity,
        severity_rank=SEVERITY_RANK[Severity(severity)], priority=PRIORITY_FOR_SEVERITY[Severity(severity)],
        title=title, description=description, merchant_ref=merchant_ref, customer_ref=customer_ref,
        owner_team=owner_team, created_by=actor.label, created_at=now, updated_at=now,
        sla_due_at=clock.due_at, sla_warn_at=clock.warn_at, source_system=source_system,
        business_key=business_key, fingerprint=fingerprint, open_key=open_key,
    )  # fmt: skip
    case.save(force_insert=True)
    permissions.grant_team(case, owner_team)
    return case


def case_open(
    *, case_type: str, severity: str, title: str, description: str = "", actor: Actor, now: dt.datetime,
    owner_team: str = "", merchant_ref: str = "", customer_ref: str = "", idempotency_key: str = "",
) -> OpsCase:  # fmt: skip
    """Open a case by hand. It lands in `owner_team`'s queue (default: the team for its type),
    unassigned, with its SLA clock running; whoever opened it may keep reading it. Needs the
    global cases.add_opscase. The same idempotency key returns the case it opened (a double
    submit is one case, also when both arrive at once)."""

    def body():
        user = acting_user(actor)
        require_global(user, permissions.ADD, "Opening a case")
        earlier = replayed(OpsCase, idempotency_key, None, "opening a case")
        if earlier is not None:
            return earlier
        if case_type not in CaseType.values:
            raise ValidationFailed(f"unknown case type {case_type!r}")
        if severity not in Severity.values:
            raise ValidationFailed(f"unknown severity {severity!r}")
        team = owner_team or DEFAULT_TEAM[CaseType(case_type)]
        if team not in Team.values:
            raise ValidationFailed(f"unknown team {team!r}")
        try:
            with transaction.atomic():  # a savepoint: a concurrent double submit may win the key
                case = open_case_row(
                    case_type=case_type, severity=severity, title=_validate_text(title, "title", limit=200),
                    description=_validate_text(description, "description", required=False), owner_team=team,
                    actor=actor, now=now, open_key=idempotency_key,
                    merchant_ref=_validate_text(merchant_ref, "merchant reference", required=False, limit=64),
                    customer_ref=_validate_text(customer_ref, "customer reference", required=False, limit=64),
                )  # fmt: skip
        except IntegrityError as exc:
            if "cases_open_once_per_key" not in str(exc):
                raise
            return replayed(OpsCase, idempotency_key, None, "opening a case")
        if user is not None:
            permissions.grant_viewer(case, user.pk)
        audit_case(case, "case.opened", actor=actor, now=now, action_type="CASE_OPEN", after=case_snapshot(case))
        return case

    return run_command("new case", "CASE_OPEN", actor, now, body)


def case_assign(
    *, case_number: str, assignee_id: int | None, actor: Actor, now: dt.datetime, team: str = "",
    expected_version: int | None = None, reason_text: str = "",
) -> OpsCase:  # fmt: skip
    """Give the case to a member of its team (or back to the queue with assignee None), or route it
    to another team's queue. Allowed to the current assignee, or to a team member while the case is
    unassigned. The assignee gets change rights on the case; the previous assignee loses them."""

    def body():
        user = acting_user(actor)
        case = lock_case(case_number)
        require_visible(user, case)
        check_version(case, expected_version)
        if not case.is_open:
            raise IllegalTransition(f"{case.case_number} is {case.get_status_display().lower()}; reopen it first")
        if user is not None:
            is_assignee = case.owner_user_id == user.pk
            if not is_assignee and (case.owner_user_id or not permissions.is_team_member(user, case.owner_team)):
                if case.owner_user_id and assignee_id == user.pk:
                    raise PolicyDenied(f"{case.case_number} was already taken by {case.owner_user.get_username()}")
                raise PolicyDenied(
                    f"only the assignee ({case.owner_user.get_username()}) may reassign {case.case_number}"
                    if case.owner_user_id
                    else f"only members of {case.get_owner_team_display()} may assign {case.case_number}"
                )
        new_team = team or case.owner_team
        if new_team not in Team.values:
            raise ValidationFailed(f"unknown team {new_team!r}")
        assignee = None
        if assignee_id is not None:
            assignee = permissions.team_members(new_team).filter(pk=assignee_id).first()
            if assignee is None:
                raise ValidationFailed(f"the assignee must be an active member of {Team(new_team).label}")
        if new_team == case.owner_team and assignee_id == case.owner_user_id:
            return case  # nothing to change: a double submit is one command
        before = case_snapshot(case)
        if case.owner_user_id and case.owner_user_id != assignee_id:
            permissions.revoke_assignee(case, case.owner_user_id)
        if new_team != case.owner_team:
            permissions.revoke_team(case, case.owner_team)
            permissions.grant_team(case, new_team)
            case.owner_team = new_team
        case.owner_user = assignee
        if assignee is not None:
            permissions.grant_assignee(case, assignee.pk)
        save_case(case, now, ["owner_team", "owner_user"])
        audit_case(
            case, "case.assigned", actor=actor, now=now, action_type="CASE_ASSIGN", before=before,
            after=case_snapshot(case), reason_text=reason_text,
        )  # fmt: skip
        return case

    return run_command(case_number, "CASE_ASSIGN", actor, now, body)


def case_take(*, case_number: str, actor: Actor, now: dt.datetime, expected_version: int | None = None) -> OpsCase:
    """Take an unassigned case from your team's queue."""
    if actor.user_id is None:
        refused = ValidationFailed("only a person can take a case")
        audit_refusal(case_number, "CASE_ASSIGN", refused, actor=actor, now=now)
        raise refused
    return case_assign(
        case_number=case_number, assignee_id=actor.user_id, actor=actor, now=now, expected_version=expected_version
    )


def resolution_objections(case: OpsCase) -> list[str]:
    objections = []
    if case.severity in (Severity.HIGH, Severity.CRITICAL):
        verified = case.findings.filter(finding_type=FindingType.VERIFICATION).exists() or case.evidence.exists()
        if not verified:
            objections.append(
                f"a {case.severity.lower()} severity case needs a verification finding or evidence"
                " before it is resolved"
            )
    objections.extend(registry.close_objections(case))
    return objections


def case_transition(
    *, case_number: str, transition: str, actor: Actor, now: dt.datetime, expected_version: int | None = None,
    reason_text: str = "", resolution_code: str = "", resolution_summary: str = "",
) -> OpsCase:  # fmt: skip
    """Move a case through one legal transition. Only the assignee may (a system actor may too).

    resolve needs a resolution code and summary, and for HIGH/CRITICAL cases a verification
    finding or evidence; resolve and close are refused while a registered guard objects; reopen
    and cancel need a reason. Raises IllegalTransition for a transition not legal from the
    current state (nothing changes)."""

    def body():
        user = acting_user(actor)
        if transition not in OPERATOR_TRANSITIONS and not (actor.is_system and transition == "wait_approval"):
            raise ValidationFailed(f"unknown case transition {transition!r}")
        case = lock_case(case_number)
        if transition == "reopen" and case.owner_user_id is None and user is not None:
            # A case a system actor resolved (or whose assignee left) has nobody to reopen it but
            # its team: any member may.
            require_visible(user, case)
            if not permissions.is_team_member(user, case.owner_team):
                require_worker(user, case, "reopen")
        else:
            require_worker(user, case, TRANSITION_LABELS.get(transition, transition).lower())
        check_version(case, expected_version)
        method = getattr(case, transition)
        # Legality first: an illegal request is refused as such, whatever else it lacks.
        if case.status == CaseStatus.WAITING_APPROVAL and not actor.is_system:
            raise IllegalTransition(
                f"{case.case_number} is waiting on approval; only the approval decision moves it on"
            )
        if not can_proceed(method):
            raise IllegalTransition(_not_allowed(case, transition))
        before = case_snapshot(case)
        fields = ["status"]
        text = reason_text.strip()
        if transition == "resolve":
            if resolution_code not in ResolutionCode.values:
                raise ValidationFailed("choose a resolution code")
            summary = _validate_text(resolution_summary, "resolution summary")
            objections = resolution_objections(case)
            if objections:
                raise PolicyDenied("cannot resolve yet: " + "; ".join(objections))
            case.resolution_code, case.resolution_summary, case.resolved_at = resolution_code, summary, now
            fields += ["resolution_code", "resolution_summary", "resolved_at"]
        elif transition == "close":
            objections = registry.close_objections(case)
            if objections:
                raise PolicyDenied("cannot close yet: " + "; ".join(objections))
            case.closed_at = now
            fields.append("closed_at")
        elif transition in ("reopen", "cancel"):
            text = _validate_text(reason_text, "a reason", limit=2000)
        try:
            method()
        except TransitionNotAllowed as exc:
            raise IllegalTransition(_not_allowed(case, transition)) from exc
        if transition == "reopen":
            # A new SLA clock; the earlier resolution stays in the history and the timeline.
            clock = sla_clock(severity=case.severity, case_type=case.case_type, start=now)
            case.sla_due_at, case.sla_warn_at, case.sla_breached_at = clock.due_at, clock.warn_at, None
            case.resolved_at = case.closed_at = None
            # Priority starts again from severity; escalation_level keeps counting breaches.
            case.priority = PRIORITY_FOR_SEVERITY[Severity(case.severity)]
            fields += ["sla_due_at", "sla_warn_at", "sla_breached_at", "resolved_at", "closed_at", "priority"]
        save_case(case, now, fields)
        audit_case(
            case, f"case.{transition}", actor=actor, now=now, action_type=f"CASE_{transition.upper()}",
            before=before, after=case_snapshot(case), reason_code=resolution_code, reason_text=text,
        )  # fmt: skip
        return case

    return run_command(case_number, f"CASE_{transition.upper()}", actor, now, body)


def _not_allowed(case: OpsCase, transition: str) -> str:
    return (
        f"{TRANSITION_LABELS.get(transition, transition)} is not allowed from "
        f"{case.get_status_display().lower()} ({case.case_number})"
    )


def legal_transitions(case: OpsCase) -> list[str]:
    """Operator transitions legal from the case's current state (before permission). None while
    the case waits on approval: the approvals engine moves it on."""
    if case.status == CaseStatus.WAITING_APPROVAL:
        return []
    available = {t.name for t in case.get_available_status_transitions()}
    return [name for name in OPERATOR_TRANSITIONS if name in available]


def case_escalate_severity(case: OpsCase, severity: str, *, actor: Actor, now: dt.datetime, why: str) -> bool:
    """Raise a locked case's severity (never lower it) and tighten its SLA; the caller holds the lock."""
    if SEVERITY_RANK[Severity(severity)] <= case.severity_rank:
        return False
    before = case_snapshot(case)
    clock = sla_clock(severity=severity, case_type=case.case_type, start=now)
    case.severity, case.severity_rank = severity, SEVERITY_RANK[Severity(severity)]
    case.priority = min(case.priority, PRIORITY_FOR_SEVERITY[Severity(severity)])
    if clock.due_at < case.sla_due_at:
        case.sla_due_at, case.sla_warn_at = clock.due_at, clock.warn_at
    save_case(case, now, ["severity", "severity_rank", "priority", "sla_due_at", "sla_warn_at"])
    audit_case(
        case, "case.severity_escalated", actor=actor, now=now, action_type="CASE_ESCALATE", before=before,
        after=case_snapshot(case), reason_text=why,
    )  # fmt: skip
    return True


def cases_sla_sweep(*, now: dt.datetime, actor: Actor, batch_size: int = 500) -> int:
    """Mark every open case past its SLA as breached and escalate it (priority one step up,
    escalation level +1), each with its audit event. Idempotent: a breached case is not marked
    again until a reopen starts a new clock. Safe beside a second sweeper (SKIP LOCKED)."""
    marked = 0
    while True:
        with transaction.atomic():
            due = list(
                OpsCase.objects.select_for_update(skip_locked=True, of=("self",))
                .prefetch_related("owner_user")  # after the lock (see lock_case)
                .filter(status__in=[s for s in CaseStatus if s not in ("RESOLVED", "CLOSED", "CANCELLED")],
                        sla_due_at__lt=now, sla_breached_at__isnull=True)
                .order_by("sla_due_at", "id")[:batch_size]
            )  # fmt: skip
            for case in due:
                before = case_snapshot(case)
                case.sla_breached_at = now
                case.escalation_level += 1
                case.priority = max(1, case.priority - 1)
                save_case(case, now, ["sla_breached_at", "escalation_level", "priority"])
                audit_case(
                    case, "case.sla_breached", actor=actor, now=now, action_type="CASE_SLA_BREACH",
                    before=before, after={**case_snapshot(case), "escalation_level": case.escalation_level},
                    reason_text=f"SLA due {case.sla_due_at.isoformat()} passed",
                )  # fmt: skip
        marked += len(due)
        if len(due) < batch_size:
            return marked
