"""The payment page: the merged timeline, the money summary, what each role sees, and the actions
legal now (refresh from provider, replay webhook, refund correction, open case), each previewed and
then submitted once, refused when the page no longer shows the truth."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_submit
from audit.context import audit_context
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from cases.models import CaseLink, OpsCase
from cases.services import case_link_record
from ledger.models import LedgerJournal
from payments.models import AttemptStatus, EventProcessing, PaymentEvent, ProviderEventRaw, ProviderInquiry, Refund
from payments.providers.signing import SIGNATURE_HEADER, sign
from payments.providers.simulator import DEFAULT_WEBHOOK_SECRET
from payments.selectors.timeline import KIND_LABELS
from payments.services import attempt_apply_outcome
from payments.services.outcomes import OutcomeStatus
from payments.services.refunds import refund_create
from payments.webhooks.ingest import webhook_receive
from payments.webhooks.process import webhook_process
from tests.factories import payments, user_with_role
from tests.factories.cases import open_case
from tests.factories.users import UserFactory

pytestmark = pytest.mark.django_db

OPS = payments.system("payment_page_tests")
EMAIL = "rina.santoso@example.com"
PHONE = "+639171234567"
CORRELATION = "corr-payment-page-story"


def page_url(public_id: str) -> str:
    return reverse("payments:payment_detail", args=[public_id])


def action_url(public_id: str, action: str) -> str:
    return reverse("payments:payment_action", args=[public_id, action])


def html(response) -> str:
    return response.content.decode()


def signed_webhook(attempt, *, minutes: float, event_type: str = "payment.succeeded", **overrides) -> ProviderEventRaw:
    """A signed provider event about `attempt`, received and processed as a worker would."""
    received = payments.at(minutes)
    document = {
        "id": f"sev_{attempt.public_id[-12:]}_{int(minutes)}", "type": event_type,
        "occurred_at": payments.at(minutes - 1).isoformat().replace("+00:00", "Z"), "object": "payment",
        "provider_reference": payments.provider_reference_for(attempt.public_id),
        "merchant_reference": attempt.public_id, "merchant_id": attempt.payment_intent.merchant.public_id,
        "amount_minor": attempt.amount_minor, "currency": attempt.currency, "status": "succeeded",
        "decline_code": None, "error_code": None, **overrides,
    }  # fmt: skip
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret=DEFAULT_WEBHOOK_SECRET, timestamp=int(received.timestamp()), body=body),
    }
    raw = webhook_receive(provider_code="sim", headers=headers, body=body, received_at=received, actor=OPS)
    webhook_process(event_id=raw.public_id, actor=OPS, now=received)
    return ProviderEventRaw.objects.get(pk=raw.pk)


def unknown_payment(*, with_customer: bool = True):
    """An attempt whose provider call timed out (UNKNOWN_OUTCOME), for a customer with contact details."""
    merchant = payments.merchant()
    fields = {"merchant": merchant}
    if with_customer:
        fields["customer"] = payments.customer(merchant, email=EMAIL, phone=PHONE)
    with audit_context(correlation_id=CORRELATION):
        return payments.attempt_in(AttemptStatus.UNKNOWN_OUTCOME, **fields)


def the_whole_story():
    """Every kind the timeline merges: a timed-out attempt, an operator's refresh (request and
    inquiry), the provider's webhook capturing it (raw event, capture journal), a refund, a case."""
    attempt = unknown_payment()
    intent = attempt.payment_intent
    ops = user_with_role("payment_ops", username="ops_story")
    refresh = request_submit(
        action_type="REFRESH_PROVIDER_STATE", payload={"payment_attempt": attempt.public_id},
        reason_code="UNKNOWN_OUTCOME", reason_text="The provider call timed out", actor=Actor.from_user(ops),
        now=payments.at(2), idempotency_key="story-refresh",
    )  # fmt: skip
    raw = signed_webhook(attempt, minutes=4)
    refund = refund_create(
        intent=payments.fetch_intent(intent.public_id), amount_minor=100_000, reason_code="CUSTOMER_REQUEST",
        reason_text="Customer returned the goods", idempotency_key="story-refund", actor=OPS, now=payments.at(6),
    )  # fmt: skip
    case = open_case(title=f"Customer asks about {intent.public_id}", now=payments.at(8))
    with transaction.atomic():
        case_link_record(case_number=case.case_number, object_type="payment_intent", object_id=intent.public_id,
                         relation_type="AFFECTS", actor=OPS, now=payments.at(9))  # fmt: skip
    return {"attempt": attempt, "intent": intent, "refresh": refresh, "raw": raw, "refund": refund, "case": case}


