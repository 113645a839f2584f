"""The maker-checker engine attacked through its services: every refusal changes nothing and is
audited; every approval is re-validated when it executes (invariants 4, 6, 8)."""

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction

from approvals.models import ActionRequest
from approvals.services import request_approve, request_cancel, request_reject, request_submit
from audit.models import AuditEvent
from audit.verification import chain_verify
from backoffice.actors import system_actor
from backoffice.errors import (
    IdempotencyConflict,
    IllegalTransition,
    PermissionMissing,
    PolicyDenied,
    SelfApprovalRefused,
    ValidationFailed,
)
from cases.models import CaseLink
from cases.services import case_transition, evidence_add
from ledger.models import LedgerAccount, LedgerJournal
from ledger.services import journal_reverse
from tests.factories.approvals import (
    actor_for,
    approve,
    at,
    cancel,
    checker,
    fetch,
    fund,
    last_refusal,
    maker,
    money_state,
    open_case,
    payable_balance,
    propose,
    propose_reversal,
    reject,
    request_state,
    set_policy,
)
from tests.factories.cases import Upload
from tests.factories.cases import fetch as fetch_case
from tests.factories.ledger import ACTOR
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

ADJUSTMENT = "CREATE_LEDGER_ADJUSTMENT"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def alice():
    return maker("alice")


@pytest.fixture
def bob():
    return checker("bob")


@pytest.fixture
def case(alice):
    return open_case(alice, take=True)


def events_for(public_id: str) -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(approval_ref=public_id).order_by("seq").values_list("event_type", "result", "actor")
    )


def assert_refused(what: str, target_id: str, code: str, actor_user, before: dict | None, public_id: str = ""):
    """Nothing changed on the request (when there is one) or in the ledger, and the refusal is the
    last event about the target, by the actor, with the refusal's code."""
    if public_id:
        assert request_state(public_id) == before["request"]
    assert money_state() == before["money"]
    refusal = last_refusal(what, target_id)
    assert (refusal.result, refusal.error_code, refusal.actor_user_id) == ("REFUSED", code, actor_user.pk)


def snapshot(public_id: str = "") -> dict:
    return {"request": request_state(public_id) if public_id else None, "money": money_state()}


# --- submit ---------------------------------------------------------------------------------------


def test_submit_writes_the_request_its_audit_event_and_the_exact_preview(alice, case):
    fund("m_fee", 10_000)

    request = propose(alice, case=case, merchant="m_fee", amount_minor=2_500, kind="FEE_REFUND", now=at(1))

    request = fetch(request.public_id)
    assert (request.status, request.action_type, request.target_type, request.target_id) == (
        "REQUESTED", ADJUSTMENT, "merchant_ledger", "m_fee:IDR",
    )  # fmt: skip
    assert (request.maker, request.maker_user_id, request.checker, request.created_at) == ("alice", alice.pk, "", at(1))
    assert (request.amount_minor, request.currency, request.case_ref, request.target_version) == (
        2_500, "IDR", case.case_number, "OPEN",
    )  # fmt: skip
    assert request.allowed_checker_roles == ["finance_manager"] and request.needs_approval is True
    assert request.preview == {
        "kind": "ledger",
        "summary": "FEE_REFUND of 25.00 IDR for m_fee",
        "lines": [
            {"direction": "DEBIT", "account": "4000-IDR", "role": "PLATFORM_FEE_REVENUE", "amount_minor": 2_500,
             "currency": "IDR", "display": "25.00 IDR", "account_exists": False},
            {"direction": "CREDIT", "account": "2100-IDR-m_fee", "role": "MERCHANT_PAYABLE", "amount_minor": 2_500,
             "currency": "IDR", "display": "25.00 IDR", "account_exists": True},
        ],
        "balances": [{"account": "2100-IDR-m_fee", "before_minor": 10_000, "after_minor": 12_500,
                      "before": "100.00 IDR", "after": "125.00 IDR"}],
        "reversible": True,
        "reversal": "can be reversed later by a REVERSE_LEDGER_JOURNAL request (also maker-checker)",
        "needs_approval": True,
        "approver_roles": ["finance_manager"],
    }  # fmt: skip
    assert events_for(request.public_id) == [("approvals.request_submitted", "SUCCEEDED", "alice")]
    submitted = AuditEvent.objects.get(approval_ref=request.public_id)
    assert (submitted.reason_code, submitted.case_ref, submitted.after["preview"]) == (
        "FEE_CORRECTION", case.case_number, request.preview,
    )  # fmt: skip
    assert payable_balance("m_fee") == 10_000  # proposing moves nothing


