from django.core.management.base import BaseCommand, CommandError

from audit.verification import chain_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain; exit 0 when intact, non-zero naming the first broken event."

    def handle(self, *args, **options):
        report = chain_verify()
        if not report.intact:
            raise CommandError(
                f"audit chain BROKEN at event seq={report.broken_seq} id={report.broken_event_id}: "
                f"{report.problem}. {report.events_checked} events before it are intact."
            )
        self.stdout.write(f"audit chain intact: {report.events_checked} events in {len(report.heads)} lane(s)")
        for lane, head in sorted(report.heads.items()):
            self.stdout.write(f"  lane {lane:>2}: head {head}")
