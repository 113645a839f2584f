"""Reads for the merchant screens: the merchant list (search and keyset pages) and one merchant's
page, prepared for the template with every sensitive value already masked or hidden for the
user's visibility (backoffice.visibility), so a template never holds a raw contact detail, a
beneficiary's account number or a restriction's reason the user may not read.

Every read is bounded (the latest N of each list, one more to know there is more), so the page
makes the same number of queries whatever the merchant's history, payouts or restrictions.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef, Q

from approvals.models import ActionRequest, RequestStatus
from backoffice.masking import mask_value
from backoffice.money import Money
from backoffice.visibility import HIDDEN, Visibility
from cases.selectors import visible_cases
from ledger.selectors import merchant_balances
from payments.actions.restrictions import _HOLDABLE as HOLDABLE_PAYOUT_STATUSES
from payments.models import (
    Capability,
    CapabilityRestriction,
    Merchant,
    MerchantBeneficiary,
    Payout,
    PayoutStatus,
    RestrictionStatus,
)
from payments.services.merchants import PROFILE_FIELDS, masked_profile_value

PAGE_SIZE = 50  # merchants per list page
HISTORY_LIMIT = 20
PAYOUT_LIMIT = 20
PAST_RESTRICTION_LIMIT = 20
BENEFICIARY_LIMIT = 20
CASE_LIMIT = 10
PENDING_LIMIT = 20

BENEFICIARY_READ = "payments.view_merchantbeneficiary"
BAD_CURSOR = "The page cursor is not valid; start from the first page."
# The merchant's own fields a person reads in its history, with their labels.
HISTORY_FIELDS = {**PROFILE_FIELDS, "status": "Status", "default_currency": "Default currency"}
PERSONAL_FIELDS = frozenset({"contact_name", "contact_email", "contact_phone"})
# What a pending request on this page may target (payments.actions: merchants and restrictions).
MERCHANT_TARGETS = ("merchant", "merchant_beneficiary", "merchant_capability", "payout")
_PENDING_FIELDS = ("public_id", "action_type", "preview", "target_type", "target_id", "target_label", "maker",
                   "created_at")  # fmt: skip


# --- the merchant list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MerchantRow:
    public_id: str
    name: str
    status: str
    region: str
    risk_tier: str
    default_currency: str
    created_at: dt.datetime
    restricted: bool


@dataclass(frozen=True)
class MerchantListPage:
    rows: list[MerchantRow]
    next_cursor: str


def _encode_cursor(name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([name, pk]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        name, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError(BAD_CURSOR) from exc
    if not isinstance(name, str) or not isinstance(pk, int) or isinstance(pk, bool):
        raise ValueError(BAD_CURSOR)
    return name, pk


def merchant_list_page(*, query: str = "", cursor: str = "", size: int | None = None) -> MerchantListPage:
    """Merchants by name (then id), optionally those whose name or id starts with `query`. One
    query; keyset pages (`cursor` is the last row's name and id). ValueError for a bad cursor."""
    size = size or PAGE_SIZE
    restricted = CapabilityRestriction.objects.filter(merchant=OuterRef("pk"), status=RestrictionStatus.ACTIVE)
    merchants = Merchant.objects.annotate(restricted=Exists(restricted))
    query = query.strip()
    if query:
        merchants = merchants.filter(Q(public_id__startswith=query) | Q(name__istartswith=query))
    if cursor:
        name, pk = _decode_cursor(cursor)
        merchants = merchants.filter(Q(name__gt=name) | Q(name=name, pk__gt=pk))
    found = list(
        merchants.order_by("name", "pk").only(
            "pk", "public_id", "name", "status", "region", "risk_tier", "default_currency", "created_at"
        )[: size + 1]
    )
    rows = [
        MerchantRow(m.public_id, m.name, m.status, m.region, m.risk_tier, m.default_currency, m.created_at,
                    m.restricted)
        for m in found[:size]
    ]  # fmt: skip
    next_cursor = _encode_cursor(found[size - 1].name, found[size - 1].pk) if len(found) > size else ""
    return MerchantListPage(rows=rows, next_cursor=next_cursor)


def merchant_get(*, public_id: str) -> Merchant | None:
    return Merchant.objects.filter(public_id=public_id).first()


# --- one merchant's page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    public_id: str
    name: str
    legal_name: str
    status: str
    region: str
    risk_tier: str
    default_currency: str
    contact_name: str  # HIDDEN without personal data
    contact_email: str  # masked, or HIDDEN
    contact_phone: str  # masked, or HIDDEN
    has_contact_email: bool
    has_contact_phone: bool
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class FieldChange:
    field: str
    label: str
    before: str
    after: str


@dataclass(frozen=True)
class HistoryEntry:
    at: dt.datetime
    who: str
    kind: str  # "created" or "changed"
    changes: list[FieldChange]


@dataclass(frozen=True)
class BalanceRow:
    currency: str
    bucket: str
    account_code: str
    account_role: str
    balance: Money


@dataclass(frozen=True)
class RestrictionRow:
    pk: int
    capability: str
    capability_label: str
    mode: str
    status: str
    effective_at: dt.datetime
    expires_at: dt.datetime | None
    ended_at: dt.datetime | None
    # Why, by whom and on what authority: empty unless the user may read restriction reasons.
    reason_code: str = ""
    reason_text: str = ""
    source: str = ""
    source_ref: str = ""
    case_ref: str = ""
    end_reason: str = ""


@dataclass(frozen=True)
class PayoutRow:
    public_id: str
    amount_minor: int
    currency: str
    status: str
    held: bool
    holdable: bool
    hold_ref: str
    account: str  # the beneficiary's masked account, or "" when the user may not read beneficiaries
    provider_reference: str  # as the user may see it
    created_at: dt.datetime


@dataclass(frozen=True)
class BeneficiaryRow:
    public_id: str
    currency: str
    bank_name: str
    bank_code: str
    account: str  # ****1234
    holder: str  # masked, or HIDDEN
    status: str
    created_at: dt.datetime


@dataclass(frozen=True)
class PendingRow:
    public_id: str
    action_type: str
    summary: str
    target_label: str
    maker: str
    created_at: dt.datetime


@dataclass(frozen=True)
class CaseRow:
    case_number: str
    title: str
    status: str
    severity: str
    owner_team: str
    created_at: dt.datetime


@dataclass
class MerchantPage:
    profile: Profile
    history: list[HistoryEntry]
    history_more: bool
    balances: list[BalanceRow] | None  # None: not shown to this user
    active_restrictions: list[RestrictionRow]
    past_restrictions: list[RestrictionRow]
    past_restrictions_more: bool
    payouts: list[PayoutRow]
    payouts_more: bool
    beneficiaries: list[BeneficiaryRow] | None  # None: not shown to this user
    pending: list[PendingRow]
    cases: list[CaseRow]
    visibility: Visibility
    pending_targets: set[str] = field(default_factory=set)  # "type:id" of every target with a pending request


def _shown(name: str, value, visibility: Visibility) -> str:
    """A merchant field's value as this user may see it."""
    text = "" if value is None else str(value)
    if name in PERSONAL_FIELDS and not visibility.personal_data:
        return HIDDEN
    return masked_profile_value(name, text) if name in ("contact_email", "contact_phone") else text


def _profile(merchant: Merchant, visibility: Visibility) -> Profile:
    return Profile(
        public_id=merchant.public_id, name=merchant.name, legal_name=merchant.legal_name, status=merchant.status,
        region=merchant.region, risk_tier=merchant.risk_tier, default_currency=merchant.default_currency,
        contact_name=_shown("contact_name", merchant.contact_name, visibility),
        contact_email=_shown("contact_email", merchant.contact_email, visibility),
        contact_phone=_shown("contact_phone", merchant.contact_phone, visibility),
        has_contact_email=bool(merchant.contact_email), has_contact_phone=bool(merchant.contact_phone),
        version=merchant.version, created_at=merchant.created_at, updated_at=merchant.updated_at,
    )  # fmt: skip


def _history(merchant: Merchant, visibility: Visibility, limit: int) -> tuple[list[HistoryEntry], bool]:
    """The latest `limit` versions, newest first, each with the fields it changed. One query: the
    row before the oldest shown is fetched too, to say what that one changed."""
    records = list(
        Merchant.history.filter(id=merchant.pk).select_related("history_user").order_by("-history_date",
                                                                                         "-history_id")[: limit + 1]
    )  # fmt: skip
    entries = []
    for index, record in enumerate(records[:limit]):
        previous = records[index + 1] if index + 1 < len(records) else None
        who = record.history_user.get_username() if record.history_user else "system"
        if previous is None:
            entries.append(HistoryEntry(record.history_date, who, "created", []))
            continue
        changes = [
            FieldChange(name, label, _shown(name, getattr(previous, name), visibility),
                        _shown(name, getattr(record, name), visibility))
            for name, label in HISTORY_FIELDS.items()
            if getattr(previous, name) != getattr(record, name)
        ]  # fmt: skip
        if changes:
            entries.append(HistoryEntry(record.history_date, who, "changed", changes))
    return entries, len(records) > limit


def _balances(merchant: Merchant) -> list[BalanceRow]:
    return [
        BalanceRow(b.account.currency, b.account.get_balance_bucket_display(), b.account.code,
                   b.account.get_role_display(), b.balance)
        for b in merchant_balances(merchant_ref=merchant.public_id)
    ]  # fmt: skip


def _restriction(r: CapabilityRestriction, visibility: Visibility) -> RestrictionRow:
    why = {}
    if visibility.restriction_reasons:
        why = {"reason_code": r.reason_code, "reason_text": r.reason_text, "source": r.source,
               "source_ref": r.source_ref, "case_ref": r.case_ref, "end_reason": r.end_reason}  # fmt: skip
    return RestrictionRow(
        pk=r.pk, capability=r.capability, capability_label=r.get_capability_display(), mode=r.mode, status=r.status,
        effective_at=r.effective_at, expires_at=r.expires_at, ended_at=r.ended_at, **why,
    )  # fmt: skip


def _restrictions(merchant: Merchant, visibility: Visibility, limit: int):
    """Active ones (at most one per capability) and the latest past ones. Two queries."""
    found = CapabilityRestriction.objects.filter(merchant=merchant)
    active = [_restriction(r, visibility) for r in found.filter(status=RestrictionStatus.ACTIVE).order_by("capability")]
    past = list(found.exclude(status=RestrictionStatus.ACTIVE).order_by("-effective_at", "-pk")[: limit + 1])
    return active, [_restriction(r, visibility) for r in past[:limit]], len(past) > limit


def _payouts(merchant: Merchant, visibility: Visibility, may_read_beneficiaries: bool, limit: int):
    found = list(
        Payout.objects.filter(merchant=merchant)
        .select_related("beneficiary")
        .order_by("-created_at", "-pk")[: limit + 1]
    )
    rows = [
        PayoutRow(
            public_id=p.public_id,
            amount_minor=p.amount_minor,
            currency=p.currency,
            status=p.status,
            held=p.status == PayoutStatus.HELD,
            holdable=p.status in HOLDABLE_PAYOUT_STATUSES,
            hold_ref=p.hold_ref,
            account=p.beneficiary.account_masked if may_read_beneficiaries else "",
            provider_reference=visibility.provider_reference(p.provider_payout_reference),
            created_at=p.created_at,
        )
        for p in found[:limit]
    ]
    return rows, len(found) > limit


def _beneficiaries(merchant: Merchant, visibility: Visibility, limit: int) -> list[BeneficiaryRow]:
    found = MerchantBeneficiary.objects.filter(merchant=merchant).order_by("status", "currency", "-created_at", "-pk")
    return [
        BeneficiaryRow(
            public_id=b.public_id,
            currency=b.currency,
            bank_name=b.bank_name,
            bank_code=b.bank_code,
            account=b.account_masked,
            holder=mask_value(b.account_holder, "tail") if visibility.personal_data else HIDDEN,
            status=b.status,
            created_at=b.created_at,
        )
        for b in found[:limit]
    ]


def pending_requests_for(merchant: Merchant, *, limit: int = PENDING_LIMIT):
    """Pending (REQUESTED) action requests on this merchant, its payout accounts, its capabilities
    or its payouts, newest first. One query."""
    pid = merchant.public_id
    targets = (
        Q(target_type="merchant", target_id=pid)
        | Q(target_type__in=("merchant_beneficiary", "merchant_capability"), target_id__startswith=f"{pid}:")
        | Q(target_type="payout")
    )
    return list(
        ActionRequest.objects.filter(targets, merchant_ref=pid, status=RequestStatus.REQUESTED)
        .only(*_PENDING_FIELDS)
        .order_by("-created_at", "-pk")[:limit]
    )


def _cases(merchant: Merchant, user, limit: int) -> list[CaseRow]:
    found = visible_cases(user).filter(merchant_ref=merchant.public_id).order_by("-created_at", "-pk")[:limit]
    return [CaseRow(c.case_number, c.title, c.status, c.severity, c.owner_team, c.created_at) for c in found]


def merchant_page(*, merchant: Merchant, user, visibility: Visibility) -> MerchantPage:
    """Everything the merchant page shows, bounded and prepared for `user`:

    - profile (contact email and phone masked, contact details hidden without personal data) and the
      latest versions of it with the fields each changed, who and when;
    - balances by bucket and currency from the ledger (only with ledger detail; otherwise None);
    - restrictions active and past (reasons only for users who may read them);
    - the latest payouts (held ones marked; the beneficiary's masked account only for users who may
      read beneficiaries); payout accounts (None without that permission; holders masked);
    - pending requests on the merchant and what it owns, and the recent cases the user may see.
    """
    may_read_beneficiaries = user.has_perm(BENEFICIARY_READ)
    history, history_more = _history(merchant, visibility, HISTORY_LIMIT)
    active, past, past_more = _restrictions(merchant, visibility, PAST_RESTRICTION_LIMIT)
    payouts, payouts_more = _payouts(merchant, visibility, may_read_beneficiaries, PAYOUT_LIMIT)
    pending = pending_requests_for(merchant)
    return MerchantPage(
        profile=_profile(merchant, visibility), history=history, history_more=history_more,
        balances=_balances(merchant) if visibility.ledger_detail else None,
        active_restrictions=active, past_restrictions=past, past_restrictions_more=past_more,
        payouts=payouts, payouts_more=payouts_more,
        beneficiaries=_beneficiaries(merchant, visibility, BENEFICIARY_LIMIT) if may_read_beneficiaries else None,
        pending=[
            PendingRow(r.public_id, r.action_type, str((r.preview or {}).get("summary", "")) or r.target_label,
                       r.target_label, r.maker, r.created_at)
            for r in pending
        ],
        cases=_cases(merchant, user, CASE_LIMIT), visibility=visibility,
        pending_targets={f"{r.target_type}:{r.target_id}" for r in pending},
    )  # fmt: skip


# --- what the proposal forms offer ------------------------------------------------------------------------


def holdable_payouts(*, merchant: Merchant, limit: int = 100) -> list[Payout]:
    """The merchant's payouts a hold may still stop (not yet handed to the provider), newest first."""
    return list(
        Payout.objects.filter(merchant=merchant, status__in=HOLDABLE_PAYOUT_STATUSES).order_by("-created_at", "-pk")[
            :limit
        ]
    )


def active_capabilities(*, merchant: Merchant) -> list[tuple[str, str]]:
    """(capability, label) of the merchant's ACTIVE restrictions: what an unfreeze may lift."""
    found = CapabilityRestriction.objects.filter(merchant=merchant, status=RestrictionStatus.ACTIVE)
    return [(c, Capability(c).label) for c in found.order_by("capability").values_list("capability", flat=True)]


def proposal_already_made(*, user, action_type: str, idempotency_key: str) -> bool:
    """Whether this user already proposed `action_type` with this form's key (a double submit)."""
    return ActionRequest.objects.filter(
        action_type=action_type, idempotency_key=idempotency_key, maker_user_id=user.pk
    ).exists()