def form_data(response, key: str, target: str = "") -> dict:
    """The fields of the action `key` (for `target`) as the page rendered them."""
    for item in response.context["actions"]:
        if item["key"] == key and (not target or item["target"] == target):
            form = item["form"]
            return {name: form[name].value() or "" for name in form.fields}
    raise AssertionError(f"no {key} action on the page")


def offered(response) -> set[str]:
    return {item["key"] for item in response.context["actions"]}


# --- the timeline --------------------------------------------------------------------------------------


def test_timeline_merges_every_kind_in_time_order_with_the_named_columns(client_as):
    story = the_whole_story()
    intent, attempt, raw = story["intent"], story["attempt"], story["raw"]
    assert raw.processing_status == EventProcessing.PROCESSED

    response = client_as("auditor").get(page_url(intent.public_id))

    assert response.status_code == 200
    timeline = response.context["page"].timeline
    assert {e.kind for e in timeline} == set(KIND_LABELS)
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    body = html(response)
    for column in ("Business time", "Received", "Source", "Actor", "Event", "Before → after", "Provider reference",
                   "Correlation id", "idempotency key", "Journal", "Evidence"):  # fmt: skip
        assert column in body, column
    for kind in KIND_LABELS:
        assert f'data-kind="{kind}"' in body, kind
    # The webhook's row: business time from the provider, received time, its reference, its anchor.
    webhook = next(e for e in timeline if e.kind == "provider_event")
    assert (webhook.at, webhook.received_at, webhook.subject) == (payments.at(3), payments.at(4), attempt.public_id)
    assert webhook.provider_reference == payments.provider_reference_for(attempt.public_id)
    assert f'id="{raw.public_id}"' in body
    # The capture: a transition linked to its journal and to the webhook that caused it.
    capture = LedgerJournal.objects.get(source_type="payment_attempt", source_id=attempt.public_id)
    succeeded = next(e for e in timeline if e.kind == "payment_event" and e.title == "payment_attempt.succeeded")
    assert (succeeded.before, succeeded.after, succeeded.journal_ref) == ("UNKNOWN_OUTCOME", "SUCCEEDED",
                                                                          capture.public_id)  # fmt: skip
    assert [ev.label for ev in succeeded.evidence][:1] == [raw.public_id]
    assert f'href="{reverse("ledger:journal_detail", args=[capture.public_id])}"' in body
    # The request, the inquiry it queued, the refund's reservation and the case link.
    inquiry = ProviderInquiry.objects.get(payment_attempt__public_id=attempt.public_id)
    assert f'id="{inquiry.public_id}"' in body
    assert reverse("approvals:request_detail", args=[story["refresh"].public_id]) in body
    assert reverse("cases:workbench", args=[story["case"].case_number]) in body
    reserved = LedgerJournal.objects.get(source_type="refund", source_id=story["refund"].public_id)
    assert reserved.public_id in body
    assert f'id="{story["refund"].public_id}"' in body
    assert CORRELATION in body
    assert "timeline-capped" not in body


def test_a_capped_kind_is_said(client_as, monkeypatch):
    attempt = unknown_payment(with_customer=False)
    monkeypatch.setattr("payments.selectors.timeline.TIMELINE_CAP", 1)

    response = client_as("payment_ops").get(page_url(attempt.payment_intent.public_id))

    assert response.context["page"].capped == ["Payment event", "Audit event"]
    assert 'data-testid="timeline-capped"' in html(response)
    assert len([e for e in response.context["page"].timeline if e.kind == "payment_event"]) == 1


