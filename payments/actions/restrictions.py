"""Capability freezes and unfreezes and payout holds and releases, as maker-checker actions.

Targets and versions. A freeze or unfreeze targets one capability of one merchant
(`merchant_capability`, id `m_...:CREATE_PAYOUT`); its version is the id of the ACTIVE restriction
on it, or NONE, so a freeze imposed, lifted or expired since the request makes it STALE_TARGET, and
at most one freeze or unfreeze of a capability is pending at a time. A payout hold or release
targets the payout; its version is the payout's row version, bumped by every transition, so a
payout sent or held since the request is never acted on by it.

Who decides: compliance operations decide freezes and unfreezes (risk and compliance may propose);
finance managers decide payout holds and releases.
"""

from __future__ import annotations

import datetime as dt

from django.utils.dateparse import parse_datetime

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import Money
from payments.models import (
    Capability,
    CapabilityRestriction,
    Merchant,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
    RestrictionMode,
    RestrictionStatus,
)
from payments.models.payments import PAYOUT_COMMITTED_UNPOSTED
from payments.selectors import merchant_can
from payments.services.payouts import payout_hold, payout_release_hold
from payments.services.restrictions import capability_target_id, restriction_impose, restriction_lift

NONE_VERSION = "NONE"
FREEZE_REASONS = (
    "RISK_REVIEW", "FRAUD_SUSPECTED", "COMPLIANCE_REVIEW", "SANCTIONS_SCREENING", "KYB_INCOMPLETE",
    "CHARGEBACK_RATE", "LEGAL_ORDER", "MERCHANT_REQUEST",
)  # fmt: skip
UNFREEZE_REASONS = ("REVIEW_CLEARED", "FALSE_POSITIVE", "KYB_COMPLETED", "LEGAL_ORDER_LIFTED", "MERCHANT_REQUEST")
HOLD_REASONS = (
    "RISK_REVIEW", "FRAUD_SUSPECTED", "BENEFICIARY_VERIFICATION", "COMPLIANCE_REVIEW", "DISPUTE_EXPOSURE",
    "MERCHANT_REQUEST",
)  # fmt: skip
RELEASE_REASONS = ("REVIEW_CLEARED", "BENEFICIARY_VERIFIED", "FALSE_POSITIVE", "MERCHANT_REQUEST")
# Payouts a payout hold or release may act on: not yet handed to the provider.
_HOLDABLE = (PayoutStatus.CREATED, PayoutStatus.APPROVAL_REQUIRED, PayoutStatus.APPROVED)
_RELEASABLE = (PayoutStatus.HELD, PayoutStatus.APPROVAL_REQUIRED)


# --- freeze and unfreeze ------------------------------------------------------------------------


def _merchant(public_id) -> Merchant:
    merchant = Merchant.objects.filter(public_id=str(public_id or "").strip()).first()
    if merchant is None:
        raise ValidationFailed(f"no merchant {str(public_id or '')[:40]!r}; give its id (m_...)")
    return merchant


def _capability(value) -> str:
    capability = str(value or "").strip().upper()
    if capability not in Capability.values:
        raise ValidationFailed(f"unknown capability {capability!r}; use one of {', '.join(Capability.values)}")
    return capability


def _active(merchant: Merchant, capability: str) -> CapabilityRestriction | None:
    return CapabilityRestriction.objects.filter(
        merchant=merchant, capability=capability, status=RestrictionStatus.ACTIVE
    ).first()


def _source_of(actor: Actor) -> str:
    """Who imposes a restriction, from the maker's role (recorded on the restriction)."""
    if actor.is_system:
        return "SYSTEM"
    if "compliance_ops" in actor.roles:
        return "COMPLIANCE"
    return "RISK" if "risk_ops" in actor.roles else "OPERATIONS"


def _expiry(value) -> str | None:
    if value in (None, ""):
        return None
    parsed = value if isinstance(value, dt.datetime) else parse_datetime(str(value).strip())
    if parsed is None or parsed.tzinfo is None:
        raise ValidationFailed("the expiry is a date and time with its timezone, e.g. 2026-03-09T00:00:00+08:00")
    return parsed.astimezone(dt.UTC).isoformat()


def _describe(r: CapabilityRestriction | None) -> str:
    if r is None:
        return "allowed"
    until = f" until {r.expires_at:%Y-%m-%d %H:%M %Z}" if r.expires_at else ""
    return f"{r.get_mode_display().lower()} ({r.reason_code}, {r.source}){until}"


