"""A fee charged twice is given back, with four eyes, in a browser.

Finance ops opens a case and proposes a FEE_REFUND of 2,500.00 IDR for m_demo_coffee, seeing the
exact ledger lines before submitting; cannot approve their own request; the finance manager sees
it in the checker inbox and approves it in the Django admin (the admin action calls the same
service); the merchant's statement shows the payable balance up by 2,500.00; and the auditor finds
the request, the approval and the execution in the audit trail.
"""

import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals.models import ActionRequest, RequestStatus
from approvals.selectors import open_request_for
from approvals.services import request_cancel
from backoffice.actors import Actor
from tests.e2e.test_login_and_audit import sign_in

MERCHANT = "m_demo_coffee"
PAYABLE = "2100-IDR-m_demo_coffee"


@pytest.fixture
def demo_data(transactional_db, settings, tmp_path):
    settings.CASE_EVIDENCE_ROOT = tmp_path / "evidence"
    call_command("demo_seed")
    # The merchant's IDR ledger takes one open change at a time: demo data that left one waiting is
    # withdrawn by its maker first, so the story starts from a free ledger.
    waiting = open_request_for(target_type="merchant_ledger", target_id=f"{MERCHANT}:IDR")
    if waiting is not None and waiting.status == RequestStatus.REQUESTED and waiting.maker_user is not None:
        request_cancel(public_id=waiting.public_id, actor=Actor.from_user(waiting.maker_user), now=timezone.now(),
                       reason_text="cleared for the browser test")  # fmt: skip


def sign_out(page) -> None:
    page.click("form[action='/logout/'] button[type=submit]")
    page.wait_for_url("**/login/**")


def payable_balance(page, live_server) -> Decimal:
    page.goto(f"{live_server.url}/ledger/accounts/{PAYABLE}/")
    text = page.inner_text("[data-testid=current-balance]")
    amount = re.search(r"(-?[\d,]+\.\d{2})\s*IDR", text)
    assert amount, text
    return Decimal(amount.group(1).replace(",", ""))


