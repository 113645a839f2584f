import datetime as dt

import pytest

from reconciliation.parsers import StatementParseError, parser_for

D = dt.date

MAPPING = {
    "date": "Booking Date",
    "date_format": "%d.%m.%Y",
    "amount": "Amount",
    "decimal_separator": ",",
    "currency": "Currency",
    "reference": "Reference",
    "description": "Text",
    "counterparty": "Name",
    "delimiter": ";",
    "sign": {"column": "D/C", "debit": "D", "credit": "C"},
    "skip_rows": 0,
}

# A German-style export: BOM, CRLF, ';' delimiter, ',' decimals, a quoted field holding the delimiter
# and a line break.
BANK_CSV = (
    "\ufeffBooking Date;Value Date;Amount;Currency;D/C;Reference;Text;Name\r\n"
    '31.01.2024;01.02.2024;1234,56;EUR;C;INV-2024-17;"Invoice 17; thank you";ACME GmbH\r\n'
    '01.02.2024;;0,99;EUR;D;;"Card fee\r\nFebruary";\r\n'
    "\r\n"
).encode()


def parse(data: bytes, mapping=MAPPING):
    return parser_for("generic_csv").parse(data, mapping=mapping)


def test_bank_export_through_the_mapping():
    statement = parse(BANK_CSV, {**MAPPING, "value_date": "Value Date"})
    assert (statement.format, statement.parser, statement.parser_version) == ("CSV", "generic_csv", 1)
    assert (statement.account, statement.currency, statement.statement_id) == ("", "EUR", "")
    assert (statement.period_start, statement.period_end) == (D(2024, 1, 31), D(2024, 2, 1))
    assert statement.balance_check() is None
    credit, debit = statement.lines
    assert (credit.line_no, credit.booking_date, credit.value_date) == (2, D(2024, 1, 31), D(2024, 2, 1))
    assert (credit.amount_minor, credit.currency, credit.kind) == (123456, "EUR", "CREDIT")
    assert (credit.reference, credit.references) == ("INV-2024-17", {"reference": "INV-2024-17"})
    assert (credit.description, credit.counterparty) == ("Invoice 17; thank you", "ACME GmbH")
    assert credit.raw["D/C"] == "C"
    assert (debit.line_no, debit.booking_date, debit.value_date) == (3, D(2024, 2, 1), None)
    assert (debit.amount_minor, debit.kind, debit.reference, debit.references) == (-99, "DEBIT", "", {})
    assert debit.description == "Card fee\r\nFebruary"  # kept whole, line break and all


def test_signed_amounts_fixed_currency_thousands_and_preamble_rows():
    data = (
        b"Account statement 2024-02\n"
        b"Exported by online banking\n"
        b"date,amount,memo\n"
        b'2024-02-01,"-1,250.00",rent\n'
        b"2024-02-02,99.5,refund\n"
    )
    mapping = {
        "date": "date",
        "amount": "amount",
        "thousands_separator": ",",
        "currency_value": "usd".upper(),
        "description": "memo",
        "skip_rows": 2,
    }
    rent, refund = parse(data, mapping).lines
    assert (rent.line_no, rent.amount_minor, rent.kind, rent.currency) == (4, -125000, "DEBIT", "USD")
    assert (refund.line_no, refund.amount_minor, refund.kind) == (5, 9950, "CREDIT")


def test_header_names_match_regardless_of_case_and_spacing():
    data = b"BOOKING  DATE;amount;currency;d/c\n31.01.2024;5,00;EUR;D\n"
    mapping = {k: v for k, v in MAPPING.items() if k not in ("reference", "description", "counterparty")}
    assert parse(data, mapping).lines[0].amount_minor == -500


def test_latin_1_export_with_the_encoding_in_the_mapping():
    data = "Booking Date;Amount;Currency;D/C;Reference;Text;Name\n31.01.2024;5,00;EUR;C;;Überweisung;Müller\n"
    line = parse(data.encode("latin-1"), {**MAPPING, "encoding": "latin-1"}).lines[0]
    assert (line.description, line.counterparty) == ("Überweisung", "Müller")
    with pytest.raises(StatementParseError, match=r"^line 2: expected utf-8 text, found byte 0xdc at offset \d+"):
        parse(data.encode("latin-1"))


