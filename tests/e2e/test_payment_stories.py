"""Operators repair payments in a browser, against the simulated provider on loopback.

- An unknown payment: the provider's answer to the create call was lost, so we hold no provider
  reference; the provider's later event about it is of a type our mapper does not read yet. A
  payment operator finds the payment from the reference the provider quotes, sees UNKNOWN_OUTCOME
  on its timeline, opens a case, refreshes it from the provider, sees SUCCEEDED and the capture
  journal, and resolves the case.
- A quarantined webhook: the provider began sending `payment.captured`; once the mapper that reads
  it is deployed, the operator replays the event from the queue and the payment is captured once.
- A support user finds a payment and its merchant and sees only masked data and no money actions;
  a money action sent anyway is refused with the reason.
"""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from approvals.models import ActionRequest
from audit.models import AuditEvent
from cases.models import CaseLink, OpsCase
from ledger.models import LedgerJournal
from payments.models import AttemptStatus, EventProcessing, ProviderEventRaw, ProviderInquiry
from payments.providers.http import HttpProviderAdapter
from payments.providers.simulator import start_simulator
from payments.services import attempt_send
from payments.webhooks.mappers import mapper_registered
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_login_and_audit import sign_in
from tests.factories import payments
from tests.payments.test_webhooks import SimMapperV2

API_KEY = "sk_test_e2e"
READ_TIMEOUT = 1.0  # generous: the live server, the browser and the simulator share two cores
TIMES_OUT = 1_250_091  # the simulator records it succeeded, then holds the answer past our read timeout
SETTLES_LATER = 1_250_092  # answered "pending"; settled when the test says so
EMAIL = "dewi.lestari@example.co.id"
PHONE = "+6281298765432"


@pytest.fixture(scope="module")
def simulator():
    handle = start_simulator(api_key=API_KEY, timeout_delay=2.5, settle_delay=3600, auto_webhooks="off")
    yield handle
    handle.stop()


@pytest.fixture
def provider(simulator, settings, transactional_db):
    """The simulator as the configured provider, and the demo's people to sign in as."""
    simulator.reset()
    settings.PAYMENTS_PROVIDER_CODE = "sim"
    settings.PAYMENTS_PROVIDER_BASE_URL = simulator.base_url
    settings.PAYMENTS_PROVIDER_API_KEY = API_KEY
    settings.PAYMENTS_PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PAYMENTS_PROVIDER_READ_TIMEOUT = READ_TIMEOUT
    call_command("demo_seed")
    return simulator


def adapter_for(simulator) -> HttpProviderAdapter:
    return HttpProviderAdapter(base_url=simulator.base_url, provider_code="sim", api_key=API_KEY,
                               connect_timeout=1.0, read_timeout=READ_TIMEOUT)  # fmt: skip


def sent_payment(simulator, *, amount_minor: int, **intent_fields):
    """A card payment sent to the provider now, as checkout would send it."""
    now = timezone.now()
    created = payments.attempt(payments.intent(amount_minor=amount_minor, now=now, **intent_fields), now=now)
    attempt_send(attempt_id=created.public_id, actor=payments.system("checkout"), now=now,
                 adapter=adapter_for(simulator), card_token=payments.CARD_TOKEN)  # fmt: skip
    return payments.fetch_attempt(created.public_id)


def provider_sends(simulator, event_type: str, attempt_id: str) -> ProviderEventRaw:
    """The provider's signed event arrives at our webhook endpoint and is processed."""
    _, body, headers = simulator.build_webhook(event_type, attempt_id)
    response = Client().post("/webhooks/sim/", data=body, content_type="application/json",
                             headers={k: v for k, v in headers.items() if k.lower() != "content-type"})  # fmt: skip
    assert response.status_code == 200, response.content
    return ProviderEventRaw.objects.get(public_id=response.json()["event"])


