"""The merchant screens: the list (search by name or id prefix, keyset pages) and one merchant's
page (profile with masked contact details and its history, balances from the ledger for finance
roles, restrictions with reasons for risk and compliance, payouts, payout accounts, pending
changes, recent cases), each role seeing what it may and nothing more; proposals previewed then
submitted through the approval actions (one request per form, a changed merchant refused), and a
fixed number of queries whatever the row count.

Data is made only through the services (onboarding, profile changes, payout accounts, payouts,
restrictions, cases, requests)."""

from __future__ import annotations

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_submit
from audit.context import audit_context
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from cases.models import CaseType
from cases.services import case_open
from payments.models import Merchant, RestrictionMode
from payments.selectors import merchant as merchant_selectors
from payments.services.merchants import beneficiary_add, merchant_profile_change
from payments.services.payouts import payout_create
from payments.services.restrictions import restriction_impose, restriction_lift
from tests.factories.ledger import credit_merchant
from tests.factories.payments import at, merchant_with_balance
from tests.factories.payments import merchant as make_merchant
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

SYSTEM = system_actor("merchant_screen_tests")
EMAIL = "owner@tokosinar.co.id"
PHONE = "+6281299887766"
CONTACT_NAME = "Budi Santoso"
REASON_TEXT = "Chargeback ratio above threshold for three weeks"
LIST = reverse("payments:merchant_list")
ROLES_WITH_PERSONAL_DATA = ("support_ops", "payment_ops", "finance_ops", "finance_manager", "risk_ops",
                            "compliance_ops", "auditor")  # fmt: skip


def page_url(m: Merchant) -> str:
    return reverse("payments:merchant_detail", args=[m.public_id])


def propose_url(m: Merchant, kind: str) -> str:
    return reverse("payments:merchant_propose", args=[m.public_id, kind])


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def html(response) -> str:
    return response.content.decode()


def hidden(page: str, testid: str) -> dict[str, str]:
    """The hidden inputs of the form marked data-testid=`testid`."""
    form = re.search(rf'<form[^>]*data-testid="{testid}".*?</form>', page, re.S)
    assert form, f"no {testid} on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def toko(**fields) -> Merchant:
    return make_merchant(name="Toko Sinar", contact_name=CONTACT_NAME, contact_email=EMAIL, contact_phone=PHONE,
                         **fields)  # fmt: skip


def with_payouts(m: Merchant, count: int) -> list:
    ben = beneficiary_add(merchant=m, bank_code="BCA", bank_name="Bank Central Asia", account_holder="PT Toko Sinar",
                          account_number="1234567890", currency="IDR", actor=SYSTEM, now=at(0))  # fmt: skip
    credit_merchant(m.public_id, 10_000_000)
    payouts = []
    for n in range(count):
        payouts.append(payout_create(merchant=m, beneficiary=ben, amount_minor=10_000 + n, currency="IDR",
                                     idempotency_key=f"po-{m.public_id}-{n}", actor=SYSTEM, now=at(n)))  # fmt: skip
    return payouts


def with_restrictions(m: Merchant, past: int) -> None:
    """`past` lifted restrictions of ACCEPT_QR, and one active block of CREATE_REFUND."""
    for n in range(past):
        r = restriction_impose(merchant=m, capability="ACCEPT_QR", mode=RestrictionMode.REVIEW,
                               reason_code="RISK_REVIEW", reason_text=f"Review round {n}", source="RISK", actor=SYSTEM,
                               now=at(10 + 2 * n))  # fmt: skip
        restriction_lift(restriction_id=r.pk, reason_text="Review cleared", actor=SYSTEM, now=at(11 + 2 * n))
    restriction_impose(merchant=m, capability="CREATE_REFUND", mode=RestrictionMode.BLOCK,
                       reason_code="CHARGEBACK_RATE", reason_text=REASON_TEXT, source="RISK", actor=SYSTEM,
                       now=at(100))  # fmt: skip


def with_history(m: Merchant, changes: int, user=None) -> None:
    actor = Actor.from_user(user) if user else SYSTEM
    with audit_context(actor=actor):
        for n in range(changes):
            merchant_profile_change(merchant_id=m.public_id, changes={"legal_name": f"PT Toko Sinar {n}"}, actor=actor,
                                    now=at(200 + n))  # fmt: skip


