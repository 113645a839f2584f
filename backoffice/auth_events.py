"""Sign-in events into the audit trail. These are infrastructure signals (Django auth, Axes),
not domain logic: each receiver only records what happened."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit.context import audit_context, keyed_hash
from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import ANONYMOUS, Actor


def _attempted_username(credentials: dict | None) -> str:
    return str((credentials or {}).get("username", ""))[:128]


@receiver(user_login_failed)
def record_login_failed(sender, credentials=None, request=None, **kwargs):
    locked = bool(getattr(request, "axes_locked_out", False))
    audit_record(
        event_type="auth.login_failed",
        result=AuditResult.REFUSED,
        actor=ANONYMOUS,
        target_type="user",
        target_id=_attempted_username(credentials),
        error_code="ACCOUNT_LOCKED" if locked else "INVALID_CREDENTIALS",
        error_message=(
            "sign-in refused: the account is locked after too many failed attempts"
            if locked
            else "sign-in refused: unknown username or wrong password"
        ),
    )


@receiver(user_locked_out)
def record_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    audit_record(
        event_type="auth.locked_out",
        result=AuditResult.REFUSED,
        actor=ANONYMOUS,
        target_type="user",
        target_id=str(username or "")[:128],
        error_code="ACCOUNT_LOCKED",
        error_message="too many failed sign-ins: the account is locked for 30 minutes",
    )


@receiver(user_logged_in)
def record_logged_in(sender, request=None, user=None, **kwargs):
    # The session key changed at sign-in; record the new one's hash.
    session_key = request.session.session_key if request is not None else None
    with audit_context(actor=Actor.from_user(user), session_hash=keyed_hash("session", session_key)):
        audit_record(event_type="auth.login", target_type="user", target_id=user.get_username())


@receiver(user_logged_out)
def record_logged_out(sender, request=None, user=None, **kwargs):
    if user is None:
        return
    audit_record(
        event_type="auth.logout",
        actor=Actor.from_user(user),
        target_type="user",
        target_id=user.get_username(),
    )
