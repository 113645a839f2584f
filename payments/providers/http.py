"""The provider adapter over HTTP with JSON bodies, using only the standard library.

The wire protocol (the simulated provider speaks it too, so the same code path serves both):

| call | request | answer |
|---|---|---|
| create payment | `POST /v1/payments` | payment object |
| create refund | `POST /v1/refunds` | refund object |
| create payout | `POST /v1/payouts` | payout object |
| status by provider reference | `GET /v1/<collection>/<reference>` | the object, or 404 |
| status by our reference | `GET /v1/<collection>?merchant_reference=<id>` | `{"object": "list", "data": [...]}` |

(`<collection>` is `payments`, `refunds` or `payouts`.)

Every POST carries `Idempotency-Key`; every call carries `Authorization: Bearer <api key>`.
An object is `{"id", "object", "status", "merchant_reference", "merchant_id", "amount_minor",
"currency", "decline_code", "error_code", "message", ...}`; a refusal of the request itself is
`{"error": {"code", "message"}}` with a 4xx status.

Connect and read timeouts are separate because they mean different things: a slow connect is a
provider that is hard to reach, a slow read is a provider that may be working on our money.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings

from payments.providers.base import (
    ProviderAdapter,
    ProviderObjectKind,
    ProviderPaymentRequest,
    ProviderPaymentResult,
    ProviderPayoutRequest,
    ProviderPayoutResult,
    ProviderProtocolError,
    ProviderRefundRequest,
    ProviderRefundResult,
    ProviderRequestRejected,
    ProviderStatus,
    ProviderStatusResult,
    ProviderTimeout,
    ProviderUnavailable,
)

logger = logging.getLogger(__name__)

# A provider answer is a small JSON document; anything far larger is a fault, not evidence worth holding in memory.
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "payment-backoffice/1"

# The provider's words for a state, per object kind, reduced to what our state machines act on.
# An unknown word is a protocol error rather than a guess: guessing "succeeded" would move money.
STATUS_MAP: dict[str, ProviderStatus] = {
    "succeeded": ProviderStatus.SUCCEEDED,
    "paid": ProviderStatus.SUCCEEDED,
    "declined": ProviderStatus.DECLINED,
    "pending": ProviderStatus.PENDING,
    "processing": ProviderStatus.PENDING,
    "failed": ProviderStatus.FAILED,
    "canceled": ProviderStatus.FAILED,
    # A returned payout left and came back; the raw word stays on the result for the payout flow.
    "returned": ProviderStatus.FAILED,
}

_COLLECTIONS = {
    ProviderObjectKind.PAYMENT: "payments",
    ProviderObjectKind.REFUND: "refunds",
    ProviderObjectKind.PAYOUT: "payouts",
}

# Statuses that mean "not processed, come back later" rather than "refused".
_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class _Exchange:
    http_status: int
    body: bytes
    elapsed_ms: int


class HttpProviderAdapter(ProviderAdapter):
    """A provider reached over HTTP(S). Holds no connection between calls, so it is safe to share."""

    def __init__(
        self,
        *,
        base_url: str,
        provider_code: str,
        api_key: str,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http or https URL with a host")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive; a call without a timeout can hang a worker forever")
        self.base_url = base_url
        self.provider_code = provider_code
        self._api_key = api_key
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path_prefix = parts.path.rstrip("/")
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        # The api key stays out of reprs, tracebacks and logs.
        return f"HttpProviderAdapter(provider_code={self.provider_code!r}, base_url={self.base_url!r})"

    # --- the interface ------------------------------------------------------------------------

    def create_payment(self, req: ProviderPaymentRequest) -> ProviderPaymentResult:
        payload = {
            "merchant_reference": req.attempt_id,
            "merchant_id": req.merchant_id,
            "amount_minor": req.amount_minor,
            "currency": req.currency,
            "method_type": req.method_type,
            "card_token": req.card_token,
            "card_fingerprint": req.card_fingerprint,
            "description": req.description,
        }
        exchange = self._call(method="POST", path="/v1/payments", payload=payload, idempotency_key=req.idempotency_key)
        obj = self._object_from(exchange=exchange)
        return ProviderPaymentResult(**_result_fields(obj=obj, exchange=exchange))

    def query_status(
        self,
        *,
        provider_reference: str | None = None,
        merchant_reference: str | None = None,
        kind: ProviderObjectKind = ProviderObjectKind.PAYMENT,
    ) -> ProviderStatusResult:
        collection = _COLLECTIONS[ProviderObjectKind(kind)]
        if provider_reference:
            exchange = self._call(method="GET", path=f"/v1/{collection}/{quote(provider_reference, safe='')}")
            if exchange.http_status == 404:
                return _not_found(kind=kind, exchange=exchange, merchant_reference=merchant_reference)
            obj = self._object_from(exchange=exchange)
        elif merchant_reference:
            query = urlencode({"merchant_reference": merchant_reference})
            exchange = self._call(method="GET", path=f"/v1/{collection}?{query}")
            obj = self._single_from_list(exchange=exchange)
            if obj is None:
                return _not_found(kind=kind, exchange=exchange, merchant_reference=merchant_reference)
        else:
            raise ValueError("query_status needs a provider_reference or a merchant_reference")
        return ProviderStatusResult(kind=ProviderObjectKind(kind), **_result_fields(obj=obj, exchange=exchange))

    def refund(self, req: ProviderRefundRequest) -> ProviderRefundResult:
        payload = {
            "merchant_reference": req.refund_id,
            "payment_reference": req.payment_provider_reference,
            "merchant_id": req.merchant_id,
            "amount_minor": req.amount_minor,
            "currency": req.currency,
            "reason": req.reason,
        }
        exchange = self._call(method="POST", path="/v1/refunds", payload=payload, idempotency_key=req.idempotency_key)
        obj = self._object_from(exchange=exchange)
        return ProviderRefundResult(
            payment_provider_reference=_optional_str(obj, "payment_reference", exchange=exchange),
            **_result_fields(obj=obj, exchange=exchange),
        )

    def payout(self, req: ProviderPayoutRequest) -> ProviderPayoutResult:
        payload = {
            "merchant_reference": req.payout_id,
            "merchant_id": req.merchant_id,
            "amount_minor": req.amount_minor,
            "currency": req.currency,
            "beneficiary_token": req.beneficiary_token,
            "description": req.description,
        }
        exchange = self._call(method="POST", path="/v1/payouts", payload=payload, idempotency_key=req.idempotency_key)
        obj = self._object_from(exchange=exchange)
        return ProviderPayoutResult(**_result_fields(obj=obj, exchange=exchange))

    # --- transport ----------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.connect_timeout, context=context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)

    def _call(
        self, *, method: str, path: str, payload: dict[str, Any] | None = None, idempotency_key: str | None = None
    ) -> _Exchange:
        """One request/response on a fresh connection; socket failures become typed provider errors.

        Where a failure happens decides its meaning: before the connection is up nothing was sent
        (refused -> unavailable), after the request went out the provider may have acted on it
        (timeout or lost connection -> unknown outcome).
        """
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": USER_AGENT,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        context = {"provider_code": self.provider_code}
        started = time.monotonic()

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        conn = self._connection()
        try:
            try:
                conn.connect()
            except TimeoutError as exc:
                raise ProviderTimeout(
                    f"{self.provider_code}: connect timed out after {self.connect_timeout} s",
                    phase="connect",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
            except OSError as exc:
                # Refused, unreachable, DNS or TLS handshake failure: the request never left.
                raise ProviderUnavailable(
                    f"{self.provider_code}: cannot connect ({exc.__class__.__name__})",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout)
            try:
                conn.request(method, self._path_prefix + path, body=body, headers=headers)
                response = conn.getresponse()
                raw = response.read(MAX_RESPONSE_BYTES + 1)
            except TimeoutError as exc:
                raise ProviderTimeout(
                    f"{self.provider_code}: no answer within the {self.read_timeout} s read timeout",
                    phase="read",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
            except (ConnectionError, http.client.IncompleteRead) as exc:
                raise ProviderTimeout(
                    f"{self.provider_code}: connection lost before a complete answer ({exc.__class__.__name__})",
                    phase="connection_lost",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
            except http.client.HTTPException as exc:
                raise ProviderProtocolError(
                    f"{self.provider_code}: not an HTTP response ({exc.__class__.__name__})",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
            except OSError as exc:
                raise ProviderTimeout(
                    f"{self.provider_code}: connection failed mid-exchange ({exc.__class__.__name__})",
                    phase="connection_lost",
                    elapsed_ms=elapsed_ms(),
                    **context,
                ) from exc
        finally:
            conn.close()

        exchange = _Exchange(http_status=response.status, body=raw, elapsed_ms=elapsed_ms())
        logger.info(
            "provider call %s %s %s -> %s in %d ms",
            self.provider_code,
            method,
            path.split("?", 1)[0],
            exchange.http_status,
            exchange.elapsed_ms,
        )
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ProviderProtocolError(
                f"{self.provider_code}: answer larger than {MAX_RESPONSE_BYTES} bytes",
                http_status=exchange.http_status,
                raw_body=raw[:MAX_RESPONSE_BYTES],
                elapsed_ms=exchange.elapsed_ms,
                **context,
            )
        if exchange.http_status >= 500 or exchange.http_status in _RETRYABLE_4XX:
            raise ProviderUnavailable(
                f"{self.provider_code}: answered HTTP {exchange.http_status}",
                http_status=exchange.http_status,
                raw_body=raw,
                elapsed_ms=exchange.elapsed_ms,
                **context,
            )
        return exchange

    # --- interpretation -----------------------------------------------------------------------

    def _error_kwargs(self, exchange: _Exchange) -> dict[str, Any]:
        return {
            "provider_code": self.provider_code,
            "http_status": exchange.http_status,
            "raw_body": exchange.body,
            "elapsed_ms": exchange.elapsed_ms,
        }

    def _parse(self, *, exchange: _Exchange) -> dict[str, Any]:
        try:
            document = json.loads(exchange.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProviderProtocolError(
                f"{self.provider_code}: answer is not JSON (HTTP {exchange.http_status})",
                **self._error_kwargs(exchange),
            ) from exc
        if not isinstance(document, dict):
            raise ProviderProtocolError(
                f"{self.provider_code}: answer is not a JSON object", **self._error_kwargs(exchange)
            )
        if not 200 <= exchange.http_status < 300 and "status" not in document:
            error = document.get("error")
            if 400 <= exchange.http_status < 500 and isinstance(error, dict):
                reason = error.get("message") or error.get("code") or "no reason"
                raise ProviderRequestRejected(
                    f"{self.provider_code}: request rejected: {reason}",
                    error_code=str(error.get("code") or ""),
                    **self._error_kwargs(exchange),
                )
            raise ProviderProtocolError(
                f"{self.provider_code}: unexpected HTTP {exchange.http_status}", **self._error_kwargs(exchange)
            )
        return document

    def _object_from(self, *, exchange: _Exchange) -> dict[str, Any]:
        """The object in an answer; a 4xx that still describes the object (e.g. a 402 decline) counts."""
        document = self._parse(exchange=exchange)
        if not isinstance(document.get("id"), str) or not isinstance(document.get("status"), str):
            raise ProviderProtocolError(
                f"{self.provider_code}: answer has no object id and status", **self._error_kwargs(exchange)
            )
        return document

    def _single_from_list(self, *, exchange: _Exchange) -> dict[str, Any] | None:
        document = self._parse(exchange=exchange)
        data = document.get("data")
        if document.get("object") != "list" or not isinstance(data, list):
            raise ProviderProtocolError(f"{self.provider_code}: expected a list", **self._error_kwargs(exchange))
        if not data:
            return None
        if len(data) > 1:
            # Our reference names one object; several means the provider and we disagree about identity.
            raise ProviderProtocolError(
                f"{self.provider_code}: {len(data)} objects carry one merchant reference",
                **self._error_kwargs(exchange),
            )
        obj = data[0]
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("status"), str):
            raise ProviderProtocolError(f"{self.provider_code}: malformed list entry", **self._error_kwargs(exchange))
        return obj


def _optional_str(obj: dict[str, Any], key: str, *, exchange: _Exchange) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ProviderProtocolError(
        f"field {key!r} is not a string", http_status=exchange.http_status, raw_body=exchange.body
    )


def _result_fields(*, obj: dict[str, Any], exchange: _Exchange) -> dict[str, Any]:
    """The fields every result shares, type-checked: a provider's claim about money must be exact."""
    raw_status = obj["status"]
    status = STATUS_MAP.get(raw_status)
    if status is None:
        raise ProviderProtocolError(
            f"unknown provider status {raw_status!r}", http_status=exchange.http_status, raw_body=exchange.body
        )
    amount = obj.get("amount_minor")
    if amount is not None and type(amount) is not int:
        # A float or string amount is refused, never rounded.
        raise ProviderProtocolError(
            "amount_minor is not an integer", http_status=exchange.http_status, raw_body=exchange.body
        )
    return {
        "status": status,
        "provider_status": raw_status,
        "provider_reference": obj["id"],
        "merchant_reference": _optional_str(obj, "merchant_reference", exchange=exchange),
        "amount_minor": amount,
        "currency": _optional_str(obj, "currency", exchange=exchange),
        "merchant_id": _optional_str(obj, "merchant_id", exchange=exchange),
        "decline_code": _optional_str(obj, "decline_code", exchange=exchange) or "",
        "error_code": _optional_str(obj, "error_code", exchange=exchange) or "",
        "message": _optional_str(obj, "message", exchange=exchange) or "",
        "http_status": exchange.http_status,
        "elapsed_ms": exchange.elapsed_ms,
        "raw_body": exchange.body,
    }


