"""Versioned webhook mappers: a provider's event, exactly as stored, in internal language.

A mapper is pure (bytes in, `NormalizedFields` out) and refuses what it cannot read with a
`WebhookMappingError` that says which field is wrong and why, so a quarantined event tells the
operator what to fix. Mappers are kept in a registry by provider and version, and one version per
provider is current. A mapper fix is a new version, never an edit of a registered one: the
normalized rows a version wrote stay explainable by that version, and replaying a quarantined
event after the fix writes a second normalized row under the new version beside the first.

`event_id_of` is what deduplication keys on, so every version of a provider's mapper must read the
provider's event id the same way.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn

from backoffice.errors import DomainError
from backoffice.ids import parse_public_id
from backoffice.money import CurrencyError, currency_exponent
from payments.models import NormalizedEventType

MAX_EVENT_ID_LENGTH = 128  # ProviderEventRaw.provider_event_id
MAX_PROVIDER_REFERENCE_LENGTH = 128  # ProviderEventRaw.provider_reference
MAX_OUR_REFERENCE_LENGTH = 64  # ProviderEventRaw.our_reference


class WebhookMappingError(DomainError):
    """The stored event cannot be read by the current mapper. `code` says how (MAPPING_...);
    `reference` is the best guess at which object it was about, for the case it opens."""

    code = "MAPPING_ERROR"
    default_message = "The provider event could not be mapped."

    def __init__(self, message: str, *, code: str = "MAPPING_ERROR", reference: str = "", merchant_ref: str = ""):
        super().__init__(message, reference=reference)
        self.code = code
        self.reference = reference
        self.merchant_ref = merchant_ref


class UnknownProvider(DomainError):
    code = "UNKNOWN_PROVIDER"
    default_message = "No webhook mapper is registered for this provider."


@dataclass(frozen=True)
class NormalizedFields:
    """The ProviderEventNormalized fields a mapper derives from one raw event."""

    event_type: str
    provider_reference: str
    our_reference: str
    merchant_ref: str
    amount_minor: int | None
    currency: str
    occurred_at: dt.datetime | None
    fee_minor: int | None = None
    reason_code: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class WebhookMapper(abc.ABC):
    provider_code: ClassVar[str]
    version: ClassVar[str]

    # The body's fields naming the provider's object and ours (None: the format names none).
    PROVIDER_REFERENCE_FIELD: ClassVar[str | None] = None
    OUR_REFERENCE_FIELD: ClassVar[str | None] = None

    def event_id_of(self, body: bytes) -> str:
        """The provider's id for the event, or "" when the body does not name one usably (the event
        is then stored without one, not deduplicated, and quarantined when it is mapped)."""
        return _usable_text(_document_of(body).get("id"), MAX_EVENT_ID_LENGTH)

    def references_of(self, body: bytes) -> tuple[str, str]:
        """(the provider's reference, our reference) as the body names them, "" for one it does not
        name usably. Read like the event id, before any mapping, so an event no mapper version can
        read is still found by the objects it is about."""
        document = _document_of(body)
        provider = _usable_text(document.get(self.PROVIDER_REFERENCE_FIELD), MAX_PROVIDER_REFERENCE_LENGTH)
        ours = _usable_text(document.get(self.OUR_REFERENCE_FIELD), MAX_OUR_REFERENCE_LENGTH)
        return provider, ours

    @abc.abstractmethod
    def map(self, body: bytes) -> NormalizedFields:
        """The normalized fields, or WebhookMappingError."""


def _document_of(body: bytes) -> dict:
    """The body as a JSON object, or {} when it is not one."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def _usable_text(value: Any, max_length: int) -> str:
    # Read from bodies nobody has verified yet: anything but a short printable string (a NUL,
    # which PostgreSQL text refuses, included) is no value at all.
    if isinstance(value, str) and 0 < len(value.strip()) <= max_length and value.isprintable():
        return value.strip()
    return ""


# --- the simulated provider ("sim") -------------------------------------------------------------

_E = NormalizedEventType
_OBJECT_PREFIX = {"payment": "pa", "refund": "rf", "payout": "po"}


class SimMapperV1(WebhookMapper):
    """The simulator's events (see payments.providers.simulator): `{"id", "type", "occurred_at",
    "object", "provider_reference", "merchant_reference", "merchant_id", "amount_minor", "currency",
    "status", "decline_code", "error_code"}`, refunds adding `payment_reference`."""

    provider_code = "sim"
    version = "v1"
    PROVIDER_REFERENCE_FIELD = "provider_reference"
    OUR_REFERENCE_FIELD = "merchant_reference"
    # type -> (object, {provider status: normalized type}); the status must agree with the type.
    TYPES: ClassVar[dict[str, tuple[str, dict[str, str]]]] = {
        "payment.succeeded": ("payment", {"succeeded": _E.PAYMENT_SUCCEEDED}),
        "payment.failed": ("payment", {"declined": _E.PAYMENT_DECLINED, "failed": _E.PAYMENT_FAILED}),
        "refund.succeeded": ("refund", {"succeeded": _E.REFUND_SUCCEEDED}),
        "refund.failed": ("refund", {"declined": _E.REFUND_FAILED, "failed": _E.REFUND_FAILED}),
        "payout.paid": ("payout", {"paid": _E.PAYOUT_PAID}),
        "payout.failed": ("payout", {"declined": _E.PAYOUT_FAILED, "failed": _E.PAYOUT_FAILED}),
        "payout.returned": ("payout", {"returned": _E.PAYOUT_RETURNED}),
    }

    def map(self, body: bytes) -> NormalizedFields:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookMappingError(
                f"the body is not JSON ({exc.__class__.__name__})", code="MAPPING_INVALID_JSON"
            ) from None
        if not isinstance(document, dict):
            raise WebhookMappingError("the body is JSON but not an object", code="MAPPING_INVALID_JSON")
        reference = document.get("merchant_reference") if isinstance(document.get("merchant_reference"), str) else ""
        merchant = document.get("merchant_id") if isinstance(document.get("merchant_id"), str) else ""
        reader = _Reader(document, mapper=self, reference=reference[:64], merchant_ref=merchant[:64])

        event_id = reader.text("id", max_length=MAX_EVENT_ID_LENGTH)
        event_type = reader.text("type", max_length=64)
        if event_type not in self.TYPES:
            raise WebhookMappingError(
                f"{self.provider_code} mapper {self.version} does not know the event type {event_type!r}",
                code="MAPPING_UNKNOWN_EVENT_TYPE", reference=reader.reference, merchant_ref=reader.merchant_ref,
            )  # fmt: skip
        kind, by_status = self.TYPES[event_type]
        obj = reader.text("object", max_length=16)
        if obj != kind:
            reader.fail("object", f"is {obj!r} but a {event_type} event is about a {kind}")
        status = reader.text("status", max_length=32)
        if status not in by_status:
            reader.fail("status", f"is {status!r}, which contradicts the type {event_type} ({', '.join(by_status)})")
        our_reference = reader.text("merchant_reference", max_length=64)
        parsed = parse_public_id(our_reference)
        if parsed is None or parsed[0] != _OBJECT_PREFIX[kind]:
            prefix = _OBJECT_PREFIX[kind]
            reader.fail("merchant_reference", f"{our_reference!r} is not one of our {kind} ids ({prefix}_...)")
        data: dict[str, Any] = {"provider_event_id": event_id, "provider_type": event_type,
                                "provider_status": status}  # fmt: skip
        decline_code = reader.optional_text("decline_code", max_length=64)
        error_code = reader.optional_text("error_code", max_length=64)
        if decline_code:
            data["decline_code"] = decline_code
        if error_code:
            data["error_code"] = error_code
        if kind == "refund":
            data["payment_reference"] = reader.text("payment_reference", max_length=128)
        return NormalizedFields(
            event_type=by_status[status],
            provider_reference=reader.text("provider_reference", max_length=128),
            our_reference=our_reference,
            merchant_ref=reader.text("merchant_id", max_length=64),
            amount_minor=reader.amount("amount_minor"),
            currency=reader.currency("currency"),
            occurred_at=reader.moment("occurred_at"),
            reason_code=decline_code or error_code,
            data=data,
        )


def _shown(value: Any) -> str:
    """A value as a message quotes it, bounded: the message is stored and shown to operators."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


class _Reader:
    """Field checks that fail with the field's name and what was wrong with it."""

    def __init__(self, document: dict, *, mapper: WebhookMapper, reference: str, merchant_ref: str):
        self.document = document
        self.mapper = mapper
        self.reference = reference
        self.merchant_ref = merchant_ref

    def fail(self, name: str, problem: str) -> NoReturn:
        raise WebhookMappingError(
            f"{self.mapper.provider_code} mapper {self.mapper.version}: field {name!r} {problem}",
            code="MAPPING_INVALID_FIELD", reference=self.reference, merchant_ref=self.merchant_ref,
        )  # fmt: skip

    def text(self, name: str, *, max_length: int) -> str:
        value = self.document.get(name)
        if value is None:
            self.fail(name, "is missing")
        if not isinstance(value, str) or not value.strip():
            self.fail(name, f"must be a non-empty string, got {type(value).__name__}")
        if len(value) > max_length:
            self.fail(name, f"is longer than {max_length} characters")
        return value.strip()

    def optional_text(self, name: str, *, max_length: int) -> str:
        if self.document.get(name) in (None, ""):
            return ""
        return self.text(name, max_length=max_length)

    def amount(self, name: str) -> int:
        value = self.document.get(name)
        # bool is an int subclass and a float is never an amount of minor units.
        if type(value) is not int or value <= 0:
            self.fail(name, f"must be a positive whole number of minor units, got {_shown(value)}")
        return value

    def currency(self, name: str) -> str:
        value = self.text(name, max_length=3)
        try:
            currency_exponent(value)
        except CurrencyError:
            self.fail(name, f"{value!r} is not a currency we know")
        return value

    def moment(self, name: str) -> dt.datetime:
        value = self.text(name, max_length=40)
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(name, f"{value!r} is not an ISO-8601 date-time")
        if moment.tzinfo is None:
            self.fail(name, f"{value!r} has no UTC offset")
        return moment.astimezone(dt.UTC)


# --- the registry ---------------------------------------------------------------------------------

_MAPPERS: dict[str, dict[str, WebhookMapper]] = {}
# Per provider, the versions made current in order; the last is current. A stack, so a version
# registered for a while (a test, a staged rollout) can be withdrawn and the previous one resumes.
_CURRENT: dict[str, list[str]] = {}


def register_mapper(mapper: WebhookMapper, *, current: bool = True) -> None:
    versions = _MAPPERS.setdefault(mapper.provider_code, {})
    existing = versions.get(mapper.version)
    if existing is not None and type(existing) is not type(mapper):
        # A version names one behaviour for ever: rows it wrote are explained by it.
        raise ValueError(f"{mapper.provider_code} mapper {mapper.version} is already registered")
    versions[mapper.version] = mapper
    if current:
        stack = _CURRENT.setdefault(mapper.provider_code, [])
        if mapper.version in stack:
            stack.remove(mapper.version)
        stack.append(mapper.version)


def unregister_mapper(provider_code: str, version: str) -> None:
    _MAPPERS.get(provider_code, {}).pop(version, None)
    stack = _CURRENT.get(provider_code, [])
    if version in stack:
        stack.remove(version)


@contextmanager
def mapper_registered(mapper: WebhookMapper) -> Iterator[WebhookMapper]:
    """Make `mapper` current for a block (tests; a fix tried against stored events), then put the
    provider's registry back exactly as it was."""
    code = mapper.provider_code
    versions, stack = dict(_MAPPERS.get(code, {})), list(_CURRENT.get(code, []))
    register_mapper(mapper)
    try:
        yield mapper
    finally:
        _MAPPERS[code], _CURRENT[code] = versions, stack


def is_known_provider(provider_code: str) -> bool:
    return bool(_CURRENT.get(provider_code))


def current_mapper(provider_code: str) -> WebhookMapper:
    stack = _CURRENT.get(provider_code)
    if not stack:
        raise UnknownProvider(f"no webhook mapper is registered for provider {provider_code!r}")
    return _MAPPERS[provider_code][stack[-1]]


register_mapper(SimMapperV1())
