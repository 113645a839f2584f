"""Finance follows money through the ledger in a browser: chart -> statement -> journal -> its
reversal and audit events. The demo data is posted through the posting rules, as production posts."""

import re

import pytest
from django.core.management import call_command

from tests.e2e.test_login_and_audit import sign_in


@pytest.fixture
def demo_data(transactional_db):
    call_command("demo_seed")


def test_finance_follows_a_merchant_balance_to_its_journals(page, live_server, demo_data, screenshot):
    sign_in(page, live_server, "finops")
    page.keyboard.press("g")
    page.keyboard.press("l")
    page.wait_for_url(f"{live_server.url}/ledger/**")
    chart = page.inner_text("[data-testid=chart-table]")
    assert "2100-IDR-m_demo_coffee" in chart and "1100-USD" in chart
    screenshot("ledger-chart-finance")

    page.click("text=2100-IDR-m_demo_coffee")
    page.wait_for_selector("[data-testid=statement-table]")
    statement_rows = page.locator("[data-testid=statement-table] tbody tr")
    assert statement_rows.count() >= 18  # 15 captures, refund, payout, goodwill credit and its reversal
    balance = page.inner_text("[data-testid=current-balance]")
    assert re.search(r"\d", balance)
    screenshot("ledger-statement-merchant")

    page.locator("[data-testid=statement-table] tbody tr", has_text="REVERSAL").locator("a").first.click()
    page.wait_for_selector("[data-testid=journal-lines]")
    assert "REVERSAL" in page.inner_text("[data-testid=journal-facts]")
    reverses = page.inner_text("[data-testid=reverses]")
    assert reverses.startswith("lj_") and "MERCHANT_CREDIT" in reverses
    assert "balanced" in page.inner_text("[data-testid=journal-lines] tfoot")
    events = page.inner_text("[data-testid=journal-audit-events]")
    assert "ledger.journal_reversed" in events and "system:demo_seed" in events
    screenshot("ledger-journal-reversal")

    page.click("[data-testid=reverses] a")
    page.wait_for_selector("[data-testid=reversed-by] a")
    assert "MERCHANT_CREDIT" in page.inner_text("[data-testid=journal-facts]")
    screenshot("ledger-journal-reversed-original")


def test_support_cannot_open_the_ledger_and_is_told_why(page, live_server, demo_data, screenshot):
    sign_in(page, live_server, "support")
    assert "Chart of accounts" not in page.inner_text("[data-testid=nav]")
    page.goto(f"{live_server.url}/ledger/")
    assert "ledger.view_ledgeraccount" in page.inner_text("[data-testid=denied-reason]")
    screenshot("ledger-denied-support")