def _validate_freeze(payload: dict, actor: Actor) -> dict:
    merchant = _merchant(payload.get("merchant"))
    capability = _capability(payload.get("capability"))
    mode = str(payload.get("mode") or RestrictionMode.BLOCK).strip().upper()
    if mode not in RestrictionMode.values:
        raise ValidationFailed(f"unknown mode {mode!r}; use BLOCK or REVIEW")
    active = _active(merchant, capability)
    if active is not None and active.expires_at is None:
        # One with an expiry may have passed it; the execution records it EXPIRED or refuses.
        raise ValidationFailed(
            f"{Capability(capability).label} is already {_describe(active)} for {merchant.public_id} "
            f"(restriction #{active.pk}); unfreeze it first"
        )
    return {"merchant": merchant.public_id, "capability": capability, "mode": mode,
            "expires_at": _expiry(payload.get("expires_at")), "source": _source_of(actor)}  # fmt: skip


def _capability_target(payload: dict) -> Target:
    merchant = Merchant.objects.filter(public_id=payload["merchant"]).first()
    if merchant is None:
        raise NotFound(f"no merchant {payload['merchant']}")
    capability = payload["capability"]
    active = _active(merchant, capability)
    return Target(
        target_type="merchant_capability", target_id=capability_target_id(merchant, capability),
        label=f"{Capability(capability).label} of merchant {merchant.public_id}",
        version=str(active.pk) if active else NONE_VERSION, merchant_ref=merchant.public_id,
        subject_name=merchant.name,
    )  # fmt: skip


def _waiting(merchant: Merchant, capability: str) -> dict:
    """What a freeze of `capability` would stop that is already under way."""
    if capability in (Capability.CREATE_PAYOUT, Capability.INSTANT_PAYOUT):
        payouts = Payout.objects.filter(merchant=merchant, status__in=PAYOUT_COMMITTED_UNPOSTED)
        totals = {}
        for currency, amount in payouts.values_list("currency", "amount_minor"):
            totals[currency] = totals.get(currency, 0) + amount
        return {"what": "payouts not yet sent", "count": payouts.count(),
                "totals": [str(Money(amount, currency)) for currency, amount in sorted(totals.items())]}  # fmt: skip
    if capability == Capability.CREATE_REFUND:
        refunds = Refund.objects.filter(payment_intent__merchant=merchant, status=RefundStatus.REQUESTED)
        return {"what": "refunds not yet sent", "count": refunds.count(), "totals": []}
    return {"what": "new operations", "count": 0, "totals": []}


def _freeze_preview(payload: dict, now: dt.datetime) -> dict:
    merchant = Merchant.objects.get(public_id=payload["merchant"])
    capability = payload["capability"]
    in_force = merchant_can(merchant, capability, now).restriction
    label = Capability(capability).label
    mode = RestrictionMode(payload["mode"]).label.lower()
    waiting = _waiting(merchant, capability)
    if waiting["count"]:
        totals = f" ({', '.join(waiting['totals'])})" if waiting["totals"] else ""
        stops = f"{waiting['count']} {waiting['what']}{totals} are stopped when sent"
    else:
        stops = f"nothing under way is stopped; new requests are {'refused' if mode == 'blocked' else 'reviewed'}"
    return {
        "kind": "diff",
        "summary": f"{label} of {merchant.public_id} ({merchant.name}) becomes {mode}",
        "changes": [
            {"field": label, "before": _describe(in_force), "after": f"{mode} ({payload['source']})"},
            {"field": "expires", "before": "", "after": payload["expires_at"] or "never (until unfrozen)"},
        ],
        "stops": {**waiting, "text": stops},
        "reversible": True,
        "reversal": "lifted by an UNFREEZE_MERCHANT_CAPABILITY request (also maker-checker)",
    }


def _execute_freeze(request, actor: Actor, now: dt.datetime) -> dict:
    payload = request.payload
    restriction = restriction_impose(
        merchant=Merchant.objects.get(public_id=payload["merchant"]), capability=payload["capability"],
        mode=payload["mode"], reason_code=request.reason_code, reason_text=request.reason_text,
        source=payload["source"], actor=actor, now=now,
        expires_at=dt.datetime.fromisoformat(payload["expires_at"]) if payload["expires_at"] else None,
        source_ref=request.public_id, case_ref=request.case_ref,
    )  # fmt: skip
    return {"capability_restriction": restriction.pk}