def test_the_same_key_and_payload_is_the_same_request(alice, case):
    first = propose(alice, case=case, key="idem_double_click", now=at(1))
    again = propose(alice, case=case, key="idem_double_click", now=at(2))
    assert again.public_id == first.public_id
    assert ActionRequest.objects.count() == 1
    assert events_for(first.public_id) == [("approvals.request_submitted", "SUCCEEDED", "alice")]


def test_the_same_key_with_another_payload_is_refused_and_audited(alice, case):
    first = propose(alice, case=case, key="idem_reused", amount_minor=2_500, now=at(1))
    before = snapshot(first.public_id)

    with pytest.raises(IdempotencyConflict, match=f"used for {first.public_id} with other values"):
        propose(alice, case=case, key="idem_reused", amount_minor=9_999, now=at(2))

    assert ActionRequest.objects.count() == 1
    assert_refused("submit", case.case_number, "IDEMPOTENCY_CONFLICT", alice, before, first.public_id)


def test_the_same_key_for_another_target_is_refused(alice, case):
    # The form was submitted, then edited (another merchant) and submitted again with its key.
    first = propose(alice, case=case, key="idem_edited", merchant="m_one", now=at(1))
    before = snapshot(first.public_id)

    with pytest.raises(IdempotencyConflict, match=f"used for {first.public_id} with other values"):
        propose(alice, case=case, key="idem_edited", merchant="m_two", now=at(2))

    assert list(ActionRequest.objects.values_list("public_id", flat=True)) == [first.public_id]
    assert_refused("submit", case.case_number, "IDEMPOTENCY_CONFLICT", alice, before, first.public_id)


def test_another_maker_cannot_claim_a_request_by_its_key(alice, case):
    first = propose(alice, case=case, key="idem_mine", now=at(1))
    carol = maker("carol")
    with pytest.raises(IdempotencyConflict):
        propose(carol, case=case, key="idem_mine", now=at(2))
    assert ActionRequest.objects.count() == 1 and fetch(first.public_id).maker == "alice"


def test_a_retry_after_the_request_was_decided_returns_it_unchanged(alice, bob, case):
    journal = fund("m_retry", 5_000)
    request = propose_reversal(alice, case=case, journal=journal, key="idem_retry", now=at(1))
    approve(bob, request, now=at(2))
    case_transition(case_number=case.case_number, transition="resolve", actor=actor_for(alice), now=at(3),
                    resolution_code="FIXED", resolution_summary="reversed")  # fmt: skip
    before = snapshot(request.public_id)

    # A stale browser tab sends the same form again: the journal is reversed and the case resolved
    # since, but the answer is still the first request, and nothing runs again.
    again = propose_reversal(alice, case=case, journal=journal, key="idem_retry", now=at(4))

    assert (again.public_id, again.status) == (request.public_id, "SUCCEEDED")
    assert snapshot(request.public_id) == before
    assert LedgerJournal.objects.filter(reverses=journal).count() == 1


def test_a_second_proposal_for_the_same_target_is_refused_naming_the_first(alice, case):
    first = propose(alice, case=case, merchant="m_busy", now=at(1))
    carol = maker("carol")
    before = snapshot(first.public_id)

    with pytest.raises(PolicyDenied, match=f"already has a change waiting: {first.public_id} \\(pending\\)"):
        propose(carol, case=case, merchant="m_busy", kind="MERCHANT_DEBIT", now=at(2))

    assert list(ActionRequest.objects.values_list("public_id", flat=True)) == [first.public_id]
    assert_refused("submit", case.case_number, "POLICY_DENIED", carol, before, first.public_id)
    # Another merchant, or the same merchant in another currency, is another target.
    assert propose(carol, case=case, merchant="m_busy", currency="USD", now=at(3)).status == "REQUESTED"


@pytest.mark.parametrize("role", ["finance_manager", "payment_ops", "auditor"])
def test_a_maker_without_the_propose_permission_is_refused(role, case):
    outsider = user_with_role(role, username=f"outsider_{role}")
    before = snapshot()

    with pytest.raises(PermissionMissing, match=r"needs the permission ledger\.propose_adjustment.*finance_ops"):
        propose(outsider, case=case)

    assert ActionRequest.objects.count() == 0
    assert_refused("submit", case.case_number, "PERMISSION_DENIED", outsider, before)


