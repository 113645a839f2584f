from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "cases"
    verbose_name = "Cases"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from backoffice.demo import register_demo_seeder
        from backoffice.navigation import Screen, register_screen
        from cases import registry
        from cases.demo import cases_demo_seed
        from cases.linked import describe_cases

        # Test-database flushes empty the seeded SLA policies; re-ensure them (creates only what is missing).
        post_migrate.connect(_ensure_sla_policies, sender=self)
        registry.register_linkable_type("ops_case", title="Case", describe=describe_cases)
        register_demo_seeder("cases", cases_demo_seed)
        register_screen(
            Screen(
                key="case_worklist",
                title="Cases",
                url_name="cases:worklist",
                permission="cases.open_worklist",
                section="Cases",
                description="Your cases, your team's queue, SLA breaches; the case workbench.",
                hotkey="c",
            )
        )


def _ensure_sla_policies(sender, apps=None, **kwargs):
    from django.apps import apps as current_apps

    from cases.sla import ensure_sla_policies

    try:
        if apps is not None:
            apps.get_model("cases", "SlaPolicy")
    except LookupError:
        return
    ensure_sla_policies(current_apps)
