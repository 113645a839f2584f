import io

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backoffice.demo import DEMO_PASSWORD, demo_seed
from backoffice.errors import DomainError


class Command(BaseCommand):
    help = "Create demo users for every role (and demo data). Idempotent. Refuses to run in production."

    def handle(self, *args, **options):
        if settings.DJANGO_ENV == "production":
            raise CommandError(
                "demo_seed refuses to run with DJANGO_ENV=production: demo users have published passwords."
            )
        try:
            summaries = io.StringIO()
            results = demo_seed(now=timezone.now(), out=summaries)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("Demo users (DEMO ONLY: these passwords are published in the README):")
        for demo, created in results:
            state = "created" if created else "exists"
            self.stdout.write(f"  {demo.username:12} role {demo.role:16} password {DEMO_PASSWORD}  ({state})")
        self.stdout.write("Demo data:")
        for line in summaries.getvalue().splitlines():
            self.stdout.write(f"  {line}")
