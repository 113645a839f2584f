"""ISO 20022 camt.053 (bank to customer statement) and camt.054 (debit/credit notification).

Any schema version is read (001.02 ... 001.08 and later): the elements used here kept their names and
places across versions, except the party name, which moved under Pty in 001.08.

XML comes from outside, so it is parsed with defusedxml and nothing the document declares is trusted:
entity declarations (entity expansion, "billion laughs"), external entities (XXE) and document type
declarations are refused outright. An ISO 20022 statement never needs any of them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml.common import EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from reconciliation.parsers.base import (
    ParsedLine,
    ParsedStatement,
    StatementParseError,
    iso_date,
    refuse_mapping,
    to_minor,
)

_NAMESPACE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(?P<message>camt\.\d{3})\.\d{3}\.\d{2}$")
_NOT_BOOKED = {"PDNG", "INFO", "FUTR"}  # announcements, not bookings: they do not move the balance
_NOT_PROVIDED = {"", "NOTPROVIDED"}  # the placeholder ISO 20022 prescribes for a missing EndToEndId


# --- safe XML -----------------------------------------------------------------------------------


class _DoctypeRefused(Exception):
    def __init__(self, name: str, sysid: str | None) -> None:
        super().__init__(name)
        self.name = name
        self.sysid = sysid


class _StatementXMLParser(DefusedXMLParser):
    """defusedxml's parser with entities and external references forbidden, plus: any DOCTYPE is refused
    once it ends. Refusing at its end rather than its start lets the entity checks inside it speak first,
    so the error names the actual attack (entity expansion or an external entity)."""

    def __init__(self) -> None:
        super().__init__(forbid_dtd=False, forbid_entities=True, forbid_external=True)
        self._statement_doctype: tuple[str, str | None] = ("", None)
        self.parser.StartDoctypeDeclHandler = self._start_doctype
        self.parser.EndDoctypeDeclHandler = self._end_doctype

    def _start_doctype(self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool) -> None:
        self._statement_doctype = (name, sysid)

    def _end_doctype(self) -> None:
        raise _DoctypeRefused(*self._statement_doctype)


def read_xml(data: bytes) -> Element:
    """Parse untrusted XML bytes into an element tree, or refuse with the reason."""
    if not isinstance(data, bytes | bytearray):
        raise StatementParseError(f"expected the XML file as bytes, got {type(data).__name__}")
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise StatementParseError("the file is empty")
    _check_utf8(bytes(data))
    parser = _StatementXMLParser()
    try:
        parser.feed(data)
        return parser.close()
    except EntitiesForbidden as exc:
        if exc.sysid or exc.pubid:
            raise StatementParseError(
                f"the document declares an external entity {exc.name!r} pointing to {exc.sysid or exc.pubid!r}; "
                "external entities (XXE) are refused: a statement never needs them and they can read local files "
                "or reach other hosts",
                location="DOCTYPE",
            ) from None
        raise StatementParseError(
            f"the document declares an entity {exc.name!r}; entity declarations are refused because nested "
            "entities expand without bound (entity expansion, 'billion laughs') and a statement never needs them",
            location="DOCTYPE",
        ) from None
    except ExternalReferenceForbidden as exc:
        raise StatementParseError(
            f"the document refers to an external resource {exc.sysid or exc.pubid!r}; external references (XXE) "
            "are refused",
            location="DOCTYPE",
        ) from None
    except _DoctypeRefused as exc:
        raise StatementParseError(
            f"expected no document type declaration, found <!DOCTYPE {exc.name}>; DTDs are refused because they "
            "carry entity expansion and external entities, and ISO 20022 statements never use them",
            location="DOCTYPE",
        ) from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise StatementParseError(
            f"expected well-formed XML (is the file truncated, or not XML?), found: {reason}",
            location=f"line {line}, column {column}",
        ) from None
    except Exception as exc:  # expat and ElementTree raise a handful of types; none may leak out
        raise StatementParseError(f"expected readable XML, found: {type(exc).__name__}: {exc}") from None


def _check_utf8(data: bytes) -> None:
    """expat reports bad bytes as an "invalid token"; say plainly that the encoding is wrong instead."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 with a byte order mark: legitimate XML, expat reads it
    declared = re.match(rb"(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", data)
    if declared and declared.group(1).decode("ascii").lower().replace("_", "-") not in ("utf-8", "utf8"):
        return  # the document declares its own encoding; expat honours it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        newlines = data.count(b"\n", 0, exc.start)
        raise StatementParseError(
            f"expected UTF-8 (the XML declares no other encoding), found byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start} that is not valid UTF-8",
            location=f"line {newlines + 1}",
        ) from None


