"""Business time.

Beat and storage run in UTC. A business day ends at BUSINESS_DAY_CUTOFF in BUSINESS_TIMEZONE
(default 00:00 Asia/Manila). Services take `now` as a parameter; only views, tasks and commands
read the wall clock (through `utc_now`, so tests can pass their own time).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone


def utc_now() -> dt.datetime:
    return timezone.now()


def business_timezone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.BUSINESS_TIMEZONE)


def _require_aware(now: dt.datetime) -> None:
    if timezone.is_naive(now):
        raise ValueError("business time needs an aware datetime")


def business_day_end(now: dt.datetime) -> dt.datetime:
    """The first cut-off instant strictly after `now` (UTC)."""
    _require_aware(now)
    tz = business_timezone()
    local = now.astimezone(tz)
    cutoff = settings.BUSINESS_DAY_CUTOFF
    day = local.date()
    for _ in range(3):  # today's cut-off, else tomorrow's (DST shifts cannot skip two days)
        candidate = dt.datetime.combine(day, cutoff, tzinfo=tz)
        if candidate.astimezone(dt.UTC) > now:  # instants, not wall times (DST repeats and skips hours)
            return candidate.astimezone(dt.UTC)
        day += dt.timedelta(days=1)
    raise AssertionError("unreachable: no cut-off within three days")


def business_date(now: dt.datetime) -> dt.date:
    """The business day `now` belongs to: the local date just before its closing cut-off."""
    end_local = business_day_end(now).astimezone(business_timezone())
    return (end_local - dt.timedelta(microseconds=1)).date()


def business_day_start(now: dt.datetime) -> dt.datetime:
    """The cut-off that opened the business day containing `now` (UTC)."""
    end_local = business_day_end(now).astimezone(business_timezone())
    prev_day = end_local.date() - dt.timedelta(days=1)
    return dt.datetime.combine(prev_day, settings.BUSINESS_DAY_CUTOFF, tzinfo=business_timezone()).astimezone(dt.UTC)
