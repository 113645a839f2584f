"""Adyen Settlement Detail Report (CSV), one row per booking in a settlement batch.

Columns are found by their header name, never by position: Adyen adds columns over time and lets
merchants choose extra ones. Each row pays out in the net currency (NC); gross amounts are in the
gross currency (GC), which can differ (payouts and fees name EUR as gross currency while settling in
USD). A line's amount is the net: what the row adds to or takes from the merchant's balance.
"""

from __future__ import annotations

from reconciliation.parsers.base import (
    ParsedLine,
    ParsedStatement,
    StatementParseError,
    check_currency,
    iso_date,
    refuse_mapping,
    to_minor,
)
from reconciliation.parsers.csv_table import CsvRow, CsvTable, read_csv

REQUIRED = (
    "Merchant Account",
    "Psp Reference",
    "Merchant Reference",
    "Creation Date",
    "Type",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Net Currency",
    "Net Debit (NC)",
    "Net Credit (NC)",
    "Batch Number",
)
FEES = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
_REFERENCES = (
    ("psp_reference", "Psp Reference"),
    ("merchant_reference", "Merchant Reference"),
    ("modification_reference", "Modification Reference"),
    ("modification_merchant_reference", "Modification Merchant Reference"),
    ("batch_number", "Batch Number"),
)


def _optional_amount(row: CsvRow, column: str | None, currency: str) -> int | None:
    text = row.get(column)
    if column is None or not text:
        return None
    return to_minor(text, currency, where=row.where(column))


def _debit_credit(row: CsvRow, debit: str, credit: str, currency: str) -> int | None:
    """credit - debit, or None when the row has neither."""
    debit_minor = _optional_amount(row, debit, currency)
    credit_minor = _optional_amount(row, credit, currency)
    if debit_minor is None and credit_minor is None:
        return None
    return (credit_minor or 0) - (debit_minor or 0)


def _line(row: CsvRow, table: CsvTable, columns: dict[str, str]) -> ParsedLine:
    net_currency_text = row.get(columns["Net Currency"])
    net_currency = check_currency(net_currency_text, where=row.where(columns["Net Currency"]))
    net = _debit_credit(row, columns["Net Debit (NC)"], columns["Net Credit (NC)"], net_currency)
    if net is None:
        raise StatementParseError(
            f"expected an amount in {columns['Net Debit (NC)']!r} or {columns['Net Credit (NC)']!r}: every row of a "
            "settlement batch moves the balance",
            location=f"row {row.row_no}",
        )
    gross_currency = row.get(columns["Gross Currency"])
    gross = None
    if gross_currency:
        check_currency(gross_currency, where=row.where(columns["Gross Currency"]))
        gross = _debit_credit(row, columns["Gross Debit (GC)"], columns["Gross Credit (GC)"], gross_currency)
    fee_parts = [_optional_amount(row, table.find(name), net_currency) for name in FEES]
    fees = [part for part in fee_parts if part is not None]
    # Fees are in the net currency; a gross amount in another currency cannot be set beside them.
    same_currency = gross is not None and gross_currency == net_currency
    fee = sum(fees) if fees else (0 if same_currency else None)
    booked = columns["Creation Date"]
    references = {key: row.get(table.find(name)) for key, name in _REFERENCES if row.get(table.find(name))}
    reference = next(
        (references[k] for k in ("merchant_reference", "psp_reference", "modification_merchant_reference",
                                 "modification_reference") if references.get(k)),
        "",
    )  # fmt: skip
    kind = row.get(columns["Type"]).upper()
    if not kind:
        raise StatementParseError(
            "expected a record type (Settled, Refunded, Fee ...)", location=row.where(columns["Type"])
        )
    return ParsedLine(
        line_no=row.row_no,
        booking_date=iso_date(row.get(booked), where=row.where(booked)),
        value_date=None,
        amount_minor=net,
        currency=net_currency,
        kind=kind,
        reference=reference,
        references=references,
        counterparty="",
        # Adyen's only free text: a payout's or fee's description, else the modification's own reference.
        description=row.get(table.find("Modification Reference")),
        gross_minor=gross if same_currency else None,
        fee_minor=fee,
        net_minor=net,
        batch_id=row.get(columns["Batch Number"]),
        raw={**row.values, "gross_minor_in_gross_currency": gross},
    )


class AdyenSettlementDetailParser:
    name = "adyen_settlement_detail"
    version = 1
    format = "Adyen Settlement Detail Report"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        refuse_mapping(parser=self.name, mapping=mapping)
        table = read_csv(data, what="Adyen settlement detail report")
        columns = table.require(REQUIRED, what="Adyen settlement detail report")
        lines = tuple(_line(row, table, columns) for row in table.rows)
        accounts = {row.get(columns["Merchant Account"]) for row in table.rows} - {""}
        batches = {line.batch_id for line in lines} - {""}
        currencies = {line.currency for line in lines}
        account = accounts.pop() if len(accounts) == 1 else ""
        dates = [line.booking_date for line in lines]
        return ParsedStatement(
            format=self.format,
            parser=self.name,
            parser_version=self.version,
            account=account,
            currency=currencies.pop() if len(currencies) == 1 else "",
            statement_id=f"{account} batch {next(iter(batches))}".strip() if len(batches) == 1 else "",
            period_start=min(dates) if dates else None,
            period_end=max(dates) if dates else None,
            opening_balance_minor=None,
            closing_balance_minor=None,
            lines=lines,
        )
