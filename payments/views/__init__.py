"""The payment domain's operator screens: the payment page, the merchant page and the queues.
Each module registers its screens and holds its URL patterns; views read through selectors and act
through services and approval actions only."""

from __future__ import annotations


def register_screens() -> None:
    from payments.views import merchant, payment, queues

    for module in (payment, merchant, queues):
        module.register_screens()