def test_a_maker_above_their_role_limit_is_refused(alice, case):
    before = snapshot()
    with pytest.raises(PolicyDenied, match="above what your role may propose \\(5000000000\\)"):
        propose(alice, case=case, amount_minor=5_000_000_001)
    assert ActionRequest.objects.count() == 0
    assert_refused("submit", case.case_number, "POLICY_DENIED", alice, before)
    # At the limit is allowed.
    assert propose(alice, case=case, amount_minor=5_000_000_000).status == "REQUESTED"


def test_a_currency_without_a_maker_limit_is_refused(alice, case):
    with pytest.raises(PolicyDenied, match="no limit set for your role in this currency"):
        propose(alice, case=case, currency="EUR")
    assert ActionRequest.objects.count() == 0


def test_a_reason_code_the_policy_does_not_allow_is_refused(alice, case):
    before = snapshot()
    with pytest.raises(PolicyDenied, match="reason code 'DUPLICATE' is not allowed for a ledger adjustment"):
        propose(alice, case=case, reason_code="DUPLICATE")
    assert ActionRequest.objects.count() == 0
    assert_refused("submit", case.case_number, "POLICY_DENIED", alice, before)


@pytest.mark.parametrize("reason_text", ["", "   ", "Card 4111 1111 1111 1111 charged twice"])
def test_a_missing_reason_or_one_holding_a_card_number_is_refused(alice, case, reason_text):
    with pytest.raises(ValidationFailed):
        propose(alice, case=case, reason_text=reason_text)
    assert ActionRequest.objects.count() == 0
    assert last_refusal("submit", case.case_number).error_code == "VALIDATION_FAILED"


def test_a_case_is_required_and_must_be_open(alice, case):
    with pytest.raises(PolicyDenied, match="needs a case"):
        propose(alice, case=None)
    assert last_refusal("submit", ADJUSTMENT).actor_user_id == alice.pk
    with pytest.raises(PolicyDenied, match="needs a case"):
        request_submit(
            action_type=ADJUSTMENT, payload={"merchant_ref": "m_1", "currency": "IDR", "amount_minor": 1,
                                             "adjustment_type": "MERCHANT_CREDIT"},
            reason_code="FEE_CORRECTION", reason_text="x", actor=actor_for(alice), now=at(1),
            idempotency_key="k_no_such_case", case_ref="CASE-2026-999999",
        )  # fmt: skip
    case_transition(case_number=case.case_number, transition="cancel", actor=actor_for(alice), now=at(2),
                    reason_text="opened by mistake")  # fmt: skip
    with pytest.raises(PolicyDenied, match=f"{case.case_number} is cancelled; reopen it first"):
        propose(alice, case=case, now=at(3))
    assert ActionRequest.objects.count() == 0


def test_evidence_required_refuses_until_evidence_is_attached(alice, case, settings, tmp_path):
    settings.CASE_EVIDENCE_ROOT = tmp_path
    set_policy(ADJUSTMENT, evidence_required=True, case_required=False)
    with pytest.raises(PolicyDenied, match=f"needs evidence attached to {case.case_number} first"):
        propose(alice, case=case)
    with pytest.raises(PolicyDenied, match="needs a case"):  # evidence needs a case to hang on
        propose(alice, case=None)
    assert ActionRequest.objects.count() == 0

    evidence_add(
        case_number=case.case_number, upload=Upload("settlement-2026-03-01.pdf", PDF), evidence_type="REPORT",
        classification="CONFIDENTIAL", retention_class="FINANCIAL_10Y", actor=actor_for(alice), now=at(1),
    )  # fmt: skip
    assert propose(alice, case=case, now=at(2)).status == "REQUESTED"


def test_without_case_requirement_no_case_is_needed(alice):
    set_policy(ADJUSTMENT, case_required=False)
    request = propose(alice, case=None)
    assert (request.status, request.case_ref) == ("REQUESTED", "")
    assert CaseLink.objects.count() == 0


