import datetime as dt

import pytest

from reconciliation.parsers import StatementParseError, parser_for
from tests.reconciliation import fixture_bytes

D = dt.date


def camt053():
    return parser_for("camt053").parse(fixture_bytes("camt053-example.xml"))


# --- camt053-example.xml ------------------------------------------------------------------------


def test_camt053_statement_header_and_balances():
    statement = camt053()
    assert (statement.format, statement.parser, statement.parser_version) == ("camt.053", "camt053", 1)
    assert (statement.account, statement.currency, statement.statement_id) == (
        "NL77ABNA0574908765",
        "EUR",
        "1234Test/1",
    )
    assert (statement.period_start, statement.period_end) == (D(2014, 1, 5), D(2014, 1, 5))  # FrToDt
    assert statement.opening_balance_minor == 1556827  # OPBD 15568.27 CRDT
    assert statement.closing_balance_minor == 1512112  # CLBD 15121.12 CRDT
    assert len(statement.lines) == 4  # 3 entries, the second a batch of 2 transactions
    assert statement.notes == ()


def test_camt053_example_does_not_add_up_and_the_check_says_by_how_much():
    # -754.25 - 564.05 - 100.00 + 1405.31 = -12.99; 15568.27 - 12.99 = 15555.28, yet the file closes at 15121.12.
    check = camt053().balance_check()
    assert check is not None
    assert (check.opening_minor, check.lines_total_minor, check.closing_minor) == (1556827, -1299, 1512112)
    assert check.expected_closing_minor == 1555528
    assert check.difference_minor == -43416
    assert check.ok is False


def test_camt053_first_entry_direct_debit_to_an_insurer():
    line = camt053().lines[0]
    assert line.line_no == 1
    assert (line.booking_date, line.value_date) == (D(2014, 1, 5), D(2014, 1, 5))
    assert (line.amount_minor, line.currency, line.kind, line.reversal) == (-75425, "EUR", "DEBIT", False)
    assert line.reference == "435005714488-ABNO33052620"
    assert line.references == {
        "end_to_end_id": "435005714488-ABNO33052620",
        "instr_id": "INNDNL2U20141231000142300002844",
        "mandate_id": "1880000341866",
        "counterparty_account": "NL46ABNA0499998748",
    }
    assert line.counterparty == "INSURANCE COMPANY TESTX"  # DBIT: the creditor is the other side
    assert line.description == "Insurance policy 857239PERIOD 01.01.2014 - 31.12.2014"
    assert (line.gross_minor, line.fee_minor, line.net_minor, line.batch_id) == (None, None, None, "")
    assert line.raw["bank_transaction_code"] == "PMNT/RDDT/ESDD"
    assert line.raw["additional_tx_info"] == "MKB Insurance 859239PERIOD 01.01.2014 - 31.12.2014"
    assert line.raw["path"] == "Stmt[1]/Ntry[1]/NtryDtls/TxDtls[1]"


def test_camt053_reversed_batch_is_split_per_transaction():
    # Ntry 2: 664.05 DBIT with RvslInd true, Btch NbOfTxs 2, TxAmt 564.05 and 100.00.
    first, second = camt053().lines[1:3]
    assert [(x.line_no, x.amount_minor, x.kind, x.reversal) for x in (first, second)] == [
        (2, -56405, "DEBIT", True),
        (3, -10000, "DEBIT", True),
    ]
    assert first.batch_id == second.batch_id == "entry 2"  # neither AcctSvcrRef nor NtryRef on the entry
    assert first.reference == "TESTBANK/NL/20141229/01206408"
    assert second.reference == "TESTBANK/NL/20141229/01206407"
    assert first.references == {
        "end_to_end_id": "TESTBANK/NL/20141229/01206408",
        "instr_id": "TESTBANK/NL/20141229/01206408",
        "mandate_id": "NL22ZZZ524885430000-C0125.1",
        "msg_id": "2014/125",
        "pmt_inf_id": "2018/125-20141229-NORM",
        "counterparty_account": "NL46ABNA0499998748",
    }
    assert second.references["mandate_id"] == "NL22ZZZ524885430000-C0125.2"
    assert first.counterparty == second.counterparty == "Test Customer"
    assert first.description == second.description == "Direct Debit S14 0410"
    assert first.raw["return_reason"] == "AC06"
    assert first.raw["entry_amount_minor"] == -66405
    assert first.raw["batch_tx_count"] == "2"
    assert second.raw["path"] == "Stmt[1]/Ntry[2]/NtryDtls/TxDtls[2]"
    assert (first.booking_date, second.value_date) == (D(2014, 1, 5), D(2014, 1, 5))


