"""Merchants, their payout beneficiaries and their customers: onboarding, and the changes the
approved maker-checker actions execute (payments.actions.merchants).

Personal data: a customer's email and phone are reduced at the door to a keyed hash of the
normalised value (for exact search) and a masked display form; the raw value is never stored,
audited or put in an error message. A merchant's business contact and a beneficiary's account
number are kept as the models say (a payout must reach the account), and every audit snapshot
shows them masked.

Idempotency: `merchant_create` derives the merchant's public id from the idempotency key (a keyed
hash), so the unique public id makes a retry, even a concurrent one, return the first merchant.
A customer is identified by its merchant's own reference and a beneficiary by its account; those
natural keys make `customer_create` and `beneficiary_add` safe to retry.

Every write is audited in its own transaction; every refusal is audited in its own and changes
nothing. Field history is kept by simple-history on the three models.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from audit.context import keyed_hash
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import (
    DomainError,
    IdempotencyConflict,
    NotFound,
    PolicyDenied,
    StaleTarget,
    ValidationFailed,
)
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers, mask_email, mask_tail
from backoffice.money import CurrencyError, currency_exponent
from payments.models import Customer, Merchant, MerchantBeneficiary, MerchantStatus, RiskTier
from payments.models.merchants import BeneficiaryStatus
from payments.services.recording import refusal_record

NONE_VERSION = "NONE"  # the beneficiary target's version while a currency has no active account

# Calling codes for phone numbers given in a region's national format ("0812..."); anything else
# must be given in international format. Data, not logic: extend with the regions we contract in.
CALLING_CODES = {"ID": "62", "PH": "63", "SG": "65", "MY": "60", "TH": "66", "VN": "84"}

# The merchant profile fields a CHANGE_MERCHANT_PROFILE request may change, with their labels.
PROFILE_FIELDS = {
    "name": "Name",
    "legal_name": "Legal name",
    "region": "Region",
    "risk_tier": "Risk tier",
    "contact_name": "Contact name",
    "contact_email": "Contact email",
    "contact_phone": "Contact phone",
}
MASKED_PROFILE_FIELDS = {"contact_email": "email", "contact_phone": "tail"}

_REGION = re.compile(r"^[A-Z]{2}$")
# A merchant id given at onboarding (one carried over from another system, or the demo's fixed ids).
_GIVEN_MERCHANT_ID = re.compile(r"^m_[a-z0-9_]{3,30}$")
_BANK_CODE = re.compile(r"^[A-Z0-9]{2,16}$")
_ACCOUNT_NUMBER = re.compile(r"^[A-Z0-9]{5,34}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# --- normalisation (shared with the approval actions) ---------------------------------------------


def _text(value: Any, label: str, *, max_length: int, required: bool = True) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ValidationFailed(f"{label} is required")
    if len(text) > max_length:
        raise ValidationFailed(f"{label} is longer than {max_length} characters")
    if find_card_numbers(text):
        # Nothing resembling a card number is stored anywhere; the value is not repeated here.
        raise ValidationFailed(f"{label} contains what looks like a card number")
    return text


def _region(value: Any) -> str:
    region = str(value or "").strip().upper()
    if not _REGION.match(region):
        raise ValidationFailed("the region is a two-letter ISO 3166 country code, e.g. ID or PH")
    return region


def _currency(value: Any) -> str:
    currency = str(value or "").strip().upper()
    try:
        currency_exponent(currency)
    except CurrencyError as exc:
        raise ValidationFailed(str(exc)) from exc
    return currency


def _risk_tier(value: Any) -> str:
    tier = str(value or "").strip().upper()
    if tier not in RiskTier.values:
        raise ValidationFailed(f"the risk tier is one of {', '.join(RiskTier.values)}")
    return tier


def normalise_email(value: Any, label: str = "the email address") -> str:
    """Trimmed and lower-cased (how the hash is computed, so a search finds it however typed).
    The message of a refusal never repeats the value: it may be personal data."""
    email = str(value or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationFailed(f"{label} is not a valid email address") from None
    if len(email) > 254:
        raise ValidationFailed(f"{label} is longer than 254 characters")
    return email


def normalise_phone(value: Any, *, region: str, label: str = "the phone number") -> str:
    """E.164 (+<country><number>). A national number ("0812...") is read with the region's calling
    code; any other form must be international. The value is never repeated in a refusal."""
    phone = _PHONE_SEPARATORS.sub("", str(value or ""))
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    elif phone.startswith("0") and region in CALLING_CODES:
        phone = "+" + CALLING_CODES[region] + phone[1:]
    if not _PHONE.match(phone):
        raise ValidationFailed(f"{label} is not a valid phone number; give it in international format (+62...)")
    return phone


def customer_email_digest(email: Any) -> tuple[str, str]:
    """(keyed hash, masked form) of a customer's email: all that is ever kept of it."""
    normalised = normalise_email(email)
    return keyed_hash("customer.email", normalised), mask_email(normalised)


