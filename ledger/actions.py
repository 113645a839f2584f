"""The ledger's maker-checker actions: a manual adjustment posted through an adjustment posting
rule, and the reversal of a posted journal. Registered with the approvals engine in
LedgerConfig.ready(); the engine never touches ledger rows itself.

Targets and versions: an adjustment targets the merchant's ledger in one currency; its version is
the state of the merchant's payable account (open, frozen, closed or not yet opened), so a freeze
between request and approval makes the request STALE_TARGET. Payment postings moving the balance
are not changes to the target: the preview's balances are shown as of the request. A reversal
targets the journal; its version is whether it has been reversed.
"""

from __future__ import annotations

import datetime as dt
import re

from django.urls import reverse

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.clock import business_date
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import CurrencyError, Money, currency_exponent
from ledger.models import AccountRole, LedgerAccount, LedgerJournal, PostingRule
from ledger.selectors import merchant_balances
from ledger.services import Source, journal_post_rule, journal_reverse, posting_preview

_MERCHANT_REF = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
ADJUSTMENT_REASONS = (
    "FEE_CORRECTION", "SETTLEMENT_CORRECTION", "GOODWILL", "CHARGEBACK_FEE_CORRECTION", "RECONCILIATION_CORRECTION",
    "ROUNDING_CORRECTION", "OPERATIONAL_LOSS",
)  # fmt: skip
REVERSAL_REASONS = ("DUPLICATE", "POSTED_IN_ERROR", "WRONG_AMOUNT", "WRONG_ACCOUNT")


def adjustment_types() -> list[tuple[str, str]]:
    return list(
        PostingRule.objects.filter(is_adjustment=True, active=True).order_by("code").values_list("code", "description")
    )


def _validate_adjustment(payload: dict, actor: Actor) -> dict:
    merchant = str(payload.get("merchant_ref", "")).strip()
    if not _MERCHANT_REF.match(merchant):
        raise ValidationFailed("give the merchant's reference (letters, digits, _ . : -)")
    currency = str(payload.get("currency", "")).strip().upper()
    try:
        currency_exponent(currency)
    except CurrencyError as exc:
        raise ValidationFailed(str(exc)) from exc
    amount = payload.get("amount_minor")
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("the amount is a positive whole number of minor units; the type decides the direction")
    kind = str(payload.get("adjustment_type", ""))
    if kind not in dict(adjustment_types()):
        raise ValidationFailed(f"unknown adjustment type {kind!r}")
    return {"merchant_ref": merchant, "currency": currency, "amount_minor": amount, "adjustment_type": kind,
            "description": str(payload.get("description", "")).strip()[:200]}  # fmt: skip


def _payable(merchant: str, currency: str) -> LedgerAccount | None:
    return LedgerAccount.objects.filter(
        role=AccountRole.MERCHANT_PAYABLE, owner_ref=merchant, currency=currency
    ).first()


def _adjustment_target(payload: dict) -> Target:
    merchant, currency = payload["merchant_ref"], payload["currency"]
    payable = _payable(merchant, currency)
    return Target(
        target_type="merchant_ledger", target_id=f"{merchant}:{currency}",
        label=f"Ledger of merchant {merchant} in {currency}", version=payable.status if payable else "NOT_OPENED",
        merchant_ref=merchant, subject_name=merchant, amount_minor=payload["amount_minor"], currency=currency,
    )  # fmt: skip


def _adjustment_preview(payload: dict, now: dt.datetime) -> dict:
    lines = posting_preview(
        rule_code=payload["adjustment_type"], currency=payload["currency"],
        amounts={"AMOUNT": payload["amount_minor"]}, merchant_ref=payload["merchant_ref"],
    )  # fmt: skip
    before = {b.account.code: b.balance.amount_minor for b in merchant_balances(merchant_ref=payload["merchant_ref"])
              if b.account.currency == payload["currency"]}  # fmt: skip
    after = dict(before)
    for line in lines:
        account = LedgerAccount.objects.filter(code=line.account_code).first()
        normal = account.normal_side if account else ("CREDIT" if line.account_role.startswith("MERCHANT") else "DEBIT")
        if line.account_code in before or line.account_role.startswith("MERCHANT"):
            delta = line.amount.amount_minor * (1 if line.direction == normal else -1)
            after[line.account_code] = after.get(line.account_code, 0) + delta
    currency = payload["currency"]
    return {
        "kind": "ledger",
        "summary": f"{payload['adjustment_type']} of {Money(payload['amount_minor'], currency)} for "
                   f"{payload['merchant_ref']}",
        "lines": [{"direction": ln.direction, "account": ln.account_code, "role": ln.account_role,
                   "amount_minor": ln.amount.amount_minor, "currency": currency, "display": str(ln.amount),
                   "account_exists": ln.account_exists} for ln in lines],
        "balances": [{"account": code, "before_minor": before.get(code, 0), "after_minor": after[code],
                      "before": str(Money(before.get(code, 0), currency)), "after": str(Money(after[code], currency))}
                     for code in sorted(after)],
        "reversible": True,
        "reversal": "can be reversed later by a REVERSE_LEDGER_JOURNAL request (also maker-checker)",
    }  # fmt: skip


