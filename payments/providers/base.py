"""The provider adapter interface: what the payments app asks of a payment provider.

Services talk to providers only through `ProviderAdapter`, so a simulated provider, a real one and
a test double are interchangeable. Requests and results are frozen dataclasses of plain values:
money is integer minor units plus an ISO 4217 currency, our side is named by public ids
(`pa_`, `rf_`, `po_`, `m_`), and card data is a token and a fingerprint, never a card number.

Results keep the provider's raw response body, HTTP status and elapsed time because callers store
them as evidence: an operator repairing an unknown outcome must see exactly what the provider said.

Errors are split by what the caller may do next, not by what went wrong on the wire:

- `ProviderTimeout`: the request may have reached the provider and no answer came back. The outcome
  is UNKNOWN; resubmitting could charge twice, so the caller records UNKNOWN_OUTCOME and inquires.
- `ProviderUnavailable`: the provider said it did not process the request (5xx, 429) or could not be
  reached at all. Retrying with the same idempotency key is safe.
- `ProviderProtocolError`: an answer arrived but cannot be understood. Treated like an unknown
  outcome by careful callers, and kept as evidence for the integration team.
- `ProviderRequestRejected`: the provider refused the request itself (bad credentials, invalid
  payload, reused idempotency key). Nothing was processed; retrying unchanged will not help.
"""

from __future__ import annotations

import abc
import enum
import re
from dataclasses import dataclass, field

from backoffice.masking import find_card_numbers
from backoffice.money import CurrencyError, currency_exponent

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII: it travels in an HTTP header


class ProviderStatus(enum.StrEnum):
    """The provider's view of one object, reduced to what our state machines can act on."""

    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"
    PENDING = "PENDING"
    FAILED = "FAILED"
    NOT_FOUND = "NOT_FOUND"

    @property
    def is_final(self) -> bool:
        return self in (ProviderStatus.SUCCEEDED, ProviderStatus.DECLINED, ProviderStatus.FAILED)


class ProviderObjectKind(enum.StrEnum):
    """What a status inquiry asks about; payments unless said otherwise."""

    PAYMENT = "payment"
    REFUND = "refund"
    PAYOUT = "payout"


# --- errors -------------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider call that produced no usable result.

    Deliberately not a `DomainError`: a refusal by our own rules and a provider that did not answer
    need different handling, and a caller that forgot to catch this should fail loudly.
    """

    code = "PROVIDER_ERROR"
    default_message = "The provider call failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        provider_code: str = "",
        http_status: int | None = None,
        raw_body: bytes = b"",
        elapsed_ms: int | None = None,
    ):
        self.message = message or self.default_message
        self.provider_code = provider_code
        self.http_status = http_status
        self.raw_body = raw_body
        self.elapsed_ms = elapsed_ms
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ProviderTimeout(ProviderError):
    """No answer once the request could have reached the provider; the outcome is UNKNOWN.

    Raised for connect and read timeouts and for a connection lost mid-exchange. `phase` tells which
    ("connect", "read" or "connection_lost") for the evidence; callers treat them alike and inquire.
    """

    code = "PROVIDER_TIMEOUT"
    default_message = "The provider did not answer in time; the outcome is unknown."

    def __init__(self, message: str | None = None, *, phase: str = "read", **kwargs):
        self.phase = phase
        super().__init__(message, **kwargs)


class ProviderUnavailable(ProviderError):
    """The provider did not process the request; safe to retry with the same idempotency key."""

    code = "PROVIDER_UNAVAILABLE"
    default_message = "The provider is unavailable; the request was not processed."


class ProviderProtocolError(ProviderError):
    """The provider answered with something that is not a response we understand."""

    code = "PROVIDER_PROTOCOL_ERROR"
    default_message = "The provider's response could not be understood."


class ProviderRequestRejected(ProviderError):
    """The provider refused the request itself; `error_code` carries the provider's reason."""

    code = "PROVIDER_REQUEST_REJECTED"
    default_message = "The provider rejected the request."

    def __init__(self, message: str | None = None, *, error_code: str = "", **kwargs):
        self.error_code = error_code
        super().__init__(message, **kwargs)


# --- requests -----------------------------------------------------------------------------------


def _require_public_id(*, name: str, value: str, prefix: str) -> None:
    if not isinstance(value, str) or not value.startswith(f"{prefix}_") or len(value) <= len(prefix) + 1:
        raise ValueError(f"{name} must be a public id starting with {prefix}_")


def _require_money(*, amount_minor: int, currency: str) -> None:
    # bool is an int subclass; True minor units is a bug, not an amount.
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ValueError("amount_minor must be a positive int of minor units")
    try:
        currency_exponent(currency)
    except CurrencyError as exc:
        raise ValueError(str(exc)) from None