def customer_phone_digest(phone: Any, *, region: str) -> tuple[str, str]:
    """(keyed hash, masked form) of a customer's phone in E.164: all that is ever kept of it."""
    normalised = normalise_phone(phone, region=region)
    return keyed_hash("customer.phone", normalised), mask_tail(normalised)


def profile_value(field: str, value: Any, *, region: str) -> str:
    """One merchant profile field, validated and normalised (`region` reads national phone numbers)."""
    if field == "name":
        return _text(value, "the name", max_length=200)
    if field == "legal_name":
        return _text(value, "the legal name", max_length=200, required=False)
    if field == "region":
        return _region(value)
    if field == "risk_tier":
        return _risk_tier(value)
    if field == "contact_name":
        return _text(value, "the contact name", max_length=200, required=False)
    if field == "contact_email":
        return normalise_email(value, "the contact email") if str(value or "").strip() else ""
    if field == "contact_phone":
        return normalise_phone(value, region=region, label="the contact phone") if str(value or "").strip() else ""
    raise ValidationFailed(f"{field!r} is not a merchant profile field")


def masked_profile_value(field: str, value: str) -> str:
    """How a profile value is shown in previews and audit snapshots."""
    kind = MASKED_PROFILE_FIELDS.get(field)
    if not value or kind is None:
        return value
    return mask_email(value) if kind == "email" else mask_tail(value)


def beneficiary_account(
    *, bank_code: Any, bank_name: Any, account_holder: Any, account_number: Any, currency: Any
) -> dict[str, str]:
    """A beneficiary's bank account, validated and normalised (upper-case, no separators)."""
    code = str(bank_code or "").strip().upper()
    if not _BANK_CODE.match(code):
        raise ValidationFailed("the bank code is 2 to 16 letters or digits")
    number = re.sub(r"[\s\-]", "", str(account_number or "")).upper()
    if not _ACCOUNT_NUMBER.match(number):
        raise ValidationFailed("the account number is 5 to 34 letters or digits")
    if find_card_numbers(number):
        # A card number typed into the account field must never be stored; the value is not echoed.
        raise ValidationFailed("the account number looks like a card number; give the bank account number")
    return {
        "bank_code": code,
        "bank_name": _text(bank_name, "the bank name", max_length=120),
        "account_holder": _text(account_holder, "the account holder", max_length=200),
        "account_number": number,
        "currency": _currency(currency),
    }


def beneficiary_version(active: MerchantBeneficiary | None) -> str:
    """The version an approval compares: which account is active and its row version, so a
    replacement by any path (another approval, onboarding) makes a pending request stale."""
    return NONE_VERSION if active is None else f"{active.public_id}@{active.version}"


def active_beneficiary(merchant: Merchant, currency: str) -> MerchantBeneficiary | None:
    return MerchantBeneficiary.objects.filter(
        merchant=merchant, currency=currency, status=BeneficiaryStatus.ACTIVE
    ).first()


# --- snapshots (what audit events show: contact and account numbers masked) -----------------------


def merchant_snapshot(merchant: Merchant) -> dict[str, Any]:
    return {
        "name": merchant.name, "legal_name": merchant.legal_name, "region": merchant.region,
        "risk_tier": merchant.risk_tier, "default_currency": merchant.default_currency, "status": merchant.status,
        "contact_name": merchant.contact_name,
        "contact_email": masked_profile_value("contact_email", merchant.contact_email),
        "contact_phone": masked_profile_value("contact_phone", merchant.contact_phone), "version": merchant.version,
    }  # fmt: skip


def beneficiary_snapshot(beneficiary: MerchantBeneficiary) -> dict[str, Any]:
    return {
        "beneficiary": beneficiary.public_id, "bank_code": beneficiary.bank_code, "bank_name": beneficiary.bank_name,
        "account_holder": beneficiary.account_holder, "account": beneficiary.account_masked,
        "currency": beneficiary.currency, "status": beneficiary.status, "version": beneficiary.version,
    }  # fmt: skip


