from celery import shared_task
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from cases.services import cases_sla_sweep as sla_sweep_service


@shared_task(name="cases.tasks.cases_sla_sweep")
def cases_sla_sweep() -> dict:
    """Mark and escalate SLA breaches (safe to run twice: the service marks each breach once)."""
    actor = system_actor("sla_sweeper")
    with audit_context(actor=actor):
        return {"marked": sla_sweep_service(now=timezone.now(), actor=actor)}
