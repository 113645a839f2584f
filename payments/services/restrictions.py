"""Capability restrictions: taking a capability (payouts, refunds, ...) from a merchant, with why,
by whom and until when, and giving it back.

A restriction is imposed, lifted or expired only here, each audited in the transaction that makes
the change (a refusal in its own). Imposing and lifting lock the merchant row first, the same row
payout creation locks, so a freeze and a payout being created for the same merchant are ordered:
the payout either committed before the freeze (and is stopped again when it is sent) or sees it.
The database keeps at most one ACTIVE restriction per merchant and capability (partial unique
index); the check here only gives the refusal its words.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction

from audit.models import AuditResult
from audit.services import audit_prepare, audit_record, audit_record_many
from backoffice.actors import Actor
from backoffice.errors import DomainError, IllegalTransition, NotFound, PolicyDenied, ValidationFailed
from backoffice.masking import find_card_numbers
from payments.models import Capability, CapabilityRestriction, Merchant, RestrictionMode, RestrictionStatus
from payments.selectors import CapabilityAnswer, merchant_can

TARGET_TYPE = "merchant_capability"
SOURCES = ("RISK", "COMPLIANCE", "OPERATIONS", "SYSTEM")
EXPIRY_CHUNK = 200  # rows locked and expired per transaction by the sweeper


class RestrictionAlreadyActive(PolicyDenied):
    code = "RESTRICTION_ALREADY_ACTIVE"
    default_message = "This capability is already restricted for the merchant."


class CapabilityRestricted(PolicyDenied):
    code = "CAPABILITY_RESTRICTED"
    default_message = "A restriction stops this operation for the merchant."


def capability_target_id(merchant: Merchant, capability: str) -> str:
    return f"{merchant.public_id}:{capability}"


def capability_require(*, merchant: Merchant, capability: str, now: dt.datetime) -> CapabilityAnswer:
    """The merchant's answer for `capability` at `now`; raises CapabilityRestricted (naming the
    restriction's reason) when a BLOCK is in force. A REVIEW answer is returned for the caller to
    route to review."""
    answer = merchant_can(merchant, capability, now)
    if not answer.allowed:
        raise CapabilityRestricted(answer.reason, restriction_id=answer.restriction.pk)
    return answer


def _approval_ref(source_ref: str) -> str:
    """The approval behind a restriction change, for the audit event's approval column."""
    return source_ref[:64] if source_ref.startswith("act_") else ""


def _snapshot(r: CapabilityRestriction) -> dict:
    return {
        "restriction_id": r.pk, "capability": r.capability, "mode": r.mode, "status": r.status,
        "reason_code": r.reason_code, "source": r.source, "source_ref": r.source_ref,
        "effective_at": r.effective_at.isoformat(), "expires_at": r.expires_at.isoformat() if r.expires_at else None,
    }  # fmt: skip


def _describe(r: CapabilityRestriction) -> str:
    until = f" until {r.expires_at:%Y-%m-%d %H:%M %Z}" if r.expires_at else ""
    return (
        f"restriction #{r.pk} ({r.get_mode_display().lower()}, {r.reason_code}, by {r.source}, "
        f"since {r.effective_at:%Y-%m-%d %H:%M %Z}{until})"
    )


def _end(r: CapabilityRestriction, transition: str, *, by: Actor, now: dt.datetime, reason: str) -> None:
    """Move an ACTIVE restriction (locked by the caller) to LIFTED or EXPIRED and save it."""
    getattr(r, transition)()
    r.ended_at, r.ended_by, r.end_reason = now, by.label, reason
    r.version += 1
    r.save(update_fields=["status", "ended_at", "ended_by", "end_reason", "version"])


