import datetime as dt

import pytest

from reconciliation.parsers import StatementParseError, parser_for
from tests.reconciliation import fixture_bytes

D = dt.date
FEB_20 = D(2014, 2, 20)


def parse(data: bytes):
    return parser_for("mt940").parse(data)


# --- mt940-ing.940 ------------------------------------------------------------------------------


def test_ing_statement_header_and_balances():
    statement = parse(fixture_bytes("mt940-ing.940"))
    assert (statement.format, statement.parser, statement.parser_version) == ("MT940", "mt940", 1)
    # ":25:NL77INGB0574908765EUR": the account with its currency appended.
    assert (statement.account, statement.currency) == ("NL77INGB0574908765", "EUR")
    assert statement.statement_id == "P140220000000001"
    assert (statement.period_start, statement.period_end) == (D(2014, 2, 19), FEB_20)  # :60F: and :62F: dates
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (66223, 56435)
    assert len(statement.lines) == 8
    # 662,23 + 1,56 - 1,57 + 1,57 - 1,14 + 1,45 - 12,75 + 32,00 - 119,00 = 564,35
    check = statement.balance_check()
    assert (check.lines_total_minor, check.difference_minor, check.ok) == (-9788, 0, True)
    # The :86: after the balances is information for the account owner, not part of the last transaction.
    assert statement.notes == ("statement P140220000000001: information to account owner '/SUM/4/4/134,46/36,58/'",)
    assert "/SUM/" not in statement.lines[-1].description


# (file line of :61:, amount, kind, :61: type, reference, bank reference)
ING_LINES = [
    (9, 156, "CREDIT", "NTRF", "EV12341REP1231456T1234", "00000000001005"),
    (14, -157, "DEBIT", "NTRF", "M000000003333333", "00000000001006"),
    (17, 157, "CREDIT", "NRTI", "20120123456789", "00000000001007"),
    (21, -114, "DEBIT", "NDDT", "EV123REP123412T1234", "00000000001009"),
    (31, 145, "CREDIT", "NDDT", "M000000001111111", "00000000001008"),
    (39, -1275, "DEBIT", "NRTI", "20120501P0123478", "00000000001010"),
    (47, 3200, "CREDIT", "NTRF", "15814016000676480", "00000000001011"),
    (51, -11900, "DEBIT", "NTRF", "15614016000384600", "00000000001012"),
]


def test_ing_every_line():
    lines = parse(fixture_bytes("mt940-ing.940")).lines
    assert [
        (x.line_no, x.amount_minor, x.kind, x.raw["transaction_type"], x.reference, x.references["bank_reference"])
        for x in lines
    ] == ING_LINES
    for line in lines:  # "1402200220": value date 2014-02-20, entry date 02-20
        assert (line.booking_date, line.value_date, line.currency, line.reversal) == (FEB_20, FEB_20, "EUR", False)
        assert (line.gross_minor, line.fee_minor, line.net_minor, line.batch_id) == (None, None, None, "")


def test_ing_first_line_rejoins_the_wrapped_bank_reference_and_reads_the_structured_details():
    # ":61:...EREF//00000000001" / "005" / "/TRCD/00100/": the bank reference was wrapped after 11 characters.
    line = parse(fixture_bytes("mt940-ing.940")).lines[0]
    assert line.references == {
        "end_to_end_id": "EV12341REP1231456T1234",
        "remittance_info": "EV10001REP1000000T1000",
        "bank_reference": "00000000001005",
        "counterparty_account": "NL32INGB0000012345",
        "counterparty_bic": "INGBNL2A",
    }
    assert line.counterparty == "ING BANK NV INZAKE WEB"
    assert line.description == (
        "/EREF/EV12341REP1231456T1234//CNTP/NL32INGB0000012345/INGBNL2A/ING BANK NV INZAKE WEB///REMI/USTD//"
        "EV10001REP1000000T1000/"
    )
    assert line.raw["supplementary_details"] == "/TRCD/00100/"
    assert line.raw["customer_reference"] == "EREF"  # ING's pointer to :86: /EREF/, not a reference itself
    assert line.raw["details"].startswith("/EREF/EV12341REP1231456T1234//CNTP/NL32INGB0000012345/INGBNL2\nA/ING")