def shows(text: str, state: str) -> bool:
    """A state as the page writes it: a badge spells UNKNOWN_OUTCOME as "UNKNOWN OUTCOME"."""
    return state in text or state.replace("_", " ") in text


def timeline_text(page) -> str:
    return page.inner_text("[data-testid=timeline]")


def post_as_page(page, live_server, path: str, fields: dict):
    """A form post from the signed-in browser, with its session and CSRF token, as a crafted
    request would send it."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(f"{live_server.url}{path}", form={"csrfmiddlewaretoken": token, **fields},
                             headers={"Referer": f"{live_server.url}{path}"})  # fmt: skip


def open_action(page, key: str):
    panel = page.locator(f"[data-testid=action-{key}]")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    return panel


def test_payment_ops_repairs_an_unknown_payment_found_by_the_providers_reference(page, live_server, provider,
                                                                                  screenshot):  # fmt: skip
    attempt = sent_payment(provider, amount_minor=TIMES_OUT)
    assert (attempt.status, attempt.provider_reference) == (AttemptStatus.UNKNOWN_OUTCOME, "")
    intent_id = attempt.payment_intent.public_id
    reference = provider.get(attempt.public_id).provider_reference
    raw = provider_sends(provider, "payment.captured", attempt.public_id)
    assert (raw.processing_status, raw.failure_code) == (EventProcessing.QUARANTINED, "MAPPING_UNKNOWN_EVENT_TYPE")

    # The merchant quotes the provider's reference; nothing of ours holds it but the provider's event.
    sign_in(page, live_server, "payops")
    page.fill("#topbar-q", reference)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=search-summary]")
    group = page.locator("[data-group='provider_event.provider_reference']")
    assert raw.public_id in group.inner_text() and "MAPPING_UNKNOWN_EVENT_TYPE" in group.inner_text()
    screenshot("story-unknown-1-search-by-provider-reference")
    group.locator(f"a:has-text('{raw.public_id}')").click()

    page.wait_for_url(f"{live_server.url}/payments/p/{intent_id}/")
    assert "PROCESSING" in page.inner_text("[data-testid=intent-status]")
    assert shows(page.inner_text("[data-testid=attempts]"), "UNKNOWN_OUTCOME")
    timeline = timeline_text(page)
    assert shows(timeline, "UNKNOWN_OUTCOME") and "not mapped" in timeline and reference in timeline
    assert "Nothing has been captured" in page.inner_text("[data-testid=money-sentence]")
    screenshot("story-unknown-2-payment-unknown")

    # Open a case about it, previewed first.
    panel = open_action(page, "case")
    panel.locator("select[name=severity]").select_option("MEDIUM")
    panel.locator("input[name=title]").fill(f"Customer charged, outcome unknown: {intent_id}")
    panel.locator("textarea[name=description]").fill(f"Provider reference {reference} quoted by the merchant.")
    panel.locator("button:has-text('Preview')").click()
    page.wait_for_selector("[data-testid=action-case] [data-testid=action-preview]")
    assert "link " + intent_id in page.inner_text("[data-testid=action-case] [data-testid=action-preview]")
    page.click("[data-testid=action-case] [data-testid=submit-form] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/payments/p/{intent_id}/")
    case = OpsCase.objects.get(title__startswith="Customer charged, outcome unknown")
    assert CaseLink.objects.filter(case=case, object_type="payment_intent", object_id=intent_id).exists()
    assert case.case_number in timeline_text(page)

    # Ask the provider: it holds the payment as succeeded.
    panel = open_action(page, "refresh")
    panel.locator("select[name=reason_code]").select_option("UNKNOWN_OUTCOME")
    panel.locator("textarea[name=reason_text]").fill(f"The create call timed out; see {case.case_number}")
    panel.locator("button:has-text('Preview')").click()
    page.wait_for_selector("[data-testid=action-refresh] [data-testid=action-preview]")
    assert "no approval needed" in page.inner_text("[data-testid=action-refresh]")
    screenshot("story-unknown-3-refresh-preview")
    page.click("[data-testid=action-refresh] [data-testid=submit-form] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/payments/p/{intent_id}/")

    assert "SUCCEEDED" in page.inner_text("[data-testid=intent-status]")
    assert "SUCCEEDED" in page.inner_text("[data-testid=attempts]")
    assert reference in page.inner_text("[data-testid=attempts]")
    assert "12,500.91 IDR of 12,500.91 IDR captured" in page.inner_text("[data-testid=money-sentence]")
    journal = LedgerJournal.objects.get(idempotency_key=f"capture:{attempt.public_id}")
    inquiry = ProviderInquiry.objects.get()
    assert inquiry.outcome == "APPLIED"
    timeline = timeline_text(page)
    assert inquiry.public_id in timeline and "asked sim: APPLIED" in timeline
    # The capture's journal is named on the timeline row that posted it.
    assert journal.public_id in page.inner_text("[data-testid=timeline] tr:has-text('payment_attempt.succeeded')")
    screenshot("story-unknown-4-payment-succeeded")

    # Finance, who read the ledger, see the capture journal's lines.
    finance = page.context.browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
    sign_in(finance, live_server, "finops")
    finance.goto(f"{live_server.url}/payments/p/{intent_id}/")
    money = finance.inner_text("[data-testid=money-journals]")
    assert journal.public_id in money and "CAPTURE_SUCCEEDED" in money
    assert journal.public_id in timeline_text(finance)
    finance.screenshot(path=str(ARTIFACTS / "story-unknown-4b-finance-sees-journal.png"), full_page=True)
    finance.context.close()

    # Resolve the case from its workbench.
    page.click(f"a:has-text('{case.case_number}')")
    page.wait_for_url(f"{live_server.url}/cases/{case.case_number}/")
    page.click("[data-testid=take-form] button[type=submit]")
    page.wait_for_selector("text=You took")
    page.click("button[data-transition=start]")
    page.wait_for_selector("text=is now in progress")
    page.select_option("#transition-resolve-resolution_code", "EXTERNAL_RESOLVED")
    page.fill("#transition-resolve-resolution_summary", f"Provider confirmed the capture; {journal.public_id} posted.")
    page.click("[data-testid=form-resolve] button[type=submit]")
    page.wait_for_selector("text=is now resolved")
    assert "RESOLVED" in page.inner_text("[data-testid=case-status]")
    assert intent_id in page.inner_text("main")
    screenshot("story-unknown-5-case-resolved")

    assert OpsCase.objects.get(pk=case.pk).status == "RESOLVED"
    assert LedgerJournal.objects.filter(idempotency_key=f"capture:{attempt.public_id}").count() == 1


def test_payment_ops_replays_a_quarantined_webhook_after_the_mapper_fix(page, live_server, provider, screenshot):
    attempt = sent_payment(provider, amount_minor=SETTLES_LATER)
    assert attempt.status == AttemptStatus.SENT_TO_PROVIDER and attempt.provider_reference
    intent_id = attempt.payment_intent.public_id
    provider.settle(attempt.public_id)
    raw = provider_sends(provider, "payment.captured", attempt.public_id)
    assert raw.processing_status == EventProcessing.QUARANTINED

    sign_in(page, live_server, "payops")
    page.keyboard.press("g")
    page.keyboard.press("w")
    page.wait_for_url(re.compile(r".*/payments/queues/webhooks/$"))
    row = page.locator(f"[data-testid=webhook-table] tr[data-row='{raw.public_id}']")
    assert "MAPPING_UNKNOWN_EVENT_TYPE" in row.inner_text()
    screenshot("story-replay-1-queue")
    row.locator(f"a:has-text('{raw.public_id}')").click()
    page.wait_for_url(re.compile(rf".*/payments/queues/webhooks/{raw.public_id}/$"))

    with mapper_registered(SimMapperV2()):  # the fix is deployed
        replay = page.locator("[data-testid=row-actions] section[data-action=replay]")
        replay.locator("select[name=reason_code]").select_option(index=1)
        replay.locator("textarea[name=reason_text]").fill("Mapper v2 reads payment.captured")
        screenshot("story-replay-2-item")
        replay.locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert ProviderEventRaw.objects.get(pk=raw.pk).processing_status == EventProcessing.PROCESSED

    page.goto(f"{live_server.url}/payments/queues/webhooks/")
    assert page.locator(f"tr[data-row='{raw.public_id}']").count() == 0
    page.goto(f"{live_server.url}/payments/p/{intent_id}/")
    assert "SUCCEEDED" in page.inner_text("[data-testid=intent-status]")
    assert "12,500.92 IDR of 12,500.92 IDR captured" in page.inner_text("[data-testid=money-sentence]")
    assert "PAYMENT_SUCCEEDED" in timeline_text(page)
    assert LedgerJournal.objects.filter(idempotency_key=f"capture:{attempt.public_id}").count() == 1
    screenshot("story-replay-3-payment-captured")


def test_support_sees_only_masked_data_and_no_money_actions(page, live_server, provider, screenshot):
    merchant = payments.merchant(name="Toko Batik Lestari", contact_email="owner@batik-lestari.example",
                                 contact_phone="+6281311112222")  # fmt: skip
    customer = payments.customer(merchant, email=EMAIL, phone=PHONE)
    attempt = sent_payment(provider, amount_minor=1_250_000, merchant=merchant, customer=customer)
    assert attempt.status == AttemptStatus.SUCCEEDED
    intent_id, reference = attempt.payment_intent.public_id, attempt.provider_reference

    sign_in(page, live_server, "support")
    page.fill("#topbar-q", reference)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=search-summary]")
    results = page.inner_text("main section.search-group")
    assert attempt.public_id in results and reference not in results and reference[-4:] in results
    screenshot("story-support-1-search")

    page.goto(f"{live_server.url}/payments/p/{intent_id}/")
    main = page.inner_text("main")
    for secret in (reference, EMAIL, PHONE, "owner@batik-lestari.example"):
        assert secret not in main, secret
    assert "…" + reference[-4:] in page.inner_text("[data-testid=attempts]")
    offered = {el.get_attribute("data-testid") for el in page.locator("[data-testid=actions] details").all()}
    assert offered == {"action-case"}, offered
    assert page.locator("[data-testid=money-journals] a").count() == 0
    screenshot("story-support-2-payment")

    # A money action sent anyway is refused with the reason, and nothing is proposed.
    requests = ActionRequest.objects.count()
    refund = {"amount": "1.00", "reason_code": "CUSTOMER_REQUEST", "reason_text": "try", "step": "submit"}
    refused = post_as_page(page, live_server, f"/payments/p/{intent_id}/actions/refund/", refund)
    assert refused.status == 403 and "needs the permission" in refused.text()
    assert ActionRequest.objects.count() == requests
    assert AuditEvent.objects.filter(event_type="access.denied", actor="support",
                                     target_id=f"/payments/p/{intent_id}/actions/refund/").exists()  # fmt: skip

    page.goto(f"{live_server.url}/payments/merchants/{merchant.public_id}/")
    main = page.inner_text("main")
    assert "owner@batik-lestari.example" not in main and "+6281311112222" not in main
    assert page.locator("form[action$='/reveal/']").count() == 0
    screenshot("story-support-3-merchant")
    # Revealing the contact is an audited action support may not take: refused with the reason.
    denied = post_as_page(page, live_server, f"/payments/merchants/{merchant.public_id}/reveal/",
                          {"reason_text": "customer asked"})  # fmt: skip
    assert denied.status == 403 and "needs the permission" in denied.text()
    assert "owner@batik-lestari.example" not in denied.text()
    assert AuditEvent.objects.filter(actor="support", result="REFUSED",
                                     target_id__contains=merchant.public_id).exists()  # fmt: skip