def _validate_impose(
    *, capability: str, mode: str, reason_code: str, reason_text: str, source: str, now: dt.datetime,
    expires_at: dt.datetime | None, source_ref: str, case_ref: str,
) -> None:  # fmt: skip
    if capability not in Capability.values:
        raise ValidationFailed(f"unknown capability {capability!r}; use one of {', '.join(Capability.values)}")
    if mode not in RestrictionMode.values:
        raise ValidationFailed(f"unknown restriction mode {mode!r}; use BLOCK or REVIEW")
    if not reason_code or len(reason_code) > 48 or not (reason_text or "").strip():
        raise ValidationFailed("a restriction needs a reason code (at most 48 characters) and an explanation")
    if find_card_numbers(reason_text):
        raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
    if source not in SOURCES:
        raise ValidationFailed(f"unknown restriction source {source!r}; use one of {', '.join(SOURCES)}")
    if len(source_ref) > 64 or len(case_ref) > 20:
        raise ValidationFailed("the source reference is at most 64 characters and the case number at most 20")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise ValidationFailed("a restriction's expiry must be a time (with its timezone) after now")


def restriction_impose(
    *, merchant: Merchant, capability: str, mode: str, reason_code: str, reason_text: str, source: str,
    actor: Actor, now: dt.datetime, expires_at: dt.datetime | None = None, source_ref: str = "", case_ref: str = "",
) -> CapabilityRestriction:  # fmt: skip
    """Restrict `capability` for `merchant` from `now` (until `expires_at`, or until lifted).

    Refuses (RestrictionAlreadyActive, naming it) when the capability already has a restriction in
    force: changing a restriction is lifting it and imposing another, each a recorded decision.
    An ACTIVE one whose expiry has passed is not in force: it is recorded EXPIRED here first, as
    the sweeper would. Raises ValidationFailed for bad input. Audited, refusals too."""
    target_id = capability_target_id(merchant, capability)
    try:
        _validate_impose(capability=capability, mode=mode, reason_code=reason_code, reason_text=reason_text,
                         source=source, now=now, expires_at=expires_at, source_ref=source_ref,
                         case_ref=case_ref)  # fmt: skip
        with transaction.atomic():
            Merchant.objects.select_for_update().filter(pk=merchant.pk).values_list("pk", flat=True).get()
            events = []
            current = (
                CapabilityRestriction.objects.select_for_update()
                .filter(merchant=merchant, capability=capability, status=RestrictionStatus.ACTIVE)
                .first()
            )
            if current is not None:
                if current.expires_at is None or current.expires_at > now:
                    raise RestrictionAlreadyActive(
                        f"{Capability(capability).label} is already restricted for {merchant.public_id} by "
                        f"{_describe(current)}; lift it before imposing another",
                        restriction_id=current.pk,
                    )
                before = _snapshot(current)
                _end(current, "expire", by=actor, now=now, reason="expired (recorded when replaced)")
                events.append(audit_prepare(
                    event_type="payments.restriction_expired", actor=actor, action_type="EXPIRE_RESTRICTION",
                    target_type=TARGET_TYPE, target_id=target_id, before=before, after=_snapshot(current), now=now,
                ))  # fmt: skip
            try:
                with transaction.atomic():
                    restriction = CapabilityRestriction.objects.create(
                        merchant=merchant, capability=capability, mode=mode, reason_code=reason_code,
                        reason_text=reason_text.strip(), source=source, source_ref=source_ref, case_ref=case_ref,
                        effective_at=now, expires_at=expires_at, created_by=actor.label, created_at=now,
                    )  # fmt: skip
            except IntegrityError as exc:
                # Only reachable if a writer skipped the merchant lock; the index still holds.
                if "payments_one_active_restriction" not in str(exc):
                    raise
                raise RestrictionAlreadyActive(
                    f"{Capability(capability).label} is already restricted for {merchant.public_id}"
                ) from exc
            events.append(audit_prepare(
                event_type="payments.restriction_imposed", actor=actor, action_type="IMPOSE_RESTRICTION",
                target_type=TARGET_TYPE, target_id=target_id, reason_code=reason_code, reason_text=reason_text,
                case_ref=case_ref, approval_ref=_approval_ref(source_ref),
                after=_snapshot(restriction), now=now,
            ))  # fmt: skip
            audit_record_many(events)
            return restriction
    except DomainError as exc:
        audit_record(
            event_type="payments.restriction_impose_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="IMPOSE_RESTRICTION", target_type=TARGET_TYPE, target_id=target_id[:128],
            reason_code=str(reason_code or "")[:64], case_ref=str(case_ref)[:64],
            approval_ref=_approval_ref(source_ref), error_code=exc.code, error_message=exc.message, now=now,
        )  # fmt: skip
        raise


