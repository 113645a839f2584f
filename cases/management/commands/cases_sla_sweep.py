from django.core.management.base import BaseCommand
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from cases.services import cases_sla_sweep


class Command(BaseCommand):
    help = "Mark open cases past their SLA as breached and escalate them (idempotent; audited per case)."

    def handle(self, *args, **options):
        actor = system_actor("sla_sweeper")
        with audit_context(actor=actor):
            marked = cases_sla_sweep(now=timezone.now(), actor=actor)
        self.stdout.write(f"SLA sweep: {marked} case(s) newly marked as breached and escalated")
