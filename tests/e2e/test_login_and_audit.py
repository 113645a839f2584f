"""A person signs in, sees their role's navigation, and an auditor reads the audit trail."""

import pytest
from django.core.management import call_command

from backoffice.demo import DEMO_PASSWORD


@pytest.fixture
def demo_users(transactional_db):
    call_command("demo_seed")


def sign_in(page, live_server, username: str, screenshot=None) -> None:
    page.goto(f"{live_server.url}/login/")
    if screenshot:
        screenshot("login")
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_support_user_sees_only_their_screens(page, live_server, demo_users, screenshot):
    sign_in(page, live_server, "support", screenshot)
    assert "support" in page.inner_text("[data-testid=whoami]")
    assert "Support operations" in page.inner_text("[data-testid=role]")
    nav = page.inner_text("[data-testid=nav]")
    assert "Home" in nav and "Audit trail" not in nav
    screenshot("home-support")
    # Typing the address of a screen they may not use shows why, not a blank error.
    page.goto(f"{live_server.url}/audit/")
    assert "needs the permission audit.view_auditevent" in page.inner_text("[data-testid=denied-reason]")
    screenshot("denied-support-audit")


def test_auditor_reads_and_filters_the_audit_trail(page, live_server, demo_users, screenshot):
    # A failed attempt first, so the trail has a refusal to find.
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert "Unknown username or wrong password" in page.inner_text("[role=alert]")
    screenshot("login-failed")

    sign_in(page, live_server, "auditor")
    assert "Audit trail" in page.inner_text("[data-testid=nav]")
    # keyboard: g then a opens the audit trail
    page.keyboard.press("g")
    page.keyboard.press("a")
    page.wait_for_url(f"{live_server.url}/audit/")
    table = page.inner_text("[data-testid=audit-table]")
    assert "auth.login" in table and "ledger.journal_posted" in table  # newest first: the demo's postings
    screenshot("audit-trail-auditor")

    page.fill("#id_event_type", "user.provisioned")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**/audit/?*event_type=user.provisioned*")
    assert page.locator("[data-testid=audit-table] tbody tr").count() == 8  # one per demo user
    page.goto(f"{live_server.url}/audit/")

    page.select_option("#id_result", "REFUSED")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**/audit/?*result=REFUSED*")
    rows = page.locator("[data-testid=audit-table] tbody tr")
    assert rows.count() >= 1
    assert "auth.login_failed" in page.inner_text("[data-testid=audit-table]")
    assert "ledger.journal_posted" not in page.inner_text("[data-testid=audit-table]")
    screenshot("audit-trail-refusals")

    page.locator("[data-testid=audit-table] tbody tr a").first.click()
    page.wait_for_url("**/audit/ae_*/")
    assert "INVALID_CREDENTIALS" in page.inner_text("main")
    screenshot("audit-event-detail")
