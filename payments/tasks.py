"""The payments app's Celery tasks: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.errors import DomainError
from payments.webhooks.process import webhook_process

WEBHOOK_PROCESSOR = system_actor("webhook_processor")


# Retried only for what a retry can fix (a lost connection, a deadlock victim, a lock timeout):
# refusals are quarantined by the service and never raise. A second run, a redelivery after a lost
# ack, or a run racing a replay finds the event no longer RECEIVED and changes nothing.
@shared_task(
    name="payments.tasks.webhook_process_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def webhook_process_task(*, event_id: str) -> dict:
    with audit_context(actor=WEBHOOK_PROCESSOR):
        outcome = webhook_process(event_id=event_id, actor=WEBHOOK_PROCESSOR, now=timezone.now())
    return {"event": event_id, "result": outcome.result, "status": outcome.event.processing_status,
            "case": outcome.case_number}  # fmt: skip


# --- provider state inquiries --------------------------------------------------------------------------

PROVIDER_INQUIRY = system_actor("provider_inquiry")
INQUIRY_SWEEPER = system_actor("inquiry_sweeper")


# Provider errors never raise here (the inquiry records TIMEOUT or ERROR); a retry is only for the
# database. A redelivered or retried run finds the inquiry COMPLETED and neither asks nor applies again.
@shared_task(
    name="payments.tasks.inquiry_run_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def inquiry_run_task(*, inquiry_id: str) -> dict:
    # Local imports keep this section self-contained below the webhook task (no import cycle needs them).
    from payments.services.inquiry import inquiry_run

    with audit_context(actor=PROVIDER_INQUIRY):
        inquiry = inquiry_run(inquiry_id=inquiry_id, actor=PROVIDER_INQUIRY, now_fn=timezone.now)
    return {"inquiry": inquiry.public_id, "status": inquiry.status, "outcome": inquiry.outcome}


@shared_task(name="payments.tasks.attempts_inquire_stale_task")
def attempts_inquire_stale_task() -> dict:
    """The stale-attempt sweeper (beat, every few minutes). Safe to run twice or at once with
    another run: attempts are claimed with SKIP LOCKED and their next inquiry is pushed back."""
    import datetime as dt

    from django.conf import settings

    from payments.services.inquiry import attempts_inquire_stale

    with audit_context(actor=INQUIRY_SWEEPER):
        result = attempts_inquire_stale(
            stale_minutes=int(getattr(settings, "PAYMENTS_INQUIRY_STALE_MINUTES", 15)),
            limit=int(getattr(settings, "PAYMENTS_INQUIRY_SWEEP_LIMIT", 200)),
            max_tries=int(getattr(settings, "PAYMENTS_INQUIRY_MAX_TRIES", 6)),
            backoff=dt.timedelta(seconds=int(getattr(settings, "PAYMENTS_INQUIRY_BACKOFF_SECONDS", 300))),
            max_backoff=dt.timedelta(seconds=int(getattr(settings, "PAYMENTS_INQUIRY_MAX_BACKOFF_SECONDS", 21_600))),
            actor=INQUIRY_SWEEPER, now=timezone.now(),
        )  # fmt: skip
    return {"inquiries": [i.public_id for i in result.inquiries], "escalated": result.escalated,
            "skipped": len(result.skipped), "failed": result.failed}  # fmt: skip


# --- handing refunds and payouts to the provider, and the dispatch sweep ---------------------------------

REFUND_DISPATCHER = system_actor("refund_dispatcher")
PAYOUT_DISPATCHER = system_actor("payout_dispatcher")
DISPATCH_SWEEPER = system_actor("dispatch_sweeper")


# Queued after commit when a refund is requested (or by the dispatch sweep). A second run, or a run
# racing the sweep's, finds the refund no longer REQUESTED and sends nothing. A refusal (a restriction,
# a provider that does not match) is audited by the service and leaves the refund REQUESTED: it is
# reported, not raised. Retried only for the database.
@shared_task(
    name="payments.tasks.refund_send_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def refund_send_task(*, refund_id: str) -> dict:
    from payments.services.refunds import refund_send

    with audit_context(actor=REFUND_DISPATCHER):
        try:
            refund = refund_send(refund_id=refund_id, actor=REFUND_DISPATCHER, now=timezone.now())
        except DomainError as exc:
            return {"refund": refund_id, "refused": exc.code, "message": exc.message}
    return {"refund": refund.public_id, "status": refund.status}


# Queued after commit when a payout becomes APPROVED (or by the dispatch sweep); as above: a second
# run finds it no longer APPROVED and sends nothing; refusals (a block, a balance spent meanwhile)
# are audited by the service and leave it APPROVED for the next sweep.
@shared_task(
    name="payments.tasks.payout_send_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def payout_send_task(*, payout_id: str) -> dict:
    from payments.services.payouts import payout_send

    with audit_context(actor=PAYOUT_DISPATCHER):
        try:
            payout = payout_send(payout_id=payout_id, actor=PAYOUT_DISPATCHER, now=timezone.now())
        except DomainError as exc:
            return {"payout": payout_id, "refused": exc.code, "message": exc.message}
    return {"payout": payout.public_id, "status": payout.status}


@shared_task(name="payments.tasks.dispatch_stale_task")
def dispatch_stale_task() -> dict:
    """The dispatch sweep (beat, every few minutes): queue again what a lost task left behind.
    Safe to run twice or at once with another run (SKIP LOCKED; the tasks it queues are idempotent)."""
    from django.conf import settings

    from payments.services.dispatch import dispatch_stale

    with audit_context(actor=DISPATCH_SWEEPER):
        result = dispatch_stale(
            stale_minutes=int(getattr(settings, "PAYMENTS_DISPATCH_STALE_MINUTES", 10)),
            limit=int(getattr(settings, "PAYMENTS_DISPATCH_SWEEP_LIMIT", 200)),
            actor=DISPATCH_SWEEPER, now=timezone.now(),
        )  # fmt: skip
    return {"refunds": result.refunds, "payouts": result.payouts, "provider_events": result.provider_events}
