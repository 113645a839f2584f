"""A payment operator works a case in a browser: finds it in the team queue, takes it, adds a note
and evidence, starts work and resolves it. An outsider typing the case's address gets the 404 page."""

import pytest
from django.core.management import call_command
from django.utils import timezone

from backoffice.actors import system_actor
from cases.models import OpsCase
from cases.services import case_open
from tests.e2e.test_login_and_audit import sign_in

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def demo_data(transactional_db, settings, tmp_path):
    settings.CASE_EVIDENCE_ROOT = tmp_path / "evidence"
    call_command("demo_seed")


@pytest.fixture
def case(demo_data) -> OpsCase:
    """A new, unassigned HIGH case in payment ops' queue (opened by a system actor, as intake would)."""
    return case_open(
        case_type="PAYMENT_INVESTIGATION", severity="HIGH", title="Capture of pa_e2e_1 missing from the ledger",
        description="The provider reports the capture; no capture journal was posted.", merchant_ref="m_demo_coffee",
        actor=system_actor("e2e_intake"), now=timezone.now(),
    )  # fmt: skip


def test_payment_ops_takes_works_and_resolves_a_case(page, live_server, case, screenshot):
    n = case.case_number
    sign_in(page, live_server, "payops")
    page.keyboard.press("g")
    page.keyboard.press("c")
    page.wait_for_url(f"{live_server.url}/cases/")
    assert page.inner_text(".tab-active") == "My team's queue"
    row = page.locator(f"[data-testid=worklist-table] tr[data-case='{n}']")
    assert "unassigned" in row.inner_text() and "High" in row.inner_text()
    screenshot("cases-worklist-payops")

    row.locator(f"text={n}").click()
    page.wait_for_url(f"{live_server.url}/cases/{n}/")
    assert "OPEN" in page.inner_text("[data-testid=case-status]")
    assert "unassigned" in page.inner_text("[data-testid=case-owner]")
    screenshot("case-workbench-before")

    page.click("[data-testid=take-form] button[type=submit]")
    page.wait_for_selector("text=You took")
    assert "payops" in page.inner_text("[data-testid=case-owner]")
    assert "needs a verification finding or evidence" in page.inner_text("[data-testid=objections]")

    page.select_option("#note-note_type", "PROVIDER_CONTACT")
    page.fill("#note-body", "Provider support confirms the capture (ticket PSP-1200).")
    page.click("[data-testid=note-form] button[type=submit]")
    page.wait_for_selector("text=Note added")

    page.set_input_files(
        "#evidence-upload", files=[{"name": "provider-reply.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    page.select_option("#evidence-evidence_type", "CORRESPONDENCE")
    page.fill("#evidence-description", "Provider's written confirmation")
    page.click("[data-testid=evidence-form] button[type=submit]")
    page.wait_for_selector("text=attached to")
    assert "provider-reply.pdf" in page.inner_text("[data-testid=evidence-table]")
    assert page.locator("[data-testid=objections]").count() == 0

    page.click("button[data-transition=start]")
    page.wait_for_selector("text=is now in progress")
    assert "IN PROGRESS" in page.inner_text("[data-testid=case-status]")

    page.select_option("#transition-resolve-resolution_code", "EXTERNAL_RESOLVED")
    page.fill("#transition-resolve-resolution_summary", "Provider captured the payment; capture journal posted.")
    page.click("[data-testid=form-resolve] button[type=submit]")
    page.wait_for_selector("text=is now resolved")
    assert "RESOLVED" in page.inner_text("[data-testid=case-status]")
    assert "EXTERNAL_RESOLVED" in page.inner_text("[data-testid=resolution]")
    timeline = page.inner_text("[data-testid=timeline]")
    for text in ("case.resolve", "case.start", "Provider support confirms", "provider-reply.pdf", "case.assigned"):
        assert text in timeline
    screenshot("case-workbench-after")

    stored = OpsCase.objects.get(case_number=n)
    assert (stored.status, stored.owner_user.username, stored.resolution_code) == (
        "RESOLVED", "payops", "EXTERNAL_RESOLVED"
    )  # fmt: skip


def test_an_outsider_typing_the_address_gets_not_found(page, live_server, case, screenshot):
    sign_in(page, live_server, "support")
    response = page.goto(f"{live_server.url}/cases/{case.case_number}/")
    assert response.status == 404
    assert "Not found" in page.inner_text("main h1")
    assert case.case_number not in page.inner_text("main")
    screenshot("case-workbench-outsider-404")
