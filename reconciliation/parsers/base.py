"""Shared types of the statement parsers: what a parsed statement looks like, the one error every
bad input raises, and the few conversions (amounts, dates, text) every format needs.

Parsers are pure: bytes in, plain values out. No database, no settings, no clock. Amounts are
always integer minor units of an ISO 4217 currency, never floats.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from backoffice.money import CURRENCY_EXPONENTS, CurrencyError, currency_exponent


class StatementParseError(Exception):
    """A statement file could not be read. `location` says where ("line 7", "row 3, column 'gross'",
    "Stmt[1]/Ntry[4]/Amt"), `expected` what was expected and what was found instead."""

    def __init__(self, expected: str, *, location: str = "") -> None:
        self.location = location
        self.expected = expected
        self.message = f"{location}: {expected}" if location else expected
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class ParsedLine:
    """One booking of a statement or one record of a provider report.

    Not frozen, and nothing changes a line once its parser made it (the item it becomes is fixed by a
    trigger): a frozen dataclass sets each of its 16 fields through object.__setattr__, 2 us a line
    here, a sixth of parsing a CSV row; this one takes 0.4 us.

    `line_no` is where a person finds the record: the file line of the :61: tag in MT940, the row of a
    CSV file as a spreadsheet numbers it (the header is row 1), the position of the transaction among
    all transactions of a camt file (a batch entry yields several). It is unique within a statement.

    `amount_minor` is signed from the account holder's side: money in is positive, money out negative.
    `gross_minor`/`fee_minor`/`net_minor` are filled by provider reports only (fee positive = charged,
    net = gross - fee), all in `currency`.
    """

    line_no: int
    booking_date: dt.date
    value_date: dt.date | None
    amount_minor: int
    currency: str
    kind: str
    reference: str = ""
    references: dict[str, str] = field(default_factory=dict, hash=False)
    counterparty: str = ""
    description: str = ""
    gross_minor: int | None = None
    fee_minor: int | None = None
    net_minor: int | None = None
    reversal: bool = False
    batch_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # bool is an int subclass and a float slips in easily from a careless caller: refuse both.
        # (The common case, an int amount and no gross, fee or net, is decided in one comparison.)
        if (
            type(self.amount_minor) is int
            and self.gross_minor is None
            and self.fee_minor is None
            and (self.net_minor is None)
        ):
            return
        for name in ("amount_minor", "gross_minor", "fee_minor", "net_minor"):
            value = getattr(self, name)
            if value is not None and type(value) is not int:
                raise TypeError(f"{name} must be an int of minor units, got {type(value).__name__}")


@dataclass(frozen=True)
class BalanceCheck:
    """opening + sum(lines) compared with closing. A mismatch is a finding to record, not an error."""

    opening_minor: int
    lines_total_minor: int
    closing_minor: int

    @property
    def expected_closing_minor(self) -> int:
        return self.opening_minor + self.lines_total_minor

    @property
    def difference_minor(self) -> int:
        """closing as stated minus closing as computed: 0 when the statement adds up."""
        return self.closing_minor - self.expected_closing_minor

    @property
    def ok(self) -> bool:
        return self.difference_minor == 0


@dataclass(frozen=True)
class ParsedStatement:
    """A whole file. `currency` is empty for multi-currency reports; balances are None where the format
    has none. `notes` carries findings the importer should record on the file (skipped pending entries,
    statements that do not chain), never errors."""

    format: str
    parser: str
    parser_version: int | str
    account: str
    currency: str
    statement_id: str
    period_start: dt.date | None
    period_end: dt.date | None
    opening_balance_minor: int | None
    closing_balance_minor: int | None
    lines: tuple[ParsedLine, ...]
    notes: tuple[str, ...] = ()

    def balance_check(self) -> BalanceCheck | None:
        if self.opening_balance_minor is None or self.closing_balance_minor is None:
            return None
        return BalanceCheck(
            opening_minor=self.opening_balance_minor,
            lines_total_minor=sum(line.amount_minor for line in self.lines),
            closing_minor=self.closing_balance_minor,
        )


class Parser(Protocol):
    name: str
    version: int | str
    format: str

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement: ...


def refuse_mapping(*, parser: str, mapping: dict | None) -> None:
    """Only generic_csv takes a mapping; one passed elsewhere means the caller picked the wrong parser."""
    if mapping is not None:
        raise StatementParseError(f"the {parser} parser reads a fixed layout and takes no mapping", location="mapping")


# --- amounts ------------------------------------------------------------------------------------

# Bank and provider amounts are at most 15 digits (MT940's 15d); 18 leaves room and stays far below
# what a 64-bit database column holds.
_MAX_DIGITS = 18
_TOO_LARGE = 10**_MAX_DIGITS  # the least amount with more digits
# An amount: an optional sign, digits, then optionally the separator and (possibly no) more digits.
_AMOUNT = {
    separator: re.compile(rf"(?P<sign>[+-]?)(?P<whole>[0-9]+)(?:{re.escape(separator)}(?P<fraction>[0-9]*))?")
    for separator in (".", ",")
}


def check_currency(currency: str, *, where: str) -> str:
    try:
        currency_exponent(currency)
    except CurrencyError:
        raise StatementParseError(f"expected an ISO 4217 currency code, found {currency!r}", location=where) from None
    return currency


def to_minor(text: str, currency: str, *, decimal_separator: str = ".", where: str) -> int:
    """Exact conversion of a major-unit amount ("1.50", MT940's "400,00" or "0,") to minor units.

    Never rounds: a non-zero digit beyond the currency's exponent ("1.234" EUR) is refused. Trailing
    zeros beyond it ("1.230") are exact and accepted. A leading sign is allowed; grouping is not.
    """
    pattern = _AMOUNT.get(decimal_separator) if type(decimal_separator) is str else None
    if pattern is None:
        raise StatementParseError(
            f"expected '.' or ',' as decimal separator, found {decimal_separator!r}", location=where
        )
    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        exponent = currency_exponent(check_currency(currency, where=where))
    cleaned = (text or "").strip()
    match = pattern.fullmatch(cleaned)
    if match is None:
        shown = f"{text!r}" if cleaned else "nothing"
        raise StatementParseError(
            f"expected an amount (digits with an optional {decimal_separator!r} decimal separator), found {shown}",
            location=where,
        )
    # In integers, digit by digit: no Decimal, no float, nothing to round.
    sign, whole, fraction = match["sign"], match["whole"], match["fraction"] or ""
    if fraction[exponent:].strip("0"):
        raise StatementParseError(
            f"{currency} has {exponent} decimal place{'s' if exponent != 1 else ''}; {text.strip()!r} has more "
            "(amounts are never rounded)",
            location=where,
        )
    minor = int(whole + fraction[:exponent].ljust(exponent, "0"))
    if minor >= _TOO_LARGE:
        raise StatementParseError(f"amount {text.strip()!r} is too large for a statement amount", location=where)
    return -minor if sign == "-" else minor


# --- dates --------------------------------------------------------------------------------------


def iso_date(text: str, *, where: str) -> dt.date:
    """The calendar date of an ISO 8601 date or date-time ("2014-01-05", "2016-02-18 16:10:51",
    "2022-01-26T23:40:40+01:00") as written, without converting between time zones: the statement's
    own date is the one the bank or provider booked on."""
    cleaned = (text or "").strip()
    try:
        if len(cleaned) == 10:
            return dt.date.fromisoformat(cleaned)
        return dt.datetime.fromisoformat(cleaned.replace("Z", "+00:00")).date()
    except ValueError:
        shown = repr(text) if cleaned else "nothing"
        raise StatementParseError(
            f"expected a date like 2014-01-05 or 2014-01-05 16:10:51, found {shown}", location=where
        ) from None


# --- text ---------------------------------------------------------------------------------------

_BOMS = {
    b"\xff\xfe": "UTF-16 (little-endian)",
    b"\xfe\xff": "UTF-16 (big-endian)",
}


def decode_text(data: bytes, *, encodings: tuple[str, ...] = ("utf-8",), what: str = "file") -> str:
    """Bytes to text: a UTF-8 byte order mark is dropped, the encodings are tried in order.

    Latin-1 decodes any byte sequence, so when it is allowed as a fallback the result is checked for
    control characters: binary data (a PDF, a ZIP) is refused instead of parsed as garbage text.
    """
    if not isinstance(data, bytes | bytearray):
        raise StatementParseError(f"expected the {what} as bytes, got {type(data).__name__}")
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise StatementParseError(f"the {what} is empty")
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise StatementParseError(
                f"expected UTF-8 text, found a {name} byte order mark; export the {what} as UTF-8", location="byte 0"
            )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first_error: UnicodeDecodeError | None = None
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
            continue
        # Control characters other than tab and line ends do not occur in statements: this is binary data.
        # Latin-1 maps every byte to a character, so there the C1 range (0x80-0x9f) is checked as well.
        latin1 = encoding.replace("-", "").replace("_", "").lower() in ("latin1", "iso88591")
        control = re.search(
            r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]" if latin1 else r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text
        )
        if control:
            offset = len(text[: control.start()].encode(encoding))
            raise StatementParseError(
                f"expected text, found control byte 0x{data[offset]:02x}: this is not a text {what}",
                location=_line_of(data, offset),
            )
        return text
    assert first_error is not None
    offset = first_error.start
    raise StatementParseError(
        f"expected {' or '.join(encodings)} text, found byte 0x{data[offset]:02x} at offset {offset} "
        f"that is not valid {first_error.encoding}",
        location=_line_of(data, offset),
    )


def _line_of(data: bytes, offset: int) -> str:
    newlines = data.count(b"\n", 0, offset)
    return f"line {newlines + 1}"


def excerpt(text: str, *, limit: int = 40) -> str:
    """A short quotable piece of the input for error messages."""
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
