from django.core.management.base import BaseCommand, CommandError

from ledger.verification import ledger_verify


class Command(BaseCommand):
    help = "Prove the ledger whole: balanced journals, projections equal to entries, mirrored reversals."

    def handle(self, *args, **options):
        report = ledger_verify()
        summary = (
            f"{report.journals} journals, {report.entries} entries, {report.accounts} accounts "
            f"checked in {report.seconds:.3f} s"
        )
        if not report.ok:
            for breach in report.breaches:
                self.stderr.write(f"BREACH: {breach}")
            raise CommandError(f"ledger verification FAILED with {len(report.breaches)} breach(es); {summary}")
        self.stdout.write(f"ledger verified: {summary}; no breaches")
