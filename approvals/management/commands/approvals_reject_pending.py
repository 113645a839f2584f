"""End of day by hand: reject, as system:end_of_day, every request still pending from before the
cut-off that opened the current business day. The same run as the beat task; rerunning is a no-op."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from approvals.services import requests_reject_pending
from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.clock import business_timezone, utc_now


def _parse_as_of(value: str, now: dt.datetime) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--as-of {value!r} is not an ISO-8601 date-time; e.g. 2026-03-03T00:00:00+08:00 or 2026-03-02T16:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        # A time without an offset is read in the business timezone, as operators speak of the day.
        parsed = parsed.replace(tzinfo=business_timezone())
    parsed = parsed.astimezone(dt.UTC)
    if parsed > now:
        # A run "as of" a later moment would reject requests still inside today's business day.
        raise CommandError(f"--as-of {value!r} is in the future ({parsed.isoformat()} > now {now.isoformat()})")
    return parsed


class Command(BaseCommand):
    help = (
        "Reject every request still pending from before the business day's cut-off (BUSINESS_TIMEZONE, "
        "BUSINESS_DAY_CUTOFF) as system:end_of_day with reason END_OF_DAY. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of",
            help="ISO-8601 moment to decide the business day from (default: now); without an offset it is "
            "read in the business timezone; never later than now",
        )

    def handle(self, *args, **options):
        now = utc_now()
        as_of = now if options.get("as_of") is None else _parse_as_of(options["as_of"], now)
        actor = system_actor("end_of_day")
        with audit_context(actor=actor):
            result = requests_reject_pending(as_of=as_of, actor=actor, now=now)
        local = result.cutoff.astimezone(business_timezone())
        self.stdout.write(
            f"cut-off: {result.cutoff.isoformat()} UTC ({local.isoformat()} {business_timezone().key})\n"
            f"rejected: {result.rejected} request(s) pending since before the cut-off\n"
            f"audit events: {result.audit_events}"
        )
