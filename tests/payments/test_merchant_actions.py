"""Merchant and customer data changes through maker-checker: each action proposed and approved by
different people, stale targets refused at execution, and a customer's contact details never
stored raw anywhere (payments, approvals, audit)."""

import threading

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from approvals.models import ActionRequest, ApprovalPolicy
from approvals.services import request_approve, request_submit
from audit.context import keyed_hash
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from backoffice.errors import (
    IdempotencyConflict,
    PermissionMissing,
    PolicyDenied,
    SelfApprovalRefused,
    ValidationFailed,
)
from payments.models import Customer, Merchant, MerchantBeneficiary
from payments.services import (
    beneficiary_add,
    customer_contact_change,
    customer_create,
    customer_email_digest,
    merchant_create,
    merchant_profile_change,
)
from tests.factories import payments as f
from tests.factories.cases import open_case
from tests.factories.users import UserFactory, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def sam():
    """A support_ops maker: may propose merchant and contact changes, may decide none."""
    return user_with_role("support_ops", username="sam")


@pytest.fixture
def carol():
    """A compliance_ops checker."""
    return user_with_role("compliance_ops", username="carol")


def actor(user) -> Actor:
    return Actor.from_user(user)


def propose(user, action_type: str, payload: dict, *, reason_code: str, key: str = "idem-1", case_ref: str = "",
            minutes: float = 1) -> ActionRequest:  # fmt: skip
    return request_submit(
        action_type=action_type, payload=payload, reason_code=reason_code, reason_text="Requested by the merchant",
        actor=actor(user), now=f.at(minutes), idempotency_key=key, case_ref=case_ref,
    )  # fmt: skip


def approve(user, request: ActionRequest, minutes: float = 5) -> ActionRequest:
    request_approve(public_id=request.public_id, actor=actor(user), now=f.at(minutes), reason_text="Checked")
    return ActionRequest.objects.get(pk=request.pk)


def toko(**fields) -> Merchant:
    return f.merchant(name="Toko Lama", contact_email="owner@tokolama.co.id", contact_phone="+628111111111",
                      **fields)  # fmt: skip


def tables_containing(text: str) -> list[str]:
    """Every payments, approvals or audit table (history tables included) with a row whose text
    holds `text`, case-insensitively."""
    found = []
    with connection.cursor() as cursor:
        for label in ("payments", "approvals", "audit"):
            for model in apps.get_app_config(label).get_models():
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"SELECT count(*) FROM {table} AS t WHERE t::text ILIKE %s", [f"%{text}%"])
                if cursor.fetchone()[0]:
                    found.append(model._meta.db_table)
    return found


def test_each_action_has_its_default_policy():
    policies = {p.action_type: p for p in ApprovalPolicy.objects.filter(action_type__startswith="CHANGE_")}
    expected = {
        "CHANGE_MERCHANT_PROFILE": ("MEDIUM", False), "CHANGE_MERCHANT_BENEFICIARY": ("HIGH", True),
        "CHANGE_CUSTOMER_CONTACT": ("MEDIUM", False),
    }  # fmt: skip
    for action_type, (risk, case_required) in expected.items():
        policy = policies[action_type]
        assert (policy.mode, policy.approver_roles, policy.risk_level, policy.case_required) == (
            "ALWAYS", ["compliance_ops"], risk, case_required,
        )  # fmt: skip
        assert policy.allowed_reason_codes


# --- CHANGE_MERCHANT_PROFILE ----------------------------------------------------------------------


