import csv
import datetime as dt
import io

import pytest

from reconciliation.parsers import StatementParseError, parser_for
from tests.reconciliation import fixture_bytes

D = dt.date


def adyen(data: bytes):
    return parser_for("adyen_settlement_detail").parse(data)


def stripe(data: bytes):
    return parser_for("stripe_itemized_settlement").parse(data)


def rewrite(data: bytes, change) -> bytes:
    """The rows of a CSV fixture as dicts, changed by `change(header, rows) -> (header, rows)`, written back."""
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    header, rows = change(list(rows[0].keys()), rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


# --- adyen-settlement-detail-donation.csv -------------------------------------------------------


def test_adyen_donation_batch():
    statement = adyen(fixture_bytes("adyen-settlement-detail-donation.csv"))
    assert (statement.format, statement.parser, statement.parser_version) == (
        "Adyen Settlement Detail Report",
        "adyen_settlement_detail",
        1,
    )
    assert (statement.account, statement.currency, statement.statement_id) == (
        "WikimediaCOM",
        "USD",
        "WikimediaCOM batch 2",
    )
    assert (statement.period_start, statement.period_end) == (D(2016, 2, 18), D(2016, 2, 18))
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (None, None)
    assert statement.balance_check() is None
    settled, payout = statement.lines

    # Settled: Gross Credit 1.00 USD; Net Credit 0.76 USD; Scheme Fees 0.02 + Interchange 0.22.
    assert (settled.line_no, settled.booking_date, settled.value_date) == (2, D(2016, 2, 18), None)
    assert (settled.amount_minor, settled.currency, settled.kind) == (76, "USD", "SETTLED")
    assert (settled.gross_minor, settled.fee_minor, settled.net_minor) == (100, 24, 76)
    assert settled.reference == "33992337.0"  # the merchant reference, as the report writes it
    assert settled.references == {
        "psp_reference": "5364893193133131",
        "merchant_reference": "33992337.0",
        "modification_reference": "5555593193155555",
        "batch_number": "2",
    }
    assert (settled.batch_id, settled.reversal, settled.counterparty) == ("2", False, "")
    assert settled.raw["Payment Method"] == "visa"
    assert settled.raw["TimeZone"] == "PST"

    # MerchantPayout: Net Debit 0.76 USD, no gross amounts (Gross Currency EUR, but empty).
    assert (payout.line_no, payout.booking_date) == (3, D(2016, 2, 18))
    assert (payout.amount_minor, payout.currency, payout.kind) == (-76, "USD", "MERCHANTPAYOUT")
    assert (payout.gross_minor, payout.fee_minor, payout.net_minor) == (None, None, -76)
    assert payout.description == "TX2342222277XT batch 2, WikimediaCOM batch 2, WikimediaCOM"
    assert payout.references == {
        "modification_reference": "TX2342222277XT batch 2, WikimediaCOM batch 2, WikimediaCOM",
        "batch_number": "2",
    }
    assert payout.batch_id == "2"
    assert sum(line.amount_minor for line in statement.lines) == 0  # the batch pays out exactly what it settled


# --- adyen-settlement-detail-refund.csv ---------------------------------------------------------


def test_adyen_refund_batch():
    statement = adyen(fixture_bytes("adyen-settlement-detail-refund.csv"))
    assert (statement.account, statement.currency, statement.statement_id) == (
        "WikimediaCOM",
        "USD",
        "WikimediaCOM batch 3",
    )
    assert (statement.period_start, statement.period_end) == (D(2016, 2, 10), D(2016, 2, 15))
    refunded, fee, payout = statement.lines
    assert (refunded.line_no, refunded.booking_date, refunded.kind) == (2, D(2016, 2, 10), "REFUNDED")
    # Gross Debit 1.00, Net Debit 1.00, no fee columns filled: a refund without fees.
    assert (refunded.amount_minor, refunded.gross_minor, refunded.fee_minor, refunded.net_minor) == (
        -100,
        -100,
        0,
        -100,
    )
    assert refunded.reference == "92598312.0"
    assert refunded.references == {
        "psp_reference": "4522268860022701",
        "merchant_reference": "92598312.0",
        "modification_reference": "4522268869855336",
        "modification_merchant_reference": "92598312.0",
        "batch_number": "3",
    }
    assert (fee.line_no, fee.booking_date, fee.kind, fee.amount_minor, fee.currency) == (
        3,
        D(2016, 2, 15),
        "FEE",
        -180,
        "USD",
    )
    assert fee.description == "Transaction Fees February  2016"  # two spaces, as written
    assert (fee.gross_minor, fee.net_minor) == (None, -180)
    assert (payout.line_no, payout.kind, payout.amount_minor, payout.batch_id) == (4, "MERCHANTPAYOUT", -403, "3")
    assert payout.description == "TX3488899933XT batch 3, WikimediaCOM batch 3, WikimediaCOM"


def test_adyen_columns_are_found_by_name_in_any_order_with_extra_columns():
    def shuffle(header, rows):
        for row in rows:
            row["Acquirer"] = "x"
        return ["Acquirer", *reversed(header)], rows

    original = adyen(fixture_bytes("adyen-settlement-detail-donation.csv"))
    shuffled = adyen(rewrite(fixture_bytes("adyen-settlement-detail-donation.csv"), shuffle))
    assert [(x.amount_minor, x.gross_minor, x.fee_minor, x.references) for x in shuffled.lines] == [
        (x.amount_minor, x.gross_minor, x.fee_minor, x.references) for x in original.lines
    ]


def test_adyen_fee_columns_are_optional_and_commission_and_markup_count():
    def fees(header, rows):
        rows[0]["Commission (NC)"], rows[0]["Markup (NC)"], rows[0]["Net Credit (NC)"] = "0.10", "0.05", "0.61"
        return [h for h in header if h not in ("Scheme Fees (NC)", "Interchange (NC)")], rows

    settled = adyen(rewrite(fixture_bytes("adyen-settlement-detail-donation.csv"), fees)).lines[0]
    assert (settled.gross_minor, settled.fee_minor, settled.net_minor) == (100, 15, 61)


def test_adyen_gross_in_another_currency_stays_out_of_the_line_amounts():
    def convert(header, rows):
        rows[0].update({"Gross Currency": "EUR", "Exchange Rate": "1.0959", "Net Credit (NC)": "0.85"})
        rows[0].update({"Scheme Fees (NC)": "", "Interchange (NC)": "0.25"})
        return header, rows

    settled = adyen(rewrite(fixture_bytes("adyen-settlement-detail-donation.csv"), convert)).lines[0]
    # Fees and net are in USD; the 1.00 gross is EUR and cannot sit beside them in one currency.
    assert (settled.currency, settled.amount_minor, settled.gross_minor, settled.fee_minor) == ("USD", 85, None, 25)
    assert (settled.raw["Gross Currency"], settled.raw["gross_minor_in_gross_currency"]) == ("EUR", 100)


@pytest.mark.parametrize("column", ["Net Currency", "Batch Number", "Creation Date", "Type"])
def test_adyen_missing_required_column_is_named(column):
    data = rewrite(fixture_bytes("adyen-settlement-detail-refund.csv"), lambda h, r: ([c for c in h if c != column], r))
    with pytest.raises(StatementParseError) as caught:
        adyen(data)
    assert caught.value.location == "row 1 (header)"
    assert f"expected a column named {column!r}" in caught.value.expected


def test_adyen_header_only_is_an_empty_batch():
    header = fixture_bytes("adyen-settlement-detail-refund.csv").splitlines()[0] + b"\n"
    statement = adyen(header)
    assert (statement.lines, statement.account, statement.period_start) == ((), "", None)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Net Debit (NC)", "1.001", "row 2, column 'Net Debit (NC)': USD has 2 decimal places; '1.001' has more"),
        ("Net Debit (NC)", "1,00", "row 2, column 'Net Debit (NC)': expected an amount"),
        ("Net Currency", "XYZ", "row 2, column 'Net Currency': expected an ISO 4217 currency code, found 'XYZ'"),
        ("Creation Date", "18/02/2016", "row 2, column 'Creation Date': expected a date like 2014-01-05"),
        ("Type", "", "row 2, column 'Type': expected a record type"),
    ],
)
def test_adyen_bad_values_name_row_and_column(column, value, message):
    def change(header, rows):
        rows[0][column] = value
        return header, rows

    with pytest.raises(StatementParseError) as caught:
        adyen(rewrite(fixture_bytes("adyen-settlement-detail-refund.csv"), change))
    assert str(caught.value).startswith(message)