def test_a_fee_refund_is_proposed_approved_by_another_person_posted_and_audited(
    page, live_server, demo_data, screenshot
):
    # --- finance ops: a case, then the proposal with its preview ---------------------------------
    sign_in(page, live_server, "finops")
    before = payable_balance(page, live_server)
    seeded_requests = ActionRequest.objects.count()

    page.goto(f"{live_server.url}/cases/new/")
    page.select_option("#id_case_type", "SETTLEMENT_EXCEPTION")
    page.select_option("#id_severity", "MEDIUM")
    page.fill("#id_title", "Processing fee deducted twice from m_demo_coffee's settlement")
    page.fill("#id_merchant_ref", MERCHANT)
    page.click("form.command-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/cases/CASE-\d{4}-\d+/$"))
    case_number = re.search(r"(CASE-\d{4}-\d+)", page.url).group(1)

    nav = page.inner_text("[data-testid=nav]")
    assert "Propose adjustment" in nav and "My requests" in nav
    page.click("[data-testid=nav] >> text=Propose adjustment")
    page.wait_for_url(f"{live_server.url}/approvals/adjustments/new/")
    page.fill("#id_merchant_ref", MERCHANT)
    page.fill("#id_currency", "IDR")
    page.fill("#id_amount", "2,500.00")
    page.select_option("#id_adjustment_type", "FEE_REFUND")
    page.select_option("#id_reason_code", "FEE_CORRECTION")
    page.fill("#id_reason_text", "Processing fee of 2,500.00 IDR deducted twice on the last settlement")
    page.fill("#id_case_ref", case_number)
    page.fill("#id_ticket_id", "ZD-20811")
    screenshot("fee-correction-0-form")
    page.click("[data-testid=adjustment-form] button[type=submit]")
    page.wait_for_selector("[data-testid=preview-lines]")

    lines = page.locator("[data-testid=preview-lines] tbody tr")
    assert lines.count() == 2
    debit, credit = lines.nth(0).inner_text(), lines.nth(1).inner_text()
    assert "4000-IDR" in debit and "2,500.00 IDR" in debit
    assert PAYABLE in credit and "2,500.00 IDR" in credit
    balances = page.inner_text("[data-testid=preview-balances]")
    assert PAYABLE in balances and f"{before + Decimal('2500'):,.2f}" in balances
    approval = page.inner_text("[data-testid=approval-needed]")
    assert "needs approval" in approval and "Finance manager" in approval
    assert ActionRequest.objects.count() == seeded_requests  # the preview proposed nothing
    screenshot("fee-correction-1-preview")

    page.click("[data-testid=submit-form] button[type=submit]")
    page.wait_for_url(re.compile(r".*/approvals/requests/act_[0-9A-Z]{26}/$"))
    public_id = re.search(r"(act_[0-9A-Z]{26})", page.url).group(1)
    assert "proposed" in page.inner_text(".messages")
    assert "REQUESTED" in page.inner_text("[data-testid=request-status]")

    # --- the maker may not approve their own request -----------------------------------------------
    assert page.locator("[data-testid=approve-form]").count() == 0
    assert "You proposed this request; another person must decide it" in page.inner_text(
        "[data-testid=decision-blocker]"
    )
    assert page.locator("[data-testid=withdraw-form]").count() == 1
    screenshot("fee-correction-2-maker-cannot-approve")
    sign_out(page)

    # --- the finance manager approves from the inbox --------------------------------------------------
    sign_in(page, live_server, "finmanager")
    page.keyboard.press("g")
    page.keyboard.press("i")
    page.wait_for_url(f"{live_server.url}/approvals/inbox/")
    row = page.locator(f"[data-testid=inbox-table] tr[data-request='{public_id}']")
    assert "2,500.00 IDR" in row.inner_text() and "finops" in row.inner_text()
    screenshot("fee-correction-3-inbox")
    # In the admin: tick the request, choose the action, confirm with a note.
    page.goto(f"{live_server.url}/admin/approvals/actionrequest/?q={public_id}")
    page.locator("#result_list tbody tr", has_text=public_id).locator("input.action-select").check()
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    page.wait_for_selector("#decision-requests")
    page.fill("textarea[name=reason], input[name=reason]", "Matches the provider's settlement report")
    screenshot("fee-correction-4a-admin-confirm")
    page.click("input[type=submit]")
    page.wait_for_selector("ul.messagelist")
    assert "Approved 1 of 1" in page.inner_text("ul.messagelist")
    screenshot("fee-correction-4b-admin-approved")
    page.goto(f"{live_server.url}/approvals/requests/{public_id}/")
    assert "SUCCEEDED" in page.inner_text("[data-testid=request-status]")
    assert "finmanager" in page.inner_text("[data-testid=request-decision]")
    journal = page.inner_text("[data-testid=result-journal]")
    assert journal.startswith("lj_")
    screenshot("fee-correction-4-approved")

    # --- the merchant's statement: the payable balance is up by 2,500.00 ----------------------------
    page.click("[data-testid=result-journal]")
    page.wait_for_selector("[data-testid=journal-lines]")
    assert "FEE_REFUND" in page.inner_text("[data-testid=journal-facts]")
    after = payable_balance(page, live_server)
    assert after - before == Decimal("2500.00")
    last = page.locator("[data-testid=statement-table] tbody tr").last.inner_text()
    assert journal in last and "FEE_REFUND" in last and "2,500.00 IDR" in last
    screenshot("fee-correction-5-statement")
    sign_out(page)

    # --- the auditor reads the request's trail ------------------------------------------------------
    sign_in(page, live_server, "auditor")
    page.goto(f"{live_server.url}/audit/?target_type=action_request&target_id={public_id}")
    trail = page.inner_text("[data-testid=audit-table]")
    for event in ("approvals.request_submitted", "approvals.request_approved", "approvals.request_executed"):
        assert event in trail, event
    assert "finops" in trail and "finmanager" in trail
    screenshot("fee-correction-6-audit-trail")

    # ... and finds it among all requests for the merchant, with the export at hand.
    page.goto(f"{live_server.url}/approvals/requests/?ref={MERCHANT}")
    row = page.locator(f"[data-testid=requests-table] tr[data-request='{public_id}']")
    assert "SUCCEEDED" in row.inner_text() and "finmanager" in row.inner_text()
    assert page.locator("[data-testid=export]").count() == 1
    screenshot("fee-correction-7-all-requests")