# --- deciding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_the_maker_can_never_decide_their_own_request(alice, case, decide):
    request = propose(alice, case=case, now=at(1))
    before = snapshot(request.public_id)

    with pytest.raises(SelfApprovalRefused, match=f"you proposed {request.public_id}"):
        if decide == "approve":
            approve(alice, request, now=at(2))
        else:
            reject(alice, request, now=at(2))

    assert_refused(decide, request.public_id, "SELF_APPROVAL", alice, before, request.public_id)


def test_a_maker_who_is_also_a_finance_manager_still_cannot_approve_their_own(case):
    both = user_with_role("finance_ops", username="dual_role")
    both.groups.add(Group.objects.get(name="finance_manager"))
    request = propose(both, case=case)
    before = snapshot(request.public_id)
    with pytest.raises(SelfApprovalRefused):
        approve(both, request)
    assert_refused("approve", request.public_id, "SELF_APPROVAL", both, before, request.public_id)


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_a_system_maker_cannot_decide_its_own_request_either(case, decide):
    matcher = system_actor("recon_matcher")
    request = request_submit(
        action_type=ADJUSTMENT, payload={"merchant_ref": "m_sys", "currency": "IDR", "amount_minor": 300,
                                         "adjustment_type": "MERCHANT_CREDIT"},
        reason_code="RECONCILIATION_CORRECTION", reason_text="matched settlement short by 3.00",
        actor=matcher, now=at(1), idempotency_key="sys-1", case_ref=case.case_number,
    )  # fmt: skip
    assert (request.maker, request.maker_user_id) == ("system:recon_matcher", None)
    before = snapshot(request.public_id)
    with pytest.raises(SelfApprovalRefused):
        if decide == "approve":
            request_approve(public_id=request.public_id, actor=matcher, now=at(2))
        else:
            request_reject(public_id=request.public_id, actor=matcher, now=at(2), reason_text="no")
    assert request_state(request.public_id) == before["request"] and money_state() == before["money"]
    refusal = last_refusal(decide, request.public_id)
    assert (refusal.actor, refusal.error_code) == ("system:recon_matcher", "SELF_APPROVAL")


@pytest.mark.parametrize("role", ["finance_ops", "auditor", "payment_ops"])
def test_a_checker_without_the_decide_permission_is_refused(alice, case, role):
    request = propose(alice, case=case)
    other = user_with_role(role, username=f"other_{role}")
    before = snapshot(request.public_id)
    with pytest.raises(PermissionMissing, match=r"needs the permission ledger\.decide_adjustment.*finance_manager"):
        approve(other, request)
    assert_refused("approve", request.public_id, "PERMISSION_DENIED", other, before, request.public_id)
    with pytest.raises(PermissionMissing):
        reject(other, request)
    assert_refused("reject", request.public_id, "PERMISSION_DENIED", other, before, request.public_id)


def test_a_checker_without_the_role_the_request_names_is_refused(alice, bob, case):
    set_policy(ADJUSTMENT, approver_roles=["risk_ops"])
    request = propose(alice, case=case)
    before = snapshot(request.public_id)
    with pytest.raises(PermissionMissing, match="it may be decided by risk_ops; you hold finance"):
        approve(bob, request)
    assert_refused("approve", request.public_id, "PERMISSION_DENIED", bob, before, request.public_id)


def test_a_checker_above_their_limit_is_refused(alice, bob, case):
    request = propose(alice, case=case, amount_minor=2_500)
    set_policy(ADJUSTMENT, checker_limits_minor={"finance_manager": {"IDR": 2_499}})
    before = snapshot(request.public_id)
    with pytest.raises(PolicyDenied, match="above your approval limit"):
        approve(bob, request)
    assert_refused("approve", request.public_id, "POLICY_DENIED", bob, before, request.public_id)
    set_policy(ADJUSTMENT, checker_limits_minor={"finance_manager": {"IDR": 2_500}})
    assert approve(bob, request).status == "SUCCEEDED"


