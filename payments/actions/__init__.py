"""The payment domain's maker-checker actions, registered with the approvals engine in
PaymentsConfig.ready(). Each module lists its ActionSpecs in ACTIONS; approvals never touches
payment rows itself."""

from __future__ import annotations

from approvals.registry import register_action

from . import inquiry, merchants, money, restrictions, webhooks


def register_payment_actions() -> None:
    for spec in (*merchants.ACTIONS, *money.ACTIONS, *restrictions.ACTIONS, *webhooks.ACTIONS, *inquiry.ACTIONS):
        register_action(spec)
