"""Ledger test data, made only through the ledger's services."""

import datetime as dt
import itertools

from django.utils import timezone

from backoffice.actors import system_actor
from ledger.services import PostingLine, Source, account_for, journal_post, journal_post_rule

ACTOR = system_actor("test")
_keys = itertools.count(1)


def now() -> dt.datetime:
    return timezone.now()


def key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}-{timezone.now().timestamp()}"


def account(role: str, currency: str = "IDR", owner: str = ""):
    return account_for(role=role, currency=currency, owner_ref=owner, actor=ACTOR, now=now())


def credit_merchant(merchant: str, amount_minor: int, currency: str = "IDR", idempotency_key: str | None = None):
    """Fund a merchant's available balance (MERCHANT_CREDIT: Dr ops loss / Cr merchant payable)."""
    return journal_post_rule(
        rule_code="MERCHANT_CREDIT",
        currency=currency,
        amounts={"AMOUNT": amount_minor},
        merchant_ref=merchant,
        source=Source("test", merchant),
        accounting_date=now().date(),
        idempotency_key=idempotency_key or key("credit"),
        actor=ACTOR,
        now=now(),
    )


def transfer(debit_account, credit_account, amount_minor: int, idempotency_key: str | None = None, **kwargs):
    return journal_post(
        lines=[
            PostingLine(debit_account.pk, "DEBIT", amount_minor, debit_account.currency),
            PostingLine(credit_account.pk, "CREDIT", amount_minor, credit_account.currency),
        ],
        journal_type="TEST_TRANSFER",
        source=Source("test", "transfer"),
        accounting_date=kwargs.pop("date", now().date()),
        idempotency_key=idempotency_key or key("transfer"),
        actor=ACTOR,
        now=now(),
        **kwargs,
    )