# --- navigation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Doc:
    """Namespace-aware look-ups relative to an element, with paths written without prefixes."""

    ns: str

    def _q(self, path: str) -> str:
        return "/".join(f"{{{self.ns}}}{part}" for part in path.split("/"))

    def find(self, el: Element, path: str) -> Element | None:
        return el.find(self._q(path))

    def findall(self, el: Element, path: str) -> list[Element]:
        return el.findall(self._q(path))

    def text(self, el: Element, path: str) -> str:
        node = el.find(self._q(path))
        return "" if node is None else (node.text or "").strip()

    def texts(self, el: Element, path: str) -> list[str]:
        return [t for t in ((n.text or "").strip() for n in el.findall(self._q(path))) if t]

    def first(self, el: Element, *paths: str) -> str:
        for path in paths:
            value = self.text(el, path)
            if value:
                return value
        return ""


@dataclass(frozen=True)
class _Message:
    """What distinguishes the two camt messages read here."""

    message: str  # "camt.053"
    root: str  # element under Document
    record: str  # repeated report element
    has_balances: bool


_MESSAGES = {
    "camt.053": _Message("camt.053", "BkToCstmrStmt", "Stmt", has_balances=True),
    "camt.054": _Message("camt.054", "BkToCstmrDbtCdtNtfctn", "Ntfctn", has_balances=False),
}
_PARSER_FOR = {"camt.053": "camt053", "camt.054": "camt054"}


def _document(root: Element, expected: _Message) -> tuple[_Doc, Element]:
    if root.tag.startswith("{"):
        ns, _, local = root.tag[1:].partition("}")
    else:
        ns, local = "", root.tag
    wanted = f"urn:iso:std:iso:20022:tech:xsd:{expected.message}.*"
    match = _NAMESPACE.match(ns)
    if local != "Document" or not match:
        found = f"<{local}> in namespace {ns!r}" if ns else f"<{local}> without a namespace"
        raise StatementParseError(
            f"expected an ISO 20022 {expected.message} <Document> in namespace {wanted}, found {found}",
            location=local,
        )
    message = match.group("message")
    if message != expected.message:
        hint = f"; the {_PARSER_FOR[message]} parser reads it" if message in _PARSER_FOR else ""
        raise StatementParseError(
            f"expected a {expected.message} document (namespace {wanted}), found a {message} document ({ns}){hint}",
            location="Document",
        )
    doc = _Doc(ns)
    body = doc.find(root, expected.root)
    if body is None:
        raise StatementParseError(f"expected a {expected.root} element under Document", location="Document")
    return doc, body


# --- values -------------------------------------------------------------------------------------


def _amount(doc: _Doc, el: Element, path: str, *, where: str) -> tuple[int, str]:
    node = doc.find(el, path)
    if node is None:
        raise StatementParseError("expected an amount", location=where)
    currency = (node.get("Ccy") or "").strip()
    if not currency:
        raise StatementParseError("expected a Ccy attribute with the currency", location=where)
    text = (node.text or "").strip()
    if text.startswith(("-", "+")):
        raise StatementParseError(
            f"expected an unsigned amount (the sign is CdtDbtInd), found {text!r}", location=where
        )
    return to_minor(text, currency, where=where), currency