# --- who sees what ------------------------------------------------------------------------------------------


def test_balances_by_bucket_and_currency_are_shown_to_finance_roles_only(client_as):
    m = merchant_with_balance(amount_minor=1_000_000)
    credit_merchant(m.public_id, 250_00, currency="PHP")

    for role in ("finance_ops", "finance_manager", "auditor"):
        page = html(client_as(role).get(page_url(m)))
        table = re.search(r'data-testid="balances".*?</table>', page, re.S).group(0)
        assert "IDR" in table and "PHP" in table, role
        assert "250.00" in table and "Available" in table, role
        assert 'class="num"><span class="money"><span class="amount">' in table
        assert 'data-testid="balances-hidden"' not in page

    for role in ("support_ops", "payment_ops", "risk_ops", "compliance_ops", "sre"):
        page = html(client_as(role).get(page_url(m)))
        assert 'data-testid="balances"' not in page, role
        assert "Balances are ledger detail: they are shown to finance and audit roles." in page, role
        assert "250.00" not in page


def test_a_restrictions_reason_is_shown_to_risk_and_compliance_not_to_support(client_as):
    m = toko()
    with_restrictions(m, past=1)

    for role in ("risk_ops", "compliance_ops", "auditor"):
        page = html(client_as(role).get(page_url(m)))
        assert REASON_TEXT in page and "CHARGEBACK_RATE" in page and "Review round 0" in page, role

    for role in ("support_ops", "payment_ops", "sre"):
        response = client_as(role).get(page_url(m))
        page = html(response)
        assert response.status_code == 200
        assert "Create refunds" in page and "BLOCK" in page, role  # that it is restricted, and how
        assert REASON_TEXT not in page and "CHARGEBACK_RATE" not in page and "Review round" not in page, role
        assert 'data-testid="reasons-hidden"' in page


def test_the_contact_email_is_masked_for_everyone_and_absent_for_sre(client_as):
    m = toko()
    with_payouts(m, 1)

    for role in ROLES_WITH_PERSONAL_DATA:
        page = html(client_as(role).get(page_url(m)))
        assert EMAIL not in page and PHONE not in page and "1234567890" not in page, role
        assert "o***@tokosinar.co.id" in page and "*********7766" in page, role
        assert "****7890" in page, role  # the payout account, masked

    page = html(client_as("sre").get(page_url(m)))
    assert EMAIL not in page and "tokosinar.co.id" not in page and "7766" not in page
    assert CONTACT_NAME not in page and "PT Toko Sinar" not in page  # contact and account holder
    assert page.count("hidden for your role") == 3
    assert 'data-testid="beneficiaries-hidden"' in page and "****7890" not in page
    assert 'data-testid="reveal-forms"' not in page


def test_only_a_user_who_may_reveal_sees_the_reveal_forms(client_as):
    m = toko()
    assert 'data-testid="reveal-email"' in html(client_as("compliance_ops").get(page_url(m)))
    for role in ("support_ops", "finance_ops", "risk_ops", "auditor"):
        assert 'data-testid="reveal-forms"' not in html(client_as(role).get(page_url(m))), role


