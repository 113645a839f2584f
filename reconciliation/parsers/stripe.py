"""Stripe itemized settlement / payout reconciliation report (CSV), one row per balance transaction.

Amounts are decimal strings in major units ("25.00"), currencies lower- or upper-case. Stripe defines
net = gross - fee for every balance transaction, so a row where that does not hold means the file
was edited or its columns are not what their headers say: it is refused.
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

REQUIRED = ("balance_transaction_id", "currency", "gross", "fee", "net", "reporting_category")
# Stripe names the timestamp columns with a _utc suffix in some report versions.
CREATED = ("created", "created_utc")
AVAILABLE_ON = ("available_on", "available_on_utc")
_REFERENCES = (
    ("balance_transaction_id", "balance_transaction_id"),
    ("source_id", "source_id"),
    ("payment_intent_id", "payment_intent_id"),
    ("charge_id", "charge_id"),
    ("payout_id", "automatic_payout_id"),
)


def _first_column(table: CsvTable, names: tuple[str, ...]) -> str | None:
    return next((column for column in map(table.find, names) if column), None)


def _line(row: CsvRow, table: CsvTable, columns: dict[str, str], created: str, available: str | None) -> ParsedLine:
    currency = check_currency(row.get(columns["currency"]).upper(), where=row.where(columns["currency"]))
    gross, fee, net = (
        to_minor(row.get(columns[n]), currency, where=row.where(columns[n])) for n in ("gross", "fee", "net")
    )
    if gross - fee != net:
        raise StatementParseError(
            f"expected net = gross - fee, found gross {row.get(columns['gross'])}, fee {row.get(columns['fee'])}, "
            f"net {row.get(columns['net'])}",
            location=f"row {row.row_no}",
        )
    kind = row.get(columns["reporting_category"]).upper()
    if not kind:
        raise StatementParseError(
            "expected a reporting category (charge, refund, payout ...)",
            location=row.where(columns["reporting_category"]),
        )
    references = {key: row.get(table.find(name)) for key, name in _REFERENCES if row.get(table.find(name))}
    available_text = row.get(available)
    counterparty_column = _first_column(table, ("customer_name", "customer_email"))
    return ParsedLine(
        line_no=row.row_no,
        booking_date=iso_date(row.get(created), where=row.where(created)),
        value_date=iso_date(available_text, where=row.where(available or "")) if available_text else None,
        amount_minor=net,
        currency=currency,
        kind=kind,
        reference=references.get("payment_intent_id") or references.get("source_id", ""),
        references=references,
        counterparty=row.get(counterparty_column),
        description=row.get(table.find("description")),
        gross_minor=gross,
        fee_minor=fee,
        net_minor=net,
        batch_id=references.get("payout_id", ""),
        raw=dict(row.values),
    )


class StripeItemizedSettlementParser:
    name = "stripe_itemized_settlement"
    version = 1
    format = "Stripe itemized settlement report"

    def parse(self, data: bytes, *, mapping: dict | None = None) -> ParsedStatement:
        refuse_mapping(parser=self.name, mapping=mapping)
        what = "Stripe settlement report"
        table = read_csv(data, what=what)
        columns = table.require(REQUIRED, what=what)
        # Without either timestamp column, require() refuses naming the usual one.
        created = _first_column(table, CREATED) or table.require(CREATED[:1], what=what)[CREATED[0]]
        available = _first_column(table, AVAILABLE_ON)
        lines = tuple(_line(row, table, columns, created, available) for row in table.rows)
        currencies = {line.currency for line in lines}
        payouts = {line.batch_id for line in lines}
        dates = [line.booking_date for line in lines]
        return ParsedStatement(
            format=self.format,
            parser=self.name,
            parser_version=self.version,
            account="",
            currency=currencies.pop() if len(currencies) == 1 else "",
            statement_id=payouts.pop() if len(payouts) == 1 else "",
            period_start=min(dates) if dates else None,
            period_end=max(dates) if dates else None,
            opening_balance_minor=None,
            closing_balance_minor=None,
            lines=lines,
        )