def restriction_lift(
    *, restriction_id: int, reason_text: str, actor: Actor, now: dt.datetime, source_ref: str = ""
) -> CapabilityRestriction:
    """Give the capability back: ACTIVE -> LIFTED with who, when and why. Refuses a restriction no
    longer active (IllegalTransition), an unknown one (NotFound) and a missing reason. Audited,
    refusals too."""
    target_id = str(restriction_id)
    try:
        if not (reason_text or "").strip():
            raise ValidationFailed("lifting a restriction needs an explanation")
        if find_card_numbers(reason_text):
            raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
        found = CapabilityRestriction.objects.select_related("merchant").filter(pk=restriction_id).first()
        if found is None:
            raise NotFound(f"no capability restriction #{restriction_id}")
        target_id = capability_target_id(found.merchant, found.capability)
        with transaction.atomic():
            # Lock order as when imposing: the merchant, then its restriction.
            Merchant.objects.select_for_update().filter(pk=found.merchant_id).values_list("pk", flat=True).get()
            restriction = CapabilityRestriction.objects.select_for_update().get(pk=restriction_id)
            if restriction.status != RestrictionStatus.ACTIVE:
                raise IllegalTransition(
                    f"restriction #{restriction.pk} is {restriction.get_status_display().lower()} already "
                    f"({restriction.ended_at:%Y-%m-%d %H:%M %Z} by {restriction.ended_by})"
                )
            before = _snapshot(restriction)
            _end(restriction, "lift", by=actor, now=now, reason=reason_text.strip())
            audit_record(
                event_type="payments.restriction_lifted", actor=actor, action_type="LIFT_RESTRICTION",
                target_type=TARGET_TYPE, target_id=target_id, reason_text=reason_text,
                case_ref=restriction.case_ref, approval_ref=_approval_ref(source_ref),
                before=before, after={**_snapshot(restriction), "lifted_by_ref": source_ref}, now=now,
            )  # fmt: skip
            return restriction
    except DomainError as exc:
        audit_record(
            event_type="payments.restriction_lift_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="LIFT_RESTRICTION", target_type=TARGET_TYPE, target_id=target_id,
            approval_ref=_approval_ref(source_ref), error_code=exc.code,
            error_message=exc.message, now=now,
        )  # fmt: skip
        raise


def restrictions_expire(*, now: dt.datetime, actor: Actor) -> int:
    """The sweeper: record EXPIRED for every ACTIVE restriction whose expiry is at or before `now`;
    return how many. Works in chunks of EXPIRY_CHUNK, each its own transaction with one audit event
    per row, so a long backlog never holds many locks for long. Rows another command holds (being
    lifted right now) are skipped: that command decides them. Safe to run twice: a second run finds
    nothing. merchant_can() already ignores a passed expiry, so a late sweep changes no answer."""
    total = 0
    while True:
        with transaction.atomic():
            chunk = list(
                CapabilityRestriction.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("merchant")
                .filter(status=RestrictionStatus.ACTIVE, expires_at__lte=now)
                .order_by("pk")[:EXPIRY_CHUNK]
            )
            if not chunk:
                return total
            events = []
            for restriction in chunk:
                target_id = capability_target_id(restriction.merchant, restriction.capability)
                before = _snapshot(restriction)
                _end(restriction, "expire", by=actor, now=now, reason="expiry reached")
                events.append(audit_prepare(
                    event_type="payments.restriction_expired", actor=actor, action_type="EXPIRE_RESTRICTION",
                    target_type=TARGET_TYPE, target_id=target_id, case_ref=restriction.case_ref, before=before,
                    after=_snapshot(restriction), now=now,
                ))  # fmt: skip
            audit_record_many(events)
            total += len(chunk)