def test_an_attempt_or_refund_id_opens_its_payment_and_an_unknown_id_is_404(client_as):
    intent, attempt = payments.captured_payment()
    client = client_as("support_ops")

    assert client.get(page_url(attempt.public_id)).url == page_url(intent.public_id)
    assert client.get(reverse("payments:payment_lookup"), {"id": attempt.public_id}).url == page_url(intent.public_id)
    assert client.get(page_url("pi_01JD5ZZZZZZZZZZZZZZZZZZZZZ")).status_code == 404
    assert client.get(page_url("pa_01JD5ZZZZZZZZZZZZZZZZZZZZZ")).status_code == 404
    assert client.get(page_url("rf_01JD5ZZZZZZZZZZZZZZZZZZZZZ")).status_code == 404
    assert client.get(reverse("payments:payment_lookup"), {"id": "pi_nothing"}).status_code == 404
    assert client.get("/payments/p/xx_123/").status_code == 404


def test_the_page_has_a_fixed_number_of_queries_whatever_the_payment_holds(client_as):
    intent, _ = payments.captured_payment(amount_minor=5_000_000)

    def refunds(n: int, start: int) -> None:
        for i in range(start, start + n):
            refund_create(intent=payments.fetch_intent(intent.public_id), amount_minor=10_000, reason_code="CUSTOMER",
                          reason_text="Partial return", idempotency_key=f"refund-{i}", actor=OPS,
                          now=payments.at(i))  # fmt: skip

    roles = ("auditor", "payment_ops", "support_ops", "finance_ops", "sre")
    clients = {role: client_as(role) for role in roles}

    def counts(expected_refunds: int) -> dict[str, int]:
        found = {}
        for role, client in clients.items():
            client.get(page_url(intent.public_id))
            with CaptureQueriesContext(connection) as queries:
                response = client.get(page_url(intent.public_id))
            assert len(response.context["page"].refunds) == expected_refunds
            found[role] = len(queries)
        return found

    refunds(2, 1)
    few = counts(2)
    refunds(18, 3)
    many = counts(20)

    assert many == few
    assert Refund.objects.filter(payment_intent=intent).count() == 20
    assert PaymentEvent.objects.filter(payment_intent=intent).count() > 20


# --- who sees what ---------------------------------------------------------------------------------------


def test_provider_reference_is_masked_for_support_and_whole_for_payment_ops(client_as):
    intent, attempt = payments.captured_payment()
    reference = attempt.provider_reference
    assert reference == payments.provider_reference_for(attempt.public_id)

    support = html(client_as("support_ops").get(page_url(intent.public_id)))
    ops = html(client_as("payment_ops").get(page_url(intent.public_id)))

    assert reference not in support
    assert f"…{reference[-4:]}" in support
    assert reference in ops
    # Support: no technical metadata, no raw provider events.
    assert attempt.idempotency_key not in support and "Correlation id" not in support
    assert 'data-kind="provider_event"' not in support


def test_money_summary_with_ledger_detail_for_finance_and_a_sentence_for_support(client_as):
    intent, attempt = payments.captured_payment(amount_minor=1_000_000)
    capture = LedgerJournal.objects.get(source_type="payment_attempt", source_id=attempt.public_id)

    finance = client_as("finance_ops").get(page_url(intent.public_id))
    support = client_as("support_ops").get(page_url(intent.public_id))

    sentence = "10,000.00 IDR of 10,000.00 IDR captured; 10,000.00 IDR still refundable."
    body = html(finance)
    assert 'data-testid="money-journals"' in body and 'data-testid="money-balances"' in body
    assert [j.public_id for j in finance.context["page"].money.journals] == [capture.public_id]
    lines = {(ln.direction, ln.amount_minor) for ln in finance.context["page"].money.journals[0].lines}
    assert sum(a for d, a in lines if d == "DEBIT") == sum(a for d, a in lines if d == "CREDIT") > 0
    assert sentence in body
    other = html(support)
    assert 'data-testid="money-journals"' not in other and 'data-testid="money-balances"' not in other
    assert support.context["page"].money.journals == ()
    assert sentence in other
    # Support proposes no money action.
    assert "refund" not in offered(support) and "refresh" not in offered(support)


