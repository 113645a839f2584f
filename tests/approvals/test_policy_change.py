"""CHANGE_APPROVAL_POLICY: a policy changes only through a request another person approves, the new
policy governs the very next request, and no change can disarm the control it states."""

import re

import pytest
from django.test import Client

from approvals.models import ActionRequest, ApprovalPolicy, RequestStatus
from approvals.services import request_approve, request_submit
from approvals.services.policies import policy_apply, policy_snapshot
from audit.models import AuditEvent, AuditResult
from backoffice.actors import system_actor
from backoffice.errors import PermissionMissing, SelfApprovalRefused, ValidationFailed
from tests.factories.approvals import T0, actor_for, at, fetch, last_refusal, maker, new_key, open_case, propose
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

ADJ = "CREATE_LEDGER_ADJUSTMENT"


def new_policy(**changes) -> dict:
    """The adjustment policy as seeded, with `changes`: a complete CHANGE_APPROVAL_POLICY payload."""
    current = policy_snapshot(ApprovalPolicy.objects.get(action_type=ADJ))
    return {"policy": ADJ, **current, **changes}


def propose_policy(user, payload: dict, *, key: str | None = None, now=T0) -> ActionRequest:
    return request_submit(
        action_type="CHANGE_APPROVAL_POLICY", payload=payload, reason_code="POLICY_REVIEW",
        reason_text="Quarterly review of adjustment approvals", actor=actor_for(user), now=now,
        idempotency_key=key or new_key(),
    )  # fmt: skip


def policy_state(action_type: str = ADJ) -> tuple:
    p = ApprovalPolicy.objects.get(action_type=action_type)
    return p.version, policy_snapshot(p), p.history.count()


@pytest.fixture
def fiona():
    return user_with_role("finance_manager", username="fiona")


@pytest.fixture
def cleo():
    return user_with_role("compliance_ops", username="cleo")