def _not_found(
    *, kind: ProviderObjectKind, exchange: _Exchange, merchant_reference: str | None
) -> ProviderStatusResult:
    return ProviderStatusResult(
        kind=ProviderObjectKind(kind),
        status=ProviderStatus.NOT_FOUND,
        provider_reference=None,
        merchant_reference=merchant_reference,
        amount_minor=None,
        currency=None,
        merchant_id=None,
        http_status=exchange.http_status,
        elapsed_ms=exchange.elapsed_ms,
        raw_body=exchange.body,
    )


def provider_adapter_from_settings(*, provider_code: str | None = None) -> HttpProviderAdapter:
    """The configured provider, read from settings at call time so tests can override them.

    Defaults point at the simulated provider on loopback, which is what development runs against.
    """
    code = provider_code or getattr(settings, "PAYMENTS_PROVIDER_CODE", "sim")
    return HttpProviderAdapter(
        base_url=getattr(settings, "PAYMENTS_PROVIDER_BASE_URL", "http://127.0.0.1:8765"),
        provider_code=code,
        api_key=getattr(settings, "PAYMENTS_PROVIDER_API_KEY", ""),
        connect_timeout=float(getattr(settings, "PAYMENTS_PROVIDER_CONNECT_TIMEOUT", 3.0)),
        read_timeout=float(getattr(settings, "PAYMENTS_PROVIDER_READ_TIMEOUT", 10.0)),
    )
