"""Refresh a source's expected internal movements for a period and run matching:
`manage.py recon_run SOURCE [--since YYYY-MM-DD] [--until YYYY-MM-DD]`."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.clock import business_date
from backoffice.errors import DomainError
from reconciliation.models import ReconciliationSource
from reconciliation.services import expected_items_refresh, reconciliation_run

ACTOR = system_actor("recon_run")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"expected a date like 2026-11-20, got {text!r}") from None


class Command(BaseCommand):
    help = "Create the expected internal items of a period and match the source's unmatched items."

    def add_arguments(self, parser):
        parser.add_argument("source", help="the source's code")
        parser.add_argument("--since", help="first accounting date (default: 7 days before --until)")
        parser.add_argument("--until", help="last accounting date (default: today's business date)")
        parser.add_argument("--no-refresh", action="store_true", help="match only; create no expected items")

    def handle(self, *args, **opts):
        try:
            source = ReconciliationSource.objects.get(code=opts["source"])
        except ReconciliationSource.DoesNotExist:
            raise CommandError(f"no reconciliation source {opts['source']!r}") from None
        until = _date(opts["until"]) if opts["until"] else business_date(timezone.now())
        since = _date(opts["since"]) if opts["since"] else until - dt.timedelta(days=7)
        with audit_context(actor=ACTOR):
            try:
                if not opts["no_refresh"]:
                    created = expected_items_refresh(source=source, since=since, until=until, actor=ACTOR,
                                                     now=timezone.now())  # fmt: skip
                    self.stdout.write(f"expected items {since} .. {until}: {created} new")
                run = reconciliation_run(source=source, actor=ACTOR, now_fn=timezone.now)
            except DomainError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(
            f"{run.public_id} {run.status}: {run.items_considered} items considered, {run.matches_made} matches, "
            f"breaks opened {run.breaks_opened}, closed {run.breaks_closed}, {run.seconds:.3f} s"
        )
