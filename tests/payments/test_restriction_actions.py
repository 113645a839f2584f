"""The payment domain's maker-checker actions: a capability freeze and unfreeze decided by a second
compliance user, payout holds and releases decided by a finance manager, and a refund correction.
A maker never decides their own request; a target that changed since the request fails the
execution as STALE_TARGET and changes nothing."""

import pytest

from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_approve, request_submit
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from backoffice.errors import PermissionMissing, PolicyDenied, SelfApprovalRefused, ValidationFailed
from cases.models import CaseType
from cases.services import case_open
from ledger.models import LedgerJournal
from payments.models import (
    Capability,
    CapabilityRestriction,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
    RestrictionMode,
    RestrictionStatus,
)
from payments.selectors import merchant_can
from payments.services.merchants import beneficiary_add
from payments.services.payouts import payout_create
from payments.services.restrictions import restriction_impose
from tests.factories.approvals import money_state
from tests.factories.ledger import credit_merchant
from tests.factories.payments import at, captured_payment, fetch_intent
from tests.factories.payments import merchant as make_merchant
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

SYSTEM = system_actor("payments_tests")
_keys = iter(range(1, 10_000))


def actor(user) -> Actor:
    return Actor.from_user(user)


def person(role: str, name: str):
    return user_with_role(role, username=name)


def case_by(user, case_type=CaseType.COMPLIANCE_REVIEW):
    return case_open(case_type=case_type, severity="MEDIUM", title="Merchant under review", actor=actor(user),
                     now=at(0))  # fmt: skip


def submit(user, action_type: str, payload: dict, *, reason_code: str, case=None, now=None) -> ActionRequest:
    return request_submit(
        action_type=action_type, payload=payload, reason_code=reason_code, reason_text="Reviewed on the case",
        actor=actor(user), now=now or at(1), idempotency_key=f"act-key-{next(_keys)}",
        case_ref=case.case_number if case else "",
    )  # fmt: skip


def approve(user, request: ActionRequest, *, now=None) -> ActionRequest:
    request_approve(public_id=request.public_id, actor=actor(user), now=now or at(2), reason_text="Checked")
    return ActionRequest.objects.get(pk=request.pk)


def restrictions() -> list[tuple]:
    return list(CapabilityRestriction.objects.order_by("pk").values_list("pk", "capability", "mode", "status",
                                                                         "version"))  # fmt: skip


@pytest.fixture
def compliance():
    return person("compliance_ops", "cora"), person("compliance_ops", "cody")


@pytest.fixture
def merchant_with_payout():
    m = make_merchant(name="Toko Sinar")
    ben = beneficiary_add(merchant=m, bank_code="BCA", bank_name="Bank Central Asia", account_holder="PT Toko Sinar",
                          account_number="1234567890", currency="IDR", actor=SYSTEM, now=at(0))  # fmt: skip
    credit_merchant(m.public_id, 100_000)
    payout = payout_create(merchant=m, beneficiary=ben, amount_minor=40_000, currency="IDR", idempotency_key="po-1",
                           actor=SYSTEM, now=at(0))  # fmt: skip
    return m, payout


