"""Money-moving payment actions, as maker-checker actions: the refund correction.

CREATE_REFUND_CORRECTION is a refund the merchant could not make itself (a support complaint, a
merchant that cannot be reached, CREATE_REFUND under review). An approved request creates the
refund through refund_create with the request as its approval (so a REVIEW restriction lets it
through) and stops there: the refund is REQUESTED and the normal sending path hands it to the
provider (refund_create queues it after the approval's transaction commits). The request does not
call the provider itself because it executes inside the approval's transaction, where no provider
call may run, and because the provider's answer (a timeout, a decline) belongs to the refund's own
life, shown on the payment timeline, not to the approval's result.

Money: on approval REFUND_RESERVED posts (the merchant's funds set aside from its payable balance);
REFUND_SUCCEEDED posts from them when the provider confirms the refund; a declined refund reverses
the reservation. The preview shows both journals' lines and the merchant's available balance.

Target and version: the payment intent; its version is its status and the amount reserved for
refunds, so another refund reserved, released or a dispute opened since the request makes it
STALE_TARGET (the refundable amount the checker saw is no longer true), while unrelated changes do
not.
"""

from __future__ import annotations

import datetime as dt

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import Money
from ledger.services import posting_preview
from payments.models import PaymentIntent, Refund
from payments.services.payouts import payable_available_minor
from payments.services.refunds import CAPTURED, refund_create

CORRECTION_REASONS = (
    "CUSTOMER_COMPLAINT", "MERCHANT_UNREACHABLE", "DUPLICATE_CHARGE", "SERVICE_NOT_RENDERED", "OPERATIONAL_ERROR",
)  # fmt: skip


def _intent(public_id) -> PaymentIntent | None:
    return PaymentIntent.objects.select_related("merchant").filter(public_id=str(public_id or "").strip()).first()


def _validate(payload: dict, actor: Actor) -> dict:
    intent = _intent(payload.get("intent"))
    if intent is None:
        raise ValidationFailed(f"no payment {str(payload.get('intent') or '')[:40]!r}; give its id (pi_...)")
    amount = payload.get("amount_minor")
    if type(amount) is not int or amount <= 0:
        raise ValidationFailed("the amount is a positive whole number of minor units")
    if intent.status not in CAPTURED:
        raise ValidationFailed(f"payment {intent.public_id} is {intent.status}; only a captured payment is refunded")
    if amount > intent.refundable_minor:
        raise ValidationFailed(
            f"{Money(amount, intent.currency)} is more than the refundable amount of {intent.public_id}: "
            f"{Money(intent.refundable_minor, intent.currency)}"
        )
    # Checked again, under the merchant's lock, when the approved request creates the refund.
    balance, committed = payable_available_minor(merchant=intent.merchant, currency=intent.currency)
    if amount > balance - committed:
        raise ValidationFailed(
            f"{Money(amount, intent.currency)} is more than {intent.merchant.public_id} has available for refunds: "
            f"{Money(max(balance - committed, 0), intent.currency)} (payable {Money(balance, intent.currency)}, "
            f"committed to payouts not yet sent {Money(committed, intent.currency)})"
        )
    return {"intent": intent.public_id, "amount_minor": amount}


def _version(intent: PaymentIntent) -> str:
    return f"{intent.status}:{intent.refund_reserved_minor}"


def _target(payload: dict) -> Target:
    intent = _intent(payload["intent"])
    if intent is None:
        raise NotFound(f"no payment {payload['intent']}")
    return Target(
        target_type="payment_intent", target_id=intent.public_id,
        label=f"Payment {intent.public_id} of {Money(intent.captured_minor, intent.currency)}",
        version=_version(intent), merchant_ref=intent.merchant.public_id, subject_name=intent.merchant.name,
        amount_minor=payload["amount_minor"], currency=intent.currency,
    )  # fmt: skip


# The journals a refund posts, in order: (rule, when it posts).
_JOURNALS = (
    ("REFUND_RESERVED", "on approval: the merchant's funds set aside from its payable balance"),
    ("REFUND_SUCCEEDED", "when the provider confirms the refund: paid to the payer from the funds set aside"),
)


