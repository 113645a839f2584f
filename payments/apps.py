from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        from payments.actions import register_payment_actions

        register_payment_actions()

        from payments.views import register_screens

        register_screens()

        from backoffice.demo import register_demo_seeder
        from payments.demo import payments_demo_seed

        register_demo_seeder("payments", payments_demo_seed)