def _execute_adjustment(request, actor: Actor, now: dt.datetime) -> dict:
    payload = request.payload
    journal = journal_post_rule(
        rule_code=payload["adjustment_type"], currency=payload["currency"], amounts={"AMOUNT": payload["amount_minor"]},
        merchant_ref=payload["merchant_ref"], source=Source("action_request", request.public_id),
        accounting_date=business_date(now), idempotency_key=f"{request.public_id}:journal", actor=actor, now=now,
        description=f"{request.reason_code}: {request.reason_text}"[:300], case_ref=request.case_ref,
        approval_ref=request.public_id,
    )  # fmt: skip
    return {"ledger_journal": journal.public_id}


def _validate_reversal(payload: dict, actor: Actor) -> dict:
    public_id = str(payload.get("journal", "")).strip()
    if not public_id.startswith("lj_"):
        raise ValidationFailed("give the journal's id (lj_...)")
    journal = LedgerJournal.objects.filter(public_id=public_id).first()
    if journal is None:
        raise ValidationFailed(f"no journal {public_id}")
    if journal.reverses_id is not None:
        raise ValidationFailed(f"{public_id} is itself a reversal; post a new journal instead")
    reversed_by = LedgerJournal.objects.filter(reverses=journal).values_list("public_id", flat=True).first()
    if reversed_by:
        # Refused now rather than approved later only to fail: a journal is reversed at most once.
        raise ValidationFailed(f"{public_id} was already reversed by {reversed_by}")
    return {"journal": public_id}


def _reversal_target(payload: dict) -> Target:
    journal = LedgerJournal.objects.filter(public_id=payload["journal"]).first()
    if journal is None:
        raise NotFound(f"no journal {payload['journal']}")
    reversed_by = LedgerJournal.objects.filter(reverses=journal).values_list("public_id", flat=True).first()
    merchants = sorted(set(journal.entries.exclude(account__owner_ref="").values_list("account__owner_ref", flat=True)))
    return Target(
        target_type="ledger_journal", target_id=journal.public_id,
        label=f"Journal {journal.public_id} ({journal.journal_type})",
        version=f"reversed by {reversed_by}" if reversed_by else "not reversed",
        merchant_ref=merchants[0] if len(merchants) == 1 else "", subject_name=", ".join(merchants),
    )  # fmt: skip


def _reversal_preview(payload: dict, now: dt.datetime) -> dict:
    journal = LedgerJournal.objects.get(public_id=payload["journal"])
    lines = [
        {"direction": "CREDIT" if e.direction == "DEBIT" else "DEBIT", "account": e.account.code,
         "role": e.account.role, "amount_minor": e.amount_minor, "currency": e.currency,
         "display": str(Money(e.amount_minor, e.currency))}
        for e in journal.entries.select_related("account").order_by("id")
    ]  # fmt: skip
    return {"kind": "ledger", "summary": f"Reverse {journal.public_id} ({journal.journal_type}, "
            f"posted {journal.posted_at:%Y-%m-%d})", "lines": lines, "reversible": False,
            "reversal": "a journal is reversed at most once; a reversal is not reversed again"}  # fmt: skip


def _execute_reversal(request, actor: Actor, now: dt.datetime) -> dict:
    journal = LedgerJournal.objects.get(public_id=request.payload["journal"])
    reversal = journal_reverse(
        journal=journal, reason_code=request.reason_code, reason_text=request.reason_text,
        idempotency_key=f"{request.public_id}:reversal", actor=actor, now=now, accounting_date=business_date(now),
    )  # fmt: skip
    return {"ledger_journal": reversal.public_id}


def describe_journals(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked journal (plain values: the ledger imports no other domain app)."""
    return {
        j.public_id: {
            "label": j.public_id,
            "url": reverse("ledger:journal_detail", args=[j.public_id]),
            "status": "POSTED",
            "detail": j.journal_type,
        }
        for j in LedgerJournal.objects.filter(public_id__in=ids)
    }


LEDGER_ADJUSTMENT = ActionSpec(
    action_type="CREATE_LEDGER_ADJUSTMENT", title="a ledger adjustment",
    propose_permission="ledger.propose_adjustment", decide_permission="ledger.decide_adjustment",
    validate=_validate_adjustment, target=_adjustment_target, preview=_adjustment_preview,
    execute=_execute_adjustment, reason_codes=ADJUSTMENT_REASONS,
    field_choices=lambda: {"adjustment_type": adjustment_types()},
    linkable_types={"ledger_journal": ("Ledger journal", describe_journals)},
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["finance_manager"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(ADJUSTMENT_REASONS),
        # A finance ops maker may propose up to 50,000,000.00 IDR or 50,000.00 USD.
        "maker_limits_minor": {"finance_ops": {"IDR": 5_000_000_000, "USD": 5_000_000}},
        "checker_limits_minor": {"finance_manager": {"IDR": 50_000_000_000, "USD": 50_000_000}},
        "risk_level": "HIGH",
    },
)  # fmt: skip

JOURNAL_REVERSAL = ActionSpec(
    action_type="REVERSE_LEDGER_JOURNAL", title="a journal reversal",
    propose_permission="ledger.propose_adjustment", decide_permission="ledger.decide_adjustment",
    validate=_validate_reversal, target=_reversal_target, preview=_reversal_preview, execute=_execute_reversal,
    reason_codes=REVERSAL_REASONS, linkable_types={"ledger_journal": ("Ledger journal", describe_journals)},
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["finance_manager"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(REVERSAL_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
)  # fmt: skip
