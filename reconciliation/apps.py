from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # Test-database flushes empty the seeded rules; re-ensure them (creates only what is missing).
        post_migrate.connect(_ensure_rules, sender=self)

        from approvals.registry import register_action
        from reconciliation.actions import RECONCILIATION_ACTIONS

        for spec in RECONCILIATION_ACTIONS:
            register_action(spec)

        from backoffice.demo import register_demo_seeder
        from reconciliation.demo import reconciliation_demo_seed

        # After the payments seeder (INSTALLED_APPS order): the statements are made from its payments.
        register_demo_seeder("reconciliation", reconciliation_demo_seed)

        from reconciliation.views import breaks, files

        files.register_screens()
        breaks.register_screens()


def _ensure_rules(sender, apps=None, **kwargs):
    from django.apps import apps as current_apps
    from django.utils import timezone

    from reconciliation.rules import ensure_rules

    try:
        if apps is not None:
            apps.get_model("reconciliation", "ReconciliationRule")
    except LookupError:
        return
    ensure_rules(current_apps, timezone.now())