def test_the_profile_history_shows_each_change_with_who_and_when(client_as):
    m = toko()
    carol = user_with_role("compliance_ops", username="carol")
    actor = Actor.from_user(carol)
    with audit_context(actor=actor):
        merchant_profile_change(merchant_id=m.public_id, changes={"risk_tier": "HIGH", "contact_email": "cfo@toko.id"},
                                actor=actor, now=at(5))  # fmt: skip

    page = html(client_as("support_ops").get(page_url(m)))

    history = re.search(r'data-testid="history".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>.*?</tr>", history, re.S)
    assert len(rows) == 2  # the change, then the onboarding
    assert "carol" in rows[0] and "Risk tier" in rows[0] and "MEDIUM" in rows[0] and "HIGH" in rows[0]
    assert "Contact email" in rows[0] and "o***@tokosinar.co.id" in rows[0] and "c***@toko.id" in rows[0]
    assert re.search(r'<time datetime="[^"]+" title="[^"]+\+08:00 \(UTC', rows[0])  # when, with its timezone
    assert "Onboarded" in rows[1] and "system" in rows[1]
    assert "cfo@toko.id" not in page and EMAIL not in page

    sre_page = html(client_as("sre").get(page_url(m)))
    assert "c***@toko.id" not in sre_page and "Risk tier" in sre_page


def test_pending_changes_banner_when_a_profile_change_waits(client_as):
    m = toko()
    sam = user_with_role("support_ops", username="sam")
    ar = request_submit(action_type="CHANGE_MERCHANT_PROFILE", payload={"merchant": m.public_id, "risk_tier": "HIGH"},
                        reason_code="RISK_REVIEW", reason_text="Merchant asked", actor=Actor.from_user(sam),
                        now=at(1), idempotency_key="pending-1")  # fmt: skip
    assert ar.status == RequestStatus.REQUESTED

    page = html(client_as("risk_ops").get(page_url(m)))

    banner = re.search(r'data-testid="pending-banner".*?</div>', page, re.S).group(0)
    assert ar.public_id in banner and "CHANGE_MERCHANT_PROFILE" in banner and "sam" in banner
    assert reverse("approvals:request_detail", args=[ar.public_id]) in banner

    other = toko()
    assert 'data-testid="pending-banner"' not in html(client_as("risk_ops").get(page_url(other)))


def test_recent_cases_only_those_the_user_may_see(client_as):
    m = toko()
    risk = user_with_role("risk_ops", username="rita")
    case = case_open(case_type=CaseType.RISK_REVIEW, severity="HIGH", title="Chargebacks rising",
                     actor=Actor.from_user(risk), now=at(1), merchant_ref=m.public_id)  # fmt: skip

    assert case.case_number in html(signed_in(risk).get(page_url(m)))
    assert case.case_number in html(client_as("auditor").get(page_url(m)))  # reads every case
    assert case.case_number not in html(client_as("support_ops").get(page_url(m)))


def test_actions_are_shown_only_with_their_propose_permission(client_as):
    m = toko()
    with_payouts(m, 1)
    support = html(client_as("support_ops").get(page_url(m)))
    assert 'data-testid="propose-profile"' in support and 'data-testid="propose-beneficiary"' in support
    assert 'data-testid="propose-hold"' not in support and 'data-testid="propose-freeze"' not in support
    assert "Hold…" not in support

    risk = html(client_as("risk_ops").get(page_url(m)))
    assert 'data-testid="propose-freeze"' in risk and 'data-testid="propose-hold"' in risk and "Hold…" in risk
    assert 'data-testid="propose-profile"' not in risk

    sre = html(client_as("sre").get(page_url(m)))
    assert 'data-testid="read-only"' in sre and "propose-" not in sre


def test_a_proposal_the_role_may_not_make_is_denied_with_its_reason_and_audited(client_as):
    m = toko()
    response = client_as("sre").get(propose_url(m, "profile"))
    assert response.status_code == 403
    assert "payments.propose_merchant_change" in html(response) and "support_ops" in html(response)
    event = AuditEvent.objects.get(event_type="access.denied")
    assert (event.result, event.target_id, event.actor) == (AuditResult.REFUSED, propose_url(m, "profile"), "sre_user")

    response = client_as("support_ops").post(propose_url(m, "freeze"), {"step": "submit"})
    assert response.status_code == 403 and "payments.propose_restriction" in html(response)
    assert ActionRequest.objects.count() == 0


def test_a_user_without_a_role_is_denied_and_anonymous_is_sent_to_sign_in(client_as):
    m = toko()
    nobody = user_with_role("no_such_role", username="nobody")
    response = signed_in(nobody).get(page_url(m))
    assert response.status_code == 403 and "payments.view_merchant" in html(response)
    assert Client().get(page_url(m)).status_code == 302
    assert (
        client_as("support_ops").get(reverse("payments:merchant_detail", args=["m_nosuchmerchant"])).status_code == 404
    )


# --- proposals ----------------------------------------------------------------------------------------------


def _profile_form(client, m: Merchant, **values) -> dict:
    page = html(client.get(propose_url(m, "profile") + f"?version={m.version}"))
    fields = hidden(page, "proposal-form")
    assert EMAIL not in page and PHONE not in page  # never prefilled unmasked
    return {**fields, "name": m.name, "region": m.region, "reason_code": "MERCHANT_REQUEST",
            "reason_text": "The merchant asked by email on the case", **values}  # fmt: skip


def test_a_profile_change_previewed_then_submitted_twice_is_one_request(client_as):
    m = toko()
    client = client_as("support_ops")
    form = _profile_form(client, m, risk_tier="HIGH", contact_email="new.owner@tokosinar.co.id")

    preview = client.post(propose_url(m, "profile"), {**form, "step": "preview"})

    assert preview.status_code == 200, html(preview)
    page = html(preview)
    assert 'data-testid="proposal-preview"' in page and "Risk tier" in page and "n***@tokosinar.co.id" in page
    assert "needs approval" in page and "Compliance operations" in page
    assert preview["Cache-Control"].startswith("max-age=0") or "no-store" in preview["Cache-Control"]
    assert ActionRequest.objects.count() == 0  # a preview writes nothing
    submit = hidden(page, "submit-form")
    assert submit["step"] == "submit" and submit["target_version"] == str(m.version)

    first = client.post(propose_url(m, "profile"), submit)
    second = client.post(propose_url(m, "profile"), submit)

    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.status, ar.maker, ar.target_id) == (
        "CHANGE_MERCHANT_PROFILE", RequestStatus.REQUESTED, "support_ops_user", m.public_id,
    )  # fmt: skip
    assert ar.payload["changes"] == {"risk_tier": "HIGH", "contact_email": "new.owner@tokosinar.co.id"}
    assert first.status_code == second.status_code == 302
    assert any(f"{ar.public_id} proposed" in text for text in messages_of(first))
    assert any("already proposed" in text for text in messages_of(second))
    assert Merchant.objects.get(pk=m.pk).risk_tier == "MEDIUM"  # nothing changes before a checker approves
    assert ar.public_id in html(client.get(page_url(m)))  # the pending banner


