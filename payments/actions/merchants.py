"""Merchant and customer data changes, as maker-checker actions (registered in
PaymentsConfig.ready through payments.actions).

- CHANGE_MERCHANT_PROFILE: name, legal name, region, risk tier, contact fields. Target the
  merchant; its version is the merchant's row version.
- CHANGE_MERCHANT_BENEFICIARY: a new payout bank account for one currency, replacing the active
  one. Target the merchant's account in that currency; its version names the active account and
  its row version ("NONE" while there is none), so any replacement meanwhile makes it stale.
- CHANGE_CUSTOMER_CONTACT: a customer's new email and/or phone. Validation reduces them at once to
  the keyed hash and masked form the customer row keeps; the stored payload holds only those and
  the flag `raw_values_discarded`, so the raw values never reach the request, its preview, its
  audit events or its history. A payload that arrives already holding hashes is refused: only
  validation may produce them, or a maker could show one address and set another.

Previews are field-by-field diffs with contact values and account numbers masked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import CURRENCY_CHOICES
from payments.models import Customer, Merchant, RiskTier
from payments.services.merchants import (
    PROFILE_FIELDS,
    active_beneficiary,
    beneficiary_account,
    beneficiary_replace,
    beneficiary_version,
    customer_contact_change,
    customer_email_digest,
    customer_phone_digest,
    masked_profile_value,
    merchant_profile_change,
    profile_changes,
)

NONE_SHOWN = "(none)"
PROFILE_REASONS = ("MERCHANT_REQUEST", "KYC_UPDATE", "DATA_CORRECTION", "RISK_REVIEW")
BENEFICIARY_REASONS = ("MERCHANT_REQUEST", "BANK_ACCOUNT_CLOSED", "DATA_CORRECTION")
CONTACT_REASONS = ("CUSTOMER_REQUEST", "DATA_CORRECTION")
RAW_DISCARDED = "raw_values_discarded"


def _diff(summary: str, changes: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "kind": "diff",
        "summary": summary,
        "changes": [{"field": label, "before": before or NONE_SHOWN, "after": after or NONE_SHOWN}
                    for label, before, after in changes],
    }  # fmt: skip


def _merchant(public_id: Any, *, missing=ValidationFailed) -> Merchant:
    merchant = Merchant.objects.filter(public_id=str(public_id or "").strip()).first()
    if merchant is None:
        raise missing(f"no merchant {str(public_id or '').strip()[:40] or '(none given)'}")
    return merchant


def _only(payload: dict, allowed: set[str]) -> None:
    unknown = sorted(str(name) for name in set(payload) - allowed)
    if unknown:
        raise ValidationFailed(f"fields this change does not take: {', '.join(unknown)}")


# --- CHANGE_MERCHANT_PROFILE ------------------------------------------------------------------------


def _validate_profile(payload: dict, actor: Actor) -> dict:
    _only(payload, {"merchant", *PROFILE_FIELDS})
    merchant = _merchant(payload.get("merchant"))
    changes = profile_changes(merchant, {f: payload[f] for f in PROFILE_FIELDS if f in payload})
    return {"merchant": merchant.public_id, "changes": changes}


def _profile_target(payload: dict) -> Target:
    merchant = _merchant(payload["merchant"], missing=NotFound)
    return Target(
        target_type="merchant", target_id=merchant.public_id, label=f"Profile of merchant {merchant}"[:200],
        version=str(merchant.version), merchant_ref=merchant.public_id, subject_name=merchant.name,
    )  # fmt: skip


def _profile_preview(payload: dict, now: dt.datetime) -> dict:
    merchant = _merchant(payload["merchant"], missing=NotFound)
    rows = [
        (PROFILE_FIELDS[field], masked_profile_value(field, getattr(merchant, field)), masked_profile_value(field, new))
        for field, new in payload["changes"].items()
    ]
    return _diff(f"Change {len(rows)} profile field(s) of merchant {merchant}", rows)


def _execute_profile(request, actor: Actor, now: dt.datetime) -> dict:
    merchant = merchant_profile_change(
        merchant_id=request.payload["merchant"], changes=request.payload["changes"], actor=actor, now=now,
        expected_version=int(request.target_version), approval_ref=request.public_id, case_ref=request.case_ref,
        reason_code=request.reason_code, reason_text=request.reason_text,
    )  # fmt: skip
    return {"merchant": merchant.public_id, "version": merchant.version, "fields": sorted(request.payload["changes"])}


# --- CHANGE_MERCHANT_BENEFICIARY ----------------------------------------------------------------------

_ACCOUNT_FIELDS = ("bank_code", "bank_name", "account_holder", "account_number", "currency")


def _validate_beneficiary(payload: dict, actor: Actor) -> dict:
    _only(payload, {"merchant", *_ACCOUNT_FIELDS})
    merchant = _merchant(payload.get("merchant"))
    account = beneficiary_account(**{name: payload.get(name) for name in _ACCOUNT_FIELDS})
    active = active_beneficiary(merchant, account["currency"])
    if active is not None and all(getattr(active, name) == value for name, value in account.items()):
        raise ValidationFailed(f"{active.account_masked} is already the active {active.currency} payout account")
    # The account number stays in the payload: executing the change must write it to the new
    # beneficiary. Everything shown (preview, audit) masks it.
    return {"merchant": merchant.public_id, **account}


def _beneficiary_target(payload: dict) -> Target:
    merchant = _merchant(payload["merchant"], missing=NotFound)
    currency = payload["currency"]
    return Target(
        target_type="merchant_beneficiary", target_id=f"{merchant.public_id}:{currency}",
        label=f"{currency} payout account of merchant {merchant}"[:200],
        version=beneficiary_version(active_beneficiary(merchant, currency)), merchant_ref=merchant.public_id,
        subject_name=merchant.name,
    )  # fmt: skip


def _beneficiary_preview(payload: dict, now: dt.datetime) -> dict:
    merchant = _merchant(payload["merchant"], missing=NotFound)
    active = active_beneficiary(merchant, payload["currency"])
    old = {"bank": f"{active.bank_name} ({active.bank_code})", "account": active.account_masked,
           "holder": active.account_holder} if active else {}  # fmt: skip
    rows = [
        ("Bank", old.get("bank", ""), f"{payload['bank_name']} ({payload['bank_code']})"),
        ("Account number", old.get("account", ""), f"****{payload['account_number'][-4:]}"),
        ("Account holder", old.get("holder", ""), payload["account_holder"]),
    ]
    verb = "Replace" if active else "Set"
    return _diff(f"{verb} the {payload['currency']} payout account of merchant {merchant}", rows)


def _execute_beneficiary(request, actor: Actor, now: dt.datetime) -> dict:
    payload = request.payload
    beneficiary = beneficiary_replace(
        merchant_id=payload["merchant"], actor=actor, now=now, expected_version=request.target_version,
        approval_ref=request.public_id, case_ref=request.case_ref, reason_code=request.reason_code,
        reason_text=request.reason_text, **{name: payload[name] for name in _ACCOUNT_FIELDS},
    )  # fmt: skip
    return {"beneficiary": beneficiary.public_id, "account": beneficiary.account_masked}


# --- CHANGE_CUSTOMER_CONTACT --------------------------------------------------------------------------


def _customer(public_id: Any, *, missing=ValidationFailed) -> Customer:
    customer = Customer.objects.select_related("merchant").filter(public_id=str(public_id or "").strip()).first()
    if customer is None:
        raise missing(f"no customer {str(public_id or '').strip()[:40] or '(none given)'}")
    return customer


def _validate_contact(payload: dict, actor: Actor) -> dict:
    # Raw email and phone only: hashes, masked forms or the flag in an incoming payload are refused.
    _only(payload, {"customer", "email", "phone"})
    customer = _customer(payload.get("customer"))
    normalised: dict[str, Any] = {"customer": customer.public_id}
    if str(payload.get("email") or "").strip():
        digest, masked = customer_email_digest(payload["email"])
        if digest == customer.email_hash:
            raise ValidationFailed("that email is already the customer's")
        normalised.update(email_hash=digest, email_masked=masked)
    if str(payload.get("phone") or "").strip():
        digest, masked = customer_phone_digest(payload["phone"], region=customer.merchant.region)
        if digest == customer.phone_hash:
            raise ValidationFailed("that phone number is already the customer's")
        normalised.update(phone_hash=digest, phone_masked=masked)
    if len(normalised) == 1:
        raise ValidationFailed("give the customer's new email or phone number")
    normalised[RAW_DISCARDED] = True
    return normalised


def _contact_target(payload: dict) -> Target:
    customer = _customer(payload["customer"], missing=NotFound)
    return Target(
        target_type="customer", target_id=customer.public_id,
        label=f"Contact details of customer {customer.public_id} ({customer.reference})"[:200],
        version=str(customer.version), merchant_ref=customer.merchant.public_id, customer_ref=customer.public_id,
        subject_name=customer.reference,
    )  # fmt: skip


def _contact_preview(payload: dict, now: dt.datetime) -> dict:
    customer = _customer(payload["customer"], missing=NotFound)
    rows = []
    if "email_masked" in payload:
        rows.append(("Email", customer.email_masked, payload["email_masked"]))
    if "phone_masked" in payload:
        rows.append(("Phone", customer.phone_masked, payload["phone_masked"]))
    return _diff(f"Change the contact details of customer {customer.public_id} ({customer.reference})", rows)


def _execute_contact(request, actor: Actor, now: dt.datetime) -> dict:
    payload = request.payload
    if payload.get(RAW_DISCARDED) is not True:
        raise ValidationFailed("this request's contact details were not validated; propose the change again")
    customer = customer_contact_change(
        customer_id=payload["customer"], actor=actor, now=now, email_hash=payload.get("email_hash"),
        email_masked=payload.get("email_masked"), phone_hash=payload.get("phone_hash"),
        phone_masked=payload.get("phone_masked"), expected_version=int(request.target_version),
        approval_ref=request.public_id, case_ref=request.case_ref, reason_code=request.reason_code,
        reason_text=request.reason_text,
    )  # fmt: skip
    return {"customer": customer.public_id, "version": customer.version}


# --- the specs ------------------------------------------------------------------------------------------


def _policy(reasons: tuple[str, ...], *, risk_level: str, case_required: bool) -> dict[str, Any]:
    return {
        "mode": "ALWAYS", "approver_roles": ["compliance_ops"], "case_required": case_required,
        "evidence_required": False, "allowed_reason_codes": list(reasons), "maker_limits_minor": {},
        "checker_limits_minor": {}, "risk_level": risk_level,
    }  # fmt: skip


CHANGE_MERCHANT_PROFILE = ActionSpec(
    action_type="CHANGE_MERCHANT_PROFILE", title="a merchant profile change",
    propose_permission="payments.propose_merchant_change", decide_permission="payments.decide_merchant_change",
    validate=_validate_profile, target=_profile_target, preview=_profile_preview, execute=_execute_profile,
    reason_codes=PROFILE_REASONS, field_choices=lambda: {"risk_tier": list(RiskTier.choices)},
    default_policy=_policy(PROFILE_REASONS, risk_level="MEDIUM", case_required=False),
)  # fmt: skip

# Redirecting payouts is the classic account-takeover fraud: HIGH risk, and a case must carry the
# merchant's request and the bank's confirmation.
CHANGE_MERCHANT_BENEFICIARY = ActionSpec(
    action_type="CHANGE_MERCHANT_BENEFICIARY", title="a merchant payout account change",
    propose_permission="payments.propose_merchant_change", decide_permission="payments.decide_merchant_change",
    validate=_validate_beneficiary, target=_beneficiary_target, preview=_beneficiary_preview,
    execute=_execute_beneficiary, reason_codes=BENEFICIARY_REASONS,
    field_choices=lambda: {"currency": list(CURRENCY_CHOICES)},
    default_policy=_policy(BENEFICIARY_REASONS, risk_level="HIGH", case_required=True),
)  # fmt: skip

CHANGE_CUSTOMER_CONTACT = ActionSpec(
    action_type="CHANGE_CUSTOMER_CONTACT", title="a customer contact change",
    propose_permission="payments.propose_contact_change", decide_permission="payments.decide_contact_change",
    validate=_validate_contact, target=_contact_target, preview=_contact_preview, execute=_execute_contact,
    reason_codes=CONTACT_REASONS,
    default_policy=_policy(CONTACT_REASONS, risk_level="MEDIUM", case_required=False),
)  # fmt: skip

ACTIONS: list = [CHANGE_MERCHANT_PROFILE, CHANGE_MERCHANT_BENEFICIARY, CHANGE_CUSTOMER_CONTACT]