def test_camt053_last_entry_incoming_transfer_without_remittance_uses_additional_info():
    line = camt053().lines[3]
    assert (line.line_no, line.amount_minor, line.currency, line.kind) == (4, 140531, "EUR", "CREDIT")
    assert (line.booking_date, line.value_date, line.reversal, line.batch_id) == (
        D(2014, 1, 5),
        D(2014, 1, 5),
        False,
        "",
    )
    assert line.reference == "115"
    assert line.references == {
        "end_to_end_id": "115",
        "instr_id": "INNDNL2U20140105000217200000708",
        "counterparty_account": "NL69ABNA0522123643",
    }
    assert line.counterparty == "3rd party Media"  # CRDT: the debtor is the other side
    assert line.description == "#RD PARTY MEDIA CUSNO 90782 4210773"


# --- camt054-example.xml ------------------------------------------------------------------------


def test_camt054_notification():
    statement = parser_for("camt054").parse(fixture_bytes("camt054-example.xml"))
    assert (statement.format, statement.parser, statement.account) == ("camt.054", "camt054", "NL77ABNA0574908765")
    assert (statement.currency, statement.statement_id) == ("EUR", "20220120000000000000000")
    assert (statement.period_start, statement.period_end) == (D(2022, 1, 26), D(2022, 1, 26))
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (None, None)
    assert statement.balance_check() is None
    [line] = statement.lines
    assert (line.line_no, line.booking_date, line.value_date) == (1, D(2022, 1, 26), D(2022, 1, 26))
    assert (line.amount_minor, line.currency, line.kind, line.reversal) == (500, "EUR", "CREDIT", False)
    assert line.reference == "ENDTOENDID-01"
    assert line.references == {
        "end_to_end_id": "ENDTOENDID-01",
        "instr_id": "MIB InstrId305-312MM20211231v1",
        "acct_svcr_ref": "15180015077602405",
        "entry_acct_svcr_ref": "98888208N8",
        "entry_ref": "NL0000000000000000000",
        "proprietary_ref": "20220120000000000000001",
        "creditor_reference": "000000000000000000000000003",
        "counterparty_account": "NL46ABNA0499998748",
    }
    assert line.counterparty == "Test Customer"
    assert line.description == "Additional entry info"  # no Ustrd, no AddtlTxInf: the entry's info
    assert line.batch_id == ""  # Btch NbOfTxs 1 is not a batch


def test_a_camt054_is_refused_by_the_camt053_parser_and_vice_versa():
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(fixture_bytes("camt054-example.xml"))
    assert caught.value.location == "Document"
    assert "expected a camt.053 document" in str(caught.value)
    assert "found a camt.054 document" in str(caught.value)
    assert "the camt054 parser reads it" in str(caught.value)
    with pytest.raises(StatementParseError, match=r"expected a camt\.054 document .* found a camt\.053 document"):
        parser_for("camt054").parse(fixture_bytes("camt053-example.xml"))


# --- other versions and shapes ------------------------------------------------------------------

NS08 = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


def document(
    entries: str, *, ns: str = NS08, balances: str | None = None, acct: str = "DE89370400440532013000"
) -> bytes:
    if balances is None:
        balances = balance("PRCD", "100.00", "CRDT") + balance("CLBD", "150.00", "CRDT")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{ns}">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-03-01T08:00:00+01:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>S-2024-02-29</Id>
      <Acct><Id><IBAN>{acct}</IBAN></Id><Ccy>EUR</Ccy></Acct>
      {balances}
      {entries}
    </Stmt>
  </BkToCstmrStmt>