class TestFreeze:
    def test_a_freeze_proposed_and_approved_by_another_compliance_user(self, compliance, merchant_with_payout):
        maker, checker = compliance
        m, _payout = merchant_with_payout
        case = case_by(maker)

        payload = {"merchant": m.public_id, "capability": "CREATE_PAYOUT", "mode": "BLOCK",
                   "expires_at": "2026-03-09T00:00:00+08:00"}  # fmt: skip
        request = submit(maker, "FREEZE_MERCHANT_CAPABILITY", payload, reason_code="SANCTIONS_SCREENING", case=case)

        assert (request.status, request.target_type, request.target_id, request.target_version) == (
            RequestStatus.REQUESTED, "merchant_capability", f"{m.public_id}:CREATE_PAYOUT", "NONE",
        )  # fmt: skip
        preview = request.preview
        assert preview["kind"] == "diff"
        assert preview["changes"][0] == {"field": "Receive payouts", "before": "allowed",
                                         "after": "blocked (COMPLIANCE)"}  # fmt: skip
        assert preview["changes"][1]["after"] == "2026-03-08T16:00:00+00:00"
        assert (preview["stops"]["count"], preview["stops"]["totals"]) == (1, ["400.00 IDR"])
        assert preview["approver_roles"] == ["compliance_ops"]
        assert CapabilityRestriction.objects.count() == 0  # nothing happens before the decision

        done = approve(checker, request)

        assert (done.status, done.checker) == (RequestStatus.SUCCEEDED, "cody")
        restriction = CapabilityRestriction.objects.get()
        assert done.result == {"capability_restriction": restriction.pk}
        assert (restriction.mode, restriction.reason_code, restriction.source, restriction.source_ref,
                restriction.case_ref, restriction.created_by) == (
            "BLOCK", "SANCTIONS_SCREENING", "COMPLIANCE", request.public_id, case.case_number, "cody",
        )  # fmt: skip
        assert not merchant_can(m, Capability.CREATE_PAYOUT, at(3)).allowed
        assert merchant_can(m, Capability.CREATE_PAYOUT, at(60 * 24 * 7)).allowed  # expired on the 9th
        event = AuditEvent.objects.get(event_type="payments.restriction_imposed")
        assert (event.approval_ref, event.case_ref) == (request.public_id, case.case_number)

    def test_the_maker_cannot_approve_their_own_freeze(self, compliance):
        maker, _ = compliance
        m = make_merchant()
        request = submit(maker, "FREEZE_MERCHANT_CAPABILITY", {"merchant": m.public_id, "capability": "CREATE_REFUND"},
                         reason_code="RISK_REVIEW", case=case_by(maker))  # fmt: skip

        with pytest.raises(SelfApprovalRefused):
            approve(maker, request)

        assert ActionRequest.objects.get(pk=request.pk).status == RequestStatus.REQUESTED
        assert restrictions() == []
        refused = AuditEvent.objects.get(event_type="approvals.approve_refused", target_id=request.public_id)
        assert (refused.result, refused.error_code) == (AuditResult.REFUSED, "SELF_APPROVAL")

    def test_risk_may_propose_but_only_compliance_decides(self, compliance):
        _, checker = compliance
        risk_maker, risk_peer = person("risk_ops", "rita"), person("risk_ops", "rudi")
        finance = person("finance_ops", "fina")
        m = make_merchant()
        case = case_by(risk_maker, CaseType.RISK_REVIEW)
        request = submit(risk_maker, "FREEZE_MERCHANT_CAPABILITY",
                         {"merchant": m.public_id, "capability": "CREATE_PAYOUT", "mode": "REVIEW"},
                         reason_code="FRAUD_SUSPECTED", case=case)  # fmt: skip
        assert request.payload["source"] == "RISK"

        with pytest.raises(PermissionMissing, match=r"payments\.decide_restriction"):
            approve(risk_peer, request)
        with pytest.raises(PermissionMissing, match=r"payments\.propose_restriction"):
            submit(finance, "UNFREEZE_MERCHANT_CAPABILITY", {"merchant": m.public_id, "capability": "CREATE_PAYOUT"},
                   reason_code="REVIEW_CLEARED", case=case)  # fmt: skip
        assert restrictions() == []

        assert approve(checker, request).status == RequestStatus.SUCCEEDED
        assert merchant_can(m, Capability.CREATE_PAYOUT, at(3)).needs_review

    def test_a_stale_target_fails_and_changes_nothing(self, compliance):
        maker, checker = compliance
        m = make_merchant()
        request = submit(maker, "FREEZE_MERCHANT_CAPABILITY", {"merchant": m.public_id, "capability": "CREATE_PAYOUT"},
                         reason_code="RISK_REVIEW", case=case_by(maker))  # fmt: skip
        # Meanwhile the risk engine restricts the same capability by its own path.
        restriction_impose(merchant=m, capability="CREATE_PAYOUT", mode=RestrictionMode.REVIEW,
                           reason_code="CHARGEBACK_RATE", reason_text="Automatic rule", source="SYSTEM", actor=SYSTEM,
                           now=at(1.5))  # fmt: skip
        before = restrictions()

        done = approve(checker, request)

        assert (done.status, done.error_code) == (RequestStatus.FAILED, "STALE_TARGET")
        assert "changed since the request (was NONE, now" in done.error_message
        assert restrictions() == before
        assert merchant_can(m, Capability.CREATE_PAYOUT, at(3)).needs_review  # still the engine's review
        assert AuditEvent.objects.filter(event_type="approvals.request_failed", target_id=request.public_id).exists()

    def test_an_unfreeze_lifts_the_restriction(self, compliance):
        maker, checker = compliance
        m = make_merchant()
        case = case_by(maker)
        freeze = approve(checker, submit(maker, "FREEZE_MERCHANT_CAPABILITY",
                                         {"merchant": m.public_id, "capability": "CREATE_REFUND"},
                                         reason_code="RISK_REVIEW", case=case))  # fmt: skip
        restriction_id = freeze.result["capability_restriction"]

        payload = {"merchant": m.public_id, "capability": "CREATE_REFUND"}
        request = submit(maker, "UNFREEZE_MERCHANT_CAPABILITY", payload, reason_code="REVIEW_CLEARED", case=case,
                         now=at(3))  # fmt: skip
        assert request.target_version == str(restriction_id)
        assert request.preview["changes"] == [{"field": "Create refunds", "before": "blocked (RISK_REVIEW, COMPLIANCE)",
                                               "after": "allowed"}]  # fmt: skip
        done = approve(checker, request, now=at(4))

        assert done.status == RequestStatus.SUCCEEDED
        lifted = CapabilityRestriction.objects.get(pk=restriction_id)
        assert (lifted.status, lifted.ended_by, lifted.end_reason) == (
            RestrictionStatus.LIFTED, "cody", "REVIEW_CLEARED: Reviewed on the case",
        )  # fmt: skip
        assert merchant_can(m, Capability.CREATE_REFUND, at(5)).allowed
        # Nothing left to unfreeze: refused at once.
        with pytest.raises(ValidationFailed, match="is not restricted"):
            submit(maker, "UNFREEZE_MERCHANT_CAPABILITY", {"merchant": m.public_id, "capability": "CREATE_REFUND"},
                   reason_code="REVIEW_CLEARED", case=case, now=at(6))  # fmt: skip

    def test_a_second_freeze_of_a_frozen_capability_is_refused_at_once(self, compliance):
        maker, checker = compliance
        m = make_merchant()
        case = case_by(maker)
        approve(checker, submit(maker, "FREEZE_MERCHANT_CAPABILITY",
                                {"merchant": m.public_id, "capability": "CREATE_PAYOUT"}, reason_code="RISK_REVIEW",
                                case=case))  # fmt: skip

        with pytest.raises(ValidationFailed, match=r"already blocked \(RISK_REVIEW, COMPLIANCE\).*unfreeze it first"):
            submit(maker, "FREEZE_MERCHANT_CAPABILITY", {"merchant": m.public_id, "capability": "CREATE_PAYOUT"},
                   reason_code="RISK_REVIEW", case=case, now=at(3))  # fmt: skip
        assert ActionRequest.objects.count() == 1