def _sign(doc: _Doc, el: Element, *, where: str, default: int | None = None) -> int:
    indicator = doc.text(el, "CdtDbtInd")
    if indicator == "CRDT":
        return 1
    if indicator == "DBIT":
        return -1
    if not indicator and default is not None:
        return default
    raise StatementParseError(f"expected CRDT or DBIT, found {indicator or 'nothing'!r}", location=f"{where}/CdtDbtInd")


def _date(doc: _Doc, el: Element, path: str, *, where: str) -> dt.date | None:
    text = doc.first(el, f"{path}/Dt", f"{path}/DtTm")
    return iso_date(text, where=f"{where}/{path}") if text else None


def _reversal(doc: _Doc, el: Element, *, where: str) -> bool:
    value = doc.text(el, "RvslInd").lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise StatementParseError(f"expected true or false, found {value!r}", location=f"{where}/RvslInd")


def _party(doc: _Doc, tx: Element, role: str) -> tuple[str, str]:
    """Name and account of Dbtr or Cdtr; from 001.08 on the name sits under Pty."""
    name = doc.first(tx, f"RltdPties/{role}/Nm", f"RltdPties/{role}/Pty/Nm")
    account = doc.first(tx, f"RltdPties/{role}Acct/Id/IBAN", f"RltdPties/{role}Acct/Id/Othr/Id")
    return name, account


def _bank_code(doc: _Doc, ntry: Element) -> str:
    parts = [doc.text(ntry, p) for p in ("BkTxCd/Domn/Cd", "BkTxCd/Domn/Fmly/Cd", "BkTxCd/Domn/Fmly/SubFmlyCd")]
    return "/".join(p for p in parts if p)


# --- parsing ------------------------------------------------------------------------------------


@dataclass
class _Totals:
    """State carried across the statements of one file."""

    account: str = ""
    currency: str = ""
    entry_no: int = 0
    not_booked: int = 0


def parse_camt(data: bytes, *, message: str, parser: str, version: int) -> ParsedStatement:
    expected = _MESSAGES[message]
    doc, body = _document(read_xml(data), expected)
    records = doc.findall(body, expected.record)
    if not records:
        raise StatementParseError(f"expected at least one {expected.record} element", location=expected.root)
    totals = _Totals()
    lines: list[ParsedLine] = []
    ids: list[str] = []
    starts: list[dt.date] = []
    ends: list[dt.date] = []
    opening: int | None = None
    closing: int | None = None
    notes: list[str] = []
    for index, record in enumerate(records, start=1):
        where = f"{expected.record}[{index}]"
        _account_of(doc, record, totals, where=where)
        balances = _balances(doc, record, totals, where=where) if expected.has_balances else {}
        if index == 1:
            opening = balances.get("opening")
        elif closing is not None and balances.get("opening") is not None and balances["opening"] != closing:
            notes.append(
                f"{where} opens at {balances['opening']} but the previous statement closed at {closing} "
                "(minor units): a statement is missing or out of order"
            )
        closing = balances.get("closing")
        ids.append(doc.text(record, "Id"))
        for bound, dates, fallback in (("FrDtTm", starts, "opening_date"), ("ToDtTm", ends, "closing_date")):
            text = doc.first(record, f"FrToDt/{bound}", f"FrToDt/{bound[:2]}Dt")
            if text:
                dates.append(iso_date(text, where=f"{where}/FrToDt/{bound}"))
            elif balances.get(fallback):
                dates.append(balances[fallback])
        for position, ntry in enumerate(doc.findall(record, "Ntry"), start=1):
            totals.entry_no += 1
            lines.extend(_entry(doc, ntry, totals, first_line_no=len(lines) + 1, where=f"{where}/Ntry[{position}]"))
    if totals.not_booked:
        notes.append(f"{totals.not_booked} entry/entries not booked (status {'/'.join(sorted(_NOT_BOOKED))}) left out")
    unique_ids = [i for i in dict.fromkeys(ids) if i]
    return ParsedStatement(
        format=expected.message,
        parser=parser,
        parser_version=version,
        account=totals.account,
        currency=totals.currency,
        statement_id=unique_ids[0] if len(unique_ids) == 1 else "..".join(unique_ids[:1] + unique_ids[-1:]),
        period_start=min(starts) if starts else None,
        period_end=max(ends) if ends else None,
        opening_balance_minor=opening,
        closing_balance_minor=closing,
        lines=tuple(lines),
        notes=tuple(notes),
    )


