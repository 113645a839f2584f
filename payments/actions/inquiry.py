"""REFRESH_PROVIDER_STATE: ask the provider for an attempt's state (low risk, recorded).

The operator's "refresh from provider". It moves no money by itself: it queues an inquiry whose
answer goes through attempt_apply_outcome like any other provider answer (amount, currency,
merchant and reference checked; a capture posted once). So its policy needs no approval (NEVER):
it executes at once, and is still recorded as a request with its reason and idempotency key, so
who asked for what and why stays on the record.

Target: the payment attempt; its version is the attempt's version, so the request records the
state it was made against. Refused early (at submission) for an attempt the provider cannot
answer for, with the same words inquiry_request would use.
"""

from __future__ import annotations

import datetime as dt

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import NotFound, ValidationFailed
from backoffice.money import Money
from cases.registry import LinkedObjectView
from payments.models import InquiryTrigger, PaymentAttempt, ProviderInquiry
from payments.services.inquiry import ACTION_TYPE, inquiry_refusal, inquiry_request

REFRESH_REASONS = ("UNKNOWN_OUTCOME", "MISSING_WEBHOOK", "STUCK_PROCESSING", "CUSTOMER_CLAIM", "MERCHANT_CLAIM")


def _attempt(attempt_id: str) -> PaymentAttempt | None:
    return PaymentAttempt.objects.select_related("payment_intent__merchant").filter(public_id=attempt_id).first()


def _validate(payload: dict, actor: Actor) -> dict:
    attempt_id = str(payload.get("payment_attempt", "")).strip()
    if not attempt_id.startswith("pa_") or len(attempt_id) > 32:
        raise ValidationFailed("give the payment attempt's id (pa_...)")
    attempt = _attempt(attempt_id)
    if attempt is None:
        raise ValidationFailed(f"no payment attempt {attempt_id}")
    refusal = inquiry_refusal(attempt)
    if refusal is not None:
        raise refusal
    return {"payment_attempt": attempt_id}


def _target(payload: dict) -> Target:
    attempt = _attempt(payload["payment_attempt"])
    if attempt is None:
        raise NotFound(f"no payment attempt {payload['payment_attempt']}")
    merchant = attempt.payment_intent.merchant
    return Target(
        target_type="payment_attempt", target_id=attempt.public_id,
        label=f"Payment attempt {attempt.public_id} ({Money(attempt.amount_minor, attempt.currency)}, "
              f"{attempt.status})",
        version=str(attempt.version), merchant_ref=merchant.public_id, subject_name=merchant.name,
    )  # fmt: skip


def _preview(payload: dict, now: dt.datetime) -> dict:
    attempt = _attempt(payload["payment_attempt"])
    return {
        "kind": "diff",
        "summary": f"Ask {attempt.provider_code} for the state of {attempt.public_id} and apply its answer",
        "changes": [{
            "field": "status", "before": attempt.status,
            "after": "as the provider answers, if its amount, currency, merchant and reference match ours",
        }],
        "provider_reference": attempt.provider_reference or "(not known yet: asked by our reference)",
        "reversible": False,
        "reversal": "the inquiry only reads the provider; a capture it confirms is returned by a void or a refund",
    }  # fmt: skip


def _execute(request, actor: Actor, now: dt.datetime) -> dict:
    inquiry = inquiry_request(
        attempt_id=request.payload["payment_attempt"], trigger=InquiryTrigger.OPERATOR,
        reason_code=request.reason_code, reason_text=request.reason_text,
        idempotency_key=f"{request.public_id}:inquiry", actor=actor, now=now, case_ref=request.case_ref,
        approval_ref=request.public_id,
    )  # fmt: skip
    return {"provider_inquiry": inquiry.public_id}


def describe_inquiries(ids: list[str]) -> dict[str, LinkedObjectView]:
    """How a case shows a linked inquiry: its attempt, provider and answer."""
    return {
        i.public_id: LinkedObjectView(
            label=i.public_id,
            status=i.outcome or i.status,
            detail=f"{i.payment_attempt.public_id} at {i.provider_code} ({i.get_trigger_display().lower()})",
        )
        for i in ProviderInquiry.objects.select_related("payment_attempt").filter(public_id__in=ids)
    }


REFRESH_PROVIDER_STATE = ActionSpec(
    action_type=ACTION_TYPE, title="a provider state refresh",
    propose_permission="payments.refresh_provider_state", decide_permission="payments.refresh_provider_state",
    validate=_validate, target=_target, preview=_preview, execute=_execute, reason_codes=REFRESH_REASONS,
    linkable_types={"provider_inquiry": ("Provider inquiry", describe_inquiries)},
    default_policy={
        "mode": "NEVER", "approver_roles": [], "case_required": False, "evidence_required": False,
        "allowed_reason_codes": list(REFRESH_REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "LOW",
    },
)  # fmt: skip

ACTIONS: list = [REFRESH_PROVIDER_STATE]