def _require_no_card_number(*, name: str, value: str | None) -> None:
    # The provider request is logged and kept as evidence, so a card number must never get this far.
    if value and find_card_numbers(value):
        raise ValueError(f"{name} looks like a card number; send a token or fingerprint instead")


def _require_idempotency_key(value: str) -> None:
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.match(value):
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderPaymentRequest:
    """Collect `amount_minor` for one payment attempt."""

    idempotency_key: str
    attempt_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    method_type: str
    card_token: str | None = None
    card_fingerprint: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _require_idempotency_key(self.idempotency_key)
        _require_public_id(name="attempt_id", value=self.attempt_id, prefix="pa")
        _require_public_id(name="merchant_id", value=self.merchant_id, prefix="m")
        _require_money(amount_minor=self.amount_minor, currency=self.currency)
        if not self.method_type:
            raise ValueError("method_type is required")
        if self.method_type == "card" and not self.card_token:
            raise ValueError("a card payment needs a card_token")
        for name in ("card_token", "card_fingerprint", "description"):
            _require_no_card_number(name=name, value=getattr(self, name))


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderRefundRequest:
    """Return `amount_minor` of a captured payment to the payer."""

    idempotency_key: str
    refund_id: str
    payment_provider_reference: str
    merchant_id: str
    amount_minor: int
    currency: str
    reason: str = ""

    def __post_init__(self) -> None:
        _require_idempotency_key(self.idempotency_key)
        _require_public_id(name="refund_id", value=self.refund_id, prefix="rf")
        _require_public_id(name="merchant_id", value=self.merchant_id, prefix="m")
        _require_money(amount_minor=self.amount_minor, currency=self.currency)
        if not self.payment_provider_reference:
            raise ValueError("payment_provider_reference is required")
        _require_no_card_number(name="reason", value=self.reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderPayoutRequest:
    """Send `amount_minor` to a merchant's beneficiary, named by the provider's token for it."""

    idempotency_key: str
    payout_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    beneficiary_token: str
    description: str = ""

    def __post_init__(self) -> None:
        _require_idempotency_key(self.idempotency_key)
        _require_public_id(name="payout_id", value=self.payout_id, prefix="po")
        _require_public_id(name="merchant_id", value=self.merchant_id, prefix="m")
        _require_money(amount_minor=self.amount_minor, currency=self.currency)
        if not self.beneficiary_token:
            raise ValueError("beneficiary_token is required")
        for name in ("beneficiary_token", "description"):
            _require_no_card_number(name=name, value=getattr(self, name))


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderResult:
    """What the provider answered, mapped to our language, with the raw answer kept as evidence.

    `merchant_reference` is our public id as the provider echoed it; `provider_status` is the
    provider's own word for the state (e.g. "paid", "returned") behind the mapped `status`.
    The amount, currency and merchant are the provider's claims: callers compare them with their
    own records before moving money, because a mismatch is a reconciliation break, not a success.
    """

    status: ProviderStatus
    provider_reference: str | None
    merchant_reference: str | None
    amount_minor: int | None
    currency: str | None
    merchant_id: str | None
    provider_status: str = ""
    decline_code: str = ""
    error_code: str = ""
    message: str = ""
    http_status: int | None = None
    elapsed_ms: int = 0
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def raw_text(self) -> str:
        return self.raw_body.decode("utf-8", errors="replace")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderPaymentResult(ProviderResult):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderRefundResult(ProviderResult):
    payment_provider_reference: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderPayoutResult(ProviderResult):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderStatusResult(ProviderResult):
    kind: ProviderObjectKind = ProviderObjectKind.PAYMENT


# --- the adapter --------------------------------------------------------------------------------


class ProviderAdapter(abc.ABC):
    """One payment provider. Implementations are stateless per call and safe to share between threads.

    Every method either returns a result (the provider answered and we understood it, whatever the
    business outcome) or raises a `ProviderError` subclass. A decline is a result, not an error.
    """

    provider_code: str

    @abc.abstractmethod
    def create_payment(self, req: ProviderPaymentRequest) -> ProviderPaymentResult:
        """Ask the provider to collect a payment; a repeated idempotency key returns the first result."""

    @abc.abstractmethod
    def query_status(
        self,
        *,
        provider_reference: str | None = None,
        merchant_reference: str | None = None,
        kind: ProviderObjectKind = ProviderObjectKind.PAYMENT,
    ) -> ProviderStatusResult:
        """Ask what the provider knows about one object, by its reference or by ours.

        Used to repair unknown outcomes, so "never heard of it" is a NOT_FOUND result, not an error.
        """

    @abc.abstractmethod
    def refund(self, req: ProviderRefundRequest) -> ProviderRefundResult:
        """Ask the provider to refund part or all of a captured payment."""

    @abc.abstractmethod
    def payout(self, req: ProviderPayoutRequest) -> ProviderPayoutResult:
        """Ask the provider to pay a merchant's beneficiary."""