def test_ing_payment_batch_line_uses_the_batch_reference():
    line = parse(fixture_bytes("mt940-ing.940")).lines[1]
    assert line.references == {
        "pmt_inf_id": "M000000003333333",
        "remittance_info": "TOTAAL 1 VZ",
        "bank_reference": "00000000001006",
    }
    assert line.counterparty == ""


def test_ing_direct_debit_keeps_the_dash_of_a_line_holding_only_a_dash():
    # ":86:/EREF/EV123R" / "EP123412T1234//MARF/MND" / "-" / "EV01//CSID/NL32ZZZ9999999" / "91234//CNTP/...":
    # the lone "-" belongs to the mandate reference MND-EV01 (a library treating it as a separator drops it).
    line = parse(fixture_bytes("mt940-ing.940")).lines[3]
    assert line.references == {
        "end_to_end_id": "EV123REP123412T1234",
        "mandate_id": "MND-EV01",
        "creditor_id": "NL32ZZZ999999991234",
        "remittance_info": "EV123REP123412T1234",
        "bank_reference": "00000000001009",
        "counterparty_account": "NL32INGB0000012345",
        "counterparty_bic": "INGBNL2A",
    }
    assert line.counterparty == "ING Bank N.V. inzake WeB"
    assert line.raw["supplementary_details"] == "/TRCD/01016/"  # "/TRCD/010" / "16" / "/"


def test_ing_return_and_structured_creditor_reference():
    lines = parse(fixture_bytes("mt940-ing.940")).lines
    returned = lines[5]
    assert returned.raw["details_fields"]["RTRN"] == "MS03"
    assert returned.references["mandate_id"] == "MND-120123"
    assert returned.references["remittance_info"] == "CONTRIBUTIE FEB 2014"  # "REM" / "I/USTD//CO" / "NTRIBUTIE..."
    assert returned.counterparty == "J.Janssen"
    incoming = lines[6]
    assert incoming.references == {
        "end_to_end_id": "15814016000676480",
        "creditor_reference": "9001123412341234",  # /REMI/STRD/CUR/...
        "customer_reference": "9001123412341234",
        "bank_reference": "00000000001011",
        "counterparty_account": "NL32INGB0000012345",
        "counterparty_bic": "INGBNL2A",
    }
    assert incoming.counterparty == "J.Janssen"  # "J.J" / "anssen"


def test_ing_last_line_name_wrapped_where_the_file_lost_a_space():
    # The file wraps "/INGBNL2A/ING" / "BANK NV///REMI": the space sat at the wrap and is not in the file,
    # so joining the lines as written gives "INGBANK NV". The text is reported as the file has it.
    line = parse(fixture_bytes("mt940-ing.940")).lines[7]
    assert line.counterparty == "INGBANK NV"
    assert line.references["creditor_reference"] == "1070123412341234"
    assert line.raw["supplementary_details"] == "/TRCD/00108/"  # "/" / "TRCD/00108/"


# --- mt940-rabo.swi -----------------------------------------------------------------------------


def test_rabobank_four_statements_one_account():
    statement = parse(fixture_bytes("mt940-rabo.swi"))
    assert (statement.account, statement.currency) == ("NL34RABO0142623393", "EUR")  # ":25:NL34RABO0142623393 EUR"
    assert statement.statement_id == "940S140102..940S140107"
    assert (statement.period_start, statement.period_end) == (D(2013, 12, 31), D(2014, 1, 7))
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (443352, 479891)
    assert statement.balance_check().ok  # 4433,52 + 400,00 - 34,61 = 4798,91
    assert statement.notes == ()  # each statement opens where the previous closed
    assert len(statement.lines) == 2


