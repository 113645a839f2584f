"""Ask the provider about stuck payment attempts, synchronously, as system:payments_inquire.

    manage.py payments_inquire --stale-minutes 15 [--limit 200]     the sweeper, once, by hand
    manage.py payments_inquire --attempt pa_... --reason "..."      one attempt

The same services as the beat task and the operator's refresh; the inquiries run here, one after
the other, instead of on a worker, so the output says what each provider answer did. Nothing is
ever re-submitted to a provider: an inquiry only asks for state.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.errors import DomainError
from backoffice.ids import new_idempotency_key
from payments.models import InquiryTrigger, PaymentAttempt, ProviderInquiry
from payments.services.inquiry import attempts_inquire_stale, inquiry_request, inquiry_run

ACTOR = system_actor("payments_inquire")


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


class Command(BaseCommand):
    help = (
        "Ask the payment provider for the state of stuck attempts (the stale-attempt sweeper, run once and "
        "synchronously), or of one attempt with --attempt and --reason. Prints each inquiry's outcome."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stale-minutes", type=int, help="sweep attempts sent at least this many minutes ago")
        parser.add_argument("--limit", type=int, help="at most this many attempts (PAYMENTS_INQUIRY_SWEEP_LIMIT)")
        parser.add_argument("--max-tries", type=int, help="escalate after this many tries (PAYMENTS_INQUIRY_MAX_TRIES)")
        parser.add_argument(
            "--backoff-seconds", type=int,
            help="wait after the first try, doubled after each (PAYMENTS_INQUIRY_BACKOFF_SECONDS)",
        )  # fmt: skip
        parser.add_argument("--attempt", help="inquire this one attempt (pa_...)")
        parser.add_argument("--reason", help="why (required with --attempt)")
        parser.add_argument("--reason-code", default="MAINTENANCE", help="reason code with --attempt (MAINTENANCE)")

    def handle(self, *args, **options):
        if options["attempt"]:
            if options["stale_minutes"] is not None:
                raise CommandError("give either --attempt or --stale-minutes, not both")
            self._one(options)
        elif options["stale_minutes"] is not None:
            self._sweep(options)
        else:
            raise CommandError("give --stale-minutes N to sweep, or --attempt pa_... --reason '...' for one attempt")

    def _one(self, options) -> None:
        reason = (options["reason"] or "").strip()
        if not reason:
            raise CommandError("--attempt needs --reason: every inquiry records why it was asked")
        with audit_context(actor=ACTOR):
            try:
                inquiry = inquiry_request(
                    attempt_id=options["attempt"].strip(), trigger=InquiryTrigger.COMMAND,
                    reason_code=options["reason_code"], reason_text=reason, idempotency_key=new_idempotency_key(),
                    actor=ACTOR, now=timezone.now(), enqueue=False,
                )  # fmt: skip
                inquiry = inquiry_run(inquiry_id=inquiry.public_id, actor=ACTOR, now_fn=timezone.now)
            except DomainError as exc:
                raise CommandError(f"refused ({exc.code}): {exc.message}") from exc
        self.stdout.write(self._line(inquiry))

    def _sweep(self, options) -> None:
        stale = options["stale_minutes"]
        limit = options["limit"] or _setting("PAYMENTS_INQUIRY_SWEEP_LIMIT", 200)
        max_tries = options["max_tries"] or _setting("PAYMENTS_INQUIRY_MAX_TRIES", 6)
        backoff = options["backoff_seconds"] or _setting("PAYMENTS_INQUIRY_BACKOFF_SECONDS", 300)
        if stale < 0 or limit < 1 or max_tries < 1 or backoff < 1:
            raise CommandError("--stale-minutes >= 0; --limit, --max-tries and --backoff-seconds >= 1")
        with audit_context(actor=ACTOR):
            result = attempts_inquire_stale(
                stale_minutes=stale, limit=limit, max_tries=max_tries, backoff=dt.timedelta(seconds=backoff),
                max_backoff=dt.timedelta(seconds=_setting("PAYMENTS_INQUIRY_MAX_BACKOFF_SECONDS", 21_600)),
                actor=ACTOR, now=timezone.now(), enqueue=False,
            )  # fmt: skip
            done = [inquiry_run(inquiry_id=i.public_id, actor=ACTOR, now_fn=timezone.now) for i in result.inquiries]
        for inquiry in done:
            self.stdout.write(self._line(inquiry))
        for attempt_id, case_number in result.escalated.items():
            self.stdout.write(f"{attempt_id}: escalated to {case_number}; the sweeper no longer inquires it")
        for attempt_id, why in result.failed.items():
            self.stderr.write(f"{attempt_id}: escalation refused ({why}); the next sweep tries again")
        self.stdout.write(
            f"swept attempts stale for {stale}+ minutes: {len(done)} inquired, {len(result.escalated)} escalated, "
            f"{len(result.skipped)} skipped (claimed by another run, or settled meanwhile)"
        )

    @staticmethod
    def _line(inquiry: ProviderInquiry) -> str:
        attempt = PaymentAttempt.objects.only("public_id", "status").get(pk=inquiry.payment_attempt_id)
        http = inquiry.response_status if inquiry.response_status is not None else "-"
        mismatch = f" differs in {', '.join(sorted(inquiry.mismatch))}" if inquiry.mismatch else ""
        case = f" case {inquiry.case_ref}" if inquiry.case_ref else ""
        return (
            f"{inquiry.public_id} {attempt.public_id}: {inquiry.outcome}{mismatch}{case} "
            f"(HTTP {http}, {inquiry.duration_ms if inquiry.duration_ms is not None else '-'} ms); "
            f"attempt now {attempt.status}"
        )
