"""Bank CSV exports of any layout, read through a column mapping held as data.

A mapping names the columns and how to read them, for example::

    {"date": "Booking Date", "date_format": "%d.%m.%Y", "amount": "Amount", "decimal_separator": ",",
     "currency": "Currency", "reference": "Reference", "description": "Text", "counterparty": "Name",
     "delimiter": ";", "sign": {"column": "D/C", "debit": "D", "credit": "C"}, "skip_rows": 0}

The mapping is validated before the file is read (unknown keys are refused: a typo would silently drop
a column), then every mapped column must exist in the header.
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
from dataclasses import dataclass, replace
from typing import Any

from reconciliation.parsers.base import (
    ParsedLine,
    ParsedStatement,
    StatementParseError,
    check_currency,
    excerpt,
    to_minor,
)
from reconciliation.parsers.csv_table import CsvRow, read_csv

_COLUMN_KEYS = ("date", "value_date", "amount", "currency", "reference", "description", "counterparty")
_KEYS = {
    *_COLUMN_KEYS,
    "date_format",
    "decimal_separator",
    "thousands_separator",
    "currency_value",
    "delimiter",
    "sign",
    "skip_rows",
    "encoding",
}
_WHERE = "mapping"


@dataclass(frozen=True)
class _Sign:
    column: str
    debit: str
    credit: str


@dataclass(frozen=True)
class CsvMapping:
    columns: dict[str, str]  # mapping key -> column name, only the keys given
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."
    thousands_separator: str = ""
    currency_value: str = ""
    delimiter: str = ","
    sign: _Sign | None = None
    skip_rows: int = 0
    encoding: str = "utf-8"


def _text(mapping: dict[str, Any], key: str, *, default: str = "") -> str:
    value = mapping.get(key, default)
    if not isinstance(value, str) or (key in mapping and not value):
        raise StatementParseError(f"expected {key!r} to be a non-empty string, found {value!r}", location=_WHERE)
    return value


def validate_mapping(*, mapping: Any) -> CsvMapping:
    """Check a mapping's shape and values, independent of any file."""
    if mapping is None:
        raise StatementParseError("the generic_csv parser needs a column mapping", location=_WHERE)
    if not isinstance(mapping, dict):
        raise StatementParseError(f"expected the mapping as a dict, found {type(mapping).__name__}", location=_WHERE)
    unknown = sorted(str(k) for k in mapping if k not in _KEYS)
    if unknown:
        raise StatementParseError(
            f"expected only the keys {', '.join(sorted(_KEYS))}; unknown: {', '.join(unknown)}", location=_WHERE
        )
    for key in ("date", "amount"):
        if key not in mapping:
            raise StatementParseError(f"expected the key {key!r} naming the {key} column", location=_WHERE)
    if ("currency" in mapping) == ("currency_value" in mapping):
        raise StatementParseError(
            "expected exactly one of 'currency' (the column holding it) or 'currency_value' (one currency for "
            "the whole file)",
            location=_WHERE,
        )
    columns = {key: _text(mapping, key) for key in _COLUMN_KEYS if key in mapping}
    currency_value = _text(mapping, "currency_value")
    if currency_value:
        try:
            check_currency(currency_value, where=_WHERE)
        except StatementParseError:
            raise StatementParseError(
                f"expected 'currency_value' to be an ISO 4217 currency code, found {currency_value!r}", location=_WHERE
            ) from None
    decimal_separator = _text(mapping, "decimal_separator", default=".")
    if decimal_separator not in (".", ","):
        raise StatementParseError(
            f"expected 'decimal_separator' to be '.' or ',', found {decimal_separator!r}", location=_WHERE
        )
    thousands = mapping.get("thousands_separator", "")
    if thousands not in ("", ".", ",", " ", "'") or thousands == decimal_separator:
        raise StatementParseError(
            f"expected 'thousands_separator' to be one of '.', ',', ' ', \"'\" and unlike the decimal separator, "
            f"found {thousands!r}",
            location=_WHERE,
        )
    delimiter = _text(mapping, "delimiter", default=",")
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise StatementParseError(f"expected 'delimiter' to be one character, found {delimiter!r}", location=_WHERE)
    skip_rows = mapping.get("skip_rows", 0)
    if type(skip_rows) is not int or skip_rows < 0:
        raise StatementParseError(
            f"expected 'skip_rows' to be a whole number >= 0, found {skip_rows!r}", location=_WHERE
        )
    encoding = _text(mapping, "encoding", default="utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise StatementParseError(
            f"expected 'encoding' to name a text encoding, found {encoding!r}", location=_WHERE
        ) from None
    return CsvMapping(
        columns=columns,
        date_format=_text(mapping, "date_format", default="%Y-%m-%d"),
        decimal_separator=decimal_separator,
        thousands_separator=thousands,
        currency_value=currency_value,
        delimiter=delimiter,
        sign=_sign(mapping.get("sign")),
        skip_rows=skip_rows,
        encoding=encoding,
    )