def customer_snapshot(customer: Customer) -> dict[str, Any]:
    return {
        "customer": customer.public_id, "reference": customer.reference, "email": customer.email_masked,
        "phone": customer.phone_masked, "version": customer.version,
    }  # fmt: skip


# --- locks and lookups ------------------------------------------------------------------------------


def _lock_merchant(public_id: str) -> Merchant:
    merchant = Merchant.objects.select_for_update().filter(public_id=public_id).first()
    if merchant is None:
        raise NotFound(f"no merchant {public_id}")
    return merchant


def _require_open(merchant: Merchant, what: str) -> None:
    if merchant.status == MerchantStatus.CLOSED:
        raise PolicyDenied(f"merchant {merchant.public_id} is closed; {what} is not possible")


def _check_version(current: int, expected: int | None, label: str) -> None:
    if expected is not None and current != expected:
        raise StaleTarget(f"{label} changed since the request (version {expected}, now {current})")


def _merchant_id_for(idempotency_key: str) -> str:
    """The merchant's public id, derived from the idempotency key: 128 bits of a keyed hash laid
    out as the ids' 26-character body, so the same key always names the same merchant and the
    unique public id refuses a second one whoever commits first."""
    value = int(keyed_hash("payments.merchant_create", idempotency_key), 16) >> 128
    body = "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
    return f"m_{body}"


# --- merchants ----------------------------------------------------------------------------------------


def merchant_create(
    *, name: str, region: str, default_currency: str, actor: Actor, now: dt.datetime, idempotency_key: str,
    risk_tier: str = RiskTier.MEDIUM, legal_name: str = "", contact_name: str = "", contact_email: str = "",
    contact_phone: str = "", public_id: str = "",
) -> Merchant:  # fmt: skip
    """Onboard a merchant (ACTIVE). The same key with the same details returns the first merchant,
    also when two arrive at once; the same key with other details raises IdempotencyConflict.
    Raises ValidationFailed for bad details (nothing resembling a card number is accepted).

    The merchant's id is derived from the key, unless `public_id` gives one (m_ and 3-30 lower-case
    letters, digits or underscores: a merchant carried over from another system keeps its id). A
    given id answers for itself: onboarding it again with the same details returns the merchant."""
    target = ""
    try:
        key = str(idempotency_key or "").strip()
        if not key or len(key) > 128:
            raise ValidationFailed("onboarding a merchant needs an idempotency key of at most 128 characters")
        if public_id and not _GIVEN_MERCHANT_ID.match(public_id):
            raise ValidationFailed(
                "a given merchant id is m_ followed by 3-30 lower-case letters, digits or underscores"
            )
        target = public_id or _merchant_id_for(key)
        region = _region(region)
        fields = {
            "name": profile_value("name", name, region=region),
            "legal_name": profile_value("legal_name", legal_name, region=region),
            "region": region,
            "risk_tier": _risk_tier(risk_tier),
            "default_currency": _currency(default_currency),
            "contact_name": profile_value("contact_name", contact_name, region=region),
            "contact_email": profile_value("contact_email", contact_email, region=region),
            "contact_phone": profile_value("contact_phone", contact_phone, region=region),
        }
        existing = Merchant.objects.filter(public_id=target).first()
        if existing is not None:
            return _merchant_replay(existing, fields)
        with transaction.atomic():
            try:
                with transaction.atomic():
                    merchant = Merchant.objects.create(public_id=target, created_at=now, updated_at=now, **fields)
            except IntegrityError:
                # The same key committed first in another transaction: that merchant is the answer.
                existing = Merchant.objects.filter(public_id=target).first()
                if existing is None:
                    raise
                return _merchant_replay(existing, fields)
            audit_record(
                event_type="payments.merchant_created", actor=actor, action_type="CREATE_MERCHANT",
                target_type="merchant", target_id=merchant.public_id, after=merchant_snapshot(merchant), now=now,
            )  # fmt: skip
        return merchant
    except DomainError as exc:
        refusal_record(event_type="payments.merchant_create_refused", target_type="merchant", target_id=target,
                       exc=exc, actor=actor, now=now)  # fmt: skip
        raise


def _merchant_replay(existing: Merchant, fields: dict[str, str]) -> Merchant:
    differs = sorted(name for name, value in fields.items() if getattr(existing, name) != value)
    if differs:
        raise IdempotencyConflict(
            f"this idempotency key onboarded {existing.public_id} with other details ({', '.join(differs)})"
        )
    return existing


