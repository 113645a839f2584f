from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice.navigation import Screen, register_screen

        # Test-database flushes empty the seeded chart; re-ensure it (creates only what is missing).
        post_migrate.connect(_ensure_chart, sender=self)

        from backoffice.demo import register_demo_seeder
        from ledger.demo import ledger_demo_seed

        register_demo_seeder("ledger", ledger_demo_seed)

        from approvals.registry import register_action
        from ledger.actions import JOURNAL_REVERSAL, LEDGER_ADJUSTMENT

        register_action(LEDGER_ADJUSTMENT)
        register_action(JOURNAL_REVERSAL)

        # One menu entry: statements and journals are reached from it by links, and their views
        # reuse this screen (with their own permission) so the menu highlights where they came from.
        register_screen(
            Screen(
                key="ledger_accounts",
                title="Chart of accounts",
                url_name="ledger:account_list",
                permission="ledger.view_ledgeraccount",
                section="Money",
                description="Ledger accounts with balances; statements and journals, read-only.",
                hotkey="l",
            )
        )


def _ensure_chart(sender, apps=None, **kwargs):
    """Seed what is missing of the chart, once the ledger's and the audit trail's tables exist."""
    from django.apps import apps as current_apps

    from ledger.chart import ensure_chart

    try:
        if apps is not None:
            apps.get_model("ledger", "PostingRule")
            apps.get_model("audit", "AuditEvent")
    except LookupError:
        return
    ensure_chart(current_apps)
