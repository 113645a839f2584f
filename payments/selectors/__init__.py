"""Reads of the payment domain that more than one service or screen needs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q

from payments.models import CapabilityRestriction, Merchant, RestrictionMode, RestrictionStatus


@dataclass(frozen=True)
class CapabilityAnswer:
    """Whether a merchant may use a capability at an instant, and if not, what stops it."""

    allowed: bool
    restriction: CapabilityRestriction | None = None

    @property
    def needs_review(self) -> bool:
        return self.restriction is not None and self.restriction.mode == RestrictionMode.REVIEW

    @property
    def reason(self) -> str:
        r = self.restriction
        if r is None:
            return ""
        until = f" until {r.expires_at:%Y-%m-%d %H:%M %Z}" if r.expires_at else ""
        verb = "blocked" if r.mode == RestrictionMode.BLOCK else "under review"
        return f"{r.get_capability_display()} is {verb} for this merchant{until}: {r.reason_code} ({r.source})"


def restrictions_in_force(*, merchant: Merchant, at: dt.datetime):
    """Restrictions recorded ACTIVE, effective at `at` and not yet past their expiry (a passed
    expiry is not in force even before the sweeper records it EXPIRED)."""
    return CapabilityRestriction.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=at),
        merchant=merchant, status=RestrictionStatus.ACTIVE, effective_at__lte=at,
    )  # fmt: skip


def merchant_can(merchant: Merchant, capability: str, at: dt.datetime) -> CapabilityAnswer:
    """May `merchant` use `capability` at `at`? A BLOCK restriction refuses; a REVIEW one allows
    with `needs_review` (the caller routes the operation to review instead of running it)."""
    found = restrictions_in_force(merchant=merchant, at=at).filter(capability=capability).order_by("id").first()
    if found is None:
        return CapabilityAnswer(allowed=True)
    return CapabilityAnswer(allowed=found.mode != RestrictionMode.BLOCK, restriction=found)