def test_a_profile_change_is_proposed_with_a_masked_diff_and_runs_when_approved(sam, carol):
    merchant = toko()
    payload = {"merchant": merchant.public_id, "name": "Toko Baru", "risk_tier": "HIGH",
               "contact_email": " Finance@TokoBaru.co.id ", "contact_phone": "0812 2222 3333"}  # fmt: skip

    request = propose(sam, "CHANGE_MERCHANT_PROFILE", payload, reason_code="KYC_UPDATE")

    assert (request.status, request.target_type, request.target_id, request.target_version) == (
        "REQUESTED", "merchant", merchant.public_id, "1",
    )  # fmt: skip
    assert request.preview == {
        "kind": "diff", "summary": f"Change 4 profile field(s) of merchant {merchant}",
        "changes": [
            {"field": "Name", "before": "Toko Lama", "after": "Toko Baru"},
            {"field": "Risk tier", "before": "MEDIUM", "after": "HIGH"},
            {"field": "Contact email", "before": "o***@tokolama.co.id", "after": "f***@tokobaru.co.id"},
            {"field": "Contact phone", "before": "*********1111", "after": "**********3333"},
        ],
        "needs_approval": True, "approver_roles": ["compliance_ops"],
    }  # fmt: skip
    assert Merchant.objects.get(pk=merchant.pk).name == "Toko Lama"

    done = approve(carol, request)

    changed = Merchant.objects.get(pk=merchant.pk)
    assert done.status == "SUCCEEDED" and done.result["merchant"] == merchant.public_id
    assert (changed.name, changed.risk_tier, changed.contact_email, changed.contact_phone, changed.version) == (
        "Toko Baru", "HIGH", "finance@tokobaru.co.id", "+6281222223333", 2,
    )  # fmt: skip
    assert changed.history.count() == 2
    event = AuditEvent.objects.get(event_type="payments.merchant_profile_changed")
    assert (event.approval_ref, event.actor, event.reason_code) == (request.public_id, "carol", "KYC_UPDATE")
    assert event.after["contact_email"] == "f***@tokobaru.co.id" and event.before["contact_phone"] == "*********1111"


def test_the_maker_cannot_approve_their_own_change(sam, carol):
    merchant = toko()
    request = propose(sam, "CHANGE_MERCHANT_PROFILE", {"merchant": merchant.public_id, "name": "Toko Baru"},
                      reason_code="MERCHANT_REQUEST")  # fmt: skip

    with pytest.raises(SelfApprovalRefused):
        approve(sam, request)
    with pytest.raises(PermissionMissing, match=r"payments\.decide_merchant_change"):
        approve(user_with_role("support_ops", username="sue"), request)

    assert ActionRequest.objects.get(pk=request.pk).status == "REQUESTED"
    assert Merchant.objects.get(pk=merchant.pk).name == "Toko Lama"
    refused = AuditEvent.objects.filter(event_type="approvals.approve_refused", target_id=request.public_id)
    assert sorted(refused.values_list("error_code", flat=True)) == ["PERMISSION_DENIED", "SELF_APPROVAL"]
    assert approve(carol, request).status == "SUCCEEDED"


def test_a_profile_changed_since_the_request_fails_stale(sam, carol):
    merchant = toko()
    request = propose(sam, "CHANGE_MERCHANT_PROFILE", {"merchant": merchant.public_id, "name": "Toko Baru"},
                      reason_code="MERCHANT_REQUEST")  # fmt: skip
    merchant_profile_change(merchant_id=merchant.public_id, changes={"legal_name": "PT Toko Lama"}, actor=f.system(),
                            now=f.at(2))  # fmt: skip

    done = approve(carol, request)

    assert (done.status, done.error_code) == ("FAILED", "STALE_TARGET")
    current = Merchant.objects.get(pk=merchant.pk)
    assert (current.name, current.legal_name, current.version) == ("Toko Lama", "PT Toko Lama", 2)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": "Toko Lama"}, "nothing to change"),
        ({"risk_tier": "EXTREME"}, "risk tier"),
        ({"region": "Indonesia"}, "region"),
        ({"contact_email": "not-an-address"}, "not a valid email"),
        ({"status": "CLOSED"}, "does not take: status"),
        ({"name": "Card 4111 1111 1111 1111"}, "card number"),
    ],
)
def test_a_bad_profile_change_is_refused_at_proposal(sam, payload, message):
    merchant = toko()
    with pytest.raises(ValidationFailed, match=message):
        propose(sam, "CHANGE_MERCHANT_PROFILE", {"merchant": merchant.public_id, **payload},
                reason_code="MERCHANT_REQUEST")  # fmt: skip
    assert not ActionRequest.objects.exists()


# --- CHANGE_MERCHANT_BENEFICIARY --------------------------------------------------------------------

