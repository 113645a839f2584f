"""SLA due times from the policy held as data (SlaPolicy): a span in minutes, or in business days
(weekdays in the business timezone, at the same local time)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from backoffice.clock import business_timezone
from backoffice.errors import ValidationFailed
from cases.models import SlaPolicy

# severity, case type ("" = any), minutes, business days, due-soon warning minutes
DEFAULT_POLICIES = [
    ("CRITICAL", "", 60, 0, 15),
    ("HIGH", "", 240, 0, 60),
    ("MEDIUM", "", 0, 1, 120),
    ("LOW", "", 3 * 24 * 60, 0, 240),
    ("CRITICAL", "INCIDENT", 30, 0, 10),
    ("HIGH", "INCIDENT", 120, 0, 30),
]


def ensure_sla_policies(apps) -> None:
    """Create the default policies that do not exist yet (never overwrite an edited one). `apps` is a
    migration's or the live registry."""
    Policy = apps.get_model("cases", "SlaPolicy")
    for severity, case_type, minutes, business_days, due_soon in DEFAULT_POLICIES:
        Policy.objects.get_or_create(
            severity=severity,
            case_type=case_type,
            defaults={"minutes": minutes, "business_days": business_days, "due_soon_minutes": due_soon},
        )


@dataclass(frozen=True)
class SlaClock:
    due_at: dt.datetime
    warn_at: dt.datetime
    policy: str


def add_business_days(start: dt.datetime, days: int) -> dt.datetime:
    """The same local time `days` weekdays later (a start on a weekend counts from Monday)."""
    local = start.astimezone(business_timezone())
    while local.weekday() >= 5:
        local = (local + dt.timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    remaining = days
    while remaining:
        local += dt.timedelta(days=1)
        if local.weekday() < 5:
            remaining -= 1
    return local.astimezone(dt.UTC)


def sla_clock(*, severity: str, case_type: str, start: dt.datetime) -> SlaClock:
    policies = {p.case_type: p for p in SlaPolicy.objects.filter(severity=severity, case_type__in=[case_type, ""])}
    policy = policies.get(case_type) or policies.get("")
    if policy is None:
        raise ValidationFailed(f"no SLA policy for severity {severity}")
    if policy.minutes:
        due = start + dt.timedelta(minutes=policy.minutes)
    else:
        due = add_business_days(start, policy.business_days)
    return SlaClock(due_at=due, warn_at=due - dt.timedelta(minutes=policy.due_soon_minutes), policy=str(policy))
