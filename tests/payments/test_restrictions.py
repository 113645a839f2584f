"""Capability restrictions: what merchant_can answers under BLOCK, REVIEW, an expiry and a lift; one
active restriction per capability; the expiry sweeper. Every refusal changes nothing and is audited."""

import datetime as dt

import pytest

from audit.models import AuditEvent, AuditResult
from audit.verification import chain_verify
from backoffice.actors import system_actor
from backoffice.errors import IllegalTransition, ValidationFailed
from payments.models import Capability, CapabilityRestriction, RestrictionMode, RestrictionStatus
from payments.selectors import merchant_can
from payments.services import restrictions as restriction_services
from payments.services.restrictions import (
    RestrictionAlreadyActive,
    restriction_impose,
    restriction_lift,
    restrictions_expire,
)
from tests.factories.approvals import at
from tests.factories.payments import merchant as make_merchant

pytestmark = pytest.mark.django_db

RISK = system_actor("risk_engine")
SWEEPER = system_actor("restriction_sweeper")


@pytest.fixture
def merchant():
    return make_merchant(name="Toko Sinar")


def impose(merchant, capability=Capability.CREATE_PAYOUT, mode=RestrictionMode.BLOCK, *, now=None, **kwargs):
    return restriction_impose(
        merchant=merchant, capability=capability, mode=mode, reason_code=kwargs.pop("reason_code", "RISK_REVIEW"),
        reason_text="Chargeback rate above threshold", source=kwargs.pop("source", "RISK"), actor=RISK,
        now=now or at(0), **kwargs,
    )  # fmt: skip


def restriction_rows() -> list[tuple]:
    return list(
        CapabilityRestriction.objects.order_by("pk").values_list("pk", "capability", "mode", "status", "version")
    )


def refusals(event_type: str):
    return AuditEvent.objects.filter(event_type=event_type, result=AuditResult.REFUSED).order_by("seq")


def test_a_block_refuses_the_capability_and_says_why(merchant):
    restriction = impose(merchant, expires_at=at(60 * 24 * 3))

    answer = merchant_can(merchant, Capability.CREATE_PAYOUT, at(1))

    assert (answer.allowed, answer.needs_review, answer.restriction) == (False, False, restriction)
    assert (
        answer.reason == "Receive payouts is blocked for this merchant until 2026-03-05 01:00 UTC: RISK_REVIEW (RISK)"
    )
    assert merchant_can(merchant, Capability.CREATE_REFUND, at(1)).allowed
    # Not in force before it took effect.
    assert merchant_can(merchant, Capability.CREATE_PAYOUT, at(-1)).allowed
    event = AuditEvent.objects.get(event_type="payments.restriction_imposed")
    assert (event.target_type, event.target_id, event.reason_code, event.actor) == (
        "merchant_capability", f"{merchant.public_id}:CREATE_PAYOUT", "RISK_REVIEW", "system:risk_engine",
    )  # fmt: skip
    assert event.after["restriction_id"] == restriction.pk and event.after["mode"] == "BLOCK"


def test_a_review_allows_with_review(merchant):
    impose(merchant, mode=RestrictionMode.REVIEW)

    answer = merchant_can(merchant, Capability.CREATE_PAYOUT, at(1))

    assert (answer.allowed, answer.needs_review) == (True, True)
    assert "under review" in answer.reason


def test_a_passed_expiry_is_not_in_force_even_before_the_sweeper(merchant):
    restriction = impose(merchant, expires_at=at(60))

    assert not merchant_can(merchant, Capability.CREATE_PAYOUT, at(59)).allowed
    assert merchant_can(merchant, Capability.CREATE_PAYOUT, at(60)).allowed
    assert merchant_can(merchant, Capability.CREATE_PAYOUT, at(600)).allowed
    assert CapabilityRestriction.objects.get(pk=restriction.pk).status == RestrictionStatus.ACTIVE


def test_a_lifted_restriction_gives_the_capability_back(merchant):
    restriction = impose(merchant)

    lifted = restriction_lift(restriction_id=restriction.pk, reason_text="Review cleared", actor=RISK, now=at(5),
                              source_ref="act_01TEST")  # fmt: skip

    assert (lifted.status, lifted.ended_at, lifted.ended_by, lifted.end_reason, lifted.version) == (
        RestrictionStatus.LIFTED, at(5), "system:risk_engine", "Review cleared", 2,
    )  # fmt: skip
    assert merchant_can(merchant, Capability.CREATE_PAYOUT, at(6)).allowed
    event = AuditEvent.objects.get(event_type="payments.restriction_lifted")
    assert (event.before["status"], event.after["status"], event.approval_ref) == ("ACTIVE", "LIFTED", "act_01TEST")
    assert lifted.history.count() == 2  # field history: created, lifted