class TestThroughApproval:
    def test_an_approved_change_sets_the_policy_and_governs_the_next_request(self, fiona, cleo):
        # Given: adjustments always need approval
        before_version = ApprovalPolicy.objects.get(action_type=ADJ).version
        payload = new_policy(mode="ABOVE_AMOUNT", threshold_minor={"IDR": 1_000_000})

        # When: a finance manager proposes approval only above 10,000.00 IDR
        ar = propose_policy(fiona, payload)

        # Then: it waits for compliance; the policy is unchanged; the preview is a diff
        assert ar.status == RequestStatus.REQUESTED
        assert ar.allowed_checker_roles == ["compliance_ops"]
        assert (ar.target_type, ar.target_id, ar.target_version) == ("approval_policy", ADJ, str(before_version))
        assert ar.preview["kind"] == "diff"
        assert {(c["field"], c["before"], c["after"]) for c in ar.preview["changes"]} == {
            ("Approval", "ALWAYS", "ABOVE_AMOUNT"),
            ("Approval above", "—", "10,000.00 IDR"),
        }
        assert ApprovalPolicy.objects.get(action_type=ADJ).mode == "ALWAYS"

        # When: compliance approves
        done = request_approve(public_id=ar.public_id, actor=actor_for(cleo), now=at(5), reason_text="Agreed")

        # Then: the policy is the proposed one, one version on, its history names the request
        assert done.status == RequestStatus.SUCCEEDED
        policy = ApprovalPolicy.objects.get(action_type=ADJ)
        assert (policy.mode, policy.threshold_minor, policy.version) == ("ABOVE_AMOUNT", {"IDR": 1_000_000},
                                                                          before_version + 1)  # fmt: skip
        assert policy.history.latest("history_date").history_change_reason == ar.public_id
        changed = AuditEvent.objects.get(event_type="approvals.policy_changed", target_id=ADJ)
        assert (changed.actor, changed.approval_ref) == ("cleo", ar.public_id)
        assert (changed.before["mode"], changed.after["mode"]) == ("ALWAYS", "ABOVE_AMOUNT")

        # And: a small adjustment now runs at once (still recorded as a request); a large one waits
        alice = maker("alice")
        case = open_case(alice)
        small = propose(alice, case=case, merchant="m_small", amount_minor=2_500)
        large = propose(alice, case=case, merchant="m_large", amount_minor=2_000_000)
        assert (small.status, small.needs_approval) == (RequestStatus.SUCCEEDED, False)
        assert (large.status, large.needs_approval) == (RequestStatus.REQUESTED, True)

    def test_the_maker_cannot_approve_their_own_policy_change(self):
        # A person holding both roles may propose and, in general, decide policy changes, never their own.
        both = user_with_role("finance_manager", username="both")
        both.groups.add(*user_with_role("compliance_ops", username="other").groups.all())
        both = type(both).objects.get(pk=both.pk)
        ar = propose_policy(both, new_policy(risk_level="MEDIUM"))
        before = policy_state()

        with pytest.raises(SelfApprovalRefused):
            request_approve(public_id=ar.public_id, actor=actor_for(both), now=at(1), reason_text="fine")

        assert fetch(ar.public_id).status == RequestStatus.REQUESTED
        assert policy_state() == before
        assert last_refusal("approve", ar.public_id).result == AuditResult.REFUSED

    def test_a_finance_manager_cannot_decide_a_policy_change(self, fiona):
        other = user_with_role("finance_manager", username="frank")
        ar = propose_policy(fiona, new_policy(risk_level="MEDIUM"))
        before = policy_state()

        with pytest.raises(PermissionMissing):
            request_approve(public_id=ar.public_id, actor=actor_for(other), now=at(1), reason_text="fine")

        assert (fetch(ar.public_id).status, policy_state()) == (RequestStatus.REQUESTED, before)

    def test_a_policy_changed_since_the_request_fails_stale_and_keeps_the_newer_policy(self, fiona, cleo):
        ar = propose_policy(fiona, new_policy(risk_level="LOW"))
        # Another approved change lands first (the service an approved request executes).
        policy_apply(action_type=ADJ, fields={**policy_snapshot(ApprovalPolicy.objects.get(action_type=ADJ)),
                                              "case_required": False},
                     actor=system_actor("test_setup"), now=at(1), approval_ref="act_other")  # fmt: skip
        newer = policy_state()

        done = request_approve(public_id=ar.public_id, actor=actor_for(cleo), now=at(2), reason_text="ok")

        assert (done.status, done.error_code) == (RequestStatus.FAILED, "STALE_TARGET")
        assert policy_state() == newer

    def test_a_second_change_to_the_same_policy_waits_for_the_first(self, fiona):
        first = propose_policy(fiona, new_policy(risk_level="LOW"))
        with pytest.raises(Exception, match=first.public_id):
            propose_policy(user_with_role("risk_ops", username="rita"), new_policy(risk_level="MEDIUM"))


class TestGuards:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"mode": "NEVER", "policy": "CHANGE_APPROVAL_POLICY"}, "always need approval"),
            ({"approver_roles": ["support_ops"]}, "cannot decide a ledger adjustment"),
            ({"approver_roles": []}, "at least one approver role"),
            ({"mode": "ABOVE_AMOUNT", "threshold_minor": {}}, "needs the amount"),
            ({"threshold_minor": {"XXX": 5}, "mode": "ABOVE_AMOUNT"}, "XXX"),
            ({"maker_limits_minor": {"finance_ops": {"IDR": -1}}}, "positive whole number"),
            ({"maker_limits_minor": {"nobody": {"IDR": 1}}}, "no role 'nobody'"),
            ({"allowed_reason_codes": ["MADE_UP"]}, "no reason codes MADE_UP"),
            ({"case_required": "false"}, "true or false"),
            ({}, "nothing would change"),
            ({"policy": "NO_SUCH_ACTION"}, "unknown action type"),
        ],
    )
    def test_refused_with_nothing_written_and_the_refusal_audited(self, fiona, changes, message):
        payload = new_policy(**changes)
        if payload["policy"] == "CHANGE_APPROVAL_POLICY":
            payload.update(policy_snapshot(ApprovalPolicy.objects.get(action_type="CHANGE_APPROVAL_POLICY")), **changes)
        before = (policy_state(), ActionRequest.objects.count())

        with pytest.raises(ValidationFailed, match=re.escape(message)):
            propose_policy(fiona, payload)

        assert (policy_state(), ActionRequest.objects.count()) == before
        refusal = AuditEvent.objects.filter(event_type="approvals.submit_refused").latest("seq")
        assert (refusal.actor, refusal.action_type, refusal.result) == ("fiona", "CHANGE_APPROVAL_POLICY", "REFUSED")

    def test_only_policy_proposers_may_propose(self):
        with pytest.raises(PermissionMissing):
            propose_policy(maker("alice"), new_policy(risk_level="LOW"))