def test_rabobank_lines():
    first, second = parse(fixture_bytes("mt940-rabo.swi")).lines
    assert (first.line_no, first.amount_minor, first.currency, first.kind) == (6, 40000, "EUR", "CREDIT")
    assert (first.booking_date, first.value_date, first.reversal) == (D(2014, 1, 2), D(2014, 1, 2), False)
    assert first.counterparty == "R. SMITH"
    assert first.references == {
        "remittance_info": "Test money paid by other partner:",
        "counterparty_account": "NL66RABO0160878799",  # the :61: supplementary details line
    }
    assert first.reference == ""  # NONREF, no bank reference, no /EREF/
    assert first.description == (
        "/ORDP//NAME/R. SMITH/ADDR/Green market 74 3311BE Sheepcity Nederland NL/REMI/Test money paid by other "
        "partner:/ISDT/2014-01-02"
    )
    assert first.raw["details_fields"]["ADDR"] == "Green market 74 3311BE Sheepcity Nederland NL"
    assert (first.raw["statement_reference"], first.raw["transaction_type"]) == ("940S140102", "N541")

    # ":61:140101D000000000034,61N093NONREF" in statement 940S140106: no entry date, so the value date is
    # also the booking date, even though the statement is dated 2014-01-06.
    assert (second.line_no, second.amount_minor, second.kind) == (21, -3461, "DEBIT")
    assert (second.booking_date, second.value_date) == (D(2014, 1, 1), D(2014, 1, 1))
    assert second.counterparty == "Kosten"
    assert second.references == {"remittance_info": "Periode 01-10-2013 t/m 31-12-2013"}  # "t/m" is not a code
    assert second.description == "/BENM//NAME/Kosten/REMI/Periode 01-10-2013 t/m 31-12-2013/ISDT/2014-01-01"
    assert second.raw["statement_reference"] == "940S140106"


# --- mt940-wrong-file.940 -----------------------------------------------------------------------


def test_wrong_file_is_refused_at_its_first_line():
    """Decision: refuse. The file is the first Rabobank statement (it adds up: 4433,52 + 400,00 = 4833,52)
    under a first line ':9401:', which is neither Rabobank's ':940:' header nor an MT940 tag. The mt-940
    library on its own skips such a line silently and would import the file; a corrupted header means
    the file did not come from the bank's export as it is, so it is refused and the operator told where."""
    with pytest.raises(StatementParseError) as caught:
        parse(fixture_bytes("mt940-wrong-file.940"))
    assert caught.value.location == "line 1"
    assert str(caught.value) == "line 1: expected a :20: transaction reference, found ':9401:'"


def test_wrong_file_body_parses_under_a_proper_header():
    body = fixture_bytes("mt940-wrong-file.940").removeprefix(b":9401:\n")
    statement = parse(b":940:\n" + body)
    assert [line.amount_minor for line in statement.lines] == [40000]
    assert statement.balance_check().ok


# --- shapes and refusals ------------------------------------------------------------------------


def statement_text(*lines: str, opening="C240228EUR100,00", closing="C240229EUR100,00") -> bytes:
    return "\r\n".join(
        [":20:REF1", ":25:DE89370400440532013000", ":28C:1/1", f":60F:{opening}", *lines, f":62F:{closing}", ""]
    ).encode()


def test_reversal_marks_sign_the_amount_the_way_they_book():
    # RC = reversal of a credit: money leaves the account. RD = reversal of a debit: money comes back.
    data = statement_text(
        ":61:2402290229RC10,00NTRFNONREF//B1",
        ":86:reversal of credit",
        ":61:2402290229RD25,50NTRFNONREF//B2",
        ":86:reversal of debit",
        closing="C240229EUR115,50",
    )
    first, second = parse(data).lines
    assert (first.amount_minor, first.kind, first.reversal) == (-1000, "DEBIT", True)
    assert (second.amount_minor, second.kind, second.reversal) == (2550, "CREDIT", True)
    assert first.raw["mark"] == "RC"
    assert first.description == "reversal of credit"


def test_entry_date_in_the_next_year_and_free_text_details():
    data = statement_text(":61:2312310102C1,00NMSCNONREF", ":86:Interest Dec", closing="C240229EUR101,00")
    line = parse(data).lines[0]
    assert (line.value_date, line.booking_date) == (D(2023, 12, 31), D(2024, 1, 2))
    assert line.references == {}
    assert line.description == "Interest Dec"


