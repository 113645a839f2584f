"""Masking of secrets, card numbers and personal data (invariant 10).

One module decides what a masked value looks like, used by audit snapshots, logs and the
`masked` template filter, so no screen invents its own rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Keys whose values are never kept, in any form.
SECRET_KEYS = frozenset(
    {
        "password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "cvc", "cvv",
        "cvv2", "pin", "pan", "card_number", "cardnumber", "authorization", "signature_secret",
        "webhook_secret", "session_key", "sessionid", "csrfmiddlewaretoken",
    }
)  # fmt: skip
# Keys whose values are personal data: kept masked.
PERSONAL_KEYS = frozenset({"email", "phone", "phone_number", "msisdn", "account_number", "iban", "tax_id"})

_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Standing alone: no letter or digit glued to either side. A provider's document is masked with
# this one: its hex references and ULIDs hold digit runs that can pass Luhn, and masking inside them
# would corrupt the reference the payment is matched by. Operator input is checked with the wider
# pattern above (a card number glued to letters is still refused there).
_STANDALONE_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def find_card_numbers(text: str, *, standalone: bool = False) -> list[str]:
    """Card-number-like sequences: 13-19 digits (spaces or dashes allowed) passing Luhn; with
    `standalone`, only those with no letter or digit glued to either side."""
    found = []
    for match in (_STANDALONE_DIGIT_RUN if standalone else _DIGIT_RUN).finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            found.append(match.group())
    return found


def mask_card_numbers(text: str, *, standalone: bool = False) -> str:
    def replace(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return f"****{digits[-4:]}"
        return match.group()

    return (_STANDALONE_DIGIT_RUN if standalone else _DIGIT_RUN).sub(replace, text)


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return mask_tail(value)
    return f"{local[:1]}***@{domain}"


def mask_tail(value: str, visible: int = 4) -> str:
    """Keep the last `visible` characters: "+639171234567" -> "*********4567"."""
    text = str(value)
    if len(text) <= visible:
        return "*" * len(text)
    return "*" * (len(text) - visible) + text[-visible:]


def mask_value(value: Any, kind: str = "tail") -> str:
    if value is None or value == "":
        return ""
    text = str(value)
    if kind == "email":
        return mask_email(text)
    if kind == "secret":
        return REDACTED
    if kind == "card":
        digits = re.sub(r"\D", "", text)
        return f"****{digits[-4:]}" if len(digits) >= 4 else REDACTED
    return mask_tail(text)


def mask_snapshot(data: Any) -> Any:
    """Mask a before/after snapshot recursively: secrets dropped, personal data masked, PANs cut."""
    if isinstance(data, Mapping):
        masked = {}
        for key, value in data.items():
            lowered = str(key).lower()
            if lowered in SECRET_KEYS:
                masked[key] = REDACTED
            elif lowered in PERSONAL_KEYS and isinstance(value, str):
                masked[key] = mask_email(value) if "@" in value else mask_tail(value)
            else:
                masked[key] = mask_snapshot(value)
        return masked
    if isinstance(data, list | tuple):
        return [mask_snapshot(item) for item in data]
    if isinstance(data, str):
        return mask_card_numbers(data)
    return data
