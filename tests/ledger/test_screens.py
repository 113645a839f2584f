"""The read-only ledger screens (chart, statement, journal) and the ledger admin's refusals.

Data is set up only through ledger.services, as production writes it.
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from backoffice.actors import system_actor
from ledger.models import LedgerAccount, LedgerEntry, LedgerJournal
from ledger.selectors import STATEMENT_PAGE_SIZE
from ledger.services import Source, account_for, journal_post_rule, journal_reverse

pytestmark = pytest.mark.django_db

ACTOR = system_actor("test")
PAYABLE = "2100-IDR-m_1"


def post(rule_code: str, key: str, *, merchant: str = "m_1", currency: str = "IDR", **amounts) -> LedgerJournal:
    now = timezone.now()
    return journal_post_rule(
        rule_code=rule_code, currency=currency, amounts=amounts, merchant_ref=merchant,
        source=Source("payment_attempt", f"pa_{key}"), accounting_date=now.date(), idempotency_key=key,
        actor=ACTOR, now=now, description=f"{rule_code} {key}",
    )  # fmt: skip


def capture(key: str, *, merchant: str = "m_1", gross: int = 100_000, fee: int = 2_500) -> LedgerJournal:
    return post("CAPTURE_SUCCEEDED", key, merchant=merchant, GROSS=gross, FEE=fee)


def money_html(amount: str, currency: str) -> str:
    """What {% money %} renders, to find a formatted amount in a page."""
    return f'<span class="amount">{amount}</span> <span class="ccy">{currency}</span>'


def statement_url(code: str) -> str:
    return reverse("ledger:account_statement", args=[code])


def journal_url(journal: LedgerJournal) -> str:
    return reverse("ledger:journal_detail", args=[journal.public_id])


class TestChart:
    def test_shows_balances_formatted_with_currency_and_where_they_come_from(self, client_as):
        capture("cap-1")
        response = client_as("finance_ops").get(reverse("ledger:account_list"))
        assert response.status_code == 200
        rows = {row.account.code: row for row in response.context["rows"]}
        assert set(rows) == {"1100-IDR", PAYABLE, "4000-IDR"}
        assert rows[PAYABLE].balance.amount_minor == 97_500 and rows[PAYABLE].from_projection
        assert not rows["1100-IDR"].from_projection  # hot: summed from entries
        html = response.content.decode()

        def row_html(code: str) -> str:
            found = re.search(rf"<tr>\s*<td[^>]*><a href=\"{statement_url(code)}\">.*?</tr>", html, re.S)
            assert found, f"{code} links to its statement"
            return found.group(0)

        payable = row_html(PAYABLE)
        assert money_html("975.00", "IDR") in payable
        assert "projection" in payable and ">hot<" not in payable
        assert money_html("1,000.00", "IDR") in row_html("1100-IDR") and ">hot<" in row_html("1100-IDR")

    def test_filters_by_currency_and_owner(self, client_as):
        capture("cap-1")
        capture("cap-2", merchant="m_2")
        account_for(role="MERCHANT_PAYABLE", currency="USD", owner_ref="m_2", actor=ACTOR, now=timezone.now())
        client = client_as("finance_manager")

        def codes(**params):
            response = client.get(reverse("ledger:account_list"), params)
            assert response.status_code == 200
            rows = response.context["rows"]
            return None if rows is None else sorted(row.account.code for row in rows)

        assert codes(owner="m_2") == ["2100-IDR-m_2", "2100-USD-m_2"]
        assert codes(currency="usd") == ["2100-USD-m_2"]
        assert codes(currency="IDR", owner="m_1") == [PAYABLE]
        assert codes(currency="ZZZ") is None  # an invalid filter shows nothing, not everything

    def test_query_count_does_not_grow_with_accounts(self, client_as):
        client = client_as("auditor")
        url = reverse("ledger:account_list")
        client.get(url)  # warm the session and permission caches
        capture("cap-1")
        with CaptureQueriesContext(connection) as few:
            assert client.get(url).status_code == 200
        for i in range(25):
            capture(f"cap-many-{i}", merchant=f"m_many_{i}")
        with CaptureQueriesContext(connection) as many:
            response = client.get(url)
        assert len(response.context["rows"]) == 28
        assert len(many) == len(few)


class TestStatement:
    def test_lines_oldest_first_with_running_balance(self, client_as):
        first = capture("cap-1")
        capture("cap-2", gross=200_000, fee=5_000)
        refund = post("REFUND_RESERVED", "ref-1", AMOUNT=10_000)  # a refund takes its funds from the payable
        response = client_as("finance_ops").get(statement_url(PAYABLE))
        assert response.status_code == 200
        lines = response.context["page"].lines
        assert [(line.direction, line.amount.amount_minor, line.running_balance.amount_minor) for line in lines] == [
            ("CREDIT", 97_500, 97_500),
            ("CREDIT", 195_000, 292_500),
            ("DEBIT", 10_000, 282_500),
        ]
        assert response.context["balance"].balance.amount_minor == 282_500
        html = response.content.decode()
        assert money_html("2,825.00", "IDR") in html
        assert f'href="{journal_url(first)}"' in html and f'href="{journal_url(refund)}"' in html
        assert response.context["page"].next_after is None and "End of statement" in html

    def test_pager_walks_every_entry_exactly_once(self, client_as):
        total = STATEMENT_PAGE_SIZE * 2 + 7
        for i in range(total):
            capture(f"cap-{i}", gross=1_000, fee=0)
        client = client_as("finance_ops")
        seen, running, after, pages = [], [], None, 0
        while True:
            response = client.get(statement_url(PAYABLE), {"after": after} if after else {})
            page = response.context["page"]
            seen.extend(line.entry_id for line in page.lines)
            running.extend(line.running_balance.amount_minor for line in page.lines)
            pages += 1
            after = page.next_after
            if after is None:
                break
            assert f'href="?after={after}"' in response.content.decode()
        assert pages == 3
        assert len(seen) == len(set(seen)) == total
        assert seen == sorted(seen)
        assert set(seen) == set(LedgerEntry.objects.filter(account__code=PAYABLE).values_list("pk", flat=True))
        # the running balance carries across pages
        assert running == [1_000 * n for n in range(1, total + 1)]

    def test_bad_cursor_is_a_bad_request(self, client_as):
        capture("cap-1")
        assert client_as("finance_ops").get(statement_url(PAYABLE), {"after": "x"}).status_code == 400

    def test_query_count_does_not_grow_with_entries(self, client_as):
        client = client_as("finance_ops")
        capture("cap-0")
        url = statement_url(PAYABLE)
        client.get(url)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as few:
            assert client.get(url).status_code == 200
        for i in range(1, STATEMENT_PAGE_SIZE + 5):
            capture(f"cap-{i}")
        with CaptureQueriesContext(connection) as many:
            response = client.get(url)
        assert len(response.context["page"].lines) == STATEMENT_PAGE_SIZE
        assert len(many) == len(few)
        # a hot account (no projection) costs the same whatever its size
        hot = statement_url("1100-IDR")
        client.get(hot)
        with CaptureQueriesContext(connection) as hot_queries:
            client.get(hot)
        assert len(hot_queries) <= len(few) + 1  # + the entry-sum query that replaces the projection


class TestJournal:
    def test_lines_balanced_totals_and_reversal_links(self, client_as):
        journal = capture("cap-1")
        client = client_as("finance_ops")
        html = client.get(journal_url(journal)).content.decode()
        for code in ("1100-IDR", PAYABLE, "4000-IDR"):
            assert f'href="{statement_url(code)}"' in html
        totals = re.search(r'<tr class="totals" data-testid="totals-IDR">.*?</tr>', html, re.S).group(0)
        assert totals.count(money_html("1,000.00", "IDR")) == 2
        assert "balanced" in totals and "unbalanced" not in totals
        assert "not reversed" in html

        reversal = journal_reverse(
            journal=journal, reason_code="DUPLICATE", reason_text="posted twice", idempotency_key="rev-1",
            actor=ACTOR, now=timezone.now(),
        )  # fmt: skip
        response = client.get(journal_url(journal))
        assert response.context["reversed_by"] == reversal
        assert f'href="{journal_url(reversal)}"' in response.content.decode()
        back = client.get(journal_url(reversal))
        assert f'href="{journal_url(journal)}"' in back.content.decode()
        assert back.context["reversed_by"] is None

    def test_links_to_its_audit_trail_for_those_who_may_read_it(self, client_as):
        journal = capture("cap-1")
        auditor = client_as("auditor")
        html = auditor.get(journal_url(journal)).content.decode()
        audit_url = f"{reverse('audit:event_list')}?target_type=ledger_journal&amp;target_id=cap-1"
        assert f'href="{audit_url}"' in html
        events = auditor.get(audit_url.replace("&amp;", "&")).context["page"].events
        assert [e.event_type for e in events] == ["ledger.journal_posted"]
        # finance_ops may not read the audit trail, so is not offered a link that would refuse them
        assert 'data-testid="audit-link"' not in client_as("finance_ops").get(journal_url(journal)).content.decode()

    def test_lists_its_audit_events_to_finance_and_links_them_for_auditors(self, client_as):
        journal = capture("cap-1")
        reversal = journal_reverse(
            journal=journal, reason_code="DUPLICATE", reason_text="posted twice", idempotency_key="rev-1",
            actor=ACTOR, now=timezone.now(),
        )  # fmt: skip
        finance = client_as("finance_ops").get(journal_url(journal))
        assert [e.event_type for e in finance.context["audit_events"]] == ["ledger.journal_posted"]
        table = re.search(r'data-testid="journal-audit-events">.*?</table>', finance.content.decode(), re.S).group(0)
        assert "ledger.journal_posted" in table and "system:test" in table
        assert "/audit/" not in table  # finance may not open audit events, so no links that would refuse them
        reversed_page = client_as("auditor").get(journal_url(reversal))
        (event,) = reversed_page.context["audit_events"]
        assert event.event_type == "ledger.journal_reversed"
        assert f'href="{reverse("audit:event_detail", args=[event.event_id])}"' in reversed_page.content.decode()

    def test_a_bulk_posted_journal_shows_its_batch_event(self, client_as):
        from ledger.services import JournalRequest, PostingLine, journal_post_many

        cash = account_for(role="BANK_CASH", currency="IDR", actor=ACTOR, now=timezone.now())
        payable = account_for(role="MERCHANT_PAYABLE", currency="IDR", owner_ref="m_1", actor=ACTOR, now=timezone.now())
        requests = [
            JournalRequest(
                lines=(PostingLine(cash.pk, "DEBIT", 100, "IDR"), PostingLine(payable.pk, "CREDIT", 100, "IDR")),
                journal_type="SETTLEMENT", source=Source("statement_line", f"sl_{i}"),
                accounting_date=timezone.now().date(), idempotency_key=f"bulk-{i}",
            )
            for i in range(3)
        ]  # fmt: skip
        journals = journal_post_many(
            requests=requests, batch_key="settlement-2026-11-20", actor=ACTOR, now=timezone.now()
        )
        assert {j.batch_ref for j in journals} == {"settlement-2026-11-20"}
        events = client_as("finance_ops").get(journal_url(journals[1])).context["audit_events"]
        assert [(e.event_type, e.target_id) for e in events] == [
            ("ledger.journals_posted_bulk", "settlement-2026-11-20")
        ]


class TestAccess:
    def test_support_ops_is_refused_every_ledger_page(self, client_as):
        journal = capture("cap-1")
        client = client_as("support_ops")
        for url in (reverse("ledger:account_list"), statement_url(PAYABLE), journal_url(journal)):
            response = client.get(url)
            assert response.status_code == 403, url
            assert "needs the permission ledger.view_ledger" in response.content.decode()
        assert AuditEvent.objects.filter(event_type="access.denied", actor="support_ops_user").count() == 3

    def test_unknown_account_or_journal_is_404(self, client_as):
        client = client_as("finance_ops")
        assert client.get(statement_url("9999-XXX")).status_code == 404
        assert client.get(reverse("ledger:journal_detail", args=["lj_nope"])).status_code == 404

    def test_anonymous_is_sent_to_login(self):
        journal = capture("cap-1")
        for url in (reverse("ledger:account_list"), statement_url(PAYABLE), journal_url(journal)):
            response = Client().get(url)
            assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


class TestAdmin:
    @pytest.fixture
    def admin_client(self):
        user = get_user_model().objects.create_superuser("breakglass", "breakglass@example.com", "pw-not-used-9")
        client = Client()
        client.force_login(user)
        return client

    def test_journal_is_view_only_and_cannot_be_deleted(self, admin_client):
        journal = capture("cap-1")
        change_url = reverse("admin:ledger_ledgerjournal_change", args=[journal.pk])
        response = admin_client.get(change_url)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html
        assert journal.public_id in html and PAYABLE in html  # the entries inline
        assert admin_client.post(change_url, {"description": "edited"}).status_code == 403
        delete_url = reverse("admin:ledger_ledgerjournal_delete", args=[journal.pk])
        assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
        assert admin_client.get(reverse("admin:ledger_ledgerjournal_add")).status_code == 403
        journal.refresh_from_db()
        assert journal.description == "CAPTURE_SUCCEEDED cap-1"
        assert LedgerEntry.objects.filter(journal=journal).count() == 3
        changelist = admin_client.get(reverse("admin:ledger_ledgerjournal_changelist")).content.decode()
        assert "delete_selected" not in changelist

    def test_entries_balances_and_rules_are_read_only(self, admin_client):
        journal = capture("cap-1")
        entry = journal.entries.first()
        payable = LedgerAccount.objects.get(code=PAYABLE)
        entry_page = admin_client.get(reverse("admin:ledger_ledgerentry_change", args=[entry.pk])).content.decode()
        assert 'name="_save"' not in entry_page
        for url in (
            reverse("admin:ledger_ledgerentry_delete", args=[entry.pk]),
            reverse("admin:ledger_ledgerbalance_delete", args=[payable.pk]),
        ):
            assert admin_client.post(url, {"post": "yes"}).status_code == 403, url
        assert admin_client.get(reverse("admin:ledger_postingrule_add")).status_code == 403
        assert LedgerEntry.objects.filter(pk=entry.pk).exists()

    def test_account_allows_only_name_and_description_and_audits_the_edit(self, admin_client):
        capture("cap-1")
        payable = LedgerAccount.objects.get(code=PAYABLE)
        change_url = reverse("admin:ledger_ledgeraccount_change", args=[payable.pk])
        response = admin_client.post(
            change_url, {"name": "Merchant one payable", "description": "renamed", "code": "HACKED", "currency": "USD"}
        )
        assert response.status_code == 302
        payable = LedgerAccount.objects.get(pk=payable.pk)  # refresh_from_db would trip the protected status field
        assert (payable.name, payable.description, payable.code, payable.currency) == (
            "Merchant one payable", "renamed", PAYABLE, "IDR",
        )  # fmt: skip
        event = AuditEvent.objects.filter(event_type="ledger_account.metadata_changed").latest("seq")
        assert event.target_id == PAYABLE and event.actor == "breakglass"
        assert event.after == {"name": "Merchant one payable", "description": "renamed"}
        delete_url = reverse("admin:ledger_ledgeraccount_delete", args=[payable.pk])
        assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
        assert admin_client.get(reverse("admin:ledger_ledgeraccount_add")).status_code == 403
