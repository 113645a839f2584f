"""An approval policy is changed with four eyes, in a browser.

A finance manager opens the approval policies, proposes that ledger adjustments need approval only
above 10,000.00 IDR, sees the change field by field before submitting; the policy is unchanged
while the request waits; compliance approves it from the checker inbox; the policies screen then
shows the new policy, one version on.
"""

import re

import pytest
from django.core.management import call_command

from approvals.models import ApprovalPolicy
from tests.e2e.test_fee_correction import sign_out
from tests.e2e.test_login_and_audit import sign_in

ADJ = "CREATE_LEDGER_ADJUSTMENT"


@pytest.fixture
def demo_data(transactional_db, settings, tmp_path):
    settings.CASE_EVIDENCE_ROOT = tmp_path / "evidence"
    call_command("demo_seed")


def test_a_policy_change_is_proposed_previewed_and_approved_by_compliance(page, live_server, demo_data, screenshot):
    version = ApprovalPolicy.objects.get(action_type=ADJ).version

    # --- finance manager: the policies, then the proposal with its preview ------------------------
    sign_in(page, live_server, "finmanager")
    page.click("[data-testid=nav] >> text=Approval policies")
    page.wait_for_url(f"{live_server.url}/approvals/policies/")
    row = page.locator(f"tr[data-action={ADJ}]")
    assert "ALWAYS" in row.inner_text()
    screenshot("policy-change-0-policies")

    row.locator("[data-testid=propose-change]").click()
    page.wait_for_url(f"{live_server.url}/approvals/policies/{ADJ}/change/")
    page.select_option("#id_mode", "ABOVE_AMOUNT")
    page.fill("#id_threshold", "IDR 10,000.00")
    page.select_option("#id_reason_code", "RISK_APPETITE_CHANGE")
    page.fill("#id_reason_text", "Small fee corrections run at once; large ones keep four eyes")
    screenshot("policy-change-1-form")
    page.click("[data-testid=policy-form] button[type=submit]")

    diff = page.inner_text("[data-testid=preview-diff]")
    assert "ABOVE_AMOUNT" in diff and "10,000.00 IDR" in diff
    assert "Compliance operations" in page.inner_text("[data-testid=approval-needed]")
    screenshot("policy-change-2-preview")
    page.click("[data-testid=submit-form] button[type=submit]")
    page.wait_for_url(re.compile(r".*/approvals/requests/act_[0-9A-Z]{26}/$"))
    request_url = page.url
    assert ApprovalPolicy.objects.get(action_type=ADJ).mode == "ALWAYS"  # unchanged while it waits
    screenshot("policy-change-3-requested")
    sign_out(page)

    # --- compliance: approves from the inbox --------------------------------------------------------
    sign_in(page, live_server, "compliance")
    page.goto(f"{live_server.url}/approvals/inbox/")
    public_id = request_url.rstrip("/").rsplit("/", 1)[1]
    assert public_id in page.inner_text("main")
    page.goto(request_url)
    page.fill("[data-testid=approve-form] input[name=note]", "Agreed at the risk committee")
    page.click("[data-testid=approve-form] button[type=submit]")
    page.wait_for_url(request_url)
    assert f"{public_id} approved and executed: {ADJ} version {version + 1}." in page.inner_text("main")
    screenshot("policy-change-4-approved")

    # --- the policy as it now is --------------------------------------------------------------------
    page.goto(f"{live_server.url}/approvals/policies/")
    row_text = page.locator(f"tr[data-action={ADJ}]").inner_text()
    assert "ABOVE_AMOUNT" in row_text and "10,000.00 IDR" in row_text and str(version + 1) in row_text
    screenshot("policy-change-5-policies-after")