@pytest.mark.parametrize("first", ["approve", "reject", "cancel"])
def test_only_a_pending_request_can_be_decided(alice, bob, case, first):
    request = propose(alice, case=case, now=at(1))
    {"approve": lambda: approve(bob, request, now=at(2)), "reject": lambda: reject(bob, request, now=at(2)),
     "cancel": lambda: cancel(alice, request, now=at(2))}[first]()  # fmt: skip
    before = snapshot(request.public_id)
    dave = checker("dave")

    with pytest.raises(IllegalTransition, match=f"{request.public_id} is no longer pending"):
        approve(dave, request, now=at(3))
    assert_refused("approve", request.public_id, "ILLEGAL_TRANSITION", dave, before, request.public_id)
    with pytest.raises(IllegalTransition):
        reject(dave, request, now=at(3))
    assert_refused("reject", request.public_id, "ILLEGAL_TRANSITION", dave, before, request.public_id)
    with pytest.raises(IllegalTransition):
        cancel(alice, request, now=at(3))
    assert_refused("cancel", request.public_id, "ILLEGAL_TRANSITION", alice, before, request.public_id)


@pytest.mark.parametrize("reason", ["", "  "])
def test_a_rejection_needs_a_reason(alice, bob, case, reason):
    request = propose(alice, case=case)
    before = snapshot(request.public_id)
    with pytest.raises(ValidationFailed, match="a rejection needs a reason"):
        request_reject(public_id=request.public_id, actor=actor_for(bob), now=at(1), reason_text=reason)
    assert_refused("reject", request.public_id, "VALIDATION_FAILED", bob, before, request.public_id)


def test_a_rejection_records_the_checker_and_reason_and_moves_nothing(alice, bob, case):
    request = propose(alice, case=case, now=at(1))
    before = money_state()
    rejected = reject(bob, request, now=at(2), reason_text="The fee was charged once; see the statement")
    rejected = fetch(rejected.public_id)
    assert (rejected.status, rejected.checker, rejected.checker_user_id, rejected.decided_at) == (
        "REJECTED", "bob", bob.pk, at(2),
    )  # fmt: skip
    assert rejected.decision_reason == "The fee was charged once; see the statement"
    assert money_state() == before
    assert events_for(request.public_id)[-1] == ("approvals.request_rejected", "SUCCEEDED", "bob")


def test_only_the_maker_may_withdraw_and_only_while_pending(alice, bob, case):
    request = propose(alice, case=case, now=at(1))
    before = snapshot(request.public_id)
    carol = maker("carol")
    for outsider in (carol, bob):
        with pytest.raises(PermissionMissing, match="only the maker \\(alice\\) may withdraw"):
            cancel(outsider, request, now=at(2))
        assert_refused("cancel", request.public_id, "PERMISSION_DENIED", outsider, before, request.public_id)

    cancelled = fetch(request_cancel(public_id=request.public_id, actor=actor_for(alice), now=at(3)).public_id)
    assert (cancelled.status, cancelled.decided_at, cancelled.decision_reason) == (
        "CANCELLED", at(3), "withdrawn by the maker",
    )  # fmt: skip
    # The target is free again.
    assert propose(alice, case=case, now=at(4)).status == "REQUESTED"


# --- execution ------------------------------------------------------------------------------------


def test_an_approval_executes_once_and_records_the_result(alice, bob, case):
    request = propose(alice, case=case, merchant="m_ok", amount_minor=2_500, now=at(1))
    done = fetch(approve(bob, request, now=at(2)).public_id)
    journal = LedgerJournal.objects.get(approval_ref=request.public_id)
    assert (done.status, done.checker, done.checker_user_id, done.decided_at, done.executed_at) == (
        "SUCCEEDED", "bob", bob.pk, at(2), at(2),
    )  # fmt: skip
    assert (done.result, done.error_code) == ({"ledger_journal": journal.public_id}, "")
    assert payable_balance("m_ok") == 2_500
    # The posting's own event comes first: the approval is recorded after the domain effect, so the
    # audit chain lock is always taken after the balance locks (no lock-order cycle with posters).
    assert [(t, r) for t, r, _ in events_for(request.public_id)] == [
        ("approvals.request_submitted", "SUCCEEDED"), ("ledger.journal_posted", "SUCCEEDED"),
        ("approvals.request_approved", "SUCCEEDED"), ("approvals.request_executed", "SUCCEEDED"),
    ]  # fmt: skip
    assert chain_verify().intact