class TestPayoutHold:
    def test_hold_and_release_decided_by_a_finance_manager(self, merchant_with_payout):
        _m, payout = merchant_with_payout
        maker, manager = person("risk_ops", "rita"), person("finance_manager", "fred")

        hold = submit(maker, "HOLD_PAYOUT", {"payout": payout.public_id}, reason_code="BENEFICIARY_VERIFICATION")

        assert (hold.target_type, hold.target_id, hold.target_version, hold.amount_minor) == (
            "payout", payout.public_id, str(payout.version), 40_000,
        )  # fmt: skip
        assert hold.preview["changes"] == [{"field": "status", "before": "APPROVED", "after": "HELD"}]
        assert hold.preview["beneficiary"] == "Bank Central Asia ****7890"
        assert "1234567890" not in str(hold.preview)
        done = approve(manager, hold)
        assert (done.status, done.result) == (RequestStatus.SUCCEEDED, {"payout": payout.public_id})
        held = Payout.objects.get(pk=payout.pk)
        assert (held.status, held.hold_ref) == (PayoutStatus.HELD, hold.public_id)

        case = case_by(maker, CaseType.RISK_REVIEW)
        release = submit(maker, "RELEASE_PAYOUT_HOLD", {"payout": payout.public_id}, reason_code="BENEFICIARY_VERIFIED",
                         case=case, now=at(3))  # fmt: skip
        assert release.preview["changes"] == [{"field": "status", "before": "HELD", "after": "APPROVED"}]
        assert approve(manager, release, now=at(4)).status == RequestStatus.SUCCEEDED
        assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.APPROVED

    def test_a_payout_changed_since_the_request_is_not_held(self, merchant_with_payout):
        _m, payout = merchant_with_payout
        maker, manager = person("finance_ops", "fina"), person("finance_manager", "fred")
        request = submit(maker, "HOLD_PAYOUT", {"payout": payout.public_id}, reason_code="RISK_REVIEW")
        # Meanwhile it is held by the review path (another transition bumps its version).
        from payments.services.payouts import payout_hold

        payout_hold(payout_id=payout.public_id, reason="Held by risk engine", actor=SYSTEM, now=at(1.5))
        before = (list(Payout.objects.values_list("status", "version", "hold_reason")), money_state())

        done = approve(manager, request)

        assert (done.status, done.error_code) == (RequestStatus.FAILED, "STALE_TARGET")
        assert (list(Payout.objects.values_list("status", "version", "hold_reason")), money_state()) == before

    def test_the_maker_cannot_decide_and_a_sent_payout_cannot_be_proposed(self, merchant_with_payout):
        _m, payout = merchant_with_payout
        maker = person("finance_ops", "fina")
        request = submit(maker, "HOLD_PAYOUT", {"payout": payout.public_id}, reason_code="RISK_REVIEW")
        with pytest.raises(SelfApprovalRefused):
            approve(maker, request)
        with pytest.raises(PermissionMissing, match=r"payments\.decide_payout_hold"):  # finance ops propose only
            approve(person("finance_ops", "finn"), request)
        with pytest.raises(ValidationFailed, match="cannot be released"):
            submit(maker, "RELEASE_PAYOUT_HOLD", {"payout": payout.public_id}, reason_code="REVIEW_CLEARED")
        assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.APPROVED