def test_a_merchant_changed_since_the_page_was_read_is_refused_and_nothing_is_proposed(client_as):
    m = toko()
    client = client_as("support_ops")
    form = _profile_form(client, m, risk_tier="HIGH")
    merchant_profile_change(merchant_id=m.public_id, changes={"name": "Toko Sinar Jaya"}, actor=SYSTEM, now=at(3))

    response = client.post(propose_url(m, "profile"), {**form, "step": "preview"})

    assert response.status_code == 409
    assert "changed since you opened its page" in html(response) and 'data-testid="stale"' in html(response)
    assert ActionRequest.objects.count() == 0


def test_a_change_between_preview_and_submit_is_refused_and_nothing_is_proposed(client_as):
    m = toko()
    client = client_as("support_ops")
    form = _profile_form(client, m, risk_tier="HIGH")
    submit = hidden(html(client.post(propose_url(m, "profile"), {**form, "step": "preview"})), "submit-form")
    merchant_profile_change(merchant_id=m.public_id, changes={"legal_name": "PT Toko Sinar"}, actor=SYSTEM, now=at(3))

    response = client.post(propose_url(m, "profile"), submit)

    assert response.status_code == 409 and "changed since" in html(response)
    assert ActionRequest.objects.count() == 0
    refusal = AuditEvent.objects.filter(event_type__endswith="refused")
    assert not refusal.exists()  # refused before request_submit: nothing was proposed, nothing to audit there


def test_a_submit_without_a_preview_is_refused(client_as):
    m = toko()
    client = client_as("support_ops")
    form = _profile_form(client, m, risk_tier="HIGH")
    response = client.post(propose_url(m, "profile"), {**form, "step": "submit"})
    assert response.status_code == 409 and "preview the change again" in html(response)
    assert ActionRequest.objects.count() == 0


def test_bad_input_is_a_form_error_not_a_500(client_as):
    m = toko()
    client = client_as("support_ops")
    form = _profile_form(client, m, contact_email="not-an-email")
    response = client.post(propose_url(m, "profile"), {**form, "step": "preview"})
    assert response.status_code == 400 and "not a valid email address" in html(response)

    nothing = _profile_form(client, m)
    response = client.post(propose_url(m, "profile"), {**nothing, "step": "preview"})
    assert response.status_code == 400 and "nothing to change" in html(response)

    assert client.post(propose_url(m, "nonsense"), {}).status_code == 404
    assert ActionRequest.objects.count() == 0