def _account_of(doc: _Doc, record: Element, totals: _Totals, *, where: str) -> None:
    account = doc.first(record, "Acct/Id/IBAN", "Acct/Id/Othr/Id")
    if totals.account and account and account != totals.account:
        raise StatementParseError(
            f"expected every statement of the file to be for account {totals.account}, found {account}; "
            "split the file per account",
            location=f"{where}/Acct",
        )
    totals.account = totals.account or account
    _currency_of(doc.text(record, "Acct/Ccy"), totals, where=f"{where}/Acct/Ccy")


def _currency_of(currency: str, totals: _Totals, *, where: str) -> None:
    if not currency:
        return
    if totals.currency and currency != totals.currency:
        raise StatementParseError(
            f"expected amounts in the account currency {totals.currency}, found {currency}", location=where
        )
    totals.currency = currency


def _balances(doc: _Doc, record: Element, totals: _Totals, *, where: str) -> dict[str, Any]:
    """OPBD (or PRCD, the previous closing, which some banks send instead) and CLBD, signed."""
    found: dict[str, Any] = {}
    for index, bal in enumerate(doc.findall(record, "Bal"), start=1):
        here = f"{where}/Bal[{index}]"
        code = doc.first(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry")
        slot = {"OPBD": "opening", "PRCD": "previous", "CLBD": "closing"}.get(code)
        if slot is None or slot in found:
            continue
        amount, currency = _amount(doc, bal, "Amt", where=f"{here}/Amt")
        _currency_of(currency, totals, where=f"{here}/Amt")
        found[slot] = amount * _sign(doc, bal, where=here)
        found[f"{slot}_date"] = _date(doc, bal, "Dt", where=here)
    if "opening" not in found and "previous" in found:
        found["opening"], found["opening_date"] = found["previous"], found["previous_date"]
    return found


@dataclass(frozen=True)
class _Entry:
    """What every line of one Ntry shares."""

    where: str
    number: int
    amount: int  # unsigned; the sign is `direction`
    direction: int
    currency: str
    booking: dt.date
    value: dt.date | None
    reversal: bool
    ntry_ref: str
    acct_svcr_ref: str
    batch_refs: dict[str, str]
    batch_id: str
    raw: dict[str, Any]


_REFERENCE_PATHS = (
    ("instr_id", "Refs/InstrId"),
    ("tx_id", "Refs/TxId"),
    ("msg_id", "Refs/MsgId"),
    ("pmt_inf_id", "Refs/PmtInfId"),
    ("acct_svcr_ref", "Refs/AcctSvcrRef"),
    ("mandate_id", "Refs/MndtId"),
    ("uetr", "Refs/UETR"),
    ("cheque_number", "Refs/ChqNb"),
    ("proprietary_ref", "Refs/Prtry/Ref"),
    ("creditor_reference", "RmtInf/Strd/CdtrRefInf/Ref"),
)
_BEST_REFERENCE = ("end_to_end_id", "creditor_reference", "instr_id", "tx_id", "acct_svcr_ref", "entry_ref")


def _entry(doc: _Doc, ntry: Element, totals: _Totals, *, first_line_no: int, where: str) -> list[ParsedLine]:
    status = doc.first(ntry, "Sts", "Sts/Cd")
    if status in _NOT_BOOKED:
        totals.not_booked += 1
        return []
    amount, currency = _amount(doc, ntry, "Amt", where=f"{where}/Amt")
    _currency_of(currency, totals, where=f"{where}/Amt")
    direction = _sign(doc, ntry, where=where)
    booking = _date(doc, ntry, "BookgDt", where=where)
    value = _date(doc, ntry, "ValDt", where=where)
    # Booked entries carry BookgDt; a bank that leaves it out still gives ValDt, the next best date.
    booked = booking or value
    if booked is None:
        raise StatementParseError("expected a booking date (BookgDt) or a value date (ValDt)", location=where)
    batch = doc.find(ntry, "NtryDtls/Btch")
    batch_count = doc.text(batch, "NbOfTxs") if batch is not None else ""
    txs = doc.findall(ntry, "NtryDtls/TxDtls")
    ntry_ref, acct_svcr_ref = doc.text(ntry, "NtryRef"), doc.text(ntry, "AcctSvcrRef")
    is_batch = len(txs) > 1 or (batch_count.isdigit() and int(batch_count) > 1)
    raw = {
        "status": status,
        "entry_amount_minor": amount * direction,
        "bank_transaction_code": _bank_code(doc, ntry),
        "proprietary_code": doc.text(ntry, "BkTxCd/Prtry/Cd"),
        "additional_entry_info": doc.text(ntry, "AddtlNtryInf"),
        "batch_tx_count": batch_count,
    }
    entry = _Entry(
        where=where,
        number=totals.entry_no,
        amount=amount,
        direction=direction,
        currency=currency,
        booking=booked,
        value=value,
        reversal=_reversal(doc, ntry, where=where),
        ntry_ref=ntry_ref,
        acct_svcr_ref=acct_svcr_ref,
        batch_refs={"msg_id": doc.text(batch, "MsgId"), "pmt_inf_id": doc.text(batch, "PmtInfId")}
        if batch is not None
        else {},
        batch_id=(acct_svcr_ref or ntry_ref or f"entry {totals.entry_no}") if is_batch else "",
        raw={k: v for k, v in raw.items() if v not in ("", None)},
    )
    if len(txs) <= 1:
        tx = txs[0] if txs else None
        here = f"{where}/NtryDtls/TxDtls[1]" if tx is not None else where
        return [_line(doc, entry, tx, amount=amount, direction=direction, line_no=first_line_no, where=here)]
    return _batch(doc, entry, txs, first_line_no=first_line_no)


def _batch(doc: _Doc, entry: _Entry, txs: list[Element], *, first_line_no: int) -> list[ParsedLine]:
    """An entry booking several transactions: one line per transaction, each with its own amount, which
    must add up to the entry; or, when the bank gives no per-transaction amounts, one line for the entry."""
    paths = [f"{entry.where}/NtryDtls/TxDtls[{i}]" for i in range(1, len(txs) + 1)]
    amounts = [_tx_amount(doc, tx, where=path) for tx, path in zip(txs, paths, strict=True)]
    if all(a is None for a in amounts):
        raw = {**entry.raw, "tx_count": len(txs), "transactions": [_references(doc, tx, entry) for tx in txs]}
        whole = replace(entry, raw=raw)
        return [_line(doc, whole, None, amount=entry.amount, direction=entry.direction, line_no=first_line_no,
                      where=entry.where)]  # fmt: skip
    signed: list[tuple[int, int]] = []
    for tx, path, found in zip(txs, paths, amounts, strict=True):
        if found is None:
            raise StatementParseError(
                "expected an amount (AmtDtls/TxAmt/Amt or Amt) on every transaction of the batch, as the others have",
                location=path,
            )
        if found[1] != entry.currency:
            raise StatementParseError(
                f"expected the transaction amount in the entry currency {entry.currency}, found {found[1]}",
                location=f"{path}/Amt",
            )
        signed.append((found[0], _sign(doc, tx, where=path, default=entry.direction)))
    total = sum(amount * direction for amount, direction in signed)
    if total != entry.amount * entry.direction:
        raise StatementParseError(
            f"expected the {len(txs)} transactions of this batch to add up to the entry amount "
            f"{entry.amount * entry.direction} (minor units), found {total}",
            location=entry.where,
        )
    return [
        _line(doc, entry, tx, amount=amount, direction=direction, line_no=first_line_no + offset, where=path)
        for offset, (tx, path, (amount, direction)) in enumerate(zip(txs, paths, signed, strict=True))
    ]


def _tx_amount(doc: _Doc, tx: Element, *, where: str) -> tuple[int, str] | None:
    for path in ("AmtDtls/TxAmt/Amt", "Amt"):
        if doc.find(tx, path) is not None:
            return _amount(doc, tx, path, where=f"{where}/{path}")
    return None


def _references(doc: _Doc, tx: Element | None, entry: _Entry) -> dict[str, str]:
    refs: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        if value and key not in refs:
            refs[key] = value

    if tx is not None:
        end_to_end = doc.text(tx, "Refs/EndToEndId")
        if end_to_end.upper() not in _NOT_PROVIDED:
            put("end_to_end_id", end_to_end)
        for key, path in _REFERENCE_PATHS:
            put(key, doc.text(tx, path))
    for key, value in entry.batch_refs.items():
        put(key, value)
    if refs.get("acct_svcr_ref") and entry.acct_svcr_ref and refs["acct_svcr_ref"] != entry.acct_svcr_ref:
        put("entry_acct_svcr_ref", entry.acct_svcr_ref)
    put("acct_svcr_ref", entry.acct_svcr_ref)
    put("entry_ref", entry.ntry_ref)
    return refs


def _line(
    doc: _Doc, entry: _Entry, tx: Element | None, *, amount: int, direction: int, line_no: int, where: str
) -> ParsedLine:
    refs = _references(doc, tx, entry)
    raw: dict[str, Any] = {**entry.raw, "path": where, "entry": entry.number}
    counterparty = ""
    description = entry.raw.get("additional_entry_info", "")
    if tx is not None:
        # The counterparty of money in is the debtor, of money out the creditor; a bank that fills only
        # the other side (seen in returned direct debits) still names someone, so fall back to it.
        for role in ("Dbtr", "Cdtr") if direction > 0 else ("Cdtr", "Dbtr"):
            name, account = _party(doc, tx, role)
            if name or account:
                counterparty = name
                if account:
                    refs.setdefault("counterparty_account", account)
                break
        unstructured = doc.texts(tx, "RmtInf/Ustrd")
        additional = doc.text(tx, "AddtlTxInf")
        description = " ".join(unstructured) or additional or description
        extra = {
            "remittance_unstructured": unstructured,
            "additional_tx_info": additional,
            "return_reason": doc.first(tx, "RtrInf/Rsn/Cd", "RtrInf/Rsn/Prtry"),
        }
        raw.update({k: v for k, v in extra.items() if v})
    return ParsedLine(
        line_no=line_no,
        booking_date=entry.booking,
        value_date=entry.value,
        amount_minor=amount * direction,
        currency=entry.currency,
        kind="CREDIT" if direction > 0 else "DEBIT",
        reference=next((refs[k] for k in _BEST_REFERENCE if refs.get(k)), ""),
        references=refs,
        counterparty=counterparty,
        description=description,
        reversal=entry.reversal,
        batch_id=entry.batch_id,
        raw=raw,
    )


class Camt053Parser:
    name = "camt053"
    version = 1
    format = "camt.053"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        refuse_mapping(parser=self.name, mapping=mapping)
        return parse_camt(data, message=self.format, parser=self.name, version=self.version)


class Camt054Parser:
    name = "camt054"
    version = 1
    format = "camt.054"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        refuse_mapping(parser=self.name, mapping=mapping)
        return parse_camt(data, message=self.format, parser=self.name, version=self.version)
