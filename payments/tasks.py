"""The payments app's Celery tasks: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
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
