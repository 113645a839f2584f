"""Benchmark the end-of-day rejection: N pending requests, one requests_reject_pending run.

Prints figures; it asserts nothing but its own consistency (every request rejected, the audit chain
intact). Run it against a scratch database: it writes N requests (targets bench_<run>_<n>) and their
audit events, and, like the real end of day, rejects every other request pending from before today.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from approvals.models import ActionRequest, RequestStatus
from approvals.services import requests_reject_pending
from audit.context import audit_context
from audit.verification import chain_verify
from backoffice.actors import system_actor
from backoffice.clock import business_day_start, business_timezone, utc_now

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# One statement, whatever N: distinct targets (so the one-open-request-per-target index holds),
# every NOT NULL column filled as request_submit would, created one after the other over the last
# twelve hours of yesterday's business day (so today's end of day rejects them all).
_SEED = """
INSERT INTO approvals_actionrequest (
    public_id, action_type, target_type, target_id, target_label, target_version, merchant_ref, customer_ref,
    subject_name, payload, preview, amount_minor, currency, reason_code, reason_text, ticket_id, case_ref,
    idempotency_key, request_hash, risk_level, needs_approval, allowed_checker_roles, maker, maker_user_id,
    created_at, checker, checker_user_id, decided_at, decision_reason, executed_at, result, error_code,
    error_message, status, version)
SELECT 'act_' || %(run)s || lpad(g::text, 18, '0'),
       'CREATE_LEDGER_ADJUSTMENT', 'merchant_ledger', m || ':IDR', 'Ledger of merchant ' || m || ' in IDR',
       'OPEN', m, '', m,
       jsonb_build_object('merchant_ref', m, 'currency', 'IDR', 'amount_minor', 100 + g %% 1000,
                          'adjustment_type', 'MERCHANT_CREDIT', 'description', ''),
       jsonb_build_object('kind', 'ledger', 'summary', 'bench'),
       100 + g %% 1000, 'IDR', 'FEE_CORRECTION', 'benchmark request ' || g, '', '',
       'bench-' || %(run)s || '-' || g, md5(m) || md5(g::text), 'HIGH', true, ARRAY['finance_manager']::varchar[],
       'bench', NULL,
       %(before_cutoff)s - make_interval(secs => (%(n)s - g) * 43200.0 / %(n)s),
       '', NULL, NULL, '', NULL, NULL, '', '', %(pending)s, 1
  FROM generate_series(1, %(n)s) AS g, LATERAL (SELECT 'bench_' || %(tag)s || '_' || g AS m) AS t
"""


class Command(BaseCommand):
    help = "Measure requests_reject_pending on N pending requests (created set-based, yesterday in business time)."

    def add_arguments(self, parser):
        parser.add_argument("--pending", type=int, required=True, help="how many pending requests to create")
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")

    def handle(self, *args, **opts):
        if settings.DJANGO_ENV == "production":
            raise CommandError("approvals_bench_eod writes benchmark requests; it refuses to run in production")
        n = opts["pending"]
        if n < 1:
            raise CommandError("--pending must be at least 1")
        run = "".join(secrets.choice(_CROCKFORD) for _ in range(8))
        now = utc_now()
        cutoff = business_day_start(now)
        where = "embedded" if settings.EMBEDDED_DATABASE else connection.settings_dict["HOST"]
        self.stdout.write(
            f"approvals_bench_eod run {run}: {n} pending requests, database {where}, cut-off "
            f"{cutoff.isoformat()} ({cutoff.astimezone(business_timezone()).isoformat()})"
        )

        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _SEED,
                {"run": run, "tag": run.lower(), "n": n, "pending": RequestStatus.REQUESTED,
                 "before_cutoff": cutoff - dt.timedelta(seconds=1)},
            )  # fmt: skip
            created = cursor.rowcount
            cursor.execute("ANALYZE approvals_actionrequest")
        self.stdout.write(f"created {created} pending requests in {time.perf_counter() - started:.2f} s")

        actor = system_actor("end_of_day")
        with audit_context(actor=actor):
            started = time.perf_counter()
            result = requests_reject_pending(as_of=now, actor=actor, now=now)
            seconds = time.perf_counter() - started
        self.stdout.write(
            f"rejected {result.rejected} in {seconds:.2f} s ({result.rejected / seconds:,.0f}/s), "
            f"audit events {result.audit_events}"
        )

        started = time.perf_counter()
        report = chain_verify()
        left = ActionRequest.objects.filter(status=RequestStatus.REQUESTED, created_at__lt=cutoff).count()
        ours = ActionRequest.objects.filter(public_id__startswith=f"act_{run}", status=RequestStatus.REJECTED).count()
        self.stdout.write(
            f"audit chain {'intact' if report.intact else 'BROKEN'} ({report.events_checked} events, "
            f"{time.perf_counter() - started:.2f} s); pending before the cut-off left: {left}; "
            f"bench requests rejected: {ours}/{created}"
        )
        problems = []
        if not report.intact:
            problems.append(f"audit chain broken at seq {report.broken_seq}: {report.problem}")
        if left or ours != created:
            problems.append(f"{left} request(s) left pending, {created - ours} bench request(s) not rejected")
        if result.audit_events != result.rejected:
            problems.append(f"{result.audit_events} audit events for {result.rejected} rejections")
        if problems:
            raise CommandError("; ".join(problems))
        if opts["json"]:
            self.stdout.write(
                json.dumps({"pending": created, "seconds": round(seconds, 3), "audit_events": result.audit_events})
            )
