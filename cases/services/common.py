"""What every case command shares: the acting user, the locked case, authorization that audits
its refusals, the audit event, and saving a case with its version bumped."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PermissionMissing,
    StaleTarget,
    ValidationFailed,
)
from backoffice.roles import roles_holding
from cases import permissions
from cases.models import OpsCase

TARGET_TYPE = "ops_case"


def acting_user(actor: Actor):
    """The user behind a person actor (None for system actors, which are internal code paths)."""
    if actor.is_system:
        return None
    if actor.user_id is None:
        raise PermissionMissing("case commands need a signed-in user or a named system actor")
    return get_user_model().objects.prefetch_related("groups").get(pk=actor.user_id)


def case_snapshot(case: OpsCase) -> dict[str, Any]:
    return {
        "status": case.status,
        "severity": case.severity,
        "priority": case.priority,
        "owner_team": case.owner_team,
        "owner_user": case.owner_user.get_username() if case.owner_user_id else None,
        "sla_due_at": case.sla_due_at.isoformat() if case.sla_due_at else None,
        "version": case.version,
    }


def audit_case(
    case: OpsCase, event_type: str, *, actor: Actor, now: dt.datetime, action_type: str = "",
    before: Any = None, after: Any = None, reason_code: str = "", reason_text: str = "",
    result: str = AuditResult.SUCCEEDED, error: DomainError | None = None,
) -> None:  # fmt: skip
    audit_record(
        event_type=event_type, result=result, actor=actor, action_type=action_type, target_type=TARGET_TYPE,
        target_id=case.case_number, case_ref=case.case_number, reason_code=reason_code, reason_text=reason_text,
        before=before, after=after, now=now, error_code=error.code if error else "",
        error_message=error.message if error else "",
    )  # fmt: skip


def audit_refusal(case_number: str, action: str, exc: DomainError, *, actor: Actor, now: dt.datetime) -> None:
    """A refused case command, in its own transaction (the command's own was rolled back)."""
    case_number = str(case_number)[:128]  # whatever the caller sent, the audit row must fit
    audit_record(
        event_type="case.command_refused", result=AuditResult.REFUSED, actor=actor, action_type=action,
        target_type=TARGET_TYPE, target_id=case_number, case_ref=case_number if case_number.startswith("CASE-") else "",
        error_code=exc.code, error_message=exc.message, now=now,
    )  # fmt: skip


def lock_case(case_number: str) -> OpsCase:
    """The case row locked for this transaction (every command on one case queues here).

    The assignee is loaded by a second query, after the lock. Joined into the locking query, a row
    that PostgreSQL re-checks after a concurrent commit keeps the joined row from before it
    (owner_user None while owner_user_id is set): the loser of a take race would crash instead of
    being refused."""
    case = (
        OpsCase.objects.select_for_update(of=("self",))
        .prefetch_related("owner_user")
        .filter(case_number=case_number)
        .first()
    )
    if case is None:
        raise NotFound(f"no case {case_number}")
    return case


def require_visible(user, case: OpsCase) -> None:
    """Outsiders learn nothing: the same NotFound as for a case that does not exist."""
    if user is not None and not permissions.can_view(user, case):
        raise NotFound(f"no case {case.case_number}")


def require_worker(user, case: OpsCase, what: str) -> None:
    require_visible(user, case)
    if user is not None and not permissions.can_work(user, case):
        owner = case.owner_user.get_username() if case.owner_user_id else "nobody (take it from the queue first)"
        raise PermissionMissing(f"only the case's assignee may {what}; {case.case_number} is assigned to {owner}")


def require_global(user, permission: str, what: str) -> None:
    if user is not None and not user.has_perm(permission):
        holders = ", ".join(roles_holding(permission)) or "no role"
        raise PermissionMissing(f"{what} needs the permission {permission}, which these roles hold: {holders}")


def require_not_closed(case: OpsCase, what: str) -> None:
    """A closed or cancelled case is a record: nothing is added until it is reopened."""
    if case.status in ("CLOSED", "CANCELLED"):
        raise IllegalTransition(f"{case.case_number} is {case.get_status_display().lower()}; reopen it to {what}")


def replayed(model, idempotency_key: str, case: OpsCase | None, what: str):
    """The record an earlier command with this key created, or None. A key used for another case
    (or by a command of another kind) is refused rather than answered with the wrong record."""
    if not idempotency_key:
        return None
    if len(idempotency_key) > 64:
        raise ValidationFailed("the idempotency key is longer than 64 characters")
    existing = model.objects.filter(**{"open_key" if model is OpsCase else "idempotency_key": idempotency_key}).first()
    if existing is not None and case is not None and existing.case_id != case.pk:
        raise IdempotencyConflict(f"this idempotency key was already used for {what} on another case")
    return existing


def check_version(case: OpsCase, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != case.version:
        raise StaleTarget(
            f"{case.case_number} changed since you loaded it (version {expected_version}, now {case.version}); "
            "reload and try again"
        )


def save_case(case: OpsCase, now: dt.datetime, fields: list[str]) -> None:
    case.version += 1
    case.updated_at = now
    case.save(update_fields=sorted({*fields, "version", "updated_at"}))


def run_command(case_number: str, action: str, actor: Actor, now: dt.datetime, body):
    """Run body() in one transaction; a domain refusal rolls it back and is audited on its own."""
    try:
        with transaction.atomic():
            return body()
    except DomainError as exc:
        audit_refusal(case_number, action, exc, actor=actor, now=now)
        raise