def test_sre_sees_correlation_ids_but_no_personal_data(client_as):
    attempt = unknown_payment()
    customer = attempt.payment_intent.customer

    sre = client_as("sre").get(page_url(attempt.payment_intent.public_id))
    support = client_as("support_ops").get(page_url(attempt.payment_intent.public_id))

    body = html(sre)
    assert CORRELATION in body and 'data-testid="correlation-id"' in body
    assert customer.email_masked and customer.phone_masked
    for value in (EMAIL, customer.email_masked, customer.phone_masked, "example.com", customer.reference, "4242"):
        assert value not in body, value
    assert "hidden for your role" in body
    shown = html(support)
    assert customer.email_masked in shown and customer.phone_masked in shown
    assert EMAIL not in shown and PHONE not in shown
    assert CORRELATION not in shown


def test_a_user_without_the_view_permission_is_refused_with_the_reason_and_audited():
    intent, _ = payments.captured_payment()
    client = Client()
    client.force_login(UserFactory(username="no_role_user"))

    response = client.get(page_url(intent.public_id))

    assert response.status_code == 403
    assert "payments.view_paymentintent" in html(response)
    assert "payment_ops" in response.context["reason"]
    denied = AuditEvent.objects.filter(event_type="access.denied", target_id=page_url(intent.public_id)).get()
    assert (denied.result, denied.actor) == (AuditResult.REFUSED, "no_role_user")


# --- refresh from provider -------------------------------------------------------------------------------


def test_unknown_outcome_offers_refresh_to_payment_ops_not_to_support(client_as):
    attempt = unknown_payment()

    ops = client_as("payment_ops").get(page_url(attempt.payment_intent.public_id))
    support = client_as("support_ops").get(page_url(attempt.payment_intent.public_id))

    assert "refresh" in offered(ops)
    assert f'data-testid="action-refresh" data-target="{attempt.public_id}"' in html(ops)
    assert "refresh" not in offered(support) and 'data-testid="action-refresh"' not in html(support)
    # A final attempt is not offered a refresh, whoever looks.
    intent, _ = payments.captured_payment()
    assert "refresh" not in offered(client_as("payment_ops").get(page_url(intent.public_id)))


def test_support_posting_a_refresh_is_refused_with_the_reason(client_as):
    attempt = unknown_payment()
    intent_id = attempt.payment_intent.public_id
    fields = form_data(client_as("payment_ops").get(page_url(intent_id)), "refresh")

    sent = {**fields, "step": "submit", "reason_code": "UNKNOWN_OUTCOME", "reason_text": "Customer was debited"}
    response = client_as("support_ops").post(action_url(intent_id, "refresh"), sent)

    assert response.status_code == 403
    assert "payments.refresh_provider_state" in html(response)
    assert not ActionRequest.objects.exists()
    assert AuditEvent.objects.filter(event_type="access.denied", result=AuditResult.REFUSED).exists()


def test_refresh_previews_then_submits_once_on_a_double_submit(client_as):
    attempt = unknown_payment()
    intent_id = attempt.payment_intent.public_id
    client = client_as("payment_ops")
    fields = {**form_data(client.get(page_url(intent_id)), "refresh"), "reason_code": "UNKNOWN_OUTCOME",
              "reason_text": "The provider call timed out; the customer says they paid"}  # fmt: skip

    preview = client.post(action_url(intent_id, "refresh"), {**fields, "step": "preview"})

    assert preview.status_code == 200
    body = html(preview)
    assert 'data-testid="action-preview"' in body and "no approval needed" in body
    assert f"Ask sim for the state of {attempt.public_id}" in body
    assert not ActionRequest.objects.exists()

    first = client.post(action_url(intent_id, "refresh"), {**fields, "step": "submit"})
    second = client.post(action_url(intent_id, "refresh"), {**fields, "step": "submit"})

    assert first.status_code == second.status_code == 302
    request = ActionRequest.objects.get()
    assert (request.action_type, request.target_id, request.status) == (
        "REFRESH_PROVIDER_STATE", attempt.public_id, RequestStatus.SUCCEEDED)  # fmt: skip
    assert request.idempotency_key == fields["idempotency_key"]
    assert ProviderInquiry.objects.filter(payment_attempt__public_id=attempt.public_id).count() == 1
    messages = [str(m) for m in client.get(second.url).context["messages"]]
    assert any("already sent" in m for m in messages), messages