def test_adyen_row_without_net_amount_is_refused():
    def change(header, rows):
        rows[1]["Net Debit (NC)"] = ""
        return header, rows

    with pytest.raises(StatementParseError, match=r"^row 3: expected an amount in 'Net Debit \(NC\)' or 'Net Credit"):
        adyen(rewrite(fixture_bytes("adyen-settlement-detail-refund.csv"), change))


def test_adyen_row_with_a_missing_field_is_refused_by_row():
    data = fixture_bytes("adyen-settlement-detail-refund.csv").replace(b",visaclassic,", b",", 1)
    with pytest.raises(StatementParseError, match=r"^row 2: expected 30 fields like the header \(row 1\), found 29"):
        adyen(data)


# --- stripe-settlement-report.csv ---------------------------------------------------------------


def test_stripe_payout_report():
    statement = stripe(fixture_bytes("stripe-settlement-report.csv"))
    assert (statement.format, statement.parser) == ("Stripe itemized settlement report", "stripe_itemized_settlement")
    assert (statement.account, statement.currency, statement.statement_id) == ("", "USD", "po_test123")
    assert (statement.period_start, statement.period_end) == (D(2026, 1, 30), D(2026, 1, 31))
    assert statement.balance_check() is None
    charge, refund, payout = statement.lines

    assert (charge.line_no, charge.booking_date, charge.value_date) == (2, D(2026, 1, 30), D(2026, 1, 30))
    assert (charge.amount_minor, charge.currency, charge.kind) == (2405, "USD", "CHARGE")
    assert (charge.gross_minor, charge.fee_minor, charge.net_minor) == (2500, 95, 2405)
    assert charge.reference == "pi_123"
    assert charge.references == {
        "balance_transaction_id": "txn_001",
        "source_id": "ch_123",
        "payment_intent_id": "pi_123",
        "charge_id": "ch_123",
        "payout_id": "po_test123",
    }
    assert (charge.batch_id, charge.description) == ("po_test123", "Donation")
    assert charge.raw["payment_metadata[external_identifier]"] == "24315.1"

    assert (refund.line_no, refund.booking_date, refund.kind) == (3, D(2026, 1, 30), "REFUND")
    assert (refund.amount_minor, refund.gross_minor, refund.fee_minor, refund.net_minor) == (-1000, -1000, 0, -1000)
    assert refund.reference == "pi_123"
    assert refund.references["source_id"] == "re_123"
    assert refund.description == "Refund"

    # The payout row as the file states it: gross and net +14.05, no payment intent, source po_123.
    assert (payout.line_no, payout.booking_date, payout.value_date) == (4, D(2026, 1, 31), D(2026, 1, 31))
    assert (payout.amount_minor, payout.gross_minor, payout.fee_minor, payout.net_minor) == (1405, 1405, 0, 1405)
    assert (payout.kind, payout.reference, payout.batch_id) == ("PAYOUT", "po_123", "po_test123")
    assert payout.references == {"balance_transaction_id": "txn_005", "source_id": "po_123", "payout_id": "po_test123"}


