"""The payment domain's commands: the only writers of payment rows."""

from payments.services.attempts import (
    OutcomeApplied,
    ProviderReferenceClash,
    attempt_apply_outcome,
    attempt_capture,
    attempt_create,
    attempt_send,
    attempt_void,
    dispute_open,
    dispute_resolve,
    outcome_from_provider_result,
    platform_fee,
)
from payments.services.inquiry import attempts_inquire_stale, inquiry_request, inquiry_run
from payments.services.intents import intent_create
from payments.services.merchants import (
    beneficiary_add,
    beneficiary_replace,
    customer_contact_change,
    customer_create,
    customer_email_digest,
    customer_phone_digest,
    merchant_create,
    merchant_profile_change,
)
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.payouts import (
    payable_available_minor,
    payout_apply_outcome,
    payout_create,
    payout_hold,
    payout_release_hold,
    payout_send,
)
from payments.services.refunds import refund_apply_outcome, refund_cancel, refund_create, refund_send
from payments.services.restrictions import restriction_impose, restriction_lift, restrictions_expire

__all__ = [
    "OutcomeApplied",
    "OutcomeConflict",
    "OutcomeMismatch",
    "OutcomeStatus",
    "ProviderOutcome",
    "ProviderReferenceClash",
    "attempt_apply_outcome",
    "attempt_capture",
    "attempt_create",
    "attempt_send",
    "attempt_void",
    "attempts_inquire_stale",
    "beneficiary_add",
    "beneficiary_replace",
    "customer_contact_change",
    "customer_create",
    "customer_email_digest",
    "customer_phone_digest",
    "dispute_open",
    "dispute_resolve",
    "inquiry_request",
    "inquiry_run",
    "intent_create",
    "merchant_create",
    "merchant_profile_change",
    "outcome_from_provider_result",
    "payable_available_minor",
    "payout_apply_outcome",
    "payout_create",
    "payout_hold",
    "payout_release_hold",
    "payout_send",
    "platform_fee",
    "refund_apply_outcome",
    "refund_cancel",
    "refund_create",
    "refund_send",
    "restriction_impose",
    "restriction_lift",
    "restrictions_expire",
]  # fmt: skip