def merchant_profile_change(
    *, merchant_id: str, changes: dict[str, Any], actor: Actor, now: dt.datetime, expected_version: int | None = None,
    approval_ref: str = "", case_ref: str = "", reason_code: str = "", reason_text: str = "",
) -> Merchant:  # fmt: skip
    """Change profile fields (PROFILE_FIELDS) of a merchant: what an approved CHANGE_MERCHANT_PROFILE
    runs. Raises StaleTarget when the merchant's version is not `expected_version` (checked under
    the row lock), ValidationFailed for unknown fields, bad values or no actual change."""
    try:
        with transaction.atomic():
            merchant = _lock_merchant(merchant_id)
            _require_open(merchant, "changing its profile")
            _check_version(merchant.version, expected_version, f"merchant {merchant_id}")
            normalised = profile_changes(merchant, changes)
            before = merchant_snapshot(merchant)
            for field, value in normalised.items():
                setattr(merchant, field, value)
            merchant.version += 1
            merchant.updated_at = now
            merchant.save(update_fields=[*normalised, "version", "updated_at"])
            audit_record(
                event_type="payments.merchant_profile_changed", actor=actor, action_type="CHANGE_MERCHANT_PROFILE",
                target_type="merchant", target_id=merchant.public_id, reason_code=reason_code,
                reason_text=reason_text, case_ref=case_ref, approval_ref=approval_ref, before=before,
                after=merchant_snapshot(merchant), now=now,
            )  # fmt: skip
        return merchant
    except DomainError as exc:
        refusal_record(event_type="payments.merchant_profile_change_refused", target_type="merchant",
                       target_id=merchant_id, exc=exc, actor=actor, now=now, approval_ref=approval_ref,
                       case_ref=case_ref)  # fmt: skip
        raise


def profile_changes(merchant: Merchant, changes: dict[str, Any]) -> dict[str, str]:
    """The fields of `changes` that differ from the merchant's, validated and normalised. National
    phone numbers are read with the region the merchant will have."""
    unknown = sorted(set(changes) - set(PROFILE_FIELDS))
    if unknown:
        raise ValidationFailed(f"not merchant profile fields: {', '.join(map(str, unknown))}")
    region = _region(changes["region"]) if "region" in changes else merchant.region
    normalised = {field: profile_value(field, value, region=region) for field, value in changes.items()}
    differing = {field: value for field, value in normalised.items() if getattr(merchant, field) != value}
    if not differing:
        raise ValidationFailed("nothing to change: every value given is already the merchant's")
    return differing


# --- beneficiaries ----------------------------------------------------------------------------------


def beneficiary_add(
    *, merchant: Merchant, bank_code: str, bank_name: str, account_holder: str, account_number: str, currency: str,
    actor: Actor, now: dt.datetime,
) -> MerchantBeneficiary:  # fmt: skip
    """Onboarding: the merchant's first payout account in a currency. The same account again
    returns it (a retry); any other account while one is active is refused: replacing a payout
    account is a maker-checker change (CHANGE_MERCHANT_BENEFICIARY)."""
    try:
        account = beneficiary_account(bank_code=bank_code, bank_name=bank_name, account_holder=account_holder,
                                      account_number=account_number, currency=currency)  # fmt: skip
        with transaction.atomic():
            locked = _lock_merchant(merchant.public_id)
            _require_open(locked, "adding a payout account")
            existing = active_beneficiary(locked, account["currency"])
            if existing is not None:
                return _beneficiary_replay(existing, account)
            beneficiary = MerchantBeneficiary.objects.create(
                public_id=new_public_id("ben"), merchant=locked, account_last4=account["account_number"][-4:],
                created_at=now, updated_at=now, **account,
            )  # fmt: skip
            audit_record(
                event_type="payments.beneficiary_added", actor=actor, action_type="ADD_BENEFICIARY",
                target_type="merchant_beneficiary", target_id=f"{locked.public_id}:{beneficiary.currency}",
                after=beneficiary_snapshot(beneficiary), now=now,
            )  # fmt: skip
        return beneficiary
    except DomainError as exc:
        refusal_record(event_type="payments.beneficiary_add_refused", target_type="merchant_beneficiary",
                       target_id=f"{merchant.public_id}:{str(currency).upper()}"[:128], exc=exc, actor=actor,
                       now=now)  # fmt: skip
        raise