def test_a_payout_hold_is_proposed_for_this_merchants_payout_only(client_as):
    m = toko()
    payout, *_ = with_payouts(m, 1)
    other = make_merchant(name="Other shop")
    other_payout, *_ = with_payouts(other, 1)
    client = client_as("finance_ops")
    page = html(client.get(propose_url(m, "hold") + f"?version={m.version}&payout={payout.public_id}"))
    fields = {**hidden(page, "proposal-form"), "reason_code": "RISK_REVIEW",
              "reason_text": "Unusual payout pattern this week"}  # fmt: skip

    refused = client.post(propose_url(m, "hold"), {**fields, "payout": other_payout.public_id, "step": "preview"})
    assert refused.status_code == 400 and "cannot be held" not in html(refused)
    assert "not one of this merchant" in html(refused)

    preview = client.post(propose_url(m, "hold"), {**fields, "payout": payout.public_id, "step": "preview"})
    assert preview.status_code == 200 and "Finance manager" in html(preview)
    client.post(propose_url(m, "hold"), hidden(html(preview), "submit-form"))

    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.target_type, ar.target_id) == ("HOLD_PAYOUT", "payout", payout.public_id)
    detail = html(client.get(page_url(m)))
    assert 'data-testid="pending-banner"' in detail and "change pending" in detail


def test_a_freeze_needs_a_case_and_is_proposed_with_one(client_as):
    m = toko()
    risk = user_with_role("risk_ops", username="rita")
    case = case_open(case_type=CaseType.RISK_REVIEW, severity="HIGH", title="Chargebacks rising",
                     actor=Actor.from_user(risk), now=at(1), merchant_ref=m.public_id)  # fmt: skip
    client = signed_in(risk)
    page = html(client.get(propose_url(m, "freeze") + f"?version={m.version}"))
    fields = {**hidden(page, "proposal-form"), "capability": "CREATE_PAYOUT", "mode": "BLOCK",
              "expires_at": "2026-03-09T00:00", "reason_code": "CHARGEBACK_RATE",
              "reason_text": "Chargebacks above the threshold"}  # fmt: skip

    missing = client.post(propose_url(m, "freeze"), {**fields, "step": "preview"})
    assert missing.status_code == 400 and "This field is required" in html(missing)

    preview = client.post(propose_url(m, "freeze"), {**fields, "case_ref": case.case_number, "step": "preview"})
    assert preview.status_code == 200 and "becomes blocked" in html(preview)
    client.post(propose_url(m, "freeze"), hidden(html(preview), "submit-form"))

    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.case_ref, ar.payload["expires_at"]) == (
        "FREEZE_MERCHANT_CAPABILITY", case.case_number, "2026-03-08T16:00:00+00:00",
    )  # fmt: skip


# --- a fixed number of queries ------------------------------------------------------------------------------


def _busy_merchant(rows: int) -> Merchant:
    m = toko()
    with_payouts(m, rows)
    with_restrictions(m, past=rows)
    with_history(m, rows)
    m = Merchant.objects.get(pk=m.pk)
    for n in range(rows):
        case_open(case_type=CaseType.RISK_REVIEW, severity="LOW", title=f"Review {n}", actor=SYSTEM, now=at(300 + n),
                  owner_team="risk_ops", merchant_ref=m.public_id)  # fmt: skip
    return m


@pytest.mark.parametrize("role", ["finance_ops", "compliance_ops", "sre"])
def test_the_page_makes_the_same_number_of_queries_for_2_and_20_rows(role, client_as):
    few, many = _busy_merchant(2), _busy_merchant(20)
    client = client_as(role)
    client.get(page_url(few))

    with CaptureQueriesContext(connection) as few_queries:
        few_page = html(client.get(page_url(few)))
    with CaptureQueriesContext(connection) as many_queries:
        many_page = html(client.get(page_url(many)))

    assert many_page.count("data-payout=") == 20 and few_page.count("data-payout=") == 2
    assert many_page.count("data-restriction=") == 21 and few_page.count("data-restriction=") == 3
    assert len(many_queries) == len(few_queries), [q["sql"][:120] for q in many_queries]


# --- the merchant list --------------------------------------------------------------------------------------


