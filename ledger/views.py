"""Read-only ledger screens: the chart of accounts, an account's statement, one journal."""

from __future__ import annotations

from collections import defaultdict

from django.core.exceptions import BadRequest
from django.http import Http404
from django.views.generic import TemplateView

from backoffice.views.mixins import ScreenPermissionMixin
from ledger.forms import ChartFilterForm
from ledger.models import Direction, LedgerJournal
from ledger.selectors import (
    account_balances,
    account_by_code,
    account_statement,
    chart_of_accounts,
    journal_audit_events,
    journal_detail,
)

# chart_of_accounts() stops at this many accounts; past it the screen asks for a filter.
CHART_LIMIT = 500


class AccountListView(ScreenPermissionMixin, TemplateView):
    screen_key = "ledger_accounts"
    template_name = "ledger/account_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        form = ChartFilterForm(self.request.GET or None)
        rows = None
        if not form.is_bound:
            rows = chart_of_accounts()
        elif form.is_valid():  # an invalid filter shows nothing rather than everything
            rows = chart_of_accounts(currency=form.cleaned_data["currency"], owner_ref=form.cleaned_data["owner"])
        context.update(form=form, rows=rows, truncated=rows is not None and len(rows) >= CHART_LIMIT)
        return context


def _after(request) -> int | None:
    raw = request.GET.get("after", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise BadRequest("after must be an entry id")
    return int(raw)


class AccountStatementView(ScreenPermissionMixin, TemplateView):
    screen_key = "ledger_accounts"
    template_name = "ledger/account_statement.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        account = account_by_code(code=self.kwargs["code"])
        if account is None:
            raise Http404("no such ledger account")
        after = _after(self.request)
        context.update(
            account=account,
            balance=account_balances(accounts=[account])[0],
            page=account_statement(account=account, after=after),
            after=after,
            can_view_journals=self.request.user.has_perm("ledger.view_ledgerjournal"),
        )
        return context


def _reversed_by(journal: LedgerJournal) -> LedgerJournal | None:
    # A reverse one-to-one accessor raises instead of returning None when nothing is linked.
    try:
        return journal.reversed_by
    except LedgerJournal.DoesNotExist:
        return None


def _totals(journal: LedgerJournal) -> list[dict]:
    """Debits and credits per currency, from the lines already loaded (a journal may span currencies)."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry in journal.entries.all():
        sums[entry.currency][0 if entry.direction == Direction.DEBIT else 1] += entry.amount_minor
    return [
        {"currency": currency, "debit": debit, "credit": credit, "balanced": debit == credit}
        for currency, (debit, credit) in sorted(sums.items())
    ]


class JournalDetailView(ScreenPermissionMixin, TemplateView):
    screen_key = "ledger_accounts"
    permission = "ledger.view_ledgerjournal"
    template_name = "ledger/journal_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        journal = journal_detail(public_id=self.kwargs["public_id"])
        if journal is None:
            raise Http404("no such journal")
        context.update(
            journal=journal,
            reversed_by=_reversed_by(journal),
            totals=_totals(journal),
            audit_events=journal_audit_events(journal=journal),
        )
        return context
