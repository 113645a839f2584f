"""SWIFT MT940 customer statements (ING, Rabobank and the many banks that write the same tags).

The `mt-940` library parses the content of each tag (the :61: statement line with its optional entry
date, funds code and references; balances; the :28C: statement number). Splitting the file into
tags is done here, because real files need more care than the library takes:

- a tag's content wraps onto following lines at arbitrary points (ING's example file breaks inside
  references and words), so continuation lines are joined without a separator, and a line holding
  only "-" is content when more content follows it (the library drops such lines as separators);
- the library adds an :86: that follows the closing balance (statement information) to the last
  transaction and keeps one set of balances for a whole file; here each :20: starts its own
  statement with its own balances, and the file's balance is checked across all of them;
- RC (reversal of a credit) is a debit and RD (reversal of a debit) a credit: the sign is taken from
  the mark here, amounts are converted from their text without floats;
- anything before the first :20: must be a known envelope (SWIFT blocks "{1:...}", Rabobank's ":940:"
  header line, ABN AMRO's BIC and "940" lines); anything else means this is not a statement file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mt940 import models as mt940_models
from mt940 import processors as mt940_processors
from mt940.tags import TAG_BY_ID, Tag

from reconciliation.parsers.base import (
    ParsedLine,
    ParsedStatement,
    StatementParseError,
    check_currency,
    decode_text,
    excerpt,
    refuse_mapping,
    to_minor,
)

_TAG_LINE = re.compile(r"^:(?P<tag>[0-9]{2}[A-Z]?|NS):(?P<value>.*)$")
_TAG_LIKE = re.compile(r"^:[0-9]{2,5}[A-Z]?:")
# Lines that wrap a statement rather than belong to it. They count as envelope only when what follows them
# is the next statement's :20: or the end of the file: a lone "-" inside wrapped :86: text is content.
_ENVELOPE = re.compile(r"^(?:\{.*|-\}.*|-|\}|:940:|940|[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)$")
_OPENING = ("60F", "60M", "60")
_CLOSING = ("62F", "62M", "62")

# Structured :86: sub-fields as ING and Rabobank write them: /CODE/value, fields separated by "//".
_DETAIL_CODES = (
    "EREF", "PREF", "MARF", "CSID", "CNTP", "REMI", "RTRN", "PURP", "ORDP", "BENM", "NAME", "ADDR",
    "ISDT", "IREF", "ULTC", "ULTD", "ULTB", "BUSP", "CREF", "EXCH", "OCMT", "CHGS", "SVCL", "SUM",
)  # fmt: skip
_DETAIL = re.compile(r"/(" + "|".join(_DETAIL_CODES) + r")/")
# References that :61: carries when the real one is elsewhere: "NONREF" (none), or the code of the
# :86: sub-field that holds it ("EREF", "PREF" ... in ING files).
_NO_REFERENCE = {"NONREF", *_DETAIL_CODES}
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


@dataclass
class _Field:
    tag: str
    line_no: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "".join(self.lines).strip()

    @property
    def where(self) -> str:
        return f"line {self.line_no}"


@dataclass
class _Transaction:
    statement_line: _Field
    details: list[_Field] = field(default_factory=list)
    non_swift: list[_Field] = field(default_factory=list)


@dataclass
class _Statement:
    reference: _Field
    fields: list[_Field] = field(default_factory=list)


# --- splitting the file into tags --------------------------------------------------------------


def _split(text: str) -> list[_Statement]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kinds = [_kind(line) for line in lines]
    statements: list[_Statement] = []
    current: _Field | None = None
    for index, line in enumerate(lines):
        kind, line_no = kinds[index], index + 1
        if kind == "blank":
            continue
        if kind == "envelope" and _wraps(kinds, index):
            continue
        if kind in ("tag", "tag20"):
            match = _TAG_LINE.match(line.strip())
            assert match is not None
            current = _Field(tag=match["tag"], line_no=line_no, lines=[match["value"]])
            if current.tag == "20":
                statements.append(_Statement(reference=current))
            elif not statements:
                raise StatementParseError(
                    f"expected a :20: transaction reference, found ':{current.tag}:'", location=f"line {line_no}"
                )
            statements[-1].fields.append(current)
            continue
        if kind == "unknown_tag":
            found = _TAG_LIKE.match(line.strip())
            assert found is not None
            if not statements:
                raise StatementParseError(
                    f"expected a :20: transaction reference, found {found.group(0)!r}", location=f"line {line_no}"
                )
            raise StatementParseError(
                f"expected a known MT940 tag, found {found.group(0)!r}", location=f"line {line_no}"
            )
        if current is None:
            raise StatementParseError(
                f"expected a :20: transaction reference (optionally after a '{{1:' block or ':940:' header), "
                f"found {excerpt(line)}",
                location=f"line {line_no}",
            )
        current.lines.append(line.rstrip())
    if not statements:
        raise StatementParseError(
            "expected a :20: transaction reference, found no MT940 tags at all", location="line 1"
        )
    return statements


def _kind(line: str) -> str:
    stripped = line.strip()
    if not stripped:
        return "blank"
    match = _TAG_LINE.match(stripped)
    if match and _library_tag(match["tag"]) is not None:
        return "tag20" if match["tag"] == "20" else "tag"
    if _ENVELOPE.match(stripped):
        return "envelope"
    if _TAG_LIKE.match(stripped):
        return "unknown_tag"
    return "content"


def _wraps(kinds: list[str], index: int) -> bool:
    """An envelope-looking line is envelope when what follows it (past other such lines and blanks) is a
    :20: or the end of the file; otherwise it is part of the wrapped content around it."""
    for kind in kinds[index + 1 :]:
        if kind in ("envelope", "blank"):
            continue
        return kind == "tag20"
    return True


def _library_tag(tag: str) -> Tag | None:
    """The mt-940 tag object for a tag id: exact ("60F") first, then by its number (":28C:" -> 28)."""
    if tag in TAG_BY_ID:
        return TAG_BY_ID[tag]
    number = tag[:2]
    if number.isdigit() and int(number) in TAG_BY_ID:
        return TAG_BY_ID[int(number)]
    return None


def _match(fld: _Field, value: str, *, expected: str) -> dict[str, Any]:
    """Match a tag's content against the library's pattern, refusing leftovers the pattern would ignore."""
    tag = _library_tag(fld.tag)
    assert tag is not None
    found = tag.re.match(value)
    if not found or value[found.end() :].strip():
        raise StatementParseError(
            f"expected {expected} in :{fld.tag}:, found {excerpt(value.replace(chr(10), ' '), limit=60)}",
            location=fld.where,
        )
    return found.groupdict()


def _date(year: str, month: str, day: str, *, where: str, what: str) -> dt.date:
    try:
        value = mt940_models.Date(year=year, month=month, day=day)
    except (ValueError, TypeError, AssertionError):
        raise StatementParseError(
            f"expected a valid {what} (YYMMDD), found {year}{month}{day}", location=where
        ) from None
    return dt.date(value.year, value.month, value.day)


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Balance:
    amount_minor: int
    currency: str
    date: dt.date
    where: str


def _balance(fld: _Field) -> _Balance:
    parts = _match(fld, fld.text, expected="a balance like C140220EUR564,35 (mark, date, currency, amount)")
    currency = check_currency(parts["currency"], where=fld.where)
    amount = to_minor(parts["amount"], currency, decimal_separator=",", where=f"{fld.where} (:{fld.tag}: amount)")
    sign = -1 if parts["status"].upper() == "D" else 1
    date = _date(parts["year"], parts["month"], parts["day"], where=fld.where, what=f":{fld.tag}: date")
    return _Balance(amount_minor=sign * amount, currency=currency, date=date, where=fld.where)


def _statement_line_text(fld: _Field) -> str:
    """The :61: content as the library expects it: the statement line, then the supplementary details.

    The standard allows one continuation line (34 characters of supplementary details). A field wrapped
    onto more lines was wrapped at arbitrary points (ING's example breaks its bank reference in two):
    pieces that extend the bank reference are joined back to it, the rest forms the details."""
    first, rest = fld.lines[0].strip(), [line.strip() for line in fld.lines[1:]]
    if len(rest) > 1:
        while rest and "//" in first and not rest[0].startswith("/") and len(first.split("//", 1)[1] + rest[0]) <= 16:
            first += rest.pop(0)
    supplementary = "".join(rest)
    return f"{first}\n{supplementary}" if supplementary else first


def _details(text: str) -> dict[str, str]:
    """Structured :86: sub-fields (/EREF/.../REMI/...) when the text is laid out that way, else nothing."""
    matches = list(_DETAIL.finditer(text))
    if not matches or matches[0].start() != 0:
        return {}
    found: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        value = text[match.end() : end]
        # Sub-fields are separated by "//": the first slash ends the value, the second opens the next code.
        found.setdefault(match.group(1), value[:-1] if value.endswith("/") else value)
    return found


def _counterparty(details: dict[str, str], references: dict[str, str]) -> str:
    name = details.get("NAME", "").strip()
    for code in ("CNTP", "BENM", "ORDP"):
        # account/BIC/name/city, as ING writes CNTP; Rabobank leaves BENM/ORDP empty and uses NAME.
        parts = details.get(code, "").split("/")
        if len(parts) > 0 and parts[0].strip():
            references.setdefault("counterparty_account", parts[0].strip())
        if len(parts) > 1 and parts[1].strip():
            references.setdefault("counterparty_bic", parts[1].strip())
        if len(parts) > 2 and parts[2].strip():
            name = name or parts[2].strip()
    return name


def _remittance(details: dict[str, str], references: dict[str, str]) -> None:
    remi = details.get("REMI", "")
    if remi.startswith("STRD/CUR/"):
        references["creditor_reference"] = remi.removeprefix("STRD/CUR/").strip("/")
    elif remi.startswith("USTD//"):
        references["remittance_info"] = remi.removeprefix("USTD//")
    elif remi:
        references["remittance_info"] = remi


# --- parsing ------------------------------------------------------------------------------------


@dataclass
class _File:
    account: str = ""
    currency: str = ""
    opening: _Balance | None = None
    closing: _Balance | None = None
    references: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lines: list[ParsedLine] = field(default_factory=list)


def parse_mt940(data: bytes, *, parser: str, version: int) -> ParsedStatement:
    # SWIFT's character set is ASCII; banks that add accents write UTF-8 or Latin-1.
    text = decode_text(data, encodings=("utf-8", "latin-1"), what="MT940 file")
    result = _File()
    for statement in _split(text):
        _statement(statement, result)
    assert result.opening is not None and result.closing is not None
    refs = list(dict.fromkeys(r for r in result.references if r))
    return ParsedStatement(
        format="MT940",
        parser=parser,
        parser_version=version,
        account=result.account,
        currency=result.currency,
        statement_id=refs[0] if len(refs) == 1 else f"{refs[0]}..{refs[-1]}",
        period_start=result.opening.date,
        period_end=result.closing.date,
        opening_balance_minor=result.opening.amount_minor,
        closing_balance_minor=result.closing.amount_minor,
        lines=tuple(result.lines),
        notes=tuple(result.notes),
    )


def _statement(statement: _Statement, result: _File) -> None:
    reference = statement.reference.text
    account = ""
    number = ""
    opening: _Balance | None = None
    closing: _Balance | None = None
    transactions: list[_Transaction] = []
    previous = ""
    for fld in statement.fields:
        tag = fld.tag
        if tag == "25":
            account = fld.text
        elif tag.startswith("28"):
            parts = _match(fld, fld.text, expected="a statement number like 00001 or 00001/001")
            number = parts["statement_number"] + (f"/{parts['sequence_number']}" if parts["sequence_number"] else "")
        elif tag in _OPENING:
            if opening is None:
                opening = _balance(fld)
        elif tag in _CLOSING:
            closing = closing or _balance(fld)
        elif tag == "61":
            if closing is not None:
                raise StatementParseError(
                    f"expected no :61: statement line after the closing balance ({closing.where})", location=fld.where
                )
            transactions.append(_Transaction(statement_line=fld))
        elif tag == "86" and previous in ("61", "86", "NS") and transactions and closing is None:
            transactions[-1].details.append(fld)
        elif tag == "86":
            result.notes.append(f"statement {reference}: information to account owner {fld.text!r}")
        elif tag == "NS" and transactions and closing is None:
            transactions[-1].non_swift.append(fld)
        previous = tag
    where = statement.reference.where
    if not account:
        raise StatementParseError(f"expected a :25: account identification in statement {reference!r}", location=where)
    if opening is None:
        raise StatementParseError(f"expected a :60F: opening balance in statement {reference!r}", location=where)
    if closing is None:
        raise StatementParseError(f"expected a :62F: closing balance in statement {reference!r}", location=where)
    if closing.currency != opening.currency:
        raise StatementParseError(
            f"expected the closing balance in {opening.currency} like the opening balance, found {closing.currency}",
            location=closing.where,
        )
    currency = opening.currency
    # ":25:NL34RABO0142623393 EUR", ":25:NL77INGB0574908765EUR": the account, with the currency appended.
    if account.endswith(currency) and len(account) > len(currency):
        account = account[: -len(currency)].rstrip()
    if result.account and (account, currency) != (result.account, result.currency):
        raise StatementParseError(
            f"expected every statement of the file to be for {result.account} in {result.currency}, found "
            f"{account} in {currency}; split the file per account",
            location=where,
        )
    if result.closing is not None and result.closing.amount_minor != opening.amount_minor:
        result.notes.append(
            f"statement {reference} opens at {opening.amount_minor} but the previous statement closed at "
            f"{result.closing.amount_minor} (minor units): a statement is missing or out of order"
        )
    result.account, result.currency = account, currency
    result.opening = result.opening or opening
    result.closing = closing
    result.references.append(reference)
    context = SimpleNamespace(currency=currency)  # what the library's :61: tag reads from its parser
    for transaction in transactions:
        result.lines.append(_line(transaction, context=context, statement_ref=reference, statement_no=number))


def _line(transaction: _Transaction, *, context: SimpleNamespace, statement_ref: str, statement_no: str) -> ParsedLine:
    fld = transaction.statement_line
    parts = _match(
        fld, _statement_line_text(fld), expected="a statement line like 1402200220C1,56NTRFEREF//00000000001005"
    )
    currency: str = context.currency
    mark = parts["status"].upper()
    amount = to_minor(parts["amount"], currency, decimal_separator=",", where=f"{fld.where} (:61: amount)")
    sign = -1 if mark in ("D", "RC") else 1
    tag = _library_tag("61")
    assert tag is not None
    try:
        parsed = tag(context, mt940_processors.date_fixup_pre_processor(context, tag, dict(parts)))
    except (ValueError, TypeError, ArithmeticError, AssertionError):
        raise StatementParseError(
            f"expected valid dates in the :61: statement line, found {excerpt(fld.lines[0])}", location=fld.where
        ) from None
    value_date = dt.date(parsed["date"].year, parsed["date"].month, parsed["date"].day)
    entry = parsed.get("guessed_entry_date")
    booking_date = dt.date(entry.year, entry.month, entry.day) if entry else value_date

    details_text = "".join(line for d in transaction.details for line in d.lines).strip()
    details = _details(details_text)
    references: dict[str, str] = {}
    for key, code in (("end_to_end_id", "EREF"), ("pmt_inf_id", "PREF"), ("mandate_id", "MARF"),
                      ("creditor_id", "CSID"), ("instr_id", "IREF")):  # fmt: skip
        if details.get(code, "").strip():
            references[key] = details[code].strip()
    _remittance(details, references)
    customer_reference = (parts.get("customer_reference") or "").strip()
    if customer_reference and customer_reference.upper() not in _NO_REFERENCE:
        references["customer_reference"] = customer_reference
    bank_reference = (parts.get("bank_reference") or "").strip()
    if bank_reference:
        references["bank_reference"] = bank_reference
    counterparty = _counterparty(details, references)
    supplementary = (parts.get("extra_details") or "").strip()
    if _IBAN.match(supplementary):
        # Rabobank writes the counterparty's account as the supplementary details.
        references.setdefault("counterparty_account", supplementary)
    reference = next(
        (references[k] for k in ("end_to_end_id", "creditor_reference", "customer_reference", "pmt_inf_id",
                                 "bank_reference") if references.get(k)),
        "",
    )  # fmt: skip
    raw: dict[str, Any] = {
        "statement_reference": statement_ref,
        "statement_number": statement_no,
        "statement_line": _statement_line_text(fld),
        "mark": mark,
        "funds_code": parts.get("funds_code") or "",
        "amount": parts["amount"],
        "transaction_type": parts.get("id") or "",
        "customer_reference": customer_reference,
        "supplementary_details": supplementary,
        "entry_date": booking_date.isoformat() if entry else "",
        "details": "\n".join("\n".join(d.lines) for d in transaction.details),
        "details_fields": details,
        "non_swift": "\n".join(line for f in transaction.non_swift for line in f.lines),
    }
    return ParsedLine(
        line_no=fld.line_no,
        booking_date=booking_date,
        value_date=value_date,
        amount_minor=sign * amount,
        currency=currency,
        kind="DEBIT" if sign < 0 else "CREDIT",
        reference=reference,
        references=references,
        counterparty=counterparty,
        description=details_text,
        reversal=mark.startswith("R"),
        raw={k: v for k, v in raw.items() if v not in ("", {}, None)},
    )


class Mt940Parser:
    name = "mt940"
    version = 1
    format = "MT940"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        refuse_mapping(parser=self.name, mapping=mapping)
        return parse_mt940(data, parser=self.name, version=self.version)
