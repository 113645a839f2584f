"""A simulated payment provider on loopback, for development, demos and tests.

It speaks the same HTTP protocol as `HttpProviderAdapter` (see `payments.providers.http`), keeps
payments, refunds and payouts in memory, honours `Idempotency-Key` (the same key and payload
returns the first answer byte for byte and never creates a second object; the same key with a
different payload is refused with 409) and signs the webhooks it sends with `signing.sign`.

Scenarios are chosen by the last two digits of `amount_minor` (minor units, whatever the
currency), the same for payments, refunds and payouts. Round amounts and anything ending in
00-50 succeed, so ordinary test data behaves normally.

| amount ends in | scenario | answer to the create call | later |
|---|---|---|---|
| 00-50, other | success | `succeeded` (payouts: `paid`) | |
| 51 | decline | `declined`, decline_code `insufficient_funds` | |
| 52 | decline | `declined`, decline_code `do_not_honor` | |
| 61 | failure | `failed`, error_code `processing_error` | |
| 91 | timeout | none in time: held for `timeout_delay` s (1) | queries find it succeeded; webhook sent |
| 92 | late success | `pending` | after `settle_delay`: succeeded + webhook |
| 93 | late failure | `pending` | after `settle_delay`: failed + webhook |
| 94 | amount mismatch | `succeeded` with the requested amount | queries and webhooks report another amount (2) |
| 95 | unavailable | HTTP 503, nothing recorded | |
| 96 | payout returned | payouts `paid` (others: success) | after `settle_delay`: payout `returned` + webhook |

(1) The object is recorded as succeeded before the answer is held, so the client's read timeout
fires while the provider has in fact taken the money: the "late success" an inquiry must find.
(2) `amount_minor + amount_mismatch_delta_minor` (default -1).

Webhooks are JSON objects: `{"id": "sev_...", "type", "occurred_at", "object", "provider_reference",
"merchant_reference", "merchant_id", "amount_minor", "currency", "status", "decline_code",
"error_code"}` (refunds add `payment_reference`), signed in the `Provider-Signature` header. Types:
`payment.succeeded`, `payment.failed`, `refund.succeeded`, `refund.failed`, `payout.paid`,
`payout.failed`, `payout.returned`. With `auto_webhooks="late"` (the default) the simulator sends
only the events whose outcome the create answer did not carry (settled, returned, and the timeout
scenario); "all" sends one for every final outcome; "off" sends none. Tests trigger any event with
`SimulatorHandle.send_webhook`, or build a signed one without sending it with `build_webhook`.

Delays are parameters (`timeout_delay`, `settle_delay`, `webhook_timeout`) so a test sets them to
fractions of a second; the defaults suit a person clicking through the demo.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import http.client
import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from backoffice.masking import find_card_numbers
from payments.providers.signing import SIGNATURE_HEADER, sign

logger = logging.getLogger(__name__)

PROVIDER_CODE = "sim"
# A development secret: the simulator is never a production provider, and webhook receivers in
# development need some secret to verify against.
DEFAULT_WEBHOOK_SECRET = b"whsec_simulator_development_only"
MAX_REQUEST_BYTES = 256 * 1024
HISTORY_LIMIT = 10_000


class Scenario(enum.StrEnum):
    SUCCESS = "success"
    DECLINE_INSUFFICIENT_FUNDS = "decline_insufficient_funds"
    DECLINE_DO_NOT_HONOR = "decline_do_not_honor"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    LATE_SUCCESS = "late_success"
    LATE_FAILURE = "late_failure"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNAVAILABLE = "unavailable"
    PAYOUT_RETURNED = "payout_returned"


SCENARIO_BY_SUFFIX: dict[int, Scenario] = {
    51: Scenario.DECLINE_INSUFFICIENT_FUNDS,
    52: Scenario.DECLINE_DO_NOT_HONOR,
    61: Scenario.FAILURE,
    91: Scenario.TIMEOUT,
    92: Scenario.LATE_SUCCESS,
    93: Scenario.LATE_FAILURE,
    94: Scenario.AMOUNT_MISMATCH,
    95: Scenario.UNAVAILABLE,
    96: Scenario.PAYOUT_RETURNED,
}


def scenario_for(*, amount_minor: int) -> Scenario:
    return SCENARIO_BY_SUFFIX.get(amount_minor % 100, Scenario.SUCCESS)


class AutoWebhooks(enum.StrEnum):
    LATE = "late"
    ALL = "all"
    OFF = "off"


_COLLECTION_KIND = {"payments": "payment", "refunds": "refund", "payouts": "payout"}
_PREFIX = {"payment": "sim_pay", "refund": "sim_re", "payout": "sim_po"}
_REQUIRED = {
    "payment": ("merchant_reference", "merchant_id", "amount_minor", "currency", "method_type"),
    "refund": ("merchant_reference", "payment_reference", "merchant_id", "amount_minor", "currency"),
    "payout": ("merchant_reference", "merchant_id", "amount_minor", "currency", "beneficiary_token"),
}
_SUCCESS_WORD = {"payment": "succeeded", "refund": "succeeded", "payout": "paid"}
_EVENT_FOR = {
    ("payment", "succeeded"): "payment.succeeded",
    ("payment", "declined"): "payment.failed",
    ("payment", "failed"): "payment.failed",
    ("refund", "succeeded"): "refund.succeeded",
    ("refund", "declined"): "refund.failed",
    ("refund", "failed"): "refund.failed",
    ("payout", "paid"): "payout.paid",
    ("payout", "declined"): "payout.failed",
    ("payout", "failed"): "payout.failed",
    ("payout", "returned"): "payout.returned",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class SimulatedObject:
    """One payment, refund or payout as the simulated provider holds it."""

    kind: str
    provider_reference: str
    merchant_reference: str
    merchant_id: str
    amount_minor: int
    # What queries and webhooks claim was moved; differs from amount_minor only in the mismatch scenario.
    reported_amount_minor: int
    currency: str
    status: str
    scenario: Scenario
    idempotency_key: str
    decline_code: str = ""
    error_code: str = ""
    message: str = ""
    payment_reference: str | None = None
    method_type: str | None = None
    card_fingerprint: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime

    def as_json(self, *, reported: bool) -> dict[str, Any]:
        document: dict[str, Any] = {
            "id": self.provider_reference,
            "object": self.kind,
            "status": self.status,
            "merchant_reference": self.merchant_reference,
            "merchant_id": self.merchant_id,
            "amount_minor": self.reported_amount_minor if reported else self.amount_minor,
            "currency": self.currency,
            "decline_code": self.decline_code or None,
            "error_code": self.error_code or None,
            "message": self.message or None,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }
        if self.kind == "refund":
            document["payment_reference"] = self.payment_reference
        if self.kind == "payment":
            document["method_type"] = self.method_type
            document["card_fingerprint"] = self.card_fingerprint
        return document


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceivedRequest:
    """One request as the simulated provider received it (the Authorization header is not kept)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    idempotency_key: str | None
    received_at: dt.datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookDelivery:
    """One webhook: what was signed and sent, and what the receiver answered."""

    event_id: str
    event_type: str
    url: str | None
    body: bytes
    headers: dict[str, str]
    http_status: int | None = None
    error: str = ""
    sent_at: dt.datetime | None = None

    @property
    def delivered(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Outcome:
    """An answer to a create call; `obj` is None when nothing was created."""

    http_status: int
    body: bytes
    obj: SimulatedObject | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class _IdempotencyRecord:
    fingerprint: str
    http_status: int
    body: bytes


@dataclass(kw_only=True)
class SimulatorConfig:
    """What a test may change while the simulator runs (through `SimulatorHandle.configure`)."""

    webhook_url: str | None = None
    webhook_secret: bytes = DEFAULT_WEBHOOK_SECRET
    api_key: str | None = None
    timeout_delay: float = 15.0
    settle_delay: float = 5.0
    webhook_timeout: float = 5.0
    auto_webhooks: AutoWebhooks = AutoWebhooks.LATE
    amount_mismatch_delta_minor: int = -1
    # Refunds of payments the simulator never saw (demo data) are accepted unless this is set.
    strict_refunds: bool = False


class _Simulator:
    """The provider's state and behaviour; the HTTP handler only translates to and from it."""

    def __init__(self, *, config: SimulatorConfig):
        self.config = config
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.objects: dict[str, SimulatedObject] = {}
        self.by_merchant_reference: dict[tuple[str, str], str] = {}
        self.idempotency: dict[tuple[str, str], _IdempotencyRecord] = {}
        # Bounded so a simulator left running for days under `make run` does not grow without limit.
        self.received: deque[ReceivedRequest] = deque(maxlen=HISTORY_LIMIT)
        self.webhooks: deque[WebhookDelivery] = deque(maxlen=HISTORY_LIMIT)
        self.timers: dict[str, threading.Timer] = {}
        self.forced_failures: list[int] = []
        # Bumped by a reset: a delivery still in flight across it belongs to the history it started
        # in, and is not recorded into the fresh one.
        self.generation = 0

    # --- creation -----------------------------------------------------------------------------

    def create(self, *, kind: str, payload: dict[str, Any], idempotency_key: str) -> _Outcome:
        problem = _validate(kind=kind, payload=payload)
        if problem:
            return _refusal(400, *problem)
        scenario = scenario_for(amount_minor=payload["amount_minor"])
        if scenario is Scenario.UNAVAILABLE:
            return _refusal(503, "service_unavailable", "The provider is temporarily unavailable.")
        fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        now = _now()
        with self.lock:
            record = self.idempotency.get((kind, idempotency_key))
            if record is not None:
                if record.fingerprint != fingerprint:
                    return _refusal(
                        409, "idempotency_key_reused", "This Idempotency-Key was used with another request."
                    )
                obj = self.objects.get(json.loads(record.body).get("id"))
                return _Outcome(http_status=record.http_status, body=record.body, obj=obj, replayed=True)
            if (kind, payload["merchant_reference"]) in self.by_merchant_reference:
                return _refusal(409, "duplicate_merchant_reference", f"A {kind} with this merchant_reference exists.")
            if kind == "refund":
                problem = self._refund_problem(payload=payload)
                if problem:
                    return _refusal(*problem)
            obj = self._new_object(kind=kind, payload=payload, scenario=scenario, key=idempotency_key, now=now)
            self.objects[obj.provider_reference] = obj
            self.by_merchant_reference[(kind, obj.merchant_reference)] = obj.provider_reference
            body = _json(obj.as_json(reported=False))
            self.idempotency[(kind, idempotency_key)] = _IdempotencyRecord(fingerprint, 200, body)
        return _Outcome(http_status=200, body=body, obj=obj)

    def _refund_problem(self, *, payload: dict[str, Any]) -> tuple[int, str, str] | None:
        payment = self.objects.get(payload["payment_reference"])
        if payment is None or payment.kind != "payment":
            if self.config.strict_refunds:
                return 404, "payment_not_found", "No such payment."
            return None
        if payment.status != "succeeded":
            return 400, "payment_not_captured", "Only a succeeded payment can be refunded."
        if payment.currency != payload["currency"]:
            return 400, "currency_mismatch", "A refund is in the payment's currency."
        refunded = sum(
            o.amount_minor
            for o in self.objects.values()
            if o.kind == "refund"
            and o.payment_reference == payment.provider_reference
            and o.status not in ("failed", "declined")
        )
        if refunded + payload["amount_minor"] > payment.amount_minor:
            return 400, "amount_exceeds_payment", "Refunds would exceed the payment amount."
        return None

    def _new_object(
        self, *, kind: str, payload: dict[str, Any], scenario: Scenario, key: str, now: dt.datetime
    ) -> SimulatedObject:
        status, decline_code, error_code, message = _SUCCESS_WORD[kind], "", "", ""
        if scenario is Scenario.DECLINE_INSUFFICIENT_FUNDS:
            status, decline_code, message = "declined", "insufficient_funds", "Insufficient funds."
        elif scenario is Scenario.DECLINE_DO_NOT_HONOR:
            status, decline_code, message = "declined", "do_not_honor", "Do not honor."
        elif scenario is Scenario.FAILURE:
            status, error_code, message = "failed", "processing_error", "The provider could not process this."
        elif scenario in (Scenario.LATE_SUCCESS, Scenario.LATE_FAILURE):
            status = "pending"
        amount = payload["amount_minor"]
        reported = amount + self.config.amount_mismatch_delta_minor if scenario is Scenario.AMOUNT_MISMATCH else amount
        return SimulatedObject(
            kind=kind,
            provider_reference=f"{_PREFIX[kind]}_{secrets.token_hex(12)}",
            merchant_reference=payload["merchant_reference"],
            merchant_id=payload["merchant_id"],
            amount_minor=amount,
            reported_amount_minor=reported,
            currency=payload["currency"],
            status=status,
            scenario=scenario,
            idempotency_key=key,
            decline_code=decline_code,
            error_code=error_code,
            message=message,
            payment_reference=payload.get("payment_reference"),
            method_type=payload.get("method_type"),
            card_fingerprint=payload.get("card_fingerprint"),
            created_at=now,
            updated_at=now,
        )

    def after_create(self, *, obj: SimulatedObject) -> None:
        """Start what happens later: settlement timers and webhooks for outcomes already final."""
        scenario = obj.scenario
        if scenario in (Scenario.LATE_SUCCESS, Scenario.LATE_FAILURE) or (
            scenario is Scenario.PAYOUT_RETURNED and obj.kind == "payout"
        ):
            self._schedule(reference=obj.provider_reference)
        elif scenario is Scenario.TIMEOUT:
            # The client never sees this answer, so the webhook is how the success becomes known.
            if self.config.auto_webhooks is not AutoWebhooks.OFF:
                self._send_later(reference=obj.provider_reference, delay=self.config.timeout_delay)
        elif obj.status != "pending" and self.config.auto_webhooks is AutoWebhooks.ALL:
            self._send_later(reference=obj.provider_reference, delay=0)

    def _schedule(self, *, reference: str) -> None:
        timer = threading.Timer(self.config.settle_delay, self.settle, kwargs={"reference": reference})
        timer.daemon = True
        with self.lock:
            self.timers[reference] = timer
        timer.start()

    def _send_later(self, *, reference: str, delay: float) -> None:
        def run() -> None:
            if delay and self.stopping.wait(delay):
                return
            self.auto_webhook(reference=reference)

        threading.Thread(target=run, name=f"sim-webhook-{reference}", daemon=True).start()

    # --- later events -------------------------------------------------------------------------

    def settle(self, *, reference: str) -> SimulatedObject:
        """Move a pending object to its scenario's final state now (or return a paid payout)."""
        with self.lock:
            timer = self.timers.pop(reference, None)
            if timer is not None:
                timer.cancel()
            obj = self.objects[reference]
            if obj.status == "pending":
                if obj.scenario is Scenario.LATE_FAILURE:
                    new = {"status": "failed", "error_code": "processing_error", "message": "Failed after processing."}
                else:
                    new = {"status": _SUCCESS_WORD[obj.kind]}
            elif obj.kind == "payout" and obj.scenario is Scenario.PAYOUT_RETURNED and obj.status == "paid":
                new = {"status": "returned", "error_code": "account_closed", "message": "Beneficiary account closed."}
            else:
                return obj
            obj = dataclasses.replace(obj, updated_at=_now(), **new)
            self.objects[reference] = obj
        if self.config.auto_webhooks is not AutoWebhooks.OFF and not self.stopping.is_set():
            self.auto_webhook(reference=reference)
        return obj

    def auto_webhook(self, *, reference: str) -> WebhookDelivery | None:
        with self.lock:
            obj = self.objects[reference]
        event_type = _EVENT_FOR.get((obj.kind, obj.status))
        if event_type is None or not self.config.webhook_url:
            return None
        return self.deliver(event=self.event(event_type=event_type, obj=obj))

    def event(
        self,
        *,
        event_type: str,
        obj: SimulatedObject,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        document = {
            "id": event_id or f"sev_{secrets.token_hex(12)}",
            "type": event_type,
            "occurred_at": _iso(occurred_at or obj.updated_at),
            "object": obj.kind,
            "provider_reference": obj.provider_reference,
            "merchant_reference": obj.merchant_reference,
            "merchant_id": obj.merchant_id,
            "amount_minor": obj.reported_amount_minor,
            "currency": obj.currency,
            "status": obj.status,
            "decline_code": obj.decline_code or None,
            "error_code": obj.error_code or None,
        }
        if obj.kind == "refund":
            document["payment_reference"] = obj.payment_reference
        return document

    def signed(
        self, *, event: dict[str, Any], secret: bytes | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = _json(event)
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "provider-simulator/1",
            SIGNATURE_HEADER: sign(secret=secret or self.config.webhook_secret, timestamp=stamp, body=body),
        }
        return body, headers

    def deliver(
        self,
        *,
        event: dict[str, Any],
        secret: bytes | None = None,
        timestamp: int | None = None,
        url: str | None = None,
    ) -> WebhookDelivery:
        with self.lock:
            generation = self.generation
        body, headers = self.signed(event=event, secret=secret, timestamp=timestamp)
        target = url or self.config.webhook_url
        delivery = WebhookDelivery(
            event_id=event["id"], event_type=event["type"], url=target, body=body, headers=headers
        )
        if not target:
            delivery = dataclasses.replace(delivery, error="no webhook_url configured")
        else:
            delivery = _post(delivery=delivery, timeout=self.config.webhook_timeout)
        with self.lock:
            if generation == self.generation:
                self.webhooks.append(delivery)
        return delivery

    # --- reads --------------------------------------------------------------------------------

    def find(self, *, reference: str) -> SimulatedObject | None:
        """By provider reference, or by our reference whatever the kind."""
        with self.lock:
            if reference in self.objects:
                return self.objects[reference]
            for kind in ("payment", "refund", "payout"):
                ref = self.by_merchant_reference.get((kind, reference))
                if ref is not None:
                    return self.objects[ref]
        return None

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            timers, self.timers = list(self.timers.values()), {}
        for timer in timers:
            timer.cancel()


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, _json({"error": {"code": code, "message": message}})


def _refusal(status: int, code: str, message: str) -> _Outcome:
    return _Outcome(http_status=status, body=_error(status, code, message)[1])


def _validate(*, kind: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    """(error code, message) for a payload the provider would refuse, else None."""
    for name in _REQUIRED[kind]:
        if payload.get(name) in (None, ""):
            return "parameter_missing", f"{name} is required."
        if name != "amount_minor" and not isinstance(payload[name], str):
            return "invalid_parameter", f"{name} must be a string."
    amount = payload["amount_minor"]
    if type(amount) is not int or amount <= 0:
        return "invalid_amount", "amount_minor must be a positive integer of minor units."
    currency = payload["currency"]
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isascii() or not currency.isupper():
        return "invalid_currency", "currency must be an ISO 4217 code."
    for name, value in payload.items():
        if value is not None and not isinstance(value, str | int):
            return "invalid_parameter", f"{name} has the wrong type."
        if isinstance(value, str) and find_card_numbers(value):
            # Like a real provider's tokenised API: card numbers are refused, never echoed back.
            return "card_number_not_accepted", f"{name} looks like a card number; send a token."
    return None


def _post(*, delivery: WebhookDelivery, timeout: float) -> WebhookDelivery:
    parts = urlsplit(delivery.url or "")
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=delivery.body, headers=delivery.headers)
        response = conn.getresponse()
        response.read()
        result = dataclasses.replace(delivery, http_status=response.status, sent_at=_now())
    except (OSError, http.client.HTTPException) as exc:
        result = dataclasses.replace(delivery, error=f"{exc.__class__.__name__}: {exc}", sent_at=_now())
    finally:
        conn.close()
    logger.info(
        "simulator webhook %s %s -> %s", delivery.event_type, delivery.event_id, result.http_status or result.error
    )
    return result


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "provider-simulator/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("simulator %s " + format, self.address_string(), *args)

    @property
    def sim(self) -> _Simulator:
        return self.server.simulator

    def _record(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            idempotency_key=self.headers.get("Idempotency-Key"),
            received_at=_now(),
        )
        with self.sim.lock:
            self.sim.received.append(received)

    def _send(self, status: int, body: bytes, *, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its read timeout fired); the provider's work stands regardless.
            pass

    def _gate(self, body: bytes) -> bool:
        """Record the request, then apply authentication and forced failures; True to continue."""
        self._record(body)
        api_key = self.sim.config.api_key
        if api_key is not None and self.headers.get("Authorization") != f"Bearer {api_key}":
            self._send(*_error(401, "unauthorized", "Invalid API key."))
            return False
        with self.sim.lock:
            forced = self.sim.forced_failures.pop(0) if self.sim.forced_failures else None
        if forced is not None:
            self._send(*_error(forced, "forced_failure", f"Simulated HTTP {forced}."))
            return False
        return True

    def do_GET(self) -> None:
        if not self._gate(b""):
            return
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        if segments == ["v1", "health"]:
            self._send(200, _json({"status": "ok"}))
            return
        if len(segments) not in (2, 3) or segments[0] != "v1" or segments[1] not in _COLLECTION_KIND:
            self._send(*_error(404, "not_found", "No such endpoint."))
            return
        kind = _COLLECTION_KIND[segments[1]]
        if len(segments) == 3:
            with self.sim.lock:
                obj = self.sim.objects.get(segments[2])
            if obj is None or obj.kind != kind:
                self._send(*_error(404, "not_found", f"No such {kind}."))
                return
            self._send(200, _json(obj.as_json(reported=True)))
            return
        reference = parse_qs(parts.query).get("merchant_reference", [""])[0]
        with self.sim.lock:
            ref = self.sim.by_merchant_reference.get((kind, reference))
            found = [self.sim.objects[ref].as_json(reported=True)] if ref else []
        self._send(200, _json({"object": "list", "data": found}))

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BYTES:
            self._record(b"")
            self._send(*_error(400, "invalid_request", "Bad Content-Length."))
            return
        body = self.rfile.read(length)
        if not self._gate(body):
            return
        segments = [s for s in urlsplit(self.path).path.split("/") if s]
        if len(segments) != 2 or segments[0] != "v1" or segments[1] not in _COLLECTION_KIND:
            self._send(*_error(404, "not_found", "No such endpoint."))
            return
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._send(*_error(400, "idempotency_key_required", "Send an Idempotency-Key header."))
            return
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send(*_error(400, "invalid_json", "The body must be a JSON object."))
            return
        outcome = self.sim.create(kind=_COLLECTION_KIND[segments[1]], payload=payload, idempotency_key=key)
        obj = outcome.obj
        if obj is not None and not outcome.replayed:
            self.sim.after_create(obj=obj)
            if obj.scenario is Scenario.TIMEOUT and self.sim.stopping.wait(self.sim.config.timeout_delay):
                return
        self._send(
            outcome.http_status, outcome.body, extra={"Idempotent-Replayed": "true"} if outcome.replayed else None
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: _Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up is part of the timeout scenario, not a fault worth a traceback.
        logger.debug("simulator connection from %s ended abruptly", client_address, exc_info=True)


class SimulatorHandle:
    """A running simulated provider: its address, its state, and the levers tests pull."""

    def __init__(self, *, server: _Server, simulator: _Simulator, thread: threading.Thread):
        self._server = server
        self._sim = simulator
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self.provider_code = PROVIDER_CODE

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def config(self) -> SimulatorConfig:
        return self._sim.config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Change delays, webhook target, secret or api key while running (SimulatorConfig field names)."""
        with self._sim.lock:
            for name, value in changes.items():
                if name not in SimulatorConfig.__dataclass_fields__:
                    raise TypeError(f"unknown simulator setting {name!r}")
                if name == "auto_webhooks":
                    value = AutoWebhooks(value)
                setattr(self._sim.config, name, value)
        return self._sim.config

    def stop(self) -> None:
        self._sim.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- inspecting state ---------------------------------------------------------------------

    def received(self) -> list[ReceivedRequest]:
        with self._sim.lock:
            return list(self._sim.received)

    def objects(self, *, kind: str | None = None) -> list[SimulatedObject]:
        with self._sim.lock:
            return [o for o in self._sim.objects.values() if kind is None or o.kind == kind]

    def payments(self) -> list[SimulatedObject]:
        return self.objects(kind="payment")

    def refunds(self) -> list[SimulatedObject]:
        return self.objects(kind="refund")

    def payouts(self) -> list[SimulatedObject]:
        return self.objects(kind="payout")

    def get(self, reference: str) -> SimulatedObject | None:
        """An object by provider reference or by our reference (`pa_`, `rf_`, `po_`)."""
        return self._sim.find(reference=reference)

    def webhooks_sent(self) -> list[WebhookDelivery]:
        with self._sim.lock:
            return list(self._sim.webhooks)

    # --- changing state -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every object, request, delivery and forced failure; the configuration stays."""
        self._sim.stop()
        with self._sim.lock:
            self._sim.stopping.clear()
            self._sim.objects.clear()
            self._sim.by_merchant_reference.clear()
            self._sim.idempotency.clear()
            self._sim.received.clear()
            self._sim.webhooks.clear()
            self._sim.forced_failures.clear()
            self._sim.generation += 1

    def fail_next(self, count: int = 1, *, http_status: int = 503) -> None:
        """Answer the next `count` requests with `http_status` without processing them."""
        with self._sim.lock:
            self._sim.forced_failures.extend([http_status] * count)

    def settle(self, reference: str) -> SimulatedObject:
        """Complete a pending object (or return a paid payout in that scenario) now, not after settle_delay."""
        obj = self._require(reference)
        return self._sim.settle(reference=obj.provider_reference)

    def set_status(
        self, reference: str, status: str, *, decline_code: str = "", error_code: str = ""
    ) -> SimulatedObject:
        """Overwrite an object's provider status (e.g. "returned"), as an operator at the provider might."""
        obj = self._require(reference)
        with self._sim.lock:
            obj = dataclasses.replace(
                obj, status=status, decline_code=decline_code, error_code=error_code, updated_at=_now()
            )
            self._sim.objects[obj.provider_reference] = obj
        return obj

    def _require(self, reference: str) -> SimulatedObject:
        obj = self._sim.find(reference=reference)
        if obj is None:
            raise KeyError(f"the simulator holds no object {reference!r}")
        return obj

    # --- webhooks -----------------------------------------------------------------------------

    def build_webhook(
        self,
        event_type: str,
        reference: str,
        *,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
        overrides: dict[str, Any] | None = None,
        secret: bytes | None = None,
        timestamp: int | None = None,
    ) -> tuple[dict[str, Any], bytes, dict[str, str]]:
        """(event, body, headers) for an event about a held object, signed but not sent.

        `overrides` changes event fields (a wrong amount, a different currency) after the object's
        values are filled in; `secret` and `timestamp` sign with something other than the
        configured secret and the current time, to exercise a receiver's refusals.
        """
        event = self._sim.event(
            event_type=event_type, obj=self._require(reference), event_id=event_id, occurred_at=occurred_at
        )
        event.update(overrides or {})
        body, headers = self._sim.signed(event=event, secret=secret, timestamp=timestamp)
        return event, body, headers

    def send_webhook(
        self,
        event_type: str,
        reference: str,
        *,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
        overrides: dict[str, Any] | None = None,
        secret: bytes | None = None,
        timestamp: int | None = None,
        url: str | None = None,
    ) -> WebhookDelivery:
        """Build, sign and POST an event now; returns the delivery with the receiver's HTTP status.

        Sending does not change the object: a webhook that disagrees with the provider's state is
        a scenario worth testing. Reuse `event_id` to send a duplicate delivery.
        """
        event, _, _ = self.build_webhook(
            event_type, reference, event_id=event_id, occurred_at=occurred_at, overrides=overrides
        )
        return self._sim.deliver(event=event, secret=secret, timestamp=timestamp, url=url)


def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    webhook_url: str | None = None,
    webhook_secret: bytes = DEFAULT_WEBHOOK_SECRET,
    api_key: str | None = None,
    timeout_delay: float = 15.0,
    settle_delay: float = 5.0,
    webhook_timeout: float = 5.0,
    auto_webhooks: str = AutoWebhooks.LATE,
) -> SimulatorHandle:
    """Serve a simulated provider from a daemon thread; port 0 picks a free port.

    The default `timeout_delay` outlasts the default provider read timeout, so the timeout
    scenario behaves as a timeout in development too; tests pass much smaller delays.
    """
    config = SimulatorConfig(
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        api_key=api_key,
        timeout_delay=timeout_delay,
        settle_delay=settle_delay,
        webhook_timeout=webhook_timeout,
        auto_webhooks=AutoWebhooks(auto_webhooks),
    )
    simulator = _Simulator(config=config)
    server = _Server((host, port), _Handler)
    server.simulator = simulator
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.name = f"provider-simulator-{server.server_address[1]}"
    thread.start()
    return SimulatorHandle(server=server, simulator=simulator, thread=thread)
