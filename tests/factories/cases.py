"""Case test data, made only through the case services (never by writing models directly)."""

from __future__ import annotations

import datetime as dt
import itertools
from contextlib import contextmanager

from django.db import transaction

from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from cases.models import (
    CaseEvidence,
    CaseFinding,
    CaseLink,
    CaseNote,
    CaseType,
    ExceptionOccurrence,
    OpsCase,
    OpsCaseGroupObjectPermission,
    OpsCaseUserObjectPermission,
    Severity,
)
from cases.services import case_open, case_take, case_transition
from tests.factories.users import user_with_role

# Monday 2 March 2026, 09:00 in Asia/Manila (the business timezone).
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
SYSTEM = system_actor("case_tests")
TEAMS = ("support_ops", "payment_ops", "finance_ops", "risk_ops", "compliance_ops", "sre")
_names = itertools.count(1)


def at(minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def team_user(team: str, username: str | None = None):
    """A fresh user holding exactly one role (a team or auditor / finance_manager)."""
    return user_with_role(team, username=username or f"{team}_{next(_names)}")


def team_users() -> dict:
    """One fresh user per owner team: {team: user}."""
    return {team: team_user(team) for team in TEAMS}


def actor_for(user) -> Actor:
    return Actor.from_user(user)


def open_case(
    *, actor: Actor | None = None, case_type: str = CaseType.PAYMENT_INVESTIGATION, severity: str = Severity.LOW,
    title: str = "Capture stuck in pending", now: dt.datetime = T0, owner_team: str = "", **kwargs,
) -> OpsCase:  # fmt: skip
    """Open a case through case_open (by a system actor unless told otherwise)."""
    return case_open(
        case_type=case_type, severity=severity, title=title, actor=actor or SYSTEM, now=now,
        owner_team=owner_team, **kwargs,
    )  # fmt: skip


def assigned_case(user, *, now: dt.datetime = T0, **kwargs) -> OpsCase:
    """A case in `user`'s team queue, taken by `user`."""
    case = open_case(now=now, **kwargs)
    return case_take(case_number=case.case_number, actor=actor_for(user), now=now)


# Operator paths from OPEN to every status reachable through the services. WAITING_APPROVAL is
# entered by the approvals engine (a system actor), marked here with "system:".
PATHS = {
    "OPEN": [],
    "TRIAGED": ["triage"],
    "IN_PROGRESS": ["start"],
    "WAITING_EXTERNAL": ["start", "wait_external"],
    "WAITING_APPROVAL": ["start", "system:wait_approval"],
    "RESOLVED": ["resolve"],
    "CLOSED": ["resolve", "close"],
    "REOPENED": ["resolve", "reopen"],
    "CANCELLED": ["cancel"],
}


def transition(case_number: str, name: str, actor: Actor, now: dt.datetime, **kwargs) -> OpsCase:
    """One transition with the arguments it needs (a resolution for resolve, a reason for reopen
    and cancel) unless the caller gives them."""
    if name == "resolve":
        kwargs.setdefault("resolution_code", "FIXED")
        kwargs.setdefault("resolution_summary", "Provider confirmed the capture; ledger matches.")
    if name in ("reopen", "cancel"):
        kwargs.setdefault("reason_text", f"{name}: test reason")
    return case_transition(case_number=case_number, transition=name, actor=actor, now=now, **kwargs)


def drive_to(case: OpsCase, status: str, actor: Actor, *, now: dt.datetime = T0) -> OpsCase:
    for step in PATHS[status]:
        if step.startswith("system:"):
            case = transition(case.case_number, step.removeprefix("system:"), SYSTEM, now)
        else:
            case = transition(case.case_number, step, actor, now)
    assert case.status == status
    return case


def fetch(case_number: str) -> OpsCase:
    """A fresh copy (refresh_from_db cannot reset the protected status field)."""
    return OpsCase.objects.select_related("owner_user").get(case_number=case_number)


def case_state(case_number: str) -> dict:
    """Everything a refused command must leave as it was."""
    case = fetch(case_number)
    row = {f.attname: getattr(case, f.attname) for f in OpsCase._meta.concrete_fields}
    return {
        "row": row,
        "history": case.history.count(),
        "notes": CaseNote.objects.filter(case=case).count(),
        "evidence": CaseEvidence.objects.filter(case=case).count(),
        "findings": CaseFinding.objects.filter(case=case).count(),
        "links": CaseLink.objects.filter(case=case).count(),
        "occurrences": ExceptionOccurrence.objects.filter(case=case).count(),
        "user_grants": sorted(
            OpsCaseUserObjectPermission.objects.filter(content_object=case).values_list(
                "user__username", "permission__codename"
            )
        ),
        "group_grants": sorted(
            OpsCaseGroupObjectPermission.objects.filter(content_object=case).values_list(
                "group__name", "permission__codename"
            )
        ),
        "succeeded_events": AuditEvent.objects.filter(target_id=case_number, result=AuditResult.SUCCEEDED).count(),
    }


@contextmanager
def rolled_back():
    """Run a block in a savepoint that is always rolled back: one attempt of many on the same data."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def refusals(target_id: str):
    return AuditEvent.objects.filter(event_type="case.command_refused", target_id=target_id).order_by("seq")


def last_refusal(target_id: str) -> AuditEvent:
    return refusals(target_id).latest("seq")


class Upload:
    """An uploaded file as the client sent it: the name is kept verbatim (Django's UploadedFile would
    strip directories itself, hiding what the service must do). Records whether it was read."""

    def __init__(self, name: str, data: bytes, chunk_size: int = 7):
        self.name, self.data, self.chunk_size, self.read_at_all = name, data, chunk_size, False

    def chunks(self, size=None):
        self.read_at_all = True
        for start in range(0, len(self.data), self.chunk_size):
            yield self.data[start : start + self.chunk_size]