class TestScreens:
    def test_readers_see_policies_without_the_propose_button(self):
        client = Client()
        client.force_login(maker("alice"))
        response = client.get("/approvals/policies/")
        assert response.status_code == 200
        body = response.content.decode()
        assert 'data-action="CREATE_LEDGER_ADJUSTMENT"' in body and 'data-action="CHANGE_APPROVAL_POLICY"' in body
        assert 'data-testid="propose-change"' not in body
        assert client.get(f"/approvals/policies/{ADJ}/change/").status_code == 403

    def test_sre_may_not_read_policies(self):
        client = Client()
        client.force_login(user_with_role("sre"))
        assert client.get("/approvals/policies/").status_code == 403

    def test_preview_then_submit_proposes_once(self, fiona):
        client = Client()
        client.force_login(fiona)
        url = f"/approvals/policies/{ADJ}/change/"
        page = client.get(url).content.decode()
        key = re.search(r'name="idempotency_key" value="([^"]+)"', page).group(1)
        form = {
            "idempotency_key": key, "mode": "ALWAYS", "threshold": "", "approver_roles": ["finance_manager"],
            "case_required": "on", "allowed_reason_codes": ["FEE_CORRECTION", "GOODWILL"],
            "maker_limits": "finance_ops IDR 1,000,000.00", "checker_limits": "", "risk_level": "HIGH",
            "reason_code": "AUDIT_FINDING", "reason_text": "Audit asked for tighter maker limits",
        }  # fmt: skip

        preview = client.post(url, {**form, "step": "preview"})
        assert preview.status_code == 200
        assert ActionRequest.objects.filter(action_type="CHANGE_APPROVAL_POLICY").count() == 0
        assert "finance_ops: 1,000,000.00 IDR" in preview.content.decode()

        first = client.post(url, {**form, "step": "submit"})
        again = client.post(url, {**form, "step": "submit"})  # a double submit
        assert first.status_code == again.status_code == 302
        ar = ActionRequest.objects.get(action_type="CHANGE_APPROVAL_POLICY")
        assert first["Location"] == again["Location"] == f"/approvals/requests/{ar.public_id}/"
        assert ar.payload["maker_limits_minor"] == {"finance_ops": {"IDR": 100_000_000}}
        assert ar.payload["checker_limits_minor"] == {}

    def test_a_bad_amount_line_is_a_form_error(self, fiona):
        client = Client()
        client.force_login(fiona)
        response = client.post(
            f"/approvals/policies/{ADJ}/change/",
            {"idempotency_key": "k1", "mode": "ABOVE_AMOUNT", "threshold": "IDR ten",
             "approver_roles": ["finance_manager"], "allowed_reason_codes": ["GOODWILL"], "risk_level": "HIGH",
             "reason_code": "POLICY_REVIEW", "reason_text": "x", "step": "preview"},
        )  # fmt: skip
        assert response.status_code == 400
        assert "is not an amount" in response.content.decode()
        assert ActionRequest.objects.count() == 0