NEW_ACCOUNT = {"bank_code": "MANDIRI", "bank_name": "Bank Mandiri", "account_holder": "PT Toko Lama",
               "account_number": "9876-543-210", "currency": "IDR"}  # fmt: skip


def onboard_account(merchant, number: str = "1234567890"):
    return beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                           account_holder="PT Toko Lama", account_number=number, currency="IDR", actor=f.system(),
                           now=f.at(0))  # fmt: skip


def test_a_payout_account_change_replaces_the_active_account_when_approved(sam, carol):
    merchant = toko()
    old = onboard_account(merchant)
    case = open_case()
    request = propose(sam, "CHANGE_MERCHANT_BENEFICIARY", {"merchant": merchant.public_id, **NEW_ACCOUNT},
                      reason_code="BANK_ACCOUNT_CLOSED", case_ref=case.case_number)  # fmt: skip

    assert (request.target_type, request.target_id, request.target_version) == (
        "merchant_beneficiary", f"{merchant.public_id}:IDR", f"{old.public_id}@1",
    )  # fmt: skip
    assert request.preview["changes"] == [
        {"field": "Bank", "before": "Bank Central Asia (BCA)", "after": "Bank Mandiri (MANDIRI)"},
        {"field": "Account number", "before": "****7890", "after": "****3210"},
        {"field": "Account holder", "before": "PT Toko Lama", "after": "PT Toko Lama"},
    ]
    assert request.preview["summary"] == f"Replace the IDR payout account of merchant {merchant}"

    done = approve(carol, request)

    assert done.status == "SUCCEEDED", done.error_message
    (active,) = MerchantBeneficiary.objects.filter(merchant=merchant, status="ACTIVE")
    assert (active.account_number, active.account_last4, active.bank_code) == ("9876543210", "3210", "MANDIRI")
    assert done.result == {"beneficiary": active.public_id, "account": "****3210"}
    retired = MerchantBeneficiary.objects.get(pk=old.pk)
    assert (retired.status, retired.version) == ("RETIRED", 2)
    event = AuditEvent.objects.get(event_type="payments.beneficiary_replaced")
    assert (event.before["account"], event.after["account"], event.approval_ref) == (
        "****7890", "****3210", request.public_id,
    )  # fmt: skip
    # Shown masked everywhere: the full numbers appear in no audit event and no preview.
    for number in ("1234567890", "9876543210"):
        assert not [e.event_type for e in AuditEvent.objects.all() if number in str(e.before) + str(e.after)]
        assert number not in str(request.preview)


def test_the_request_page_and_the_admin_show_the_new_account_number_masked(sam, carol):
    merchant = toko()
    onboard_account(merchant)
    request = propose(sam, "CHANGE_MERCHANT_BENEFICIARY", {"merchant": merchant.public_id, **NEW_ACCOUNT},
                      reason_code="BANK_ACCOUNT_CLOSED", case_ref=open_case().case_number)  # fmt: skip
    # The payload keeps the number (the execution needs it); no screen shows it.
    assert "9876543210" in str(request.payload).replace("-", "")
    checker = Client()
    checker.force_login(carol)
    page = checker.get(f"/approvals/requests/{request.public_id}/").content.decode()
    manager = Client()
    manager.force_login(UserFactory(username="fay", roles=["finance_manager"], is_staff=True))
    admin_page = manager.get(f"/admin/approvals/actionrequest/{request.pk}/change/")
    assert admin_page.status_code == 200
    for html in (page, admin_page.content.decode()):
        assert "3210" in html
        assert "9876543210" not in html and "9876-543-210" not in html


def test_a_payout_account_change_needs_a_case(sam):
    merchant = toko()
    onboard_account(merchant)
    with pytest.raises(PolicyDenied, match="needs a case"):
        propose(sam, "CHANGE_MERCHANT_BENEFICIARY", {"merchant": merchant.public_id, **NEW_ACCOUNT},
                reason_code="BANK_ACCOUNT_CLOSED")  # fmt: skip
    assert not ActionRequest.objects.exists()


