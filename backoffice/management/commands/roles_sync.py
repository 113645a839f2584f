from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backoffice.errors import DomainError
from backoffice.roles import ROLE_PERMISSIONS, ROLES
from backoffice.services.roles import roles_sync


class Command(BaseCommand):
    help = "Create the role groups and give each exactly the permissions backoffice/roles.py lists (idempotent)."

    def handle(self, *args, **options):
        try:
            changes = roles_sync(now=timezone.now(), strict=True)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        for name in ROLES:
            change = changes.get(name)
            detail = f"+{len(change['added'])} -{len(change['removed'])}" if change else "unchanged"
            self.stdout.write(f"{name:16} {len(ROLE_PERMISSIONS[name]):3} permissions  {detail}")