class TestRefundCorrection:
    @pytest.fixture
    def payment(self):
        pi, attempt = captured_payment(amount_minor=1_000_000)
        credit_merchant(pi.merchant.public_id, attempt.fee_minor)
        return fetch_intent(pi.public_id)

    def test_a_refund_correction_through_approval(self, payment):
        maker, manager = person("payment_ops", "paula"), person("finance_manager", "fred")
        case = case_by(maker, CaseType.SUPPORT)
        # The merchant's own refunds are under review: the correction is the reviewed path.
        restriction_impose(merchant=payment.merchant, capability=Capability.CREATE_REFUND, mode=RestrictionMode.REVIEW,
                           reason_code="RISK_REVIEW", reason_text="Refund pattern", source="RISK", actor=SYSTEM,
                           now=at(0))  # fmt: skip

        request = submit(maker, "CREATE_REFUND_CORRECTION", {"intent": payment.public_id, "amount_minor": 250_000},
                         reason_code="CUSTOMER_COMPLAINT", case=case)  # fmt: skip

        assert (request.target_type, request.target_id, request.amount_minor, request.currency) == (
            "payment_intent", payment.public_id, 250_000, "IDR",
        )  # fmt: skip
        preview = request.preview
        assert preview["kind"] == "ledger"
        # Both journals the refund posts: the funds set aside on approval, paid out on the provider's word.
        assert [(ln["journal"], ln["direction"], ln["role"], ln["amount_minor"]) for ln in preview["lines"]] == [
            ("REFUND_RESERVED", "DEBIT", "MERCHANT_PAYABLE", 250_000),
            ("REFUND_RESERVED", "CREDIT", "MERCHANT_REFUND_RESERVE", 250_000),
            ("REFUND_SUCCEEDED", "DEBIT", "MERCHANT_REFUND_RESERVE", 250_000),
            ("REFUND_SUCCEEDED", "CREDIT", "PSP_RECEIVABLE", 250_000),
        ]  # fmt: skip
        assert [(b["before_minor"], b["after_minor"]) for b in preview["balances"]] == [(1_000_000, 750_000)]
        assert preview["refundable"] == {"before_minor": 1_000_000, "after_minor": 750_000,
                                         "before": "10,000.00 IDR", "after": "7,500.00 IDR"}  # fmt: skip
        assert preview["approver_roles"] == ["finance_manager"]
        journals = LedgerJournal.objects.count()

        done = approve(manager, request)

        assert done.status == RequestStatus.SUCCEEDED
        refund = Refund.objects.get(public_id=done.result["refund"])
        assert (refund.status, refund.amount_minor, refund.approval_ref, refund.case_ref, refund.requested_by,
                refund.idempotency_key) == (
            RefundStatus.REQUESTED, 250_000, request.public_id, case.case_number, "fred", f"{request.public_id}:refund",
        )  # fmt: skip
        assert fetch_intent(payment.public_id).refund_reserved_minor == 250_000
        # The funds are set aside on approval; REFUND_SUCCEEDED posts when the provider confirms the refund.
        assert LedgerJournal.objects.count() == journals + 1
        assert LedgerJournal.objects.get(idempotency_key=f"refund:{refund.public_id}:reserved").approval_ref == (
            request.public_id
        )

    def test_more_than_refundable_is_refused_at_once(self, payment):
        maker = person("payment_ops", "paula")
        case = case_by(maker, CaseType.SUPPORT)

        with pytest.raises(ValidationFailed, match=r"more than the refundable amount .*: 10,000\.00 IDR"):
            submit(maker, "CREATE_REFUND_CORRECTION", {"intent": payment.public_id, "amount_minor": 1_000_001},
                   reason_code="CUSTOMER_COMPLAINT", case=case)  # fmt: skip
        assert ActionRequest.objects.count() == 0

    def test_above_the_makers_limit_is_refused(self, payment):
        maker = person("payment_ops", "paula")
        case = case_by(maker, CaseType.SUPPORT)
        pi, _attempt = captured_payment(amount_minor=2_000_000_000)

        with pytest.raises(PolicyDenied, match="above what your role may propose"):
            submit(maker, "CREATE_REFUND_CORRECTION", {"intent": pi.public_id, "amount_minor": 1_500_000_000},
                   reason_code="CUSTOMER_COMPLAINT", case=case)  # fmt: skip

    def test_a_refund_reserved_since_the_request_makes_it_stale(self, payment):
        maker, manager = person("payment_ops", "paula"), person("finance_manager", "fred")
        request = submit(maker, "CREATE_REFUND_CORRECTION", {"intent": payment.public_id, "amount_minor": 800_000},
                         reason_code="CUSTOMER_COMPLAINT", case=case_by(maker, CaseType.SUPPORT))  # fmt: skip
        from payments.services.refunds import refund_create

        refund_create(intent=payment, amount_minor=500_000, reason_code="CUSTOMER_REQUEST", reason_text="",
                      idempotency_key="merchant-refund", actor=SYSTEM, now=at(1.5))  # fmt: skip

        done = approve(manager, request)

        assert (done.status, done.error_code) == (RequestStatus.FAILED, "STALE_TARGET")
        assert Refund.objects.count() == 1
        assert fetch_intent(payment.public_id).refund_reserved_minor == 500_000