def test_an_account_set_since_the_request_makes_it_stale(sam, carol):
    merchant = toko()
    case = open_case()
    request = propose(sam, "CHANGE_MERCHANT_BENEFICIARY", {"merchant": merchant.public_id, **NEW_ACCOUNT},
                      reason_code="MERCHANT_REQUEST", case_ref=case.case_number)  # fmt: skip
    assert request.target_version == "NONE"
    assert request.preview["changes"][1] == {"field": "Account number", "before": "(none)", "after": "****3210"}
    onboarded = onboard_account(merchant)  # onboarding set an account meanwhile

    done = approve(carol, request)

    assert (done.status, done.error_code) == ("FAILED", "STALE_TARGET")
    assert list(MerchantBeneficiary.objects.filter(merchant=merchant, status="ACTIVE")) == [onboarded]


def test_onboarding_adds_one_account_per_currency_and_changes_go_through_approval():
    merchant = toko()
    first = onboard_account(merchant)
    assert onboard_account(merchant).pk == first.pk  # a retry
    with pytest.raises(PolicyDenied, match="CHANGE_MERCHANT_BENEFICIARY"):
        onboard_account(merchant, number="5555666677")
    assert MerchantBeneficiary.objects.filter(merchant=merchant).count() == 1
    refused = AuditEvent.objects.get(event_type="payments.beneficiary_add_refused")
    assert refused.result == AuditResult.REFUSED and "5555666677" not in refused.error_message


def test_a_card_number_as_an_account_number_is_refused():
    merchant = toko()
    with pytest.raises(ValidationFailed, match="looks like a card number"):
        onboard_account(merchant, number="4111111111111111")
    assert not MerchantBeneficiary.objects.exists()


# --- CHANGE_CUSTOMER_CONTACT ------------------------------------------------------------------------

OLD_EMAIL, OLD_PHONE = "Rina.Wijaya@Example.com", "0812-1111-2229"
NEW_EMAIL, NEW_PHONE = "Budi.Santoso@Example.co.id", "+62 813 3333 4444"
# Fragments of the raw values (and of their normalised forms) that nothing may keep.
RAW_FRAGMENTS = ["rina.wijaya", "budi.santoso", "1111-2229", "81211112229", "3333 4444", "81333334444"]


def test_a_contact_change_keeps_only_hashes_and_masks_and_runs_when_approved(sam, carol):
    merchant = toko()
    customer = customer_create(merchant=merchant, reference="C-001", email=OLD_EMAIL, phone=OLD_PHONE,
                               actor=f.system(), now=f.at(0))  # fmt: skip
    assert (customer.email_masked, customer.phone_masked) == ("r***@example.com", "**********2229")
    assert customer.email_hash == keyed_hash("customer.email", "rina.wijaya@example.com")
    assert customer.phone_hash == keyed_hash("customer.phone", "+6281211112229")

    request = propose(sam, "CHANGE_CUSTOMER_CONTACT",
                      {"customer": customer.public_id, "email": NEW_EMAIL, "phone": NEW_PHONE},
                      reason_code="CUSTOMER_REQUEST")  # fmt: skip

    new_email_hash = keyed_hash("customer.email", "budi.santoso@example.co.id")
    new_phone_hash = keyed_hash("customer.phone", "+6281333334444")
    assert request.payload == {
        "customer": customer.public_id, "email_hash": new_email_hash, "email_masked": "b***@example.co.id",
        "phone_hash": new_phone_hash, "phone_masked": "**********4444", "raw_values_discarded": True,
    }  # fmt: skip
    assert (request.target_type, request.target_id, request.customer_ref, request.target_version) == (
        "customer", customer.public_id, customer.public_id, "1",
    )  # fmt: skip
    assert request.preview["changes"] == [
        {"field": "Email", "before": "r***@example.com", "after": "b***@example.co.id"},
        {"field": "Phone", "before": "**********2229", "after": "**********4444"},
    ]

    done = approve(carol, request)

    assert done.status == "SUCCEEDED", done.error_message
    changed = Customer.objects.get(pk=customer.pk)
    assert (changed.email_hash, changed.email_masked, changed.phone_hash, changed.phone_masked, changed.version) == (
        new_email_hash, "b***@example.co.id", new_phone_hash, "**********4444", 2,
    )  # fmt: skip
    assert changed.history.count() == 2
    # Never stored raw: no row of any payments, approvals or audit table (history included) holds them.
    # (The scan does find what is stored raw by design: the merchant's business contact.)
    assert "payments_merchant" in tables_containing("owner@tokolama.co.id")
    for fragment in RAW_FRAGMENTS:
        assert tables_containing(fragment) == [], fragment