def test_an_execution_the_ledger_refuses_is_failed_with_its_code_and_moves_nothing(alice, bob, case):
    fund("m_poor", 1_000)
    request = propose(alice, case=case, merchant="m_poor", amount_minor=1_001, kind="MERCHANT_DEBIT", now=at(1))
    before = money_state()

    failed = fetch(approve(bob, request, now=at(2)).public_id)

    assert (failed.status, failed.error_code, failed.executed_at, failed.result) == (
        "FAILED", "INSUFFICIENT_FUNDS", at(2), None,
    )  # fmt: skip
    assert "2100-IDR-m_poor" in failed.error_message
    assert (failed.checker, failed.checker_user_id) == ("bob", bob.pk)  # the decision stands; execution failed
    assert money_state() == before
    assert not LedgerJournal.objects.filter(approval_ref=request.public_id).exists()
    assert payable_balance("m_poor") == 1_000
    failure = AuditEvent.objects.get(event_type="approvals.request_failed", approval_ref=request.public_id)
    assert (failure.result, failure.error_code) == ("FAILED", "INSUFFICIENT_FUNDS")
    # A failed request is terminal: the target takes a new proposal.
    assert propose(alice, case=case, merchant="m_poor", amount_minor=1_000, kind="MERCHANT_DEBIT").status == "REQUESTED"


def test_an_account_frozen_after_the_request_makes_it_stale(alice, bob, case):
    fund("m_frozen", 5_000)
    request = propose(alice, case=case, merchant="m_frozen", amount_minor=2_500, now=at(1))
    assert request.target_version == "OPEN"
    # Risk freezes the merchant's payable account meanwhile. There is no freeze command yet, so the
    # row is changed directly; what is under test is the engine noticing the target changed.
    LedgerAccount.objects.filter(code="2100-IDR-m_frozen").update(status="FROZEN")
    before = money_state()

    failed = fetch(approve(bob, request, now=at(2)).public_id)

    assert (failed.status, failed.error_code) == ("FAILED", "STALE_TARGET")
    assert "changed since the request (was OPEN, now FROZEN)" in failed.error_message
    assert money_state() == before
    assert not LedgerJournal.objects.filter(approval_ref=request.public_id).exists()


def test_a_journal_reversed_elsewhere_after_the_request_makes_the_reversal_stale(alice, bob, case):
    journal = fund("m_rev", 5_000)
    request = propose_reversal(alice, case=case, journal=journal, now=at(1))
    # The ledger reverses it by its own command meanwhile (e.g. the poster's own correction).
    journal_reverse(journal=journal, reason_code="ERROR", reason_text="reversed at source", idempotency_key="rev-src",
                    actor=ACTOR, now=at(1))  # fmt: skip
    before = money_state()

    failed = fetch(approve(bob, request, now=at(2)).public_id)

    assert (failed.status, failed.error_code) == ("FAILED", "STALE_TARGET")
    assert money_state() == before
    assert LedgerJournal.objects.filter(reverses=journal).count() == 1


def test_a_reason_code_the_policy_stopped_allowing_fails_the_approval(alice, bob, case):
    request = propose(alice, case=case, reason_code="GOODWILL", now=at(1))
    set_policy(ADJUSTMENT, allowed_reason_codes=["FEE_CORRECTION"])
    before = money_state()

    failed = fetch(approve(bob, request, now=at(2)).public_id)

    assert (failed.status, failed.error_code) == ("FAILED", "POLICY_NOT_MET")
    assert "reason code 'GOODWILL' is not allowed" in failed.error_message
    assert money_state() == before
    assert [t for t, _, _ in events_for(request.public_id)] == [
        "approvals.request_submitted", "approvals.request_approved", "approvals.request_failed",
    ]  # fmt: skip


def test_a_never_mode_policy_runs_at_once_and_is_still_recorded(alice, case):
    set_policy(ADJUSTMENT, mode="NEVER")
    request = fetch(propose(alice, case=case, merchant="m_auto", amount_minor=700, now=at(1)).public_id)
    journal = LedgerJournal.objects.get(approval_ref=request.public_id)
    assert (request.status, request.needs_approval, request.checker, request.checker_user_id) == (
        "SUCCEEDED", False, "system:approval_policy", None,
    )  # fmt: skip
    assert (request.decision_reason, request.result) == (
        "policy: no approval needed",
        {"ledger_journal": journal.public_id},
    )
    assert request.preview["needs_approval"] is False
    assert payable_balance("m_auto") == 700
    # recorded after the domain effect (lock order: balances before the audit chain)
    assert [t for t, _, _ in events_for(request.public_id)] == [
        "ledger.journal_posted", "approvals.request_submitted", "approvals.request_executed",
    ]  # fmt: skip


