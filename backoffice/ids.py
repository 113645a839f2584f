"""Public identifiers: a type prefix plus a time-ordered, random 26-character body.

`pi_01JD5...` tells a person what the id is; the body sorts by creation time (ULID layout:
48-bit milliseconds, 80 random bits, Crockford base32), so indexes stay append-friendly.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# The prefixes people see; keep in step with the domain language.
PREFIXES = {
    "payment_intent": "pi",
    "payment_attempt": "pa",
    "refund": "rf",
    "payout": "po",
    "ledger_journal": "lj",
    "case": "case",
    "action_request": "act",
    "reconciliation_break": "rb",
    "reconciliation_match": "rm",
    "reconciliation_run": "rr",
    "reconciliation_decision": "rd",
    "statement_file": "sf",
    "provider_event": "evt",
    "audit_event": "ae",
    "merchant": "m",
    "customer": "cus",
    "beneficiary": "ben",
    "provider_inquiry": "inq",
}

_PUBLIC_ID = re.compile(r"^(?P<prefix>[a-z]{1,8})_(?P<body>[0-9A-HJKMNP-TV-Z]{26})$")


def _ulid_body(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_public_id(prefix: str) -> str:
    if prefix not in PREFIXES.values():
        raise ValueError(f"unknown public id prefix {prefix!r}")
    return f"{prefix}_{_ulid_body()}"


def parse_public_id(value: str) -> tuple[str, str] | None:
    """Return (prefix, body) for a well-formed public id, else None."""
    match = _PUBLIC_ID.match(value.strip())
    if not match or match["prefix"] not in PREFIXES.values():
        return None
    return match["prefix"], match["body"]


def new_idempotency_key() -> str:
    """A key minted when a command form renders, so a double submit is one command."""
    return f"idem_{uuid.uuid4().hex}"
