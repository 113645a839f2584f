"""Import a statement file into a reconciliation source: `manage.py recon_import SOURCE FILE`.

In-process by default (prints the counts and the balance check, or the parse error and exits
non-zero); with --async the file is received here and the import is queued (statement_import_task),
printing the file id whose page shows the progress.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from backoffice.errors import DomainError
from reconciliation.models import FileStatus, ReconciliationSource
from reconciliation.services import statement_import, statement_import_enqueue, statement_receive

ACTOR = system_actor("recon_import")


class Command(BaseCommand):
    help = "Receive a statement or settlement file for a reconciliation source and import it."

    def add_arguments(self, parser):
        parser.add_argument("source", help="the source's code, e.g. bca-idr-operating")
        parser.add_argument("file", help="path of the statement file")
        parser.add_argument("--async", dest="run_async", action="store_true",
                            help="queue the import as a Celery task and print the file id")  # fmt: skip

    def handle(self, *args, **opts):
        try:
            source = ReconciliationSource.objects.get(code=opts["source"])
        except ReconciliationSource.DoesNotExist:
            raise CommandError(f"no reconciliation source {opts['source']!r}") from None
        path = Path(opts["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        with audit_context(actor=ACTOR):
            try:
                file, created = statement_receive(source=source, filename=path.name, data=data, actor=ACTOR,
                                                  now=timezone.now())  # fmt: skip
                if not created:
                    self.stdout.write(f"{file.public_id}: received before ({file.status}); nothing changed")
                if opts["run_async"]:
                    task_id = statement_import_enqueue(file_id=file.public_id, actor=ACTOR, now=timezone.now())
                    self.stdout.write(f"{file.public_id} queued (task {task_id or '-'})")
                    return
                file = statement_import(file_id=file.public_id, actor=ACTOR, now_fn=timezone.now)
            except DomainError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from None
        if file.status == FileStatus.FAILED:
            raise CommandError(f"{file.public_id} FAILED at {file.error_location or 'the file'}: {file.error_message}")
        if file.status != FileStatus.IMPORTED:
            self.stdout.write(f"{file.public_id} is {file.status} (another importer is working on it)")
            return
        balance = file.balance_check
        if file.balance_difference_minor:
            balance += f" (difference {file.balance_difference_minor} minor units)"
        self.stdout.write(
            f"{file.public_id} IMPORTED: {file.imported_count} of {file.line_count} lines, {file.format}, "
            f"period {file.period_start or '-'} .. {file.period_end or '-'}, balance check {balance}"
        )
        for note in file.notes:
            self.stdout.write(f"  note: {note}")
