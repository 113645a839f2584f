"""The payment domain's records. Every status is a django-fsm field moved only by the transitions
declared here and called from payments.services (protected fields: assigning a status raises).

Modules: merchants (merchants, beneficiaries, customers, capability restrictions), payments
(intents, attempts, refunds, payouts), provider (raw and normalized provider events, inquiries),
timeline (the payment event written for every transition).
"""

from .merchants import (
    Capability,
    CapabilityRestriction,
    Customer,
    Merchant,
    MerchantBeneficiary,
    MerchantStatus,
    RestrictionMode,
    RestrictionStatus,
    RiskTier,
)
from .payments import (
    AttemptStatus,
    CaptureMode,
    IntentStatus,
    MethodType,
    PaymentAttempt,
    PaymentIntent,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
)
from .provider import (
    EventProcessing,
    InquiryOutcome,
    InquiryStatus,
    InquiryTrigger,
    NormalizedEventType,
    ProviderEventNormalized,
    ProviderEventRaw,
    ProviderInquiry,
    SignatureVerdict,
)
from .timeline import EventSource, PaymentEvent

__all__ = [
    "AttemptStatus", "Capability", "CapabilityRestriction", "CaptureMode", "Customer", "EventProcessing",
    "EventSource", "InquiryOutcome", "InquiryStatus", "InquiryTrigger", "IntentStatus", "Merchant",
    "MerchantBeneficiary", "MerchantStatus", "MethodType", "NormalizedEventType", "PaymentAttempt", "PaymentEvent",
    "PaymentIntent", "Payout", "PayoutStatus", "ProviderEventNormalized", "ProviderEventRaw", "ProviderInquiry",
    "Refund", "RefundStatus", "RestrictionMode", "RestrictionStatus", "RiskTier", "SignatureVerdict",
]  # fmt: skip