def test_header_only_is_an_empty_statement():
    statement = parse(b"Booking Date;Amount;Currency;D/C;Reference;Text;Name\r\n")
    assert statement.lines == ()
    assert (statement.period_start, statement.period_end, statement.currency) == (None, None, "")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (None, "the generic_csv parser needs a column mapping"),
        (["date"], "expected the mapping as a dict, found list"),
        ({"amount": "Amount", "currency_value": "EUR"}, "expected the key 'date' naming the date column"),
        ({"date": "Booking Date", "currency_value": "EUR"}, "expected the key 'amount'"),
        ({"date": "d", "amount": "a"}, "expected exactly one of 'currency'"),
        ({"date": "d", "amount": "a", "currency": "c", "currency_value": "EUR"}, "expected exactly one of 'currency'"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "ammount": "x"}, "unknown: ammount"),
        ({"date": "d", "amount": "", "currency_value": "EUR"}, "expected 'amount' to be a non-empty string"),
        ({"date": "d", "amount": 3, "currency_value": "EUR"}, "expected 'amount' to be a non-empty string, found 3"),
        (
            {"date": "d", "amount": "a", "currency_value": "EURO"},
            "'currency_value' to be an ISO 4217 currency code, found 'EURO'",
        ),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "decimal_separator": ";"}, "'decimal_separator' to be"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "thousands_separator": "."}, "unlike the decimal"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "delimiter": ";;"}, "'delimiter' to be one character"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "skip_rows": -1}, "'skip_rows' to be a whole number"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "skip_rows": True}, "'skip_rows' to be a whole number"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "encoding": "klingon"}, "'encoding' to name a text"),
        ({"date": "d", "amount": "a", "currency_value": "EUR", "sign": {"column": "x"}}, "expected 'sign' as"),
        (
            {"date": "d", "amount": "a", "currency_value": "EUR", "sign": {"column": "x", "debit": "D", "credit": "D"}},
            "different debit and credit markers",
        ),
    ],
)
def test_the_mapping_itself_is_validated(mapping, message):
    with pytest.raises(StatementParseError) as caught:
        parse(BANK_CSV, mapping)
    assert caught.value.location == "mapping"
    assert message in caught.value.expected


@pytest.mark.parametrize(
    ("key", "column"),
    [("description", "Buchungstext"), ("amount", "Betrag"), ("sign", "S/H")],
)
def test_a_mapped_column_missing_from_the_header_is_named(key, column):
    mapping = {**MAPPING, key: {"column": column, "debit": "S", "credit": "H"} if key == "sign" else column}
    with pytest.raises(StatementParseError) as caught:
        parse(BANK_CSV, mapping)
    assert caught.value.location == "row 1 (header)"
    assert caught.value.expected.startswith(f"mapping key {key!r} names the column {column!r}, which the header")
    assert "'Booking Date', 'Value Date', 'Amount'" in caught.value.expected


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2024-01-31;5,00;EUR;C;;;", "row 2, column 'Booking Date': expected a date in the format '%d.%m.%Y', found"),
        ("31.01.2024;5,001;EUR;C;;;", "row 2, column 'Amount': EUR has 2 decimal places; '5,001' has more"),
        ("31.01.2024;5.00;EUR;C;;;", "row 2, column 'Amount': expected an amount (digits with an optional ','"),
        ("31.01.2024;;EUR;C;;;", "row 2, column 'Amount': expected an amount (digits with an optional ',' decimal"),
        ("31.01.2024;5,00;ZZZ;C;;;", "row 2, column 'Currency': expected an ISO 4217 currency code, found 'ZZZ'"),
        ("31.01.2024;5,00;EUR;X;;;", "row 2, column 'D/C': expected 'D' (debit) or 'C' (credit), found 'X'"),
        ("31.01.2024;-5,00;EUR;D;;;", "row 2, column 'Amount': expected an unsigned amount (the sign comes from"),
        ("31.01.2024;5,00;EUR;C;;", "row 2: expected 7 fields like the header (row 1), found 6"),
        ('31.01.2024;5,00;EUR;C;"x"y;;', "row 2: expected well-formed CSV, found: ';' expected after '\"'"),
    ],
)
def test_bad_rows_are_refused_naming_row_and_column(row, message):
    data = f"Booking Date;Amount;Currency;D/C;Reference;Text;Name\n{row}\n".encode()
    with pytest.raises(StatementParseError) as caught:
        parse(data)
    assert str(caught.value).startswith(message)


def test_the_wrong_delimiter_is_caught_at_the_header():
    with pytest.raises(StatementParseError, match=r"^row 1 \(header\): expected a CSV file header with columns"):
        parse(BANK_CSV.replace(b";", b","), {**MAPPING, "delimiter": "\t"})


def test_skip_rows_beyond_the_file_is_refused():
    with pytest.raises(
        StatementParseError, match=r"^line 3: expected 5 line\(s\) before the header, the file has only 2"
    ):
        parse(b"a\nb\n", {**MAPPING, "skip_rows": 5})
