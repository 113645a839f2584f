"""References that look like card numbers (invariant 10).

Banks and providers write long numeric references, and about one in ten 16-digit references passes
the Luhn check a card number passes (Adyen PSP references, bank references, camt AcctSvcrRef ...).
Nothing can tell such a reference from a card number, so each is treated as one: it is never stored.

What is stored instead is a pseudonym of the same length: upper-case letters derived from a keyed
hash (HMAC-SHA256 under SECRET_KEY, `audit.context.keyed_hash`) of the digits, followed by the last
four digits, e.g. "5555593193155555" -> "QHTZKWMBPAXR5555". The same digits always give the same
pseudonym, so an external line and an internal movement carrying the same reference still match by
plain equality, without the number being kept anywhere. A pseudonym starts with a letter, so no
standalone digit run is left; its length is the original's, so fixed-width formats (an MT940 :61:
reference holds 16 characters) still parse.

What counts as card-number-like is backoffice.masking's rule (13-19 digits, single spaces or dashes
allowed between them, passing Luhn), the same rule that masks audit snapshots and logs.
"""

from __future__ import annotations

import re
from typing import Any

from audit.context import keyed_hash
from backoffice.masking import luhn_valid

_PURPOSE = "recon.reference"
# backoffice.masking's digit run, on text and on ASCII bytes.
_RUN = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# Anything _RUN can match, found much faster (on ASCII text, where \d is [0-9], faster still).
_CANDIDATE = re.compile(r"\d[\d -]{11,}\d")
_CANDIDATE_ASCII = re.compile(r"[0-9][0-9 -]{11,}[0-9]")
_RUN_BYTES = re.compile(rb"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")
# Anything _RUN_BYTES can match, found three times faster: files without one are left alone at once.
_CANDIDATE_BYTES = re.compile(rb"[0-9][0-9 -]{11,}[0-9]")
# A candidate lies inside a run of at least 13 digits, spaces and dashes. Marking those bytes (1) and
# the others (0) is one C pass, finding 13 marks in a row another; only such runs go to the regex,
# which spent 0.7 s on a 69 MB statement of dates, amounts and short references that holds none.
_RUN_MARKS = bytes(1 if byte in b"0123456789 -" else 0 for byte in range(256))
_LONG_RUN = b"\x01" * 13
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # 24 letters: no I or O, which read as digits


def _digits(text: str) -> str:
    return "".join(str(int(c)) for c in text if c.isdigit())


def pseudonym(text: str) -> str:
    """The pseudonym of one card-number-like run (digits with their separators), same length."""
    digits = _digits(text)
    value = int(keyed_hash(_PURPOSE, digits), 16)
    letters = []
    for _ in range(len(text) - 4):
        value, index = divmod(value, len(_LETTERS))
        letters.append(_LETTERS[index])
    return "".join(letters) + digits[-4:]


def _candidate(text: str) -> bool:
    return bool((_CANDIDATE_ASCII if text.isascii() else _CANDIDATE).search(text))


def _card_like(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _replace(match: re.Match) -> str:
    text = match.group()
    return pseudonym(text) if _card_like(_digits(text)) else text


def pseudonymise_text(text: str) -> str:
    """`text` with every card-number-like run replaced by its pseudonym (unchanged when none)."""
    if not text or not _candidate(text):
        return text
    return _RUN.sub(_replace, text)


def _has_candidate_bytes(data: bytes) -> bool:
    """Whether _CANDIDATE_BYTES matches somewhere in `data` (the same answer, found faster)."""
    marks = data.translate(_RUN_MARKS)
    start = marks.find(_LONG_RUN)
    while start >= 0:
        end = marks.find(b"\x00", start)
        end = len(data) if end < 0 else end
        if _CANDIDATE_BYTES.search(data, start, end):
            return True
        start = marks.find(_LONG_RUN, end)
    return False


def pseudonymise_bytes(data: bytes) -> tuple[bytes, int]:
    """A file's bytes with every card-number-like run of ASCII digits replaced by its pseudonym, and
    how many were replaced. Works on the bytes, whatever the file's text encoding, as long as it
    writes digits as ASCII (UTF-8, Latin-1 and the other single-byte encodings do; the parsers
    refuse UTF-16). The replacement has the same length and is ASCII, so the file's layout and
    encoding are untouched."""
    if not _has_candidate_bytes(data):
        return data, 0
    count = 0

    def replace(match: re.Match) -> bytes:
        nonlocal count
        text = match.group().decode("ascii")
        if not _card_like(_digits(text)):
            return match.group()
        count += 1
        return pseudonym(text).encode("ascii")

    return _RUN_BYTES.sub(replace, data), count


def pseudonymise_value(value: Any) -> Any:
    """pseudonymise_text through the strings of a JSON-like value (keys included)."""
    if isinstance(value, str):
        return pseudonymise_text(value)
    if isinstance(value, dict):
        return {pseudonymise_text(str(k)): pseudonymise_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [pseudonymise_value(v) for v in value]
    return value


def has_card_like(text: str) -> bool:
    """Whether `text` holds a card-number-like run (one scan; cheap when it holds none)."""
    if not _candidate(text):
        return False
    return any(_card_like(_digits(m.group())) for m in _RUN.finditer(text))
