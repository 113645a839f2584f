"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

The header looks like `t=1732150000,v1=<hex>[,v1=<hex>...]`; each v1 is
`hex(hmac_sha256(secret, b"<t>." + body))`. Signing the timestamp with the body lets a receiver
refuse replays outside a window without storing every event; several v1 values let a sender
sign with the old and the new secret while a secret is rotated, and a receiver may hold several
secrets for the same reason.

`verify` never raises on what arrives over the wire: a webhook endpoint must store every delivery
with its verdict (quarantining the bad ones), so a malformed header is a verdict, not a 500.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
from collections.abc import Sequence

from django.conf import settings

SIGNATURE_HEADER = "Provider-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
# Far above any honest header (a timestamp and a few signatures); bounds the work spent on junk.
MAX_HEADER_LENGTH = 4096

_TIMESTAMP = re.compile(r"^\d{1,12}$")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class SignatureVerdict(enum.StrEnum):
    VALID = "VALID"
    MISSING = "MISSING"
    MALFORMED = "MALFORMED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    # Authentic but outside the replay window (too old, or too far in the future).
    EXPIRED = "EXPIRED"


def _secret_list(secret: bytes | str | Sequence[bytes | str] | None) -> list[bytes]:
    if secret is None:
        return []
    items = [secret] if isinstance(secret, bytes | bytearray | str) else list(secret)
    secrets: list[bytes] = []
    for item in items:
        if isinstance(item, str):
            item = item.encode()
        # An empty key would make every signature forgeable by anyone who knows the scheme.
        if isinstance(item, bytes | bytearray) and item:
            secrets.append(bytes(item))
    return secrets


def _digest(*, secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def sign(*, secret: bytes | Sequence[bytes], timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds).

    Given several secrets (rotation), the header carries one v1 per secret.
    """
    secrets = _secret_list(secret)
    if not secrets:
        raise ValueError("a webhook secret must not be empty")
    if type(timestamp) is not int or timestamp < 0:
        raise ValueError("timestamp must be non-negative unix seconds")
    stamp = str(timestamp)
    signatures = ",".join(f"{SIGNATURE_SCHEME}={_digest(secret=s, timestamp=stamp, body=bytes(body))}" for s in secrets)
    return f"t={stamp},{signatures}"


def _parse_header(header: str) -> tuple[str, list[str]] | None:
    """(timestamp, v1 signatures), or None when the header is not in the expected shape."""
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return None
        key, value = key.strip(), value.strip()
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                return None
            timestamp = value
        elif key == SIGNATURE_SCHEME:
            if not _HEX_SHA256.match(value):
                return None
            signatures.append(value.lower())
        # Other schemes are ignored so a provider can add one without breaking receivers.
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(
    *,
    secret: bytes | str | Sequence[bytes | str] | None,
    header: str | bytes | None,
    body: bytes | str,
    now: dt.datetime,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> SignatureVerdict:
    """Judge one delivery's signature; the verdict is stored with the raw event.

    The signature is checked before the timestamp, so EXPIRED always means "genuine but stale or
    early" and never hides a forgery. All candidate signatures are compared against all secrets in
    constant time.
    """
    if isinstance(header, bytes | bytearray):
        try:
            header = bytes(header).decode("ascii")
        except UnicodeDecodeError:
            return SignatureVerdict.MALFORMED
    if header is None or (isinstance(header, str) and not header.strip()):
        return SignatureVerdict.MISSING
    if not isinstance(header, str) or len(header) > MAX_HEADER_LENGTH:
        return SignatureVerdict.MALFORMED
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif body is None:
        body = b""
    elif isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes):
        return SignatureVerdict.MALFORMED

    parsed = _parse_header(header)
    if parsed is None:
        return SignatureVerdict.MALFORMED
    timestamp, candidates = parsed

    matched = False
    for key in _secret_list(secret):
        expected = _digest(secret=key, timestamp=timestamp, body=body)
        for candidate in candidates:
            # No early exit: the time taken must not depend on which candidate matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        return SignatureVerdict.BAD_SIGNATURE

    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    if abs(now.timestamp() - int(timestamp)) > tolerance_seconds:
        return SignatureVerdict.EXPIRED
    return SignatureVerdict.VALID


def webhook_secrets_for(*, provider_code: str) -> tuple[bytes, ...]:
    """The secrets a provider's webhooks may be signed with, newest first.

    `PAYMENTS_WEBHOOK_SECRETS` maps a provider code to a secret, a comma-separated string of
    secrets or a list; no secret means every delivery verifies as BAD_SIGNATURE (fail closed).
    """
    configured = getattr(settings, "PAYMENTS_WEBHOOK_SECRETS", {}).get(provider_code)
    if isinstance(configured, str):
        configured = [part.strip() for part in configured.split(",")]
    return tuple(_secret_list(configured))


def webhook_tolerance_seconds() -> int:
    return int(getattr(settings, "PAYMENTS_WEBHOOK_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS))