def test_a_stale_page_is_refused_with_nothing_submitted_and_the_refusal_audited(client_as):
    attempt = unknown_payment()
    intent_id = attempt.payment_intent.public_id
    client = client_as("payment_ops")
    fields = {**form_data(client.get(page_url(intent_id)), "refresh"), "reason_code": "UNKNOWN_OUTCOME",
              "reason_text": "The provider call timed out", "step": "submit"}  # fmt: skip
    # Meanwhile the provider answers: the attempt needs the payer's action (still refreshable).
    attempt_apply_outcome(attempt_id=attempt.public_id, source="WEBHOOK", actor=OPS, now=payments.at(3),
                          outcome=payments.outcome_for(payments.fetch_attempt(attempt.public_id),
                                                       OutcomeStatus.REQUIRES_ACTION))  # fmt: skip

    response = client.post(action_url(intent_id, "refresh"), fields)

    assert response.status_code == 409
    assert "This payment changed since you loaded the page; reload it" in html(response)
    assert not ActionRequest.objects.exists()
    assert not ProviderInquiry.objects.exists()
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.REQUIRES_ACTION
    refused = AuditEvent.objects.get(event_type="payments.payment_page_command_refused")
    assert (refused.result, refused.error_code, refused.target_id, refused.action_type) == (
        AuditResult.REFUSED, "STALE_TARGET", intent_id, "REFRESH_PROVIDER_STATE")  # fmt: skip
    # The page answered is the current one: its new form carries the new version.
    assert form_data(response, "refresh")["target_version"] != fields["target_version"]


def test_bad_input_is_a_form_error_not_a_500(client_as):
    attempt = unknown_payment()
    intent_id = attempt.payment_intent.public_id
    client = client_as("payment_ops")
    fields = form_data(client.get(page_url(intent_id)), "refresh")

    url, submit = action_url(intent_id, "refresh"), {**fields, "step": "submit", "reason_code": "UNKNOWN_OUTCOME"}
    no_reason = client.post(url, {**submit, "reason_code": "NOPE", "reason_text": "short"})
    other = client.post(url, {**submit, "attempt": "pa_01JD5ZZZZZZZZZZZZZZZZZZZZZ", "reason_text": "Someone else's"})
    card = client.post(url, {**submit, "reason_text": "Card 4111 1111 1111 1111 was charged"})

    assert (no_reason.status_code, other.status_code, card.status_code) == (400, 400, 400)
    assert "4111 1111 1111 1111" not in html(card)
    assert f"is not an attempt of {intent_id}" in html(other)
    assert not ActionRequest.objects.exists()


# --- pending requests and the refund correction ------------------------------------------------------------


def test_a_pending_request_is_a_banner_and_blocks_another_refund_correction(client_as):
    intent, _ = payments.captured_payment(amount_minor=1_000_000)
    maker = user_with_role("finance_ops", username="fin_maker")
    case = open_case(title="Customer complaint", now=payments.at(1))
    pending = request_submit(
        action_type="CREATE_REFUND_CORRECTION", payload={"intent": intent.public_id, "amount_minor": 50_000},
        reason_code="CUSTOMER_COMPLAINT", reason_text="Charged twice for one order", actor=Actor.from_user(maker),
        now=payments.at(2), idempotency_key="pending-refund", case_ref=case.case_number,
    )  # fmt: skip
    assert pending.status == RequestStatus.REQUESTED

    response = client_as("payment_ops").get(page_url(intent.public_id))

    body = html(response)
    assert 'data-testid="pending-request"' in body
    assert f'href="{reverse("approvals:request_detail", args=[pending.public_id])}"' in body
    assert "refund" not in offered(response)
    assert [r.public_id for r in response.context["page"].pending] == [pending.public_id]


