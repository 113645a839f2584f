"""Hostile, broken and odd input: every parser either returns a statement or raises StatementParseError
saying where and why. Nothing else may escape (no KeyError, ValueError, IndexError, XML library error)."""

import contextlib
import datetime as dt
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciliation.parsers import (
    PARSERS,
    ParsedLine,
    StatementParseError,
    UnknownParserError,
    parser_for,
    to_minor,
)
from tests.reconciliation import FIXTURES, fixture_bytes

OWN_PARSER = {
    "camt053-example.xml": "camt053",
    "camt054-example.xml": "camt054",
    "mt940-ing.940": "mt940",
    "mt940-rabo.swi": "mt940",
    "adyen-settlement-detail-donation.csv": "adyen_settlement_detail",
    "adyen-settlement-detail-refund.csv": "adyen_settlement_detail",
    "stripe-settlement-report.csv": "stripe_itemized_settlement",
}
GENERIC_MAPPING = {"date": "created", "amount": "net", "currency": "currency"}


def run(name: str, data: bytes):
    return parser_for(name).parse(data, mapping=GENERIC_MAPPING if name == "generic_csv" else None)


# --- XML attacks --------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&lol9;</Id>
</Stmt></BkToCstmrStmt></Document>"""

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><Stmt><Id>&xxe;</Id>
<Acct><Id><IBAN>NL77ABNA0574908765</IBAN></Id></Acct></Stmt></BkToCstmrStmt></Document>"""


@pytest.mark.parametrize("parser", ["camt053", "camt054"])
def test_billion_laughs_is_refused_before_anything_expands(parser):
    started = time.monotonic()
    with pytest.raises(StatementParseError) as caught:
        parser_for(parser).parse(BILLION_LAUGHS)
    assert time.monotonic() - started < 1
    assert caught.value.location == "DOCTYPE"
    assert "declares an entity 'lol'" in caught.value.expected
    assert "entity expansion, 'billion laughs'" in caught.value.expected


@pytest.mark.parametrize("parser", ["camt053", "camt054"])
def test_external_entity_is_refused_and_nothing_is_read(parser):
    with pytest.raises(StatementParseError) as caught:
        parser_for(parser).parse(XXE)
    assert caught.value.location == "DOCTYPE"
    assert "external entity 'xxe' pointing to 'file:///etc/passwd'" in caught.value.expected
    assert "(XXE) are refused" in caught.value.expected
    assert "root:" not in str(caught.value)


def test_external_parameter_entity_is_refused():
    data = XXE.replace(
        b'<!ENTITY xxe SYSTEM "file:///etc/passwd">', b'<!ENTITY % remote SYSTEM "http://example.invalid/x">%remote;'
    )
    with pytest.raises(StatementParseError, match=r"external entity 'remote' pointing to 'http://example\.invalid/x'"):
        parser_for("camt053").parse(data)


@pytest.mark.parametrize(
    "doctype",
    [b'<!DOCTYPE Document SYSTEM "http://example.invalid/camt.dtd">', b"<!DOCTYPE Document [<!ELEMENT Id ANY>]>"],
)
def test_any_document_type_declaration_is_refused(doctype):
    data = fixture_bytes("camt053-example.xml")
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(doctype + b"\n" + data)
    assert caught.value.location == "DOCTYPE"
    assert "expected no document type declaration, found <!DOCTYPE Document>" in caught.value.expected


# --- broken XML ---------------------------------------------------------------------------------