def test_a_contact_changed_since_the_request_fails_stale(sam, carol):
    customer = f.customer(toko(), email=OLD_EMAIL)
    request = propose(sam, "CHANGE_CUSTOMER_CONTACT", {"customer": customer.public_id, "email": NEW_EMAIL},
                      reason_code="CUSTOMER_REQUEST")  # fmt: skip
    digest, masked = customer_email_digest("third@example.com")
    customer_contact_change(customer_id=customer.public_id, email_hash=digest, email_masked=masked,
                            actor=f.system(), now=f.at(2))  # fmt: skip

    done = approve(carol, request)

    assert (done.status, done.error_code) == ("FAILED", "STALE_TARGET")
    assert Customer.objects.get(pk=customer.pk).email_hash == digest


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"email_hash": "a" * 64, "email_masked": "x***@example.com"}, "does not take: email_hash, email_masked"),
        ({"email": "rina", "raw_values_discarded": True}, "does not take: raw_values_discarded"),
        ({"email": "not-an-address-rina.wijaya"}, "not a valid email address"),
        ({"phone": "12345"}, "not a valid phone number"),
        ({"email": OLD_EMAIL.upper()}, "already the customer's"),
        ({}, "new email or phone"),
    ],
)
def test_a_contact_change_that_is_not_raw_contact_details_is_refused(sam, payload, message):
    customer = f.customer(toko(), email=OLD_EMAIL)
    with pytest.raises(ValidationFailed, match=message):
        propose(sam, "CHANGE_CUSTOMER_CONTACT", {"customer": customer.public_id, **payload},
                reason_code="CUSTOMER_REQUEST")  # fmt: skip
    assert not ActionRequest.objects.exists()
    refused = AuditEvent.objects.filter(event_type="approvals.submit_refused").latest("seq")
    assert "rina" not in refused.error_message.lower()


def test_a_customer_reference_is_its_idempotency():
    merchant = toko()
    first = customer_create(merchant=merchant, reference="C-9", email=OLD_EMAIL, actor=f.system(), now=f.at(0))
    again = customer_create(merchant=merchant, reference="C-9", email=OLD_EMAIL.lower(), actor=f.system(),
                            now=f.at(1))  # fmt: skip
    assert again.pk == first.pk
    with pytest.raises(IdempotencyConflict, match="CHANGE_CUSTOMER_CONTACT"):
        customer_create(merchant=merchant, reference="C-9", email=NEW_EMAIL, actor=f.system(), now=f.at(2))
    assert Customer.objects.count() == 1
    assert tables_containing("budi.santoso") == []


# --- onboarding merchants ---------------------------------------------------------------------------


def test_the_same_onboarding_key_returns_the_first_merchant():
    first = merchant_create(name="Toko A", region="ID", default_currency="IDR", actor=f.system(), now=f.at(0),
                            idempotency_key="onboard-1")  # fmt: skip
    again = merchant_create(name="Toko A", region="id", default_currency="idr", actor=f.system(), now=f.at(1),
                            idempotency_key="onboard-1")  # fmt: skip
    assert again.pk == first.pk and first.public_id.startswith("m_") and len(first.public_id) == 28
    with pytest.raises(IdempotencyConflict, match="name"):
        merchant_create(name="Toko B", region="ID", default_currency="IDR", actor=f.system(), now=f.at(2),
                        idempotency_key="onboard-1")  # fmt: skip
    assert Merchant.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="payments.merchant_created").count() == 1


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_eight_copies_of_one_onboarding_are_one_merchant():
    barrier = threading.Barrier(8)
    results: list = [None] * 8

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = merchant_create(name="Toko Ramai", region="ID", default_currency="IDR", actor=f.system(),
                                         now=f.at(0), idempotency_key="onboard-storm").pk  # fmt: skip
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert Merchant.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="payments.merchant_created").count() == 1