def test_above_amount_mode_needs_approval_only_above_the_threshold(alice, case):
    set_policy(ADJUSTMENT, mode="ABOVE_AMOUNT", threshold_minor={"IDR": 1_000})
    small = propose(alice, case=case, merchant="m_small", amount_minor=1_000)
    large = propose(alice, case=case, merchant="m_large", amount_minor=1_001)
    assert (fetch(small.public_id).status, fetch(large.public_id).status) == ("SUCCEEDED", "REQUESTED")
    other_currency = propose(alice, case=case, merchant="m_small", currency="USD", amount_minor=1)
    assert other_currency.status == "REQUESTED"  # no threshold set for USD: approval needed


# --- cases ----------------------------------------------------------------------------------------


def test_a_case_with_an_open_request_cannot_be_resolved(alice, bob, case):
    request = propose(alice, case=case, now=at(1))
    before = fetch_case(case.case_number).status
    with pytest.raises(PolicyDenied, match=f"still open: {request.public_id} \\(pending\\)"):
        case_transition(case_number=case.case_number, transition="resolve", actor=actor_for(alice), now=at(2),
                        resolution_code="FIXED", resolution_summary="corrected")  # fmt: skip
    assert fetch_case(case.case_number).status == before
    approve(bob, request, now=at(3))
    resolved = case_transition(case_number=case.case_number, transition="resolve", actor=actor_for(alice), now=at(4),
                               resolution_code="FIXED", resolution_summary="corrected")  # fmt: skip
    assert resolved.status == "RESOLVED"


def test_a_resolved_case_with_an_open_request_cannot_be_closed(alice, case):
    set_policy(ADJUSTMENT, case_required=False)  # so a request may still name a resolved case
    case_transition(case_number=case.case_number, transition="resolve", actor=actor_for(alice), now=at(1),
                    resolution_code="FIXED", resolution_summary="corrected")  # fmt: skip
    request = propose(alice, case=case, now=at(2))
    with pytest.raises(PolicyDenied, match=f"still open: {request.public_id}"):
        case_transition(case_number=case.case_number, transition="close", actor=actor_for(alice), now=at(3))
    assert fetch_case(case.case_number).status == "RESOLVED"
    cancel(alice, request, now=at(4))
    closed = case_transition(case_number=case.case_number, transition="close", actor=actor_for(alice), now=at(5))
    assert closed.status == "CLOSED"


def test_the_request_and_its_journal_are_linked_to_the_case(alice, bob, case):
    request = propose(alice, case=case, now=at(1))
    assert list(
        CaseLink.objects.filter(case__case_number=case.case_number).values_list("object_type", "object_id")
    ) == [("action_request", request.public_id)]
    approve(bob, request, now=at(2))
    journal = LedgerJournal.objects.get(approval_ref=request.public_id)
    assert (journal.case_ref, journal.approval_ref) == (case.case_number, request.public_id)
    assert sorted(
        CaseLink.objects.filter(case__case_number=case.case_number).values_list(
            "object_type", "object_id", "created_by"
        )
    ) == sorted([("action_request", request.public_id, "alice"), ("ledger_journal", journal.public_id, "bob")])


# --- the database -------------------------------------------------------------------------------


def test_postgresql_refuses_a_checker_who_is_the_maker_whoever_writes(alice, case):
    request = propose(alice, case=case)
    with (
        pytest.raises(IntegrityError, match="approvals_checker_is_not_maker"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE approvals_actionrequest SET checker_user_id = maker_user_id, status = 'APPROVED' WHERE id = %s",
            [request.pk],
        )
    assert fetch(request.public_id).status == "REQUESTED"


def test_postgresql_refuses_a_second_open_request_for_a_target_whoever_writes(alice, case):
    request = propose(alice, case=case, merchant="m_raw")
    columns = [f.column for f in ActionRequest._meta.concrete_fields if f.column != "id"]
    copied = [
        "'act_raw_copy'" if c == "public_id" else "'another-key'" if c == "idempotency_key" else c for c in columns
    ]
    with (
        pytest.raises(IntegrityError, match="approvals_one_open_request_per_target"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"INSERT INTO approvals_actionrequest ({', '.join(columns)}) SELECT {', '.join(copied)}"
            " FROM approvals_actionrequest WHERE id = %s",
            [request.pk],
        )
    assert ActionRequest.objects.count() == 1