def test_truncated_xml_is_refused_with_its_position():
    data = fixture_bytes("camt053-example.xml")
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(data[: len(data) // 2])
    assert caught.value.location.startswith("line ")
    assert ", column " in caught.value.location
    assert "expected well-formed XML (is the file truncated, or not XML?)" in caught.value.expected


def test_non_utf8_bytes_in_xml_are_refused_as_an_encoding_problem():
    data = fixture_bytes("camt053-example.xml").replace(b"Example company", b"Exampl\xe9 company")
    with pytest.raises(StatementParseError) as caught:
        parser_for("camt053").parse(data)
    assert caught.value.location == "line 19"
    assert "expected UTF-8 (the XML declares no other encoding), found byte 0xe9" in caught.value.expected


def test_xml_declaring_latin_1_is_read_as_latin_1():
    data = fixture_bytes("camt053-example.xml").replace(b"Example company", b"Exampl\xe9 company")
    statement = parser_for("camt053").parse(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + data)
    assert len(statement.lines) == 4


def test_a_statement_in_another_format_is_not_xml():
    with pytest.raises(StatementParseError, match=r"^line 1, column 0: expected well-formed XML"):
        parser_for("camt053").parse(fixture_bytes("mt940-rabo.swi"))


# --- empty, binary, wrong encoding --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("data", [b"", b"   \r\n\n", b"\xef\xbb\xbf"])
def test_empty_files_are_refused_by_every_parser(name, data):
    with pytest.raises(StatementParseError, match="empty"):
        run(name, data)


@pytest.mark.parametrize("name", ["adyen_settlement_detail", "stripe_itemized_settlement", "generic_csv"])
def test_utf16_csv_is_refused_with_the_reason(name):
    data = fixture_bytes("stripe-settlement-report.csv").decode().encode("utf-16")
    with pytest.raises(StatementParseError, match=r"^byte 0: expected UTF-8 text, found a UTF-16 \(little-endian\)"):
        run(name, data)


@pytest.mark.parametrize("name", ["adyen_settlement_detail", "stripe_itemized_settlement", "generic_csv"])
def test_non_utf8_csv_is_refused_with_line_and_byte(name):
    data = fixture_bytes("stripe-settlement-report.csv").replace(b"Donation", b"Donaci\xf3n")
    with pytest.raises(StatementParseError, match=r"^line 2: expected utf-8 text, found byte 0xf3 at offset \d+"):
        run(name, data)


# --- amounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "separator", "minor"),
    [
        ("1.50", "EUR", ".", 150),
        ("-1.50", "EUR", ".", -150),
        ("+7", "EUR", ".", 700),
        (" 25.00 ", "USD", ".", 2500),
        ("1.230", "EUR", ".", 123),  # trailing zero: exact, nothing rounded
        ("400,00", "EUR", ",", 40000),
        ("000000004433,52", "EUR", ",", 443352),
        ("0,", "EUR", ",", 0),
        ("1,5", "EUR", ",", 150),
        ("5000", "JPY", ".", 5000),
        ("1.234", "KWD", ".", 1234),
        ("9999999999999999.99", "EUR", ".", 999_999_999_999_999_999),  # the largest: 18 digits of minor units
        ("00000000000000000000001.00", "EUR", ".", 100),  # leading zeros are not digits of the amount
    ],
)
def test_to_minor_converts_exactly(text, currency, separator, minor):
    assert to_minor(text, currency, decimal_separator=separator, where="test") == minor


@pytest.mark.parametrize(
    ("text", "currency", "separator", "message"),
    [
        ("1.234", "EUR", ".", "EUR has 2 decimal places; '1.234' has more (amounts are never rounded)"),
        ("100.5", "JPY", ".", "JPY has 0 decimal places; '100.5' has more"),
        ("4433,521", "EUR", ",", "EUR has 2 decimal places; '4433,521' has more"),
        ("", "EUR", ".", "expected an amount (digits with an optional '.' decimal separator), found nothing"),
        ("abc", "EUR", ".", "found 'abc'"),
        ("1,50", "EUR", ".", "found '1,50'"),
        ("1.5", "EUR", ",", "found '1.5'"),
        ("1,234.50", "EUR", ".", "found '1,234.50'"),
        (".5", "EUR", ".", "found '.5'"),
        ("1e3", "EUR", ".", "found '1e3'"),
        ("NaN", "EUR", ".", "found 'NaN'"),
        ("1" * 19, "EUR", ".", "is too large"),
        ("10000000000000000.00", "EUR", ".", "is too large"),  # 19 digits of minor units
        ("-10000000000000000", "EUR", ".", "is too large"),
        ("1.00", "XYZ", ".", "expected an ISO 4217 currency code, found 'XYZ'"),
        ("1.00", "eur", ".", "expected an ISO 4217 currency code, found 'eur'"),
        ("1.00", "EUR", ";", "expected '.' or ',' as decimal separator"),
    ],
)
def test_to_minor_refuses_rather_than_guesses(text, currency, separator, message):
    with pytest.raises(StatementParseError) as caught:
        to_minor(text, currency, decimal_separator=separator, where="row 3, column 'gross'")
    assert caught.value.location == "row 3, column 'gross'"
    assert message in caught.value.expected


def test_parsed_line_refuses_a_float_amount():
    with pytest.raises(TypeError, match="amount_minor must be an int of minor units, got float"):
        ParsedLine(
            line_no=1,
            booking_date=dt.date(2024, 1, 1),
            value_date=None,
            amount_minor=1.5,
            currency="EUR",
            kind="CREDIT",
        )


# --- registry -----------------------------------------------------------------------------------


def test_registry_names_are_stable():
    assert sorted(PARSERS) == [
        "adyen_settlement_detail",
        "camt053",
        "camt054",
        "generic_csv",
        "mt940",
        "stripe_itemized_settlement",
    ]
    for name, parser in PARSERS.items():
        assert parser.name == name
        assert parser.version == 1
        assert parser.format
        assert parser_for(name) is parser


def test_unknown_parser_name_lists_the_known_ones():
    with pytest.raises(
        UnknownParserError, match=r"no statement parser named 'camt052'; known parsers: adyen_settlement"
    ):
        parser_for("camt052")


@pytest.mark.parametrize("name", sorted(set(PARSERS) - {"generic_csv"}))
def test_fixed_layout_parsers_refuse_a_mapping(name):
    with pytest.raises(StatementParseError, match=rf"^mapping: the {name} parser reads a fixed layout"):
        parser_for(name).parse(b"x", mapping={})


# --- every parser against every file ------------------------------------------------------------


def test_every_fixture_is_covered():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.suffix != ".md") == sorted(
        [*OWN_PARSER, "mt940-wrong-file.940"]
    )


