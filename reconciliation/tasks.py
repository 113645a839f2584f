"""The reconciliation app's Celery tasks: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor

STATEMENT_IMPORTER = system_actor("statement_importer")
RECONCILER = system_actor("reconciler")


# A second run, a redelivery after a lost ack, or a run racing another finds the file IMPORTED or
# FAILED (returned as it is) or being imported by the other (returned as it is); a retry after a
# lost connection finds it IMPORTING with nobody holding its lock and loads it from the start (the
# lost attempt's transaction rolled back). A bad file is not an error here: it ends FAILED.
@shared_task(
    name="reconciliation.tasks.statement_import_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def statement_import_task(*, file_id: str) -> dict:
    from reconciliation.services import statement_import

    with audit_context(actor=STATEMENT_IMPORTER):
        file = statement_import(file_id=file_id, actor=STATEMENT_IMPORTER, now_fn=timezone.now)
    return {"file": file.public_id, "status": file.status, "lines": file.line_count, "imported": file.imported_count,
            "error": file.error_message}  # fmt: skip


# Runs of one source are serialised by the service's advisory lock: a second run waits and then
# matches only what the first left (nothing twice).
@shared_task(
    name="reconciliation.tasks.reconciliation_run_task", autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True, retry_backoff_max=300, max_retries=5,
)  # fmt: skip
def reconciliation_run_task(*, source_code: str) -> dict:
    from reconciliation.models import ReconciliationSource
    from reconciliation.services import reconciliation_run

    source = ReconciliationSource.objects.get(code=source_code)
    with audit_context(actor=RECONCILER):
        run = reconciliation_run(source=source, actor=RECONCILER, now_fn=timezone.now)
    return {"run": run.public_id, "status": run.status, "items": run.items_considered, "matches": run.matches_made,
            "breaks_opened": run.breaks_opened, "breaks_closed": run.breaks_closed}  # fmt: skip
