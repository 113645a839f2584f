"""Payment provider adapters, webhook signatures and the simulated provider.

Services depend on `ProviderAdapter` and the request/result types; which provider answers is
configuration (`provider_adapter_from_settings`). The simulator lives in
`payments.providers.simulator` and is imported from there only by tests and the
`provider_simulator` command, so production code never starts it by accident.
"""

from payments.providers.base import (
    ProviderAdapter,
    ProviderError,
    ProviderObjectKind,
    ProviderPaymentRequest,
    ProviderPaymentResult,
    ProviderPayoutRequest,
    ProviderPayoutResult,
    ProviderProtocolError,
    ProviderRefundRequest,
    ProviderRefundResult,
    ProviderRequestRejected,
    ProviderResult,
    ProviderStatus,
    ProviderStatusResult,
    ProviderTimeout,
    ProviderUnavailable,
)
from payments.providers.http import HttpProviderAdapter, provider_adapter_from_settings
from payments.providers.signing import (
    SIGNATURE_HEADER,
    SignatureVerdict,
    sign,
    verify,
    webhook_secrets_for,
    webhook_tolerance_seconds,
)

__all__ = [
    "SIGNATURE_HEADER",
    "HttpProviderAdapter",
    "ProviderAdapter",
    "ProviderError",
    "ProviderObjectKind",
    "ProviderPaymentRequest",
    "ProviderPaymentResult",
    "ProviderPayoutRequest",
    "ProviderPayoutResult",
    "ProviderProtocolError",
    "ProviderRefundRequest",
    "ProviderRefundResult",
    "ProviderRequestRejected",
    "ProviderResult",
    "ProviderStatus",
    "ProviderStatusResult",
    "ProviderTimeout",
    "ProviderUnavailable",
    "SignatureVerdict",
    "provider_adapter_from_settings",
    "sign",
    "verify",
    "webhook_secrets_for",
    "webhook_tolerance_seconds",
]