def test_the_merchant_list_pages_by_keyset_and_searches_by_name_or_id_prefix(client_as, monkeypatch):
    names = ["Apotek Sehat", "Bakso Malang", "Bakmi Jaya", "Cafe Kopi", "Dapur Ibu"]
    made = {name: make_merchant(name=name) for name in names}
    monkeypatch.setattr(merchant_selectors, "PAGE_SIZE", 2)
    client = client_as("support_ops")

    seen, before, counts = [], "", []
    while True:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST, {"before": before} if before else {})
        counts.append(len(queries))
        assert response.status_code == 200
        seen += [row.name for row in response.context["page"].rows]
        before = response.context["next_before"]
        if not before:
            break
        assert f"before={before}" in html(response)

    assert seen == sorted(names) and len(set(counts)) == 1

    assert [r.name for r in client.get(LIST, {"q": "bak"}).context["page"].rows] == ["Bakmi Jaya", "Bakso Malang"]
    pid = made["Cafe Kopi"].public_id
    assert [r.public_id for r in client.get(LIST, {"q": pid}).context["page"].rows] == [pid]
    bad = client.get(LIST, {"before": "not-a-cursor"})
    assert bad.status_code == 400 and "cursor is not valid" in html(bad)


def test_the_merchant_list_is_on_the_menu_with_its_hotkey(client_as):
    page = html(client_as("support_ops").get(LIST))
    assert f'href="{LIST}" data-hotkey="m"' in page


def test_a_payout_account_change_shows_the_new_account_masked_in_its_preview(client_as):
    m = toko()
    with_payouts(m, 1)
    sam = user_with_role("support_ops", username="sam")
    case = case_open(case_type=CaseType.SUPPORT, severity="MEDIUM", title="New bank account",
                     actor=Actor.from_user(sam), now=at(1), merchant_ref=m.public_id)  # fmt: skip
    client = signed_in(sam)
    page = html(client.get(propose_url(m, "beneficiary") + f"?version={m.version}"))
    fields = {**hidden(page, "proposal-form"), "currency": "IDR", "bank_code": "MANDIRI", "bank_name": "Bank Mandiri",
              "account_holder": "PT Toko Sinar", "account_number": "9876543210", "case_ref": case.case_number,
              "reason_code": "MERCHANT_REQUEST", "reason_text": "Merchant moved banks, letter on the case"}  # fmt: skip

    preview = client.post(propose_url(m, "beneficiary"), {**fields, "step": "preview"})

    shown = re.search(r'data-testid="proposal-preview".*?</table>', html(preview), re.S).group(0)
    assert preview.status_code == 200 and "****3210" in shown and "****7890" in shown and "9876543210" not in shown
    assert "no-store" in preview["Cache-Control"]  # the submit form carries what the maker typed
    client.post(propose_url(m, "beneficiary"), hidden(html(preview), "submit-form"))
    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.target_id) == ("CHANGE_MERCHANT_BENEFICIARY", f"{m.public_id}:IDR")


def test_an_unfreeze_is_offered_for_a_restricted_capability_and_proposed(client_as):
    m = toko()
    with_restrictions(m, past=0)
    compliance = user_with_role("compliance_ops", username="cora")
    case = case_open(case_type=CaseType.COMPLIANCE_REVIEW, severity="MEDIUM", title="Review done",
                     actor=Actor.from_user(compliance), now=at(1), merchant_ref=m.public_id)  # fmt: skip
    client = signed_in(compliance)
    detail = html(client.get(page_url(m)))
    assert "capability=CREATE_REFUND" in detail and 'data-testid="propose-unfreeze"' in detail

    page = html(client.get(propose_url(m, "unfreeze") + f"?version={m.version}&capability=CREATE_REFUND"))
    assert '<option value="CREATE_REFUND" selected>' in page and "ACCEPT_QR" not in page
    fields = {**hidden(page, "proposal-form"), "capability": "CREATE_REFUND", "case_ref": case.case_number,
              "reason_code": "REVIEW_CLEARED", "reason_text": "Chargeback ratio back under threshold"}  # fmt: skip
    preview = client.post(propose_url(m, "unfreeze"), {**fields, "step": "preview"})
    assert preview.status_code == 200 and "is allowed again" in html(preview)
    client.post(propose_url(m, "unfreeze"), hidden(html(preview), "submit-form"))

    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.target_id) == ("UNFREEZE_MERCHANT_CAPABILITY", f"{m.public_id}:CREATE_REFUND")
    assert "change pending" in html(client.get(page_url(m)))
