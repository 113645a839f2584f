"""The action request admin: read-only (no add, change or delete), and the "Approve selected" /
"Reject selected" actions, which ask first and then decide each request through the services as
the signed-in user, reporting each one by name (a self-approval is refused and changes nothing).

Back-office roles do not make anyone staff: these tests give a finance manager a staff account,
as an administrator would, to show what the admin does once access is granted.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.models import ActionRequest, ApprovalPolicy, RequestStatus
from approvals.services import request_submit
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from cases.services import case_open
from ledger.models import LedgerJournal
from tests.factories.users import UserFactory, user_with_role

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:approvals_actionrequest_changelist"
_keys = itertools.count(1)


def actor(user) -> Actor:
    return Actor.from_user(user)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def propose(maker, case, *, merchant: str, amount: int = 250_000, minutes_ago: float = 0) -> ActionRequest:
    return request_submit(
        action_type="CREATE_LEDGER_ADJUSTMENT", actor=actor(maker),
        payload={"merchant_ref": merchant, "currency": "IDR", "amount_minor": amount, "adjustment_type": "FEE_REFUND"},
        reason_code="FEE_CORRECTION", reason_text="Fee charged twice", case_ref=case.case_number,
        idempotency_key=f"admin-test-{next(_keys)}", now=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )  # fmt: skip


def fetch(ar: ActionRequest) -> ActionRequest:
    return ActionRequest.objects.get(pk=ar.pk)


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def fran():
    return user_with_role("finance_ops", username="fran")


@pytest.fixture
def manager():
    """A finance manager with a staff account (roles alone give no admin access)."""
    return UserFactory(username="morgan_staff", roles=["finance_manager"], is_staff=True)


@pytest.fixture
def dual():
    """Staff, holding both roles: proposes and decides, never their own request."""
    return UserFactory(username="dual_staff", roles=["finance_ops", "finance_manager"], is_staff=True)


@pytest.fixture
def case(fran):
    return case_open(case_type="RECONCILIATION_BREAK", severity="MEDIUM", title="Fee charged twice",
                     actor=actor(fran), now=timezone.now())  # fmt: skip


def run_action(client: Client, action: str, requests: list[ActionRequest], **confirm):
    """Choose the action on the change list; with `confirm`, answer its intermediate page too."""
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [r.pk for r in requests], "index": "0"}
    first = client.post(reverse(CHANGELIST), data)
    if not confirm:
        return first
    assert first.status_code == 200, first.status_code
    key = re.search(r'name="idempotency_key" value="([^"]+)"', first.content.decode()).group(1)
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [r.pk for r in requests], "confirm": "yes",
            "idempotency_key": key, **confirm}  # fmt: skip
    return client.post(reverse(CHANGELIST), data)


class TestReadOnly:
    def test_lists_with_filters_and_exact_search(self, fran, manager, case):
        ar = propose(fran, case, merchant="m_1")
        other = propose(fran, case, merchant="m_2")
        client = signed_in(manager)
        listing = client.get(reverse(CHANGELIST))
        page = listing.content.decode()
        assert listing.status_code == 200 and ar.public_id in page and other.public_id in page
        assert "2,500.00 IDR" in page
        for param in ("status__exact=REQUESTED", "action_type=CREATE_LEDGER_ADJUSTMENT", "risk_level__exact=HIGH"):
            assert f"?{param}" in page, param
        found = client.get(reverse(CHANGELIST), {"q": "m_1"}).content.decode()
        assert ar.public_id in found and other.public_id not in found
        assert ar.public_id in client.get(reverse(CHANGELIST), {"q": case.case_number}).content.decode()
        assert ar.public_id in client.get(reverse(CHANGELIST), {"q": "fran"}).content.decode()
        high = client.get(reverse(CHANGELIST), {"risk_level__exact": "HIGH", "status__exact": "REQUESTED"})
        assert ar.public_id in high.content.decode()

    def test_no_add_change_or_delete(self, fran, manager, case):
        ar = propose(fran, case, merchant="m_1")
        client = signed_in(manager)
        change_url = reverse("admin:approvals_actionrequest_change", args=[ar.pk])
        detail = client.get(change_url)
        page = detail.content.decode()
        assert detail.status_code == 200 and ar.public_id in page
        form = page[page.index('id="actionrequest_form"') :]
        assert 'name="status"' not in form and 'name="_save"' not in form
        assert client.post(change_url, {"status": "APPROVED", "checker": "morgan_staff"}).status_code == 403
        assert client.get(reverse("admin:approvals_actionrequest_add")).status_code == 403
        delete_url = reverse("admin:approvals_actionrequest_delete", args=[ar.pk])
        assert client.post(delete_url, {"post": "yes"}).status_code == 403
        assert run_action(client, "delete_selected", [ar]).status_code == 302  # no such action: nothing happens
        after = fetch(ar)
        assert (after.status, after.checker, after.version) == (RequestStatus.REQUESTED, "", 1)

    def test_policies_are_read_only(self):
        boss = get_user_model().objects.create_superuser("breakglass", "breakglass@example.com", "pw-not-used-9")
        client = signed_in(boss)
        policy = ApprovalPolicy.objects.get(action_type="CREATE_LEDGER_ADJUSTMENT")
        assert client.get(reverse("admin:approvals_approvalpolicy_changelist")).status_code == 200
        assert client.get(reverse("admin:approvals_approvalpolicy_add")).status_code == 403
        change_url = reverse("admin:approvals_approvalpolicy_change", args=[policy.pk])
        assert client.post(change_url, {"mode": "NEVER"}).status_code == 403
        assert ApprovalPolicy.objects.get(pk=policy.pk).mode == "ALWAYS"

    def test_roles_alone_give_no_admin_access(self, fran, case):
        propose(fran, case, merchant="m_1")
        manager = user_with_role("finance_manager", username="not_staff")
        response = signed_in(manager).get(reverse(CHANGELIST))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]

    def test_the_decision_actions_are_offered_only_to_checkers(self, fran, manager, case):
        propose(fran, case, merchant="m_1")
        maker = UserFactory(username="fran_staff", roles=["finance_ops"], is_staff=True)
        maker_page = signed_in(maker).get(reverse(CHANGELIST)).content.decode()
        assert "approve_selected" not in maker_page and "reject_selected" not in maker_page
        manager_page = signed_in(manager).get(reverse(CHANGELIST)).content.decode()
        assert "approve_selected" in manager_page and "reject_selected" in manager_page
        assert "delete_selected" not in manager_page


class TestDecisionActions:
    def test_approve_asks_first_and_changes_nothing_until_confirmed(self, fran, manager, case):
        ar = propose(fran, case, merchant="m_1")
        page = run_action(signed_in(manager), "approve_selected", [ar])
        assert page.status_code == 200
        text = page.content.decode()
        assert "Approve these requests?" in text and ar.public_id in text and "FEE_REFUND of 2,500.00 IDR" in text
        assert fetch(ar).status == RequestStatus.REQUESTED

    def test_approve_decides_each_through_the_services_and_reports_each(self, fran, dual, case):
        theirs = propose(fran, case, merchant="m_1", minutes_ago=10)
        own = propose(dual, case, merchant="m_2", minutes_ago=5)
        journals = LedgerJournal.objects.count()
        client = signed_in(dual)
        response = run_action(client, "approve_selected", [theirs, own], reason="Matches the settlement report")
        assert response.status_code == 302
        texts = message_texts(response)
        assert texts[0] == "Approved 1 of 2; refused 1."
        done = fetch(theirs)
        assert done.status == RequestStatus.SUCCEEDED and done.checker == "dual_staff"
        assert done.decision_reason == "Matches the settlement report"
        assert texts[1] == f"{theirs.public_id}: approved and executed: {done.result['ledger_journal']}"
        assert texts[2] == f"{own.public_id}: refused: you proposed {own.public_id}; another person must decide it"
        untouched = fetch(own)
        assert (untouched.status, untouched.checker, untouched.version) == (RequestStatus.REQUESTED, "", 1)
        assert LedgerJournal.objects.count() == journals + 1
        refused = AuditEvent.objects.filter(event_type="approvals.approve_refused", target_id=own.public_id)
        assert [(e.actor, e.result, e.error_code) for e in refused] == [
            ("dual_staff", AuditResult.REFUSED, "SELF_APPROVAL")
        ]
        approved = AuditEvent.objects.filter(event_type="approvals.request_approved", target_id=theirs.public_id)
        assert [e.actor for e in approved] == ["dual_staff"]

    def test_a_confirmation_sent_twice_decides_once(self, fran, manager, case):
        ar = propose(fran, case, merchant="m_1")
        client = signed_in(manager)
        page = run_action(client, "approve_selected", [ar])
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page.content.decode()).group(1)
        data = {"action": "approve_selected", helpers.ACTION_CHECKBOX_NAME: [ar.pk], "confirm": "yes",
                "idempotency_key": key}  # fmt: skip
        client.post(reverse(CHANGELIST), data)
        client.get(reverse(CHANGELIST))  # shows (and uses up) the messages
        again = client.post(reverse(CHANGELIST), data)
        assert message_texts(again) == ["That form was already sent and carried out; nothing more was changed."]
        assert AuditEvent.objects.filter(event_type="approvals.approve_refused").count() == 0
        assert LedgerJournal.objects.filter(approval_ref=ar.public_id).count() == 1

    def test_reject_needs_a_reason_then_rejects_each(self, fran, manager, case):
        first = propose(fran, case, merchant="m_1")
        second = propose(fran, case, merchant="m_2")
        client = signed_in(manager)
        refused = run_action(client, "reject_selected", [first, second], reason="   ")
        assert refused.status_code == 200
        assert "A rejection needs a reason: the maker reads it." in refused.content.decode()
        assert {fetch(first).status, fetch(second).status} == {RequestStatus.REQUESTED}
        assert not AuditEvent.objects.filter(event_type="approvals.request_rejected").exists()

        response = run_action(client, "reject_selected", [first, second], reason="No double charge in the report")
        assert message_texts(response) == [
            "Rejected 2 of 2; refused 0.",
            f"{first.public_id}: rejected",
            f"{second.public_id}: rejected",
        ]
        for ar in (first, second):
            rejected = fetch(ar)
            assert (rejected.status, rejected.checker, rejected.decision_reason) == (
                RequestStatus.REJECTED, "morgan_staff", "No double charge in the report"
            )  # fmt: skip
        assert LedgerJournal.objects.filter(approval_ref__in=[first.public_id, second.public_id]).count() == 0

    def test_a_request_no_longer_pending_is_refused_by_name(self, fran, manager, case):
        ar = propose(fran, case, merchant="m_1")
        client = signed_in(manager)
        run_action(client, "approve_selected", [ar], reason="")
        client.get(reverse(CHANGELIST))
        response = run_action(client, "reject_selected", [ar], reason="too late")
        texts = message_texts(response)
        assert texts[0] == "Rejected 0 of 1; refused 1."
        assert texts[1] == f"{ar.public_id}: refused: {ar.public_id} is no longer pending: it is succeeded"
        assert fetch(ar).status == RequestStatus.SUCCEEDED