def _validate_unfreeze(payload: dict, actor: Actor) -> dict:
    merchant = _merchant(payload.get("merchant"))
    capability = _capability(payload.get("capability"))
    active = _active(merchant, capability)
    if active is None:
        raise ValidationFailed(f"{Capability(capability).label} is not restricted for {merchant.public_id}")
    return {"merchant": merchant.public_id, "capability": capability, "restriction": active.pk}


def _unfreeze_preview(payload: dict, now: dt.datetime) -> dict:
    merchant = Merchant.objects.get(public_id=payload["merchant"])
    capability = payload["capability"]
    restriction = CapabilityRestriction.objects.get(pk=payload["restriction"])
    label = Capability(capability).label
    waiting = _waiting(merchant, capability)
    return {
        "kind": "diff",
        "summary": f"{label} of {merchant.public_id} ({merchant.name}) is allowed again",
        "changes": [{"field": label, "before": _describe(restriction), "after": "allowed"}],
        "releases": {**waiting, "text": f"{waiting['count']} {waiting['what']} may go ahead"},
        "reversible": True,
        "reversal": "restricted again by a FREEZE_MERCHANT_CAPABILITY request (also maker-checker)",
    }


def _execute_unfreeze(request, actor: Actor, now: dt.datetime) -> dict:
    restriction = restriction_lift(
        restriction_id=request.payload["restriction"], reason_text=f"{request.reason_code}: {request.reason_text}",
        actor=actor, now=now, source_ref=request.public_id,
    )  # fmt: skip
    return {"capability_restriction": restriction.pk}


# --- payout hold and release --------------------------------------------------------------------


def _payout(payload: dict, allowed: tuple[str, ...], verb: str) -> Payout:
    public_id = str(payload.get("payout", "")).strip()
    payout = Payout.objects.select_related("merchant", "beneficiary").filter(public_id=public_id).first()
    if not public_id.startswith("po_") or payout is None:
        raise ValidationFailed(f"no payout {public_id[:40]!r}; give its id (po_...)")
    if payout.status not in allowed:
        raise ValidationFailed(f"payout {payout.public_id} is {payout.status}; it cannot be {verb}")
    return payout


def _validate_hold(payload: dict, actor: Actor) -> dict:
    return {"payout": _payout(payload, _HOLDABLE, "held").public_id}


def _validate_release(payload: dict, actor: Actor) -> dict:
    return {"payout": _payout(payload, _RELEASABLE, "released").public_id}


def _payout_target(payload: dict) -> Target:
    payout = Payout.objects.select_related("merchant").filter(public_id=payload["payout"]).first()
    if payout is None:
        raise NotFound(f"no payout {payload['payout']}")
    return Target(
        target_type="payout", target_id=payout.public_id,
        label=f"Payout {payout.public_id} of {Money(payout.amount_minor, payout.currency)}",
        version=str(payout.version), merchant_ref=payout.merchant.public_id, subject_name=payout.merchant.name,
        amount_minor=payout.amount_minor, currency=payout.currency,
    )  # fmt: skip


def _payout_preview(payout: Payout, after: str, summary: str) -> dict:
    amount = Money(payout.amount_minor, payout.currency)
    return {
        "kind": "diff",
        "summary": summary,
        "changes": [{"field": "status", "before": payout.status, "after": after}],
        "amount_minor": payout.amount_minor,
        "currency": payout.currency,
        "amount": str(amount),
        "beneficiary": f"{payout.beneficiary.bank_name} {payout.beneficiary.account_masked}",
    }


def _hold_preview(payload: dict, now: dt.datetime) -> dict:
    payout = Payout.objects.select_related("merchant", "beneficiary").get(public_id=payload["payout"])
    return {
        **_payout_preview(payout, PayoutStatus.HELD, f"Hold payout {payout.public_id} of "
                          f"{Money(payout.amount_minor, payout.currency)} to {payout.merchant.public_id}"),
        "money": "nothing posts; the amount stays committed against the merchant's balance until released",
        "reversible": True,
        "reversal": "released by a RELEASE_PAYOUT_HOLD request (also maker-checker)",
    }  # fmt: skip