def _same_account(beneficiary: MerchantBeneficiary, account: dict[str, str]) -> bool:
    return all(getattr(beneficiary, name) == value for name, value in account.items())


def _beneficiary_replay(existing: MerchantBeneficiary, account: dict[str, str]) -> MerchantBeneficiary:
    if _same_account(existing, account):
        return existing
    raise PolicyDenied(
        f"merchant {existing.merchant.public_id} already has an active {existing.currency} payout account "
        f"({existing.bank_name} {existing.account_masked}); replacing it is a maker-checker change "
        "(CHANGE_MERCHANT_BENEFICIARY)"
    )


def beneficiary_replace(
    *, merchant_id: str, bank_code: str, bank_name: str, account_holder: str, account_number: str, currency: str,
    actor: Actor, now: dt.datetime, expected_version: str | None = None, approval_ref: str = "", case_ref: str = "",
    reason_code: str = "", reason_text: str = "",
) -> MerchantBeneficiary:  # fmt: skip
    """Retire the merchant's active payout account in `currency` (if any) and add the new one: what
    an approved CHANGE_MERCHANT_BENEFICIARY runs. Raises StaleTarget when the active account is not
    the one the request saw (`expected_version`, see beneficiary_version), checked under the locks
    (merchant row, then the active account); ValidationFailed when the new account is the active one."""
    try:
        account = beneficiary_account(bank_code=bank_code, bank_name=bank_name, account_holder=account_holder,
                                      account_number=account_number, currency=currency)  # fmt: skip
        with transaction.atomic():
            merchant = _lock_merchant(merchant_id)
            _require_open(merchant, "changing its payout account")
            active = (
                MerchantBeneficiary.objects.select_for_update()
                .filter(merchant=merchant, currency=account["currency"], status=BeneficiaryStatus.ACTIVE)
                .first()
            )
            current = beneficiary_version(active)
            if expected_version is not None and current != expected_version:
                raise StaleTarget(
                    f"the {account['currency']} payout account of {merchant_id} changed since the request "
                    f"(was {expected_version}, now {current})"
                )
            before = None
            if active is not None:
                if _same_account(active, account):
                    raise ValidationFailed(f"{active.account_masked} is already the active payout account")
                before = beneficiary_snapshot(active)
                active.retire()
                active.version += 1
                active.updated_at = now
                active.save(update_fields=["status", "version", "updated_at"])
            beneficiary = MerchantBeneficiary.objects.create(
                public_id=new_public_id("ben"), merchant=merchant, account_last4=account["account_number"][-4:],
                created_at=now, updated_at=now, **account,
            )  # fmt: skip
            audit_record(
                event_type="payments.beneficiary_replaced", actor=actor, action_type="CHANGE_MERCHANT_BENEFICIARY",
                target_type="merchant_beneficiary", target_id=f"{merchant_id}:{beneficiary.currency}",
                reason_code=reason_code, reason_text=reason_text, case_ref=case_ref, approval_ref=approval_ref,
                before=before, after=beneficiary_snapshot(beneficiary), now=now,
            )  # fmt: skip
        return beneficiary
    except DomainError as exc:
        refusal_record(event_type="payments.beneficiary_replace_refused", target_type="merchant_beneficiary",
                       target_id=f"{merchant_id}:{str(currency).upper()}"[:128], exc=exc, actor=actor, now=now,
                       approval_ref=approval_ref, case_ref=case_ref)  # fmt: skip
        raise


# --- customers --------------------------------------------------------------------------------------