def test_lifting_twice_is_refused_and_changes_nothing(merchant):
    restriction = impose(merchant)
    restriction_lift(restriction_id=restriction.pk, reason_text="Review cleared", actor=RISK, now=at(5))
    before = restriction_rows()

    with pytest.raises(IllegalTransition, match=f"restriction #{restriction.pk} is lifted already"):
        restriction_lift(restriction_id=restriction.pk, reason_text="Again", actor=RISK, now=at(6))

    assert restriction_rows() == before
    assert refusals("payments.restriction_lift_refused").get().error_code == "ILLEGAL_TRANSITION"


def test_lifting_needs_a_reason(merchant):
    restriction = impose(merchant)
    before = restriction_rows()

    with pytest.raises(ValidationFailed, match="needs an explanation"):
        restriction_lift(restriction_id=restriction.pk, reason_text="  ", actor=RISK, now=at(5))

    assert restriction_rows() == before
    assert refusals("payments.restriction_lift_refused").get().error_code == "VALIDATION_FAILED"


def test_one_active_restriction_per_capability(merchant):
    first = impose(merchant, mode=RestrictionMode.REVIEW)
    before = restriction_rows()

    with pytest.raises(RestrictionAlreadyActive, match=rf"already restricted for {merchant.public_id} by restriction "
                       rf"#{first.pk} \(needs review, RISK_REVIEW, by RISK"):  # fmt: skip
        impose(merchant, mode=RestrictionMode.BLOCK, now=at(1))

    assert restriction_rows() == before
    refused = refusals("payments.restriction_impose_refused").get()
    assert (refused.error_code, refused.target_id) == (
        "RESTRICTION_ALREADY_ACTIVE",
        f"{merchant.public_id}:CREATE_PAYOUT",
    )
    # Another capability is its own restriction; after a lift the capability can be restricted again.
    impose(merchant, Capability.CREATE_REFUND, now=at(2))
    restriction_lift(restriction_id=first.pk, reason_text="Review cleared", actor=RISK, now=at(3))
    second = impose(merchant, mode=RestrictionMode.BLOCK, now=at(4))
    assert not merchant_can(merchant, Capability.CREATE_PAYOUT, at(5)).allowed
    assert merchant_can(merchant, Capability.CREATE_PAYOUT, at(5)).restriction == second


def test_a_restriction_past_its_expiry_is_recorded_expired_when_replaced(merchant):
    old = impose(merchant, expires_at=at(60))

    new = impose(merchant, mode=RestrictionMode.REVIEW, now=at(61))

    assert CapabilityRestriction.objects.get(pk=old.pk).status == RestrictionStatus.EXPIRED
    assert CapabilityRestriction.objects.get(pk=new.pk).status == RestrictionStatus.ACTIVE
    assert list(AuditEvent.objects.filter(event_type__startswith="payments.restriction_").order_by("seq")
                .values_list("event_type", flat=True)) == [
        "payments.restriction_imposed", "payments.restriction_expired", "payments.restriction_imposed",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capability": "TELEPORT"}, "unknown capability"),
        ({"mode": "MAYBE"}, "unknown restriction mode"),
        ({"reason_code": ""}, "needs a reason code"),
        ({"source": "GUESSWORK"}, "unknown restriction source"),
        ({"expires_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)}, "expiry must be a time"),
    ],
)
def test_bad_input_is_refused_and_audited(merchant, changes, message):
    with pytest.raises(ValidationFailed, match=message):
        impose(merchant, **changes)

    assert restriction_rows() == []
    assert refusals("payments.restriction_impose_refused").get().error_code == "VALIDATION_FAILED"


def test_the_sweeper_expires_what_has_passed_in_chunks_once(merchant, monkeypatch):
    monkeypatch.setattr(restriction_services, "EXPIRY_CHUNK", 2)
    others = [make_merchant(name=f"Toko {i}") for i in range(4)]
    expiring = [impose(m, expires_at=at(30 + i)) for i, m in enumerate([merchant, *others])]
    later = impose(merchant, Capability.CREATE_REFUND, expires_at=at(600))
    forever = impose(others[0], Capability.CREATE_REFUND)

    assert restrictions_expire(now=at(60), actor=SWEEPER) == 5

    statuses = dict(CapabilityRestriction.objects.values_list("pk", "status"))
    assert [statuses[r.pk] for r in expiring] == [RestrictionStatus.EXPIRED] * 5
    assert (statuses[later.pk], statuses[forever.pk]) == (RestrictionStatus.ACTIVE, RestrictionStatus.ACTIVE)
    swept = CapabilityRestriction.objects.get(pk=expiring[0].pk)
    assert (swept.ended_at, swept.ended_by, swept.end_reason) == (
        at(60),
        "system:restriction_sweeper",
        "expiry reached",
    )
    events = AuditEvent.objects.filter(event_type="payments.restriction_expired")
    assert sorted(events.values_list("target_id", flat=True)) == sorted(
        f"{r.merchant.public_id}:CREATE_PAYOUT" for r in expiring
    )
    # Run again: nothing left to do, nothing written.
    assert restrictions_expire(now=at(61), actor=SWEEPER) == 0
    assert AuditEvent.objects.filter(event_type="payments.restriction_expired").count() == 5
    assert chain_verify().intact