def _preview(payload: dict, now: dt.datetime) -> dict:
    intent = _intent(payload["intent"])
    amount, currency, merchant = payload["amount_minor"], intent.currency, intent.merchant
    lines = []
    for rule_code, when in _JOURNALS:
        for ln in posting_preview(rule_code=rule_code, currency=currency, amounts={"AMOUNT": amount},
                                  merchant_ref=merchant.public_id):  # fmt: skip
            lines.append({"direction": ln.direction, "account": ln.account_code, "role": ln.account_role,
                          "amount_minor": ln.amount.amount_minor, "currency": currency, "display": str(ln.amount),
                          "account_exists": ln.account_exists, "journal": rule_code, "posts": when})  # fmt: skip
    before = intent.refundable_minor
    balance, committed = payable_available_minor(merchant=merchant, currency=currency)
    payable = next(ln["account"] for ln in lines if ln["role"] == "MERCHANT_PAYABLE")
    return {
        "kind": "ledger",
        "summary": f"Refund {Money(amount, currency)} of {intent.public_id} to the payer, borne by "
                   f"{merchant.public_id}: set aside from its payable balance on approval, paid out when the "
                   "provider confirms",
        "lines": lines,
        "balances": [{"account": payable, "before_minor": balance, "after_minor": balance - amount,
                      "before": str(Money(balance, currency)), "after": str(Money(balance - amount, currency))}],
        "refundable": {"before_minor": before, "after_minor": before - amount,
                       "before": str(Money(before, currency)), "after": str(Money(before - amount, currency))},
        "available": {"before_minor": balance - committed, "after_minor": balance - committed - amount,
                      "before": str(Money(balance - committed, currency)),
                      "after": str(Money(balance - committed - amount, currency))},
        "posts": "REFUND_RESERVED when approved; REFUND_SUCCEEDED when the provider confirms the refund; a refund "
                 "the provider declines, or one canceled before it is sent, reverses REFUND_RESERVED",
        "reversible": False,
        "reversal": "money returned to a payer is not called back; a refund not yet sent can be canceled",
    }  # fmt: skip


def _execute(request, actor: Actor, now: dt.datetime) -> dict:
    payload = request.payload
    refund = refund_create(
        intent=_intent(payload["intent"]), amount_minor=payload["amount_minor"], reason_code=request.reason_code,
        reason_text=request.reason_text, idempotency_key=f"{request.public_id}:refund", actor=actor, now=now,
        approval_ref=request.public_id, case_ref=request.case_ref,
    )  # fmt: skip
    return {"refund": refund.public_id}


def describe_refunds(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked refund."""
    return {
        r.public_id: {"label": r.public_id, "status": r.status,
                      "detail": f"{Money(r.amount_minor, r.currency)} of {r.payment_intent.public_id}"}
        for r in Refund.objects.filter(public_id__in=ids).select_related("payment_intent")
    }  # fmt: skip


CREATE_REFUND_CORRECTION = ActionSpec(
    action_type="CREATE_REFUND_CORRECTION", title="a refund correction",
    propose_permission="payments.propose_refund_correction", decide_permission="payments.decide_refund_correction",
    validate=_validate, target=_target, preview=_preview, execute=_execute, reason_codes=CORRECTION_REASONS,
    linkable_types={"refund": ("Refund", describe_refunds)},
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["finance_manager"], "case_required": True, "evidence_required": False,
        "allowed_reason_codes": list(CORRECTION_REASONS),
        # A maker may propose up to 10,000,000.00 IDR / 500,000.00 PHP / 10,000.00 USD (finance ops
        # five times that); a finance manager approves up to 500,000,000.00 IDR / 25,000,000.00 PHP /
        # 500,000.00 USD. Larger refunds need a policy change first.
        "maker_limits_minor": {
            "payment_ops": {"IDR": 1_000_000_000, "PHP": 50_000_000, "USD": 1_000_000},
            "finance_ops": {"IDR": 5_000_000_000, "PHP": 250_000_000, "USD": 5_000_000},
        },
        "checker_limits_minor": {"finance_manager": {"IDR": 50_000_000_000, "PHP": 2_500_000_000, "USD": 50_000_000}},
        "risk_level": "HIGH",
    },
)  # fmt: skip

ACTIONS: list = [CREATE_REFUND_CORRECTION]