def test_envelopes_around_and_between_statements_are_skipped():
    # ABN AMRO starts each statement with its BIC and "940"; SWIFT files wrap each message in blocks.
    first = b"ABNANL2A\r\n940\r\nABNANL2A\r\n" + statement_text(
        ":61:2402290229C1,00NTRFNONREF", closing="C240229EUR101,00"
    )
    second = statement_text(opening="C240229EUR101,00", closing="C240229EUR101,00").replace(b"REF1", b"REF2")
    data = (
        first
        + b"-}\r\n{5:{CHK:0123456789AB}}\r\n{1:F01ABNANL2AXXXX0000000000}{2:I940ABNANL2AXXXXN}{4:\r\n"
        + second
        + b"-}"
    )
    statement = parse(data)
    assert (statement.statement_id, statement.opening_balance_minor, statement.closing_balance_minor) == (
        "REF1..REF2",
        10000,
        10100,
    )
    assert [(line.line_no, line.amount_minor) for line in statement.lines] == [(8, 100)]
    assert statement.balance_check().ok


def test_latin_1_and_utf8_bom_are_read():
    latin = statement_text(":61:2402290229C1,00NTRFNONREF", ":86:Caf\u00e9 M\u00fcller", closing="C240229EUR101,00")
    assert parse(latin.decode().encode("latin-1")).lines[0].description == "Caf\u00e9 M\u00fcller"
    assert parse(b"\xef\xbb\xbf" + latin).lines[0].description == "Caf\u00e9 M\u00fcller"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            statement_text(":61:2402290229C1,234NTRFNONREF"),
            "line 5 (:61: amount): EUR has 2 decimal places; '1,234' has more",
        ),
        (statement_text(opening="C240228XYZ100,00"), "line 4: expected an ISO 4217 currency code, found 'XYZ'"),
        (statement_text(opening="C240228EUR1.00"), "line 4: expected a balance like C140220EUR564,35"),
        (statement_text(":61:2413290229C1,00NTRFNONREF"), "line 5: expected valid dates in the :61: statement line"),
        (statement_text(":61:garbage"), "line 5: expected a statement line like 1402200220C1,56NTRF"),
        (statement_text(":99X:hello"), "line 5: expected a known MT940 tag, found ':99X:'"),
        (
            b":20:REF1\n:25:X\n:28C:1\n:60F:C240228EUR1,00\n",
            "line 1: expected a :62F: closing balance in statement 'REF1'",
        ),
        (
            b":20:REF1\n:28C:1\n:60F:C240228EUR1,00\n:62F:C240228EUR1,00\n",
            "line 1: expected a :25: account identification",
        ),
        (b"Date;Amount\n2024-01-01;5,00\n", "line 1: expected a :20: transaction reference (optionally after"),
        (b"{1:F01INGBNL2ABXXX0000000000}\n{4:\n-}\n", "line 1: expected a :20: transaction reference, found no MT940"),
        (b"\x00\x01\x02PK\x03\x04", "line 1: expected text, found control byte 0x00: this is not a text MT940 file"),
        (b"", "the MT940 file is empty"),
    ],
)
def test_refusals_say_where_and_what(data, message):
    with pytest.raises(StatementParseError) as caught:
        parse(data)
    assert str(caught.value).startswith(message)


def test_transaction_after_the_closing_balance_is_refused():
    data = statement_text() + b":61:2402290229C1,00NTRFNONREF\r\n"
    with pytest.raises(
        StatementParseError, match=r"^line 6: expected no :61: statement line after the closing balance"
    ):
        parse(data)


def test_statements_of_two_accounts_in_one_file_are_refused():
    other = statement_text().replace(b"DE89370400440532013000", b"DE02120300000000202051")
    with pytest.raises(StatementParseError, match=r"^line 6: expected every statement of the file to be for "):
        parse(statement_text() + other)


def test_a_gap_between_statements_is_noted_and_shows_in_the_balance_check():
    later = statement_text(opening="C240229EUR90,00", closing="C240301EUR90,00").replace(b"REF1", b"REF2")
    statement = parse(statement_text() + later)
    assert statement.statement_id == "REF1..REF2"
    assert statement.notes == (
        "statement REF2 opens at 9000 but the previous statement closed at 10000 (minor units): a statement is "
        "missing or out of order",
    )
    assert statement.balance_check().difference_minor == -1000


def test_a_mapping_is_refused():
    with pytest.raises(StatementParseError, match=r"^mapping: the mt940 parser reads a fixed layout"):
        parser_for("mt940").parse(fixture_bytes("mt940-rabo.swi"), mapping={"date": "x"})