def _sign(value: Any) -> _Sign | None:
    if value is None:
        return None
    expected = "expected 'sign' as {'column': ..., 'debit': ..., 'credit': ...} with non-empty strings"
    if not isinstance(value, dict) or set(value) != {"column", "debit", "credit"}:
        raise StatementParseError(f"{expected}, found {value!r}", location=_WHERE)
    if not all(isinstance(v, str) and v.strip() for v in value.values()) or value["debit"] == value["credit"]:
        raise StatementParseError(
            f"{expected} and different debit and credit markers, found {value!r}", location=_WHERE
        )
    return _Sign(column=value["column"], debit=value["debit"].strip(), credit=value["credit"].strip())


@functools.lru_cache(maxsize=4096)
def _parsed_date(text: str, date_format: str) -> dt.date:
    """strptime, once per distinct text: a statement's lines share a few dates, and strptime was half
    of the parse of a row."""
    return dt.datetime.strptime(text, date_format).date()


def _date(row: CsvRow, column: str, date_format: str) -> dt.date:
    text = row.get(column)
    try:
        return _parsed_date(text, date_format)
    except ValueError:
        shown = excerpt(text) if text else "nothing"
        raise StatementParseError(
            f"expected a date in the format {date_format!r}, found {shown}", location=row.where(column)
        ) from None


_CHECKED_CURRENCIES: set[str] = set()  # codes check_currency accepted: a file repeats one or two


def _line(row: CsvRow, m: CsvMapping) -> ParsedLine:
    # Called once per row of files of a million rows: the columns are read from the row's dict here
    # (stripped, "" when absent), and a location is only formatted for an error.
    columns, values = m.columns, row.values
    currency_column = columns.get("currency")
    if currency_column:
        currency = values.get(currency_column, "").strip().upper()
        if currency not in _CHECKED_CURRENCIES:
            _CHECKED_CURRENCIES.add(check_currency(currency, where=row.where(currency_column)))
    else:
        currency = m.currency_value
    amount_column = columns["amount"]
    amount_text = values.get(amount_column, "").strip()
    if m.thousands_separator:
        amount_text = amount_text.replace(m.thousands_separator, "")
    try:
        amount = to_minor(amount_text, currency, decimal_separator=m.decimal_separator, where="")
    except StatementParseError as exc:
        raise StatementParseError(exc.expected, location=row.where(amount_column)) from None
    if m.sign is not None:
        if amount_text.startswith(("-", "+")):
            raise StatementParseError(
                f"expected an unsigned amount (the sign comes from column {m.sign.column!r}), found {amount_text!r}",
                location=row.where(amount_column),
            )
        marker = values.get(m.sign.column, "").strip()
        if marker == m.sign.debit:
            amount = -amount
        elif marker != m.sign.credit:
            raise StatementParseError(
                f"expected {m.sign.debit!r} (debit) or {m.sign.credit!r} (credit), found {marker!r}",
                location=row.where(m.sign.column),
            )
        kind = "DEBIT" if marker == m.sign.debit else "CREDIT"
    else:
        kind = "DEBIT" if amount < 0 else "CREDIT"
    value_column = columns.get("value_date")
    reference_column, counterparty_column = columns.get("reference"), columns.get("counterparty")
    description_column = columns.get("description")
    reference = values.get(reference_column, "").strip() if reference_column else ""
    return ParsedLine(
        line_no=row.row_no,
        booking_date=_date(row, columns["date"], m.date_format),
        value_date=_date(row, value_column, m.date_format) if value_column and row.get(value_column) else None,
        amount_minor=amount,
        currency=currency,
        kind=kind,
        reference=reference,
        references={"reference": reference} if reference else {},
        counterparty=values.get(counterparty_column, "").strip() if counterparty_column else "",
        description=values.get(description_column, "").strip() if description_column else "",
        raw=values,  # the row's own dict: nothing else keeps or changes it
    )


class GenericCsvParser:
    name = "generic_csv"
    version = 1
    format = "CSV"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        m = validate_mapping(mapping=mapping)
        table = read_csv(data, what="CSV file", delimiter=m.delimiter, skip_rows=m.skip_rows, encoding=m.encoding)
        mapped = {**m.columns, **({"sign": m.sign.column} if m.sign else {})}
        header = {key: table.find(column) for key, column in mapped.items()}
        for key, found in header.items():
            if found is None:
                raise StatementParseError(
                    f"mapping key {key!r} names the column {mapped[key]!r}, which the header does not have; the header "
                    f"has {', '.join(repr(c) for c in table.header if c)}",
                    location=f"row {table.header_row} (header)",
                )
        # From here on, use the header as the file writes it (the mapping may differ in case or spacing).
        resolved = replace(
            m,
            columns={key: header[key] or "" for key in m.columns},
            sign=replace(m.sign, column=header["sign"] or "") if m.sign else None,
        )
        lines = tuple(_line(row, resolved) for row in table.rows)
        currencies = {line.currency for line in lines} or ({m.currency_value} - {""})
        dates = [line.booking_date for line in lines]
        return ParsedStatement(
            format=self.format,
            parser=self.name,
            parser_version=self.version,
            account="",
            currency=currencies.pop() if len(currencies) == 1 else "",
            statement_id="",
            period_start=min(dates) if dates else None,
            period_end=max(dates) if dates else None,
            opening_balance_minor=None,
            closing_balance_minor=None,
            lines=lines,
        )
