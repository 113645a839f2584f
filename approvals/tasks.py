from celery import shared_task

from approvals.services import requests_reject_pending
from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.clock import utc_now


@shared_task(name="approvals.tasks.approvals_reject_pending")
def approvals_reject_pending() -> dict:
    """End of day: reject what is still pending from before the current business day's cut-off.
    Safe to run twice or late: the service rejects each request once and only past the cut-off."""
    actor = system_actor("end_of_day")
    now = utc_now()
    with audit_context(actor=actor):
        result = requests_reject_pending(as_of=now, actor=actor, now=now)
    return {"cutoff": result.cutoff.isoformat(), "rejected": result.rejected, "audit_events": result.audit_events}
