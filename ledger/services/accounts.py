"""Opening accounts on demand from the chart of accounts (the spec for each role)."""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from backoffice.money import CurrencyError, currency_exponent
from ledger.models import NORMAL_SIDE, ChartAccountSpec, Direction, LedgerAccount, LedgerBalance, OwnerKind


def account_code(spec: ChartAccountSpec, currency: str, owner_ref: str) -> str:
    return f"{spec.code_prefix}-{currency}" + (f"-{owner_ref}" if owner_ref else "")


def _check_owner(spec: ChartAccountSpec, owner_ref: str) -> None:
    if spec.owner_kind == OwnerKind.MERCHANT and not owner_ref:
        raise ValidationFailed(f"a {spec.role} account belongs to a merchant: give the merchant reference")
    if spec.owner_kind == OwnerKind.PLATFORM and owner_ref:
        raise ValidationFailed(f"{spec.role} is a platform account and has no owner")


def account_find(*, role: str, currency: str, owner_ref: str = "") -> LedgerAccount | None:
    return LedgerAccount.objects.filter(role=role, currency=currency, owner_ref=owner_ref).first()


def account_for(*, role: str, currency: str, owner_ref: str = "", actor: Actor, now: dt.datetime) -> LedgerAccount:
    """The account of `role` in `currency` for `owner_ref`, opened from the chart if it does not exist.

    Safe under concurrency: two openers race on the (role, currency, owner) unique constraint and
    both get the same account. Opening writes the account, its balance projection (unless the
    role is designated hot) and an audit event, in the caller's transaction.
    """
    existing = account_find(role=role, currency=currency, owner_ref=owner_ref)
    if existing is not None:
        return existing
    try:
        currency_exponent(currency)
    except CurrencyError as exc:
        raise ValidationFailed(str(exc)) from exc
    spec = ChartAccountSpec.objects.filter(role=role).first()
    if spec is None:
        raise ValidationFailed(f"the chart of accounts has no role {role!r}")
    _check_owner(spec, owner_ref)
    normal_side = NORMAL_SIDE[spec.account_type]
    code = account_code(spec, currency, owner_ref)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO ledger_ledgeraccount
                    (code, name, role, account_type, normal_side, currency, owner_ref, balance_bucket,
                     allow_negative, is_hot, status, description, opened_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'OPEN', %s, %s)
                ON CONFLICT (role, currency, owner_ref) DO NOTHING
                RETURNING id
                """,
                [code, f"{spec.name} {currency}" + (f" {owner_ref}" if owner_ref else ""), spec.role,
                 spec.account_type, normal_side, currency, owner_ref, spec.balance_bucket, spec.allow_negative,
                 spec.is_hot, spec.description, now],
            )  # fmt: skip
            row = cursor.fetchone()
        if row is None:  # opened by a concurrent caller a moment ago
            return LedgerAccount.objects.get(role=role, currency=currency, owner_ref=owner_ref)
        account = LedgerAccount.objects.get(pk=row[0])
        if not account.is_hot:
            LedgerBalance.objects.create(
                account=account,
                normal_sign=1 if normal_side == Direction.DEBIT else -1,
                allow_negative=account.allow_negative,
            )
        audit_record(
            event_type="ledger.account_opened", actor=actor, action_type="ACCOUNT_OPEN", target_type="ledger_account",
            target_id=account.code, after={"role": role, "currency": currency, "owner_ref": owner_ref,
                                           "hot": account.is_hot, "allow_negative": account.allow_negative},
            now=now,
        )  # fmt: skip
        return account
