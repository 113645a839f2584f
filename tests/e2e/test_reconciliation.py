"""A statement line nobody recognised is matched by hand, with four eyes, in a browser.

Finance ops uploads a provider's settlement file, runs matching (which first adds the captures the
ledger expects on it), finds the breaks in the queue, opens the line the rules could not explain and
proposes a tolerance match with the capture the screen scores best, seeing the effect first; the
finance manager approves it in the checker inbox; the break is closed by the decision's match.
"""

import re

import pytest
from django.core.management import call_command

from approvals.models import ActionRequest, RequestStatus
from reconciliation.models import BreakStatus, ItemSide, ReconciliationBreak, ReconciliationItem
from tests.e2e.test_fee_correction import sign_out
from tests.e2e.test_login_and_audit import sign_in
from tests.factories import reconciliation as recon

PROVIDER = "e2e_psp"
SOURCE = "e2e-psp-idr"
WIDTH = 1280


@pytest.fixture
def settlement_day(transactional_db, settings, tmp_path):
    """The demo, plus two captures at a provider of our own and its settlement report: the first
    capture settled as expected, the second under another reference and 150.00 short, and a line
    for a sale nobody made."""
    settings.CASE_EVIDENCE_ROOT = tmp_path / "evidence"
    call_command("demo_seed")
    settled = recon.capture(amount_minor=1_250_000, provider_code=PROVIDER, provider_reference="psp_e2e_0001")
    short = recon.capture(amount_minor=800_000, provider_code=PROVIDER, provider_reference="psp_e2e_0002")
    recon.provider_source(PROVIDER, code=SOURCE, name="E2E provider settlements (IDR)", currency="IDR")
    report = tmp_path / "settlement-2026-03-02.csv"
    report.write_bytes(
        recon.bank_csv(
            [("2026-03-02", "12500.00", "IDR", "psp_e2e_0001"), ("2026-03-02", "7850.00", "IDR", "PSP TRANSFER 0302"),
             ("2026-03-02", "99.00", "IDR", "UNKNOWN-9")],
            description="settlement",
        )
    )  # fmt: skip
    return report, settled, short


