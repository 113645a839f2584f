import logging

from celery import shared_task
from django.utils import timezone

from audit.context import audit_context
from audit.models import AuditResult
from audit.services import audit_record
from audit.verification import chain_verify
from backoffice.actors import system_actor

logger = logging.getLogger(__name__)


@shared_task(name="audit.tasks.audit_chain_verify")
def audit_chain_verify() -> dict:
    """Verify the chain and record the verdict; running it twice only records two verdicts."""
    report = chain_verify()
    actor = system_actor("audit_verifier")
    with audit_context(actor=actor):
        if report.intact:
            audit_record(
                event_type="audit.chain_verified",
                target_type="audit_chain",
                target_id="main",
                after={"events_checked": report.events_checked, "lanes": len(report.heads)},
                now=timezone.now(),
            )
        else:
            logger.error(
                "audit chain broken at seq=%s (%s): %s",
                report.broken_seq,
                report.broken_event_id,
                report.problem,
            )
            audit_record(
                event_type="audit.chain_verified",
                result=AuditResult.FAILED,
                target_type="audit_chain",
                target_id="main",
                error_code="AUDIT_CHAIN_BROKEN",
                error_message=f"broken at seq {report.broken_seq} ({report.broken_event_id}): {report.problem}",
                now=timezone.now(),
            )
    return {"intact": report.intact, "events_checked": report.events_checked, "broken_seq": report.broken_seq}