def test_refund_correction_previews_its_journals_and_waits_for_a_checker(client_as):
    intent, _ = payments.captured_payment(amount_minor=1_000_000)
    case = open_case(title="Customer complaint", now=payments.at(1))
    client = client_as("finance_ops")
    fields = {**form_data(client.get(page_url(intent.public_id)), "refund"), "amount": "250.00",
              "case_ref": case.case_number, "reason_code": "CUSTOMER_COMPLAINT",
              "reason_text": "Goods never delivered; merchant unreachable"}  # fmt: skip

    preview = client.post(action_url(intent.public_id, "refund"), {**fields, "step": "preview"})

    body = html(preview)
    assert preview.status_code == 200
    assert 'data-testid="preview-lines"' in body and "needs approval" in body
    assert not ActionRequest.objects.exists()

    submitted = client.post(action_url(intent.public_id, "refund"), {**fields, "step": "submit"})
    again = client.post(action_url(intent.public_id, "refund"), {**fields, "step": "submit"})

    assert submitted.status_code == again.status_code == 302
    request = ActionRequest.objects.get()
    assert (request.status, request.amount_minor, request.case_ref) == (RequestStatus.REQUESTED, 25_000,
                                                                       case.case_number)  # fmt: skip
    assert not Refund.objects.exists()
    banner = html(client.get(page_url(intent.public_id)))
    assert 'data-testid="pending-request"' in banner and request.public_id in banner

    bad = client.post(action_url(intent.public_id, "refund"), {**fields, "amount": "abc", "step": "preview"})
    assert bad.status_code == 400 and ActionRequest.objects.count() == 1


# --- replay and open case -----------------------------------------------------------------------------------


def test_a_quarantined_webhook_is_offered_for_replay_to_payment_ops(client_as):
    attempt = unknown_payment(with_customer=False)
    raw = signed_webhook(attempt, minutes=3, amount_minor=attempt.amount_minor - 1)
    assert (raw.processing_status, raw.failure_code) == (EventProcessing.QUARANTINED, "OUTCOME_MISMATCH")
    intent_id = attempt.payment_intent.public_id
    client = client_as("payment_ops")

    page = client.get(page_url(intent_id))

    assert "replay" in offered(page) and "replay" not in offered(client_as("support_ops").get(page_url(intent_id)))
    fields = {**form_data(page, "replay", raw.public_id), "reason_code": "PROVIDER_CONFIRMED",
              "reason_text": "Provider confirmed the amount", "step": "submit"}  # fmt: skip
    response = client.post(action_url(intent_id, "replay"), fields)
    client.post(action_url(intent_id, "replay"), fields)

    assert response.status_code == 302
    request = ActionRequest.objects.get(action_type="REPLAY_WEBHOOK")
    assert (request.target_id, request.status) == (raw.public_id, RequestStatus.SUCCEEDED)


def test_open_case_links_the_payment_once_on_a_double_submit(client_as):
    intent, _ = payments.captured_payment()
    client = client_as("support_ops")
    fields = {**form_data(client.get(page_url(intent.public_id)), "case"), "severity": "HIGH",
              "title": f"Customer disputes {intent.public_id}", "description": "Says the goods never arrived",
              "step": "submit"}  # fmt: skip

    first = client.post(action_url(intent.public_id, "case"), fields)
    second = client.post(action_url(intent.public_id, "case"), fields)

    assert first.status_code == second.status_code == 302
    case = OpsCase.objects.get()
    assert (case.severity, case.merchant_ref) == ("HIGH", intent.merchant.public_id)
    assert list(CaseLink.objects.values_list("object_type", "object_id", "relation_type")) == [
        ("payment_intent", intent.public_id, "AFFECTS")]  # fmt: skip
    page = client.get(page_url(intent.public_id))
    assert case.case_number in html(page)
    assert re.search(r'data-kind="case"', html(page))
