import logging

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate

logger = logging.getLogger("backoffice")


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back-office"

    def ready(self) -> None:
        from backoffice import auth_events  # noqa: F401  (connects the sign-in receivers)
        from backoffice.navigation import Screen, register_screen

        register_screen(
            Screen(
                key="home",
                title="Home",
                url_name="home",
                permission=None,
                section="Overview",
                description="Operations dashboard: what needs attention now.",
                hotkey="h",
            )
        )
        register_screen(
            Screen(
                key="search",
                title="Search",
                url_name="search",
                permission=None,  # each kind of result is searched only with its own view permission
                section="Overview",
                description="Find a payment, refund, payout, journal, case, request, merchant or reference.",
                hotkey="s",
            )
        )
        post_migrate.connect(_sync_roles_after_migrate, sender=self)
        if not settings.REDIS_URL:
            logger.warning(
                "REDIS_URL is not set: Celery tasks run in-process (eager) and beat schedules do not run. "
                "Set REDIS_URL=redis://127.0.0.1:6379/0 for a real worker."
            )


def _sync_roles_after_migrate(sender, using="default", apps=None, **kwargs):
    """Roles follow the code after every migrate (idempotent; see backoffice.roles). A partial
    migrate that has not yet created the permission or audit tables leaves roles for the next one."""
    from django.utils import timezone

    try:
        if apps is not None:
            apps.get_model("auth", "Permission")
            apps.get_model("audit", "AuditEvent")
    except LookupError:
        return

    from backoffice.services.roles import roles_sync

    roles_sync(now=timezone.now(), strict=False)
