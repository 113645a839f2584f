"""Reads of the ledger. Balances are derived from entries; the projection is a fast path that
`ledger_verify` proves equal to them. Hot accounts are always read from entries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Prefetch

from audit.selectors import audit_events_for_targets
from backoffice.money import Money
from ledger.models import Direction, LedgerAccount, LedgerBalance, LedgerEntry, LedgerJournal

STATEMENT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AccountBalance:
    account: LedgerAccount
    debit_total_minor: int
    credit_total_minor: int
    balance: Money  # signed on the account's normal side
    from_projection: bool


def _sign(account: LedgerAccount) -> int:
    return 1 if account.normal_side == Direction.DEBIT else -1


def _entry_totals(account_ids: list[int], as_of: dt.date | None = None) -> dict[int, tuple[int, int]]:
    if not account_ids:
        return {}
    sql = """
        SELECT e.account_id,
               coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'DEBIT'), 0)::bigint,
               coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'CREDIT'), 0)::bigint
          FROM ledger_ledgerentry e
    """
    params: list = [account_ids]
    if as_of is not None:
        sql += (
            " JOIN ledger_ledgerjournal j ON j.id = e.journal_id"
            " WHERE e.account_id = ANY(%s) AND j.accounting_date <= %s"
        )
        params.append(as_of)
    else:
        sql += " WHERE e.account_id = ANY(%s)"
    sql += " GROUP BY e.account_id"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


def account_balances(*, accounts: list[LedgerAccount]) -> list[AccountBalance]:
    """Current balances: projections where kept, entry sums for hot accounts. Two queries at most."""
    projections = {b.account_id: b for b in LedgerBalance.objects.filter(account__in=[a.pk for a in accounts])}
    hot_totals = _entry_totals([a.pk for a in accounts if a.pk not in projections])
    result = []
    for account in accounts:
        if account.pk in projections:
            p = projections[account.pk]
            debit, credit, from_projection = p.debit_total_minor, p.credit_total_minor, True
        else:
            debit, credit = hot_totals.get(account.pk, (0, 0))
            from_projection = False
        result.append(
            AccountBalance(
                account, debit, credit, Money((debit - credit) * _sign(account), account.currency), from_projection
            )
        )
    return result


def account_balance(*, account: LedgerAccount) -> AccountBalance:
    return account_balances(accounts=[account])[0]


def account_balance_as_of(*, account: LedgerAccount, accounting_date: dt.date) -> Money:
    """Point-in-time balance: entries of journals with an accounting date on or before `accounting_date`."""
    debit, credit = _entry_totals([account.pk], as_of=accounting_date).get(account.pk, (0, 0))
    return Money((debit - credit) * _sign(account), account.currency)


def merchant_balances(*, merchant_ref: str) -> list[AccountBalance]:
    """A merchant's balances by bucket and currency."""
    accounts = list(LedgerAccount.objects.filter(owner_ref=merchant_ref).order_by("currency", "balance_bucket"))
    return account_balances(accounts=accounts)


def chart_of_accounts(*, currency: str = "", owner_ref: str = "") -> list[AccountBalance]:
    accounts = LedgerAccount.objects.all().order_by("code")
    if currency:
        accounts = accounts.filter(currency=currency)
    if owner_ref:
        accounts = accounts.filter(owner_ref=owner_ref)
    return account_balances(accounts=list(accounts[:500]))


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    journal_public_id: str
    journal_type: str
    accounting_date: dt.date
    posted_at: dt.datetime
    description: str
    direction: str
    amount: Money
    running_balance: Money


@dataclass(frozen=True)
class StatementPage:
    account: LedgerAccount
    lines: list[StatementLine]
    next_after: int | None  # entry id to continue after (oldest first)


def account_statement(
    *, account: LedgerAccount, after: int | None = None, size: int = STATEMENT_PAGE_SIZE
) -> StatementPage:
    """Entries oldest first with a running balance; keyset-paginated on entry id. Two queries."""
    sign = _sign(account)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(sum(CASE WHEN direction = 'DEBIT' THEN amount_minor ELSE -amount_minor END), 0)::bigint
              FROM ledger_ledgerentry WHERE account_id = %s AND id <= %s
            """,
            [account.pk, after or 0],
        )
        (opening,) = cursor.fetchone()
    entries = list(
        LedgerEntry.objects.filter(account=account, id__gt=after or 0)
        .select_related("journal")
        .order_by("id")[: size + 1]
    )
    has_more = len(entries) > size
    entries = entries[:size]
    running = opening
    lines = []
    for e in entries:
        running += e.amount_minor if e.direction == Direction.DEBIT else -e.amount_minor
        lines.append(
            StatementLine(
                entry_id=e.pk, journal_public_id=e.journal.public_id, journal_type=e.journal.journal_type,
                accounting_date=e.journal.accounting_date, posted_at=e.journal.posted_at,
                description=e.journal.description, direction=e.direction, amount=Money(e.amount_minor, e.currency),
                running_balance=Money(running * sign, account.currency),
            )
        )  # fmt: skip
    return StatementPage(account=account, lines=lines, next_after=entries[-1].pk if has_more and entries else None)


def journal_detail(*, public_id: str) -> LedgerJournal | None:
    """A journal with its lines, accounts, what it reverses and what reversed it. Three queries."""
    return (
        LedgerJournal.objects.filter(public_id=public_id)
        .select_related("reverses")
        .prefetch_related(
            Prefetch("entries", queryset=LedgerEntry.objects.select_related("account").order_by("id")),
            "reversed_by",
        )
        .first()
    )


def journal_audit_events(*, journal: LedgerJournal) -> list:
    """What the audit trail says about this journal: its posting (or the batch that posted it) and
    any refusal recorded under its idempotency key."""
    targets = [("ledger_journal", journal.idempotency_key)]
    if journal.batch_ref:
        targets.append(("ledger_batch", journal.batch_ref))
    return audit_events_for_targets(targets=targets)


def journals_for_source(*, source_type: str, source_id: str) -> list[LedgerJournal]:
    return list(LedgerJournal.objects.filter(source_type=source_type, source_id=source_id).order_by("id"))


def account_by_code(*, code: str) -> LedgerAccount | None:
    return LedgerAccount.objects.filter(code=code).first()