def _release_preview(payload: dict, now: dt.datetime) -> dict:
    payout = Payout.objects.select_related("merchant", "beneficiary").get(public_id=payload["payout"])
    answer = merchant_can(payout.merchant, Capability.CREATE_PAYOUT, now)
    restriction = answer.reason if answer.restriction else "none"
    return {
        **_payout_preview(payout, PayoutStatus.APPROVED, f"Release payout {payout.public_id} of "
                          f"{Money(payout.amount_minor, payout.currency)} to {payout.merchant.public_id}"),
        "money": "nothing posts now; PAYOUT_SENT posts when the payout is sent",
        "restriction_in_force": restriction,
        "reversible": False,
        "reversal": "once sent, a payout cannot be called back; hold it again before it is sent",
    }  # fmt: skip


def _execute_hold(request, actor: Actor, now: dt.datetime) -> dict:
    payout = payout_hold(payout_id=request.payload["payout"], reason=f"{request.reason_code}: {request.reason_text}",
                         actor=actor, now=now, approval_ref=request.public_id)  # fmt: skip
    return {"payout": payout.public_id}


def _execute_release(request, actor: Actor, now: dt.datetime) -> dict:
    payout = payout_release_hold(
        payout_id=request.payload["payout"], reason=f"{request.reason_code}: {request.reason_text}", actor=actor,
        now=now, approval_ref=request.public_id,
    )  # fmt: skip
    return {"payout": payout.public_id}


def describe_payouts(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked payout (masked account)."""
    return {
        p.public_id: {"label": p.public_id, "status": p.status,
                      "detail": f"{Money(p.amount_minor, p.currency)} to {p.beneficiary.account_masked}"}
        for p in Payout.objects.filter(public_id__in=ids).select_related("beneficiary")
    }  # fmt: skip


_CHOICES = {"capability": Capability.choices, "mode": RestrictionMode.choices}

FREEZE_MERCHANT_CAPABILITY = ActionSpec(
    action_type="FREEZE_MERCHANT_CAPABILITY", title="a merchant capability freeze",
    propose_permission="payments.propose_restriction", decide_permission="payments.decide_restriction",
    validate=_validate_freeze, target=_capability_target, preview=_freeze_preview, execute=_execute_freeze,
    reason_codes=FREEZE_REASONS, field_choices=lambda: _CHOICES,
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["compliance_ops"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(FREEZE_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
)  # fmt: skip

UNFREEZE_MERCHANT_CAPABILITY = ActionSpec(
    action_type="UNFREEZE_MERCHANT_CAPABILITY", title="a merchant capability unfreeze",
    propose_permission="payments.propose_restriction", decide_permission="payments.decide_restriction",
    validate=_validate_unfreeze, target=_capability_target, preview=_unfreeze_preview, execute=_execute_unfreeze,
    reason_codes=UNFREEZE_REASONS, field_choices=lambda: {"capability": Capability.choices},
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["compliance_ops"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(UNFREEZE_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
)  # fmt: skip

HOLD_PAYOUT = ActionSpec(
    action_type="HOLD_PAYOUT", title="a payout hold",
    propose_permission="payments.propose_payout_hold", decide_permission="payments.decide_payout_hold",
    validate=_validate_hold, target=_payout_target, preview=_hold_preview, execute=_execute_hold,
    reason_codes=HOLD_REASONS, linkable_types={"payout": ("Payout", describe_payouts)},
    # Holding stops money leaving, so it needs no case: a suspicion is enough to stop and look.
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["finance_manager"], "case_required": False, "evidence_required": False,
        "allowed_reason_codes": list(HOLD_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "MEDIUM",
    },
)  # fmt: skip

RELEASE_PAYOUT_HOLD = ActionSpec(
    action_type="RELEASE_PAYOUT_HOLD", title="a payout release",
    propose_permission="payments.propose_payout_hold", decide_permission="payments.decide_payout_hold",
    validate=_validate_release, target=_payout_target, preview=_release_preview, execute=_execute_release,
    reason_codes=RELEASE_REASONS, linkable_types={"payout": ("Payout", describe_payouts)},
    # Releasing lets money leave: the review that cleared it is a case.
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["finance_manager"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(RELEASE_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
)  # fmt: skip

ACTIONS: list = [FREEZE_MERCHANT_CAPABILITY, UNFREEZE_MERCHANT_CAPABILITY, HOLD_PAYOUT, RELEASE_PAYOUT_HOLD]