@pytest.mark.parametrize("fixture", sorted(OWN_PARSER))
def test_fixture_lines_are_uniquely_numbered_and_raw_is_json(fixture):
    statement = run(OWN_PARSER[fixture], fixture_bytes(fixture))
    numbers = [line.line_no for line in statement.lines]
    assert numbers == sorted(set(numbers))
    for line in statement.lines:
        json.dumps(line.raw)
        assert all(isinstance(v, str) and v for v in line.references.values())
        assert type(line.amount_minor) is int


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("fixture", sorted([*OWN_PARSER, "mt940-wrong-file.940"]))
def test_foreign_files_are_refused_cleanly(name, fixture):
    if OWN_PARSER.get(fixture) == name:
        return
    with pytest.raises(StatementParseError):
        run(name, fixture_bytes(fixture))


@pytest.mark.parametrize("fixture", sorted(OWN_PARSER))
def test_truncated_fixtures_parse_or_are_refused_cleanly(fixture):
    data = fixture_bytes(fixture)
    for cut in range(1, len(data), max(1, len(data) // 97)):
        with contextlib.suppress(StatementParseError):
            run(OWN_PARSER[fixture], data[:cut])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), name=st.sampled_from(sorted(PARSERS)))
def test_random_bytes_never_escape_as_another_exception(data, name):
    with contextlib.suppress(StatementParseError):
        run(name, data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fixture=st.sampled_from(sorted(OWN_PARSER)),
    position=st.integers(min_value=0, max_value=10_000),
    junk=st.sampled_from([b"\x00", b"<", b">", b"&", b":61:", b"\n:20:", b'"', b",", b"\xff", b"-", b"}", b"9"]),
)
def test_corrupted_fixtures_never_escape_as_another_exception(fixture, position, junk):
    data = fixture_bytes(fixture)
    at = position % len(data)
    with contextlib.suppress(StatementParseError):
        run(OWN_PARSER[fixture], data[:at] + junk + data[at + 1 :])
