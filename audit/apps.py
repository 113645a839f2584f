from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from backoffice.navigation import Screen, register_screen

        register_screen(
            Screen(
                key="audit",
                title="Audit trail",
                url_name="audit:event_list",
                permission="audit.view_auditevent",
                section="Control",
                description="Who did what to which object, why, and with what result; hash-chained.",
                hotkey="a",
            )
        )