def test_stripe_lower_case_currency_utc_columns_and_zero_decimal_currency():
    data = (
        b"balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,source_id\n"
        b"txn_1,2026-02-01 09:00:00,2026-02-03 00:00:00,jpy,5000,180,4820,charge,ch_9\n"
    )
    [line] = stripe(data).lines
    assert (line.currency, line.amount_minor, line.fee_minor) == ("JPY", 4820, 180)
    assert (line.booking_date, line.value_date, line.reference) == (D(2026, 2, 1), D(2026, 2, 3), "ch_9")
    assert line.batch_id == ""


def test_stripe_net_must_be_gross_minus_fee():
    data = fixture_bytes("stripe-settlement-report.csv").replace(b",25.00,0.95,24.05,", b",25.00,0.95,24.50,")
    with pytest.raises(StatementParseError, match=r"^row 2: expected net = gross - fee, found gross 25.00, fee 0.95"):
        stripe(data)


@pytest.mark.parametrize("column", ["net", "reporting_category", "created", "balance_transaction_id"])
def test_stripe_missing_required_column_is_named(column):
    data = rewrite(fixture_bytes("stripe-settlement-report.csv"), lambda h, r: ([c for c in h if c != column], r))
    with pytest.raises(StatementParseError, match=rf"^row 1 \(header\): expected a column named '{column}'"):
        stripe(data)


def test_stripe_amount_with_too_many_decimals_is_refused():
    data = fixture_bytes("stripe-settlement-report.csv").replace(b",25.00,0.95,24.05,", b",25.001,0.951,24.05,")
    with pytest.raises(StatementParseError, match=r"^row 2, column 'gross': USD has 2 decimal places; '25.001' has"):
        stripe(data)


def test_a_provider_report_given_to_the_wrong_parser_names_the_missing_column():
    with pytest.raises(
        StatementParseError, match=r"^row 1 \(header\): expected a column named 'balance_transaction_id'"
    ):
        stripe(fixture_bytes("adyen-settlement-detail-donation.csv"))
    with pytest.raises(StatementParseError, match=r"^row 1 \(header\): expected a column named 'Merchant Account'"):
        adyen(fixture_bytes("stripe-settlement-report.csv"))
