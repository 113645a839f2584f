from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from payments.actions import register_payment_actions

        register_payment_actions()

        from payments.views import register_screens

        register_screens()

        from cases import registry as case_registry
        from payments.services.cases import describe_attempts, describe_intents

        case_registry.register_linkable_type("payment_intent", title="Payment", describe=describe_intents)
        case_registry.register_linkable_type("payment_attempt", title="Payment attempt", describe=describe_attempts)

        from backoffice.demo import register_demo_seeder
        from payments.demo import payments_demo_seed

        register_demo_seeder("payments", payments_demo_seed)
