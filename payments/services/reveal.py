"""Revealing a merchant's masked business contact: an explicit, audited action (invariant 10).

A merchant's contact email and phone are kept (they are the merchant's business contact) and shown
masked on every screen. A user holding payments.reveal_merchant_contact may reveal one of them, one
field at a time, giving a reason; the reveal is an audit event naming the merchant, the field and
the reason, never the value. A refused reveal (no permission, no reason, unknown field or merchant,
nothing on record) is audited as a refusal and shows nothing.

Customers' contact details cannot be revealed: only their keyed hash and masked form are stored.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, NotFound, PermissionMissing, ValidationFailed
from backoffice.masking import find_card_numbers
from backoffice.roles import roles_holding
from payments.models import Merchant
from payments.services.recording import refusal_record

REVEAL_PERMISSION = "payments.reveal_merchant_contact"
REVEAL_ACTION = "REVEAL_MERCHANT_CONTACT"
# The fields that may be revealed, with how people call them.
REVEALABLE_FIELDS = {"contact_email": "contact email", "contact_phone": "contact phone"}
REASON_MAX_LENGTH = 2000


def _require_permission(actor: Actor) -> None:
    user = None
    if not actor.is_system and actor.user_id is not None:
        user = get_user_model().objects.filter(pk=actor.user_id, is_active=True).first()
    if user is None or not user.has_perm(REVEAL_PERMISSION):
        holders = ", ".join(roles_holding(REVEAL_PERMISSION)) or "no role"
        raise PermissionMissing(
            f"revealing a merchant's contact details needs the permission {REVEAL_PERMISSION}, which these roles "
            f"hold: {holders}"
        )


def _reason(reason_text: str) -> str:
    text = (reason_text or "").strip()
    if not text:
        raise ValidationFailed("a reveal needs a reason: say why you need to see the value")
    if len(text) > REASON_MAX_LENGTH:
        raise ValidationFailed(f"the reason is longer than {REASON_MAX_LENGTH} characters")
    if find_card_numbers(text):
        raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
    return text


def merchant_contact_reveal(*, merchant_id: str, field: str, reason_text: str, actor: Actor, now: dt.datetime) -> str:
    """Return the unmasked `field` ("contact_email" or "contact_phone") of merchant `merchant_id`.

    Guarantees: the value is returned only after the audit event `payments.merchant_contact_revealed`
    (target the merchant; the field and the reason; never the value) is written in the same
    transaction. Raises PermissionMissing without payments.reveal_merchant_contact (a signed-in,
    active user holding it; never a system actor), ValidationFailed for an unknown field, a missing
    reason or a field with nothing on record, NotFound for an unknown merchant. Every refusal is
    audited (`payments.merchant_contact_reveal_refused`) in its own transaction."""
    merchant_id = str(merchant_id or "").strip()[:64]
    field = str(field or "").strip()
    try:
        _require_permission(actor)
        if field not in REVEALABLE_FIELDS:
            raise ValidationFailed(f"only {' or '.join(REVEALABLE_FIELDS)} can be revealed")
        reason = _reason(reason_text)
        with transaction.atomic():
            merchant = Merchant.objects.filter(public_id=merchant_id).only("pk", "public_id", field).first()
            if merchant is None:
                raise NotFound(f"no merchant {merchant_id or '(none given)'}")
            value = getattr(merchant, field)
            if not value:
                raise ValidationFailed(f"merchant {merchant.public_id} has no {REVEALABLE_FIELDS[field]} on record")
            audit_record(
                event_type="payments.merchant_contact_revealed", actor=actor, action_type=REVEAL_ACTION,
                target_type="merchant", target_id=merchant.public_id, reason_text=reason, after={"field": field},
                now=now,
            )  # fmt: skip
        return value
    except DomainError as exc:
        refusal_record(
            event_type="payments.merchant_contact_reveal_refused", target_type="merchant", target_id=merchant_id,
            exc=exc, actor=actor, now=now, action_type=REVEAL_ACTION, after={"field": field[:40]},
        )  # fmt: skip
        raise


__all__ = ["REVEALABLE_FIELDS", "REVEAL_PERMISSION", "merchant_contact_reveal"]