</Document>""".encode()


def balance(code: str, amount: str, indicator: str, *, ccy: str = "EUR", date: str = "2024-02-29") -> str:
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy='{ccy}'>{amount}</Amt>"
        f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{date}</Dt></Dt></Bal>"
    )


def entry(amount: str, indicator: str, details: str = "", *, status: str = "<Sts><Cd>BOOK</Cd></Sts>", extra=""):
    return (
        f"<Ntry>{extra}<Amt Ccy='EUR'>{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>{status}"
        "<BookgDt><DtTm>2024-02-29T23:10:00+01:00</DtTm></BookgDt><ValDt><Dt>2024-03-01</Dt></ValDt>"
        f"<NtryDtls>{details}</NtryDtls></Ntry>"
    )


def tx(end_to_end: str, amount: str | None = None, *, debtor: str = "Alice GmbH") -> str:
    amt = f"<Amt Ccy='EUR'>{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>" if amount else ""
    return (
        f"<TxDtls><Refs><EndToEndId>{end_to_end}</EndToEndId></Refs>{amt}"
        f"<RltdPties><Dbtr><Pty><Nm>{debtor}</Nm></Pty></Dbtr></RltdPties>"
        "<RmtInf><Ustrd>Invoice 2024-17</Ustrd><Ustrd>and 2024-18</Ustrd></RmtInf></TxDtls>"
    )


def test_version_08_layout_batches_with_tx_amounts_and_previous_closing_as_opening():
    batch = entry(
        "50.00", "CRDT", tx("E2E-1", "20.00") + tx("NOTPROVIDED", "30.00", debtor="Bob"), extra="<NtryRef>B7</NtryRef>"
    )
    statement = parser_for("camt053").parse(document(batch))
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (10000, 15000)  # PRCD, CLBD
    assert statement.balance_check().ok
    first, second = statement.lines
    assert (first.amount_minor, second.amount_minor) == (2000, 3000)
    assert first.batch_id == second.batch_id == "B7"  # the entry's NtryRef
    assert first.booking_date == D(2024, 2, 29)  # the date as the bank wrote it, not converted to UTC
    assert first.value_date == D(2024, 3, 1)
    assert (first.counterparty, second.counterparty) == ("Alice GmbH", "Bob")  # Dbtr/Pty/Nm since 001.08
    assert first.description == "Invoice 2024-17 and 2024-18"
    assert first.reference == "E2E-1"
    assert "end_to_end_id" not in second.references  # NOTPROVIDED is the standard's "none"
    assert second.reference == "B7"


def test_batch_without_transaction_amounts_stays_one_line_and_keeps_the_count():
    statement = parser_for("camt053").parse(document(entry("50.00", "CRDT", tx("E2E-1") + tx("E2E-2"))))
    [line] = statement.lines
    assert (line.amount_minor, line.batch_id, line.raw["tx_count"]) == (5000, "entry 1", 2)
    assert [t["end_to_end_id"] for t in line.raw["transactions"]] == ["E2E-1", "E2E-2"]


def test_batch_whose_transactions_do_not_add_up_is_refused():
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(document(entry("50.00", "CRDT", tx("E2E-1", "20.00") + tx("E2E-2", "31.00"))))
    assert caught.value.location == "Stmt[1]/Ntry[1]"
    assert "add up to the entry amount 5000 (minor units), found 5100" in str(caught.value)


def test_batch_with_an_amount_on_only_some_transactions_is_refused():
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(document(entry("50.00", "CRDT", tx("E2E-1", "50.00") + tx("E2E-2"))))
    assert caught.value.location == "Stmt[1]/Ntry[1]/NtryDtls/TxDtls[2]"


def test_pending_entries_are_left_out_and_noted():
    entries = entry("50.00", "CRDT") + entry("9.99", "DBIT", status="<Sts><Cd>PDNG</Cd></Sts>")
    statement = parser_for("camt053").parse(document(entries))
    assert [line.amount_minor for line in statement.lines] == [5000]
    assert statement.notes == ("1 entry/entries not booked (status FUTR/INFO/PDNG) left out",)


@pytest.mark.parametrize(
    ("entries", "balances", "location", "message"),
    [
        (entry("1.234", "CRDT"), None, "Stmt[1]/Ntry[1]/Amt", "EUR has 2 decimal places; '1.234' has more"),
        (entry("-5.00", "CRDT"), None, "Stmt[1]/Ntry[1]/Amt", "expected an unsigned amount"),
        (entry("5.00", "CRDX"), None, "Stmt[1]/Ntry[1]/CdtDbtInd", "expected CRDT or DBIT, found 'CRDX'"),
        ("", balance("OPBD", "1.00", "CRDT", ccy="XYZ"), "Stmt[1]/Bal[1]/Amt", "expected an ISO 4217 currency code"),
        ("", balance("OPBD", "1.00", "CRDT", ccy="USD"), "Stmt[1]/Bal[1]/Amt", "account currency EUR, found USD"),
        ("", balance("OPBD", "1.00", "CRDT", date="2024-02-30"), "Stmt[1]/Bal[1]/Dt", "expected a date"),
        ("", balance("OPBD", "", "CRDT"), "Stmt[1]/Bal[1]/Amt", "expected an amount"),
    ],
)
def test_bad_values_name_the_element(entries, balances, location, message):
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(document(entries, balances=balances))
    assert caught.value.location == location
    assert message in caught.value.expected


def test_missing_ccy_attribute_is_refused():
    data = document(entry("5.00", "CRDT")).replace(b"<Amt Ccy='EUR'>5.00", b"<Amt>5.00")
    with pytest.raises(StatementParseError, match=r"Stmt\[1\]/Ntry\[1\]/Amt: expected a Ccy attribute"):
        parser_for("camt053").parse(data)


def stmt_of(data: bytes) -> str:
    text = data.decode()
    return text[text.index("<Stmt>") : text.index("</Stmt>") + len("</Stmt>")]


def two_statements(first: bytes, second: bytes) -> bytes:
    return first.decode().replace("</Stmt>", "</Stmt>" + stmt_of(second), 1).encode()


def test_a_file_mixing_accounts_is_refused():
    data = two_statements(document(""), document("", acct="DE02120300000000202051"))
    with pytest.raises(StatementParseError, match=r"Stmt\[2\]/Acct: expected every statement .* split the file"):
        parser_for("camt053").parse(data)


def test_several_statements_of_one_account_chain_their_balances():
    first = document(entry("50.00", "CRDT"))
    # The second statement opens at 140.00 although the first closed at 150.00: one is missing between them.
    second = document(
        entry("50.00", "CRDT"), balances=balance("PRCD", "140.00", "CRDT") + balance("CLBD", "190.00", "CRDT")
    )
    statement = parser_for("camt053").parse(two_statements(first, second.replace(b"S-2024-02-29", b"S-2024-03-01")))
    assert statement.statement_id == "S-2024-02-29..S-2024-03-01"
    assert (statement.opening_balance_minor, statement.closing_balance_minor) == (10000, 19000)
    assert [line.line_no for line in statement.lines] == [1, 2]
    assert statement.lines[1].raw["path"] == "Stmt[2]/Ntry[1]"
    assert statement.lines[1].raw["entry"] == 2
    assert statement.notes == (
        "Stmt[2] opens at 14000 but the previous statement closed at 15000 (minor units): a statement is missing "
        "or out of order",
    )
    assert statement.balance_check().difference_minor == -1000


def test_a_document_outside_iso_20022_is_refused():
    with pytest.raises(
        StatementParseError, match=r"expected an ISO 20022 camt\.053 <Document>.*found <Document> without"
    ):
        parser_for("camt053").parse(b"<Document><BkToCstmrStmt/></Document>")
    with pytest.raises(StatementParseError, match=r"found a camt\.052 document"):
        parser_for("camt053").parse(document("", ns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.02"))