def customer_create(
    *, merchant: Merchant, reference: str, actor: Actor, now: dt.datetime, email: str = "", phone: str = ""
) -> Customer:
    """A payer as the merchant knows them. Email and phone are kept only as a keyed hash of the
    normalised value and a masked form. The merchant's reference identifies the customer: the same
    reference with the same contact details returns the first customer (a retry); with other
    details it raises IdempotencyConflict (a contact change is a maker-checker action)."""
    try:
        ref = _text(reference, "the customer reference", max_length=64)
        contact = {"email_hash": "", "email_masked": "", "phone_hash": "", "phone_masked": ""}
        if str(email or "").strip():
            contact["email_hash"], contact["email_masked"] = customer_email_digest(email)
        if str(phone or "").strip():
            contact["phone_hash"], contact["phone_masked"] = customer_phone_digest(phone, region=merchant.region)
        existing = Customer.objects.filter(merchant=merchant, reference=ref).first()
        if existing is not None:
            return _customer_replay(existing, contact)
        _require_open(merchant, "adding a customer")
        with transaction.atomic():
            # No merchant lock: customers arrive at checkout rate; the unique (merchant, reference)
            # constraint settles two creations at once, and the loser returns the winner's row.
            try:
                with transaction.atomic():
                    customer = Customer.objects.create(
                        public_id=new_public_id("cus"), merchant=merchant, reference=ref, created_at=now,
                        updated_at=now, **contact,
                    )  # fmt: skip
            except IntegrityError:
                existing = Customer.objects.filter(merchant=merchant, reference=ref).first()
                if existing is None:
                    raise
                return _customer_replay(existing, contact)
            audit_record(
                event_type="payments.customer_created", actor=actor, action_type="CREATE_CUSTOMER",
                target_type="customer", target_id=customer.public_id, after=customer_snapshot(customer), now=now,
            )  # fmt: skip
        return customer
    except DomainError as exc:
        refusal_record(event_type="payments.customer_create_refused", target_type="merchant",
                       target_id=merchant.public_id, exc=exc, actor=actor, now=now)  # fmt: skip
        raise


def _customer_replay(existing: Customer, contact: dict[str, str]) -> Customer:
    if all(getattr(existing, name) == value for name, value in contact.items()):
        return existing
    raise IdempotencyConflict(
        f"customer reference {existing.reference!r} is already {existing.public_id} with other contact details; "
        "a contact change is proposed as CHANGE_CUSTOMER_CONTACT"
    )


def customer_contact_change(
    *, customer_id: str, actor: Actor, now: dt.datetime, email_hash: str | None = None, email_masked: str | None = None,
    phone_hash: str | None = None, phone_masked: str | None = None, expected_version: int | None = None,
    approval_ref: str = "", case_ref: str = "", reason_code: str = "", reason_text: str = "",
) -> Customer:  # fmt: skip
    """Set a customer's email and/or phone from their digests (customer_email_digest /
    customer_phone_digest): what an approved CHANGE_CUSTOMER_CONTACT runs, so the raw values never
    reach this far. None leaves a contact as it is. Raises StaleTarget (version checked under the
    row lock) and ValidationFailed when nothing would change."""
    try:
        with transaction.atomic():
            customer = Customer.objects.select_for_update().filter(public_id=customer_id).first()
            if customer is None:
                raise NotFound(f"no customer {customer_id}")
            _check_version(customer.version, expected_version, f"customer {customer_id}")
            updates: dict[str, str] = {}
            for kind, digest, masked in (("email", email_hash, email_masked), ("phone", phone_hash, phone_masked)):
                if digest is None:
                    continue
                if not re.fullmatch(r"[0-9a-f]{64}", digest) or not masked:
                    raise ValidationFailed(f"the new {kind} must be given as its keyed hash and masked form")
                if getattr(customer, f"{kind}_hash") != digest:
                    updates[f"{kind}_hash"], updates[f"{kind}_masked"] = digest, masked
            if not updates:
                raise ValidationFailed("nothing to change: the contact details given are already the customer's")
            before = customer_snapshot(customer)
            for field, value in updates.items():
                setattr(customer, field, value)
            customer.version += 1
            customer.updated_at = now
            customer.save(update_fields=[*updates, "version", "updated_at"])
            audit_record(
                event_type="payments.customer_contact_changed", actor=actor, action_type="CHANGE_CUSTOMER_CONTACT",
                target_type="customer", target_id=customer.public_id, reason_code=reason_code,
                reason_text=reason_text, case_ref=case_ref, approval_ref=approval_ref, before=before,
                after=customer_snapshot(customer), now=now,
            )  # fmt: skip
        return customer
    except DomainError as exc:
        refusal_record(event_type="payments.customer_contact_change_refused", target_type="customer",
                       target_id=customer_id, exc=exc, actor=actor, now=now, approval_ref=approval_ref,
                       case_ref=case_ref)  # fmt: skip
        raise


__all__ = [
    "NONE_VERSION", "active_beneficiary", "beneficiary_account", "beneficiary_add", "beneficiary_replace",
    "beneficiary_version", "customer_contact_change", "customer_create", "customer_email_digest",
    "customer_phone_digest", "merchant_create", "merchant_profile_change", "profile_changes",
]  # fmt: skip