def test_a_break_is_matched_by_hand_and_approved_by_another_person(page, live_server, settlement_day, screenshot):
    report, _, short = settlement_day
    page.set_viewport_size({"width": WIDTH, "height": 900})

    # --- finance ops: upload the settlement report -------------------------------------------------
    sign_in(page, live_server, "finops")
    page.keyboard.press("g")
    page.keyboard.press("f")
    page.wait_for_url(f"{live_server.url}/reconciliation/sources/")
    page.click(f"[data-testid=source-table] a:has-text('{SOURCE}')")
    page.wait_for_selector("[data-testid=upload-form]")
    page.set_input_files("#upload-file", str(report))
    screenshot("reconciliation-1-upload")
    page.click("[data-testid=upload-form] button[type=submit]")
    page.wait_for_url(re.compile(r".*/reconciliation/sources/e2e-psp-idr/files/sf_[0-9A-Z]+/$"))
    assert "IMPORTED" in page.inner_text("[data-testid=file-status]")
    assert page.inner_text("[data-testid=line-counts]") == "3 imported of 3 found"
    assert page.locator("[data-testid=line-table] tbody tr").count() == 3
    screenshot("reconciliation-2-file-imported")

    # --- run matching: the captures the ledger expects are added first ------------------------------
    page.click("[data-testid=run-matching]")
    page.wait_for_selector(".messages")
    message = page.inner_text(".messages")
    assert "2 expected movements added" in message and "1 match, 3 breaks opened" in message, message
    assert "Open breaks on this file: 2" in page.inner_text("[data-testid=file-breaks]")
    screenshot("reconciliation-3-matched")

    # --- the break queue, filtered to this source ---------------------------------------------------
    page.keyboard.press("g")
    page.keyboard.press("b")
    page.wait_for_url(f"{live_server.url}/reconciliation/breaks/")
    page.select_option("#id_source", SOURCE)
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url(re.compile(r".*/reconciliation/breaks/\?.*source=e2e-psp-idr.*"))
    rows = page.locator("[data-testid=break-table] tbody tr")
    assert rows.count() == 3
    table = page.inner_text("[data-testid=break-table]")
    assert "PSP TRANSFER 0302" in table and "UNKNOWN-9" in table and short.public_id in table
    screenshot("reconciliation-4-queue")

    # --- the break of the line the rules could not explain: propose a match with the best candidate ---
    rows.filter(has_text="PSP TRANSFER 0302").locator("a").first.click()
    page.wait_for_selector("[data-testid=candidates]")
    capture_item = ReconciliationItem.objects.get(source__code=SOURCE, side=ItemSide.INTERNAL,
                                                  internal_id=short.public_id)  # fmt: skip
    best = page.locator("[data-testid=candidates] tbody tr").first
    assert best.get_attribute("data-candidate") == str(capture_item.pk)
    assert short.public_id in page.inner_text("[data-testid=side-internal]")
    page.check(f"#candidate-{capture_item.pk}")
    page.select_option("#decision-decision_type", "ACCEPT_TOLERANCE_MATCH")
    page.select_option("#decision-reason_code", "PROVIDER_CONFIRMED")
    page.fill("#decision-reason_text", "The provider confirmed the transfer settles psp_e2e_0002 net of 150.00")
    screenshot("reconciliation-5-decision")
    page.click("[data-testid=decision-form] button[type=submit]")
    page.wait_for_selector("[data-testid=decision-preview]")
    assert "needs approval" in page.inner_text("[data-testid=approval-needed]")
    assert "-150.00 IDR" in page.inner_text("[data-testid=decision-preview]")
    assert not ActionRequest.objects.filter(target_type="reconciliation_break").exists()  # the preview wrote nothing
    screenshot("reconciliation-6-preview")
    page.click("[data-testid=submit-form] button[type=submit]")
    page.wait_for_selector("[data-testid=pending-request]")
    request = ActionRequest.objects.get(target_type="reconciliation_break", action_type="MANUAL_RECONCILIATION_MATCH")
    assert request.status == RequestStatus.REQUESTED and request.maker == "finops"
    assert request.public_id in page.inner_text("[data-testid=pending-request]")
    assert "OPEN" in page.inner_text("[data-testid=break-status]")
    break_url = page.url
    screenshot("reconciliation-7-pending")
    sign_out(page)

    # --- the finance manager approves it in the checker inbox ----------------------------------------
    sign_in(page, live_server, "finmanager")
    page.keyboard.press("g")
    page.keyboard.press("i")
    page.wait_for_url(f"{live_server.url}/approvals/inbox/")
    row = page.locator(f"[data-testid=inbox-table] tr[data-request='{request.public_id}']")
    assert "finops" in row.inner_text() and "150.00 IDR" in row.inner_text()
    row.locator("input[type=checkbox]").check()
    page.fill("#bulk-reason", "Provider statement checked")
    screenshot("reconciliation-8-inbox")
    page.click("[data-testid=approve-selected]")
    page.wait_for_selector(".messages")
    assert ActionRequest.objects.get(pk=request.pk).status == RequestStatus.SUCCEEDED

    # --- the break is closed by the decision's match --------------------------------------------------
    page.goto(break_url)
    assert "CLOSED" in page.inner_text("[data-testid=break-status]")
    closed = page.inner_text("[data-testid=closed-note]")
    assert "rm_" in closed
    assert "finops / finmanager" in page.inner_text("[data-testid=break-decisions]")
    rb = ReconciliationBreak.objects.get(public_id=break_url.rstrip("/").rsplit("/", 1)[1])
    assert rb.status == BreakStatus.CLOSED
    screenshot("reconciliation-9-closed")
