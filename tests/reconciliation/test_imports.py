"""Statement imports through the services: what the items hold, refusals that leave nothing behind,
re-import by hash, card-number-like references, cut files parsed in pieces, progress."""

import datetime as dt
import hashlib
import io
import random
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.db.models import Sum

from audit.models import AuditEvent, AuditResult
from backoffice.celery import app
from backoffice.errors import NotFound, ValidationFailed
from reconciliation.models import (
    BalanceCheck,
    FileStatus,
    ItemSide,
    MatchStatus,
    ReconciliationItem,
    ReconciliationOpenItem,
    StatementFile,
    StatementFileContent,
)
from reconciliation.selectors.items import item_states, not_yet_considered
from reconciliation.services import imports as imports_module
from reconciliation.services import statement_import, statement_receive
from reconciliation.services.cardlike import _CANDIDATE_BYTES, _has_candidate_bytes, pseudonym, pseudonymise_bytes
from reconciliation.services.common import LOCK_FILE_IMPORT
from reconciliation.services.statement_load import split_csv
from reconciliation.tasks import statement_import_task
from tests.card_number_guard import card_numbers
from tests.factories import reconciliation as recon
from tests.reconciliation import FIXTURES as FIXTURES_DIR
from tests.reconciliation import fixture_bytes
from tests.reconciliation.test_parsers_safety import BILLION_LAUGHS, XXE

D = dt.date
pytestmark = pytest.mark.django_db

FIXTURES = [
    # fixture, parser, lines, balance check, difference
    ("camt053-example.xml", "camt053", 4, BalanceCheck.MISMATCH, -43416),
    ("camt054-example.xml", "camt054", 1, BalanceCheck.NOT_AVAILABLE, 0),
    ("mt940-ing.940", "mt940", 8, BalanceCheck.OK, 0),
    ("mt940-rabo.swi", "mt940", 2, BalanceCheck.OK, 0),
    ("adyen-settlement-detail-donation.csv", "adyen_settlement_detail", 2, BalanceCheck.NOT_AVAILABLE, 0),
    ("adyen-settlement-detail-refund.csv", "adyen_settlement_detail", 3, BalanceCheck.NOT_AVAILABLE, 0),
    ("stripe-settlement-report.csv", "stripe_itemized_settlement", 3, BalanceCheck.NOT_AVAILABLE, 0),
]


def lines_of(file: StatementFile) -> list[ReconciliationItem]:
    return list(ReconciliationItem.objects.filter(statement_file=file).order_by("line_no"))


def source_for(parser: str):
    return recon.source(parser=parser, column_mapping=recon.BANK_MAPPING if parser == "generic_csv" else {})


@pytest.mark.parametrize(("name", "parser", "count", "check", "difference"), FIXTURES)
def test_each_real_fixture_imports_every_line_once(name, parser, count, check, difference):
    # Given a source reading the fixture's format and the fixture received as it is
    src = source_for(parser)
    data = fixture_bytes(name)
    # When it is imported
    file = recon.imported(src, data, name)
    # Then the file is IMPORTED with one EXTERNAL item per line, counts and balance check recorded
    assert (file.status, file.line_count, file.imported_count) == (FileStatus.IMPORTED, count, count)
    assert (file.balance_check, file.balance_difference_minor) == (check, difference)
    assert (file.sha256, file.size_bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (file.parser, file.parser_version, file.uploaded_by) == (parser, "1", recon.ACTOR.label)
    assert file.imported_at == recon.T0
    items = lines_of(file)
    assert len(items) == count
    assert {(i.side, i.source_id) for i in items} == {(ItemSide.EXTERNAL, src.pk)}
    assert {(state.status, state.match_id) for state in item_states(i.pk for i in items).values()} == {
        (MatchStatus.UNMATCHED, None)
    }
    # ... and every line is new, above its source's watermark: the next run's work (no open-item row yet)
    assert not_yet_considered(src.pk, [i.pk for i in items]) == sorted(i.pk for i in items)
    assert not ReconciliationOpenItem.objects.filter(source_id=src.pk).exists()
    # And one audit event for the import, not one per line
    events = AuditEvent.objects.filter(event_type="reconciliation.statement_imported", target_id=file.public_id)
    assert events.count() == 1


def test_camt053_items_hold_amounts_signs_dates_references_and_the_balance_finding():
    file = recon.imported(source_for("camt053"), fixture_bytes("camt053-example.xml"), "camt053.xml")
    assert (file.account, file.currency, file.statement_id) == ("NL77ABNA0574908765", "EUR", "1234Test/1")
    assert (file.period_start, file.period_end) == (D(2014, 1, 5), D(2014, 1, 5))
    assert (file.opening_balance_minor, file.closing_balance_minor) == (1556827, 1512112)
    assert "difference -43416" in file.notes[-1]
    first, second, third, fourth = lines_of(file)
    assert (first.line_no, first.amount_minor, first.currency, first.kind, first.value_date) == (
        1, -75425, "EUR", "DEBIT", D(2014, 1, 5))  # fmt: skip
    assert first.reference == "435005714488-ABNO33052620"
    assert first.references["mandate_id"] == "1880000341866"
    assert first.counterparty == "INSURANCE COMPANY TESTX"
    # The reversed batch entry: one item per transaction, with the batch and the reversal kept
    assert [(x.amount_minor, x.batch_id, x.reversal) for x in (second, third)] == [
        (-56405, "entry 2", True), (-10000, "entry 2", True)]  # fmt: skip
    assert (fourth.amount_minor, fourth.kind, fourth.reference) == (140531, "CREDIT", "115")
    assert (first.gross_minor, first.fee_minor, first.net_minor) == (None, None, None)


def test_provider_reports_keep_gross_fee_and_net():
    stripe = recon.imported(source_for("stripe_itemized_settlement"), fixture_bytes("stripe-settlement-report.csv"))
    charge, refund, payout = lines_of(stripe)
    assert (charge.amount_minor, charge.gross_minor, charge.fee_minor, charge.net_minor) == (2405, 2500, 95, 2405)
    assert (charge.kind, charge.currency, charge.value_date, charge.reference) == ("CHARGE", "USD", D(2026, 1, 30),
                                                                                    "pi_123")  # fmt: skip
    assert charge.references["charge_id"] == "ch_123"
    assert charge.batch_id == "po_test123"
    assert (refund.amount_minor, refund.gross_minor, refund.references["source_id"]) == (-1000, -1000, "re_123")
    assert (payout.kind, payout.amount_minor, payout.value_date) == ("PAYOUT", 1405, D(2026, 1, 31))

    adyen = recon.imported(source_for("adyen_settlement_detail"), fixture_bytes("adyen-settlement-detail-refund.csv"))
    refunded, fee, merchant_payout = lines_of(adyen)
    assert (refunded.kind, refunded.amount_minor, refunded.gross_minor, refunded.fee_minor) == ("REFUNDED", -100,
                                                                                                 -100, 0)  # fmt: skip
    assert refunded.references["psp_reference"] == "4522268860022701"  # not Luhn-valid: kept as written
    assert (fee.kind, fee.amount_minor, fee.value_date) == ("FEE", -180, D(2016, 2, 15))
    assert (merchant_payout.amount_minor, merchant_payout.batch_id) == (-403, "3")
    assert (adyen.account, adyen.statement_id) == ("WikimediaCOM", "WikimediaCOM batch 3")


def test_mt940_lines_and_balances():
    file = recon.imported(source_for("mt940"), fixture_bytes("mt940-ing.940"), "ing.940")
    items = lines_of(file)
    assert [(x.line_no, x.amount_minor, x.kind) for x in items] == [
        (9, 156, "CREDIT"), (14, -157, "DEBIT"), (17, 157, "CREDIT"), (21, -114, "DEBIT"), (31, 145, "CREDIT"),
        (39, -1275, "DEBIT"), (47, 3200, "CREDIT"), (51, -11900, "DEBIT"),
    ]  # fmt: skip
    assert sum(x.amount_minor for x in items) == file.closing_balance_minor - file.opening_balance_minor
    assert {x.value_date for x in items} == {D(2014, 2, 20)}
    assert items[0].reference == "EV12341REP1231456T1234"
    assert items[0].references["bank_reference"] == "00000000001005"
    assert items[0].counterparty == "ING BANK NV INZAKE WEB"


# --- refusals ---------------------------------------------------------------------------------------------


def test_the_wrong_mt940_file_is_refused_with_its_error_and_nothing_is_imported():
    # Given the Rabobank statement with a corrupt first line, received
    src = source_for("mt940")
    file = recon.received(src, fixture_bytes("mt940-wrong-file.940"), "wrong.940")
    # When it is imported
    file = statement_import(file_id=file.public_id, actor=recon.ACTOR, now_fn=lambda: recon.T0)
    # Then it is FAILED, saying where and what, with no item
    assert file.status == FileStatus.FAILED
    assert file.error_location == "line 1"
    assert file.error_message == "line 1: expected a :20: transaction reference, found ':9401:'"
    assert (file.line_count, file.imported_count, file.imported_at) == (0, 0, None)
    assert not ReconciliationItem.objects.filter(source=src).exists()
    # And the refusal is audited
    event = AuditEvent.objects.get(event_type="reconciliation.statement_import_refused", target_id=file.public_id)
    assert (event.result, event.error_code) == (AuditResult.REFUSED, "STATEMENT_PARSE_ERROR")
    assert event.error_message == file.error_message
    # And importing it again changes nothing
    again = statement_import(file_id=file.public_id, actor=recon.ACTOR)
    assert (again.status, again.error_message) == (FileStatus.FAILED, file.error_message)


@pytest.mark.parametrize(("data", "attack"), [(BILLION_LAUGHS, "entity expansion"), (XXE, "external entity")])
def test_xml_attacks_are_refused_through_the_import_and_nothing_is_read(data, attack):
    src = source_for("camt053")
    started = time.monotonic()
    file = recon.imported(src, data, "attack.xml")
    assert time.monotonic() - started < 5
    assert (file.status, file.error_location) == (FileStatus.FAILED, "DOCTYPE")
    assert attack in file.error_message
    assert "/etc/passwd" not in "".join(ReconciliationItem.objects.values_list("description", flat=True))
    assert not ReconciliationItem.objects.filter(source=src).exists()


def test_a_bad_row_in_the_middle_leaves_no_item_even_after_earlier_rows_were_loaded(settings):
    # Given a file cut into pieces of 10 rows, whose row 35 has an amount that is not one
    settings.RECON_IMPORT_PIECE_LINES = 10
    settings.RECON_IMPORT_PROCESSES = 1
    rows = [("2026-03-02", f"{n}.00", "IDR", f"REF-{n}") for n in range(1, 60)]
    rows[33] = ("2026-03-02", "12.5x", "IDR", "REF-34")
    src = recon.source()
    file = recon.imported(src, recon.bank_csv(rows))
    # Then the file fails at that row, as a parse of the whole file says, and nothing is kept
    assert (file.status, file.error_location) == (FileStatus.FAILED, "row 35, column 'amount'")
    assert file.error_message.startswith("row 35, column 'amount': expected an amount")
    assert not ReconciliationItem.objects.filter(source=src).exists()


def test_data_that_is_not_bytes_and_an_inactive_source_are_refused():
    src = recon.source()
    with pytest.raises(ValidationFailed):
        statement_receive(source=src, filename="x.csv", data="text", actor=recon.ACTOR, now=recon.T0)
    src.active = False
    with pytest.raises(ValidationFailed, match="not active"):
        statement_receive(source=src, filename="x.csv", data=b"a,b\n", actor=recon.ACTOR, now=recon.T0)
    assert not StatementFile.objects.filter(source=src).exists()


def test_an_unknown_file_is_not_found():
    with pytest.raises(NotFound):
        statement_import(file_id="sf_01ARZ3NDEKTSV4RRFFQ69G5FAV", actor=recon.ACTOR)


# --- once by hash -------------------------------------------------------------------------------------------


def test_the_same_file_twice_is_recognised_by_its_hash_and_changes_nothing():
    # Given a file received and imported
    src = recon.source()
    data = recon.bank_csv([("2026-03-02", "10.00", "IDR", "REF-1"), ("2026-03-02", "-2.50", "IDR", "REF-2")])
    first = recon.imported(src, data, "monday.csv")
    before = list(ReconciliationItem.objects.filter(source=src).values_list("id", "line_no", "amount_minor"))
    # When the same bytes arrive again, under another name
    again, created = statement_receive(source=src, filename="monday (1).csv", data=data, actor=recon.ACTOR,
                                       now=recon.T0)  # fmt: skip
    imported_again = statement_import(file_id=again.public_id, actor=recon.ACTOR)
    # Then it is the same file, nothing new is stored or imported
    assert (again.pk, created) == (first.pk, False)
    assert (imported_again.status, imported_again.filename, imported_again.imported_at) == (
        FileStatus.IMPORTED, "monday.csv", first.imported_at)  # fmt: skip
    assert StatementFile.objects.filter(source=src).count() == 1
    assert list(ReconciliationItem.objects.filter(source=src).values_list("id", "line_no", "amount_minor")) == before
    assert AuditEvent.objects.filter(event_type="reconciliation.statement_received_again",
                                     target_id=first.public_id).count() == 1  # fmt: skip
    # And the same bytes for another source are that source's own file
    other, created = statement_receive(source=recon.source(), filename="monday.csv", data=data, actor=recon.ACTOR,
                                       now=recon.T0)  # fmt: skip
    assert created and other.pk != first.pk


def test_the_stored_copy_is_the_files_bytes_whatever_they_are():
    # Given a file holding every byte value, NUL and backslashes included (as binary values, not text)
    src = recon.source()
    data = bytes(range(256)) * 3 + b"\\x00\\\\ \x00\x00"
    file, created = statement_receive(source=src, filename="odd.bin", data=data, actor=recon.ACTOR, now=recon.T0)
    # Then the stored copy and what the importer reads back are those bytes
    assert created
    assert bytes(StatementFileContent.objects.get(file=file).body) == data
    assert imports_module._content_read(file.pk) == data
    # And a file with no stored copy is refused, not read as empty
    with pytest.raises(StatementFileContent.DoesNotExist):
        imports_module._content_read(-1)


def test_a_file_another_importer_holds_is_returned_as_it_is():
    src = recon.source()
    file = recon.received(src, recon.bank_csv([("2026-03-02", "1.00", "IDR", "R")]))
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_FILE_IMPORT, file.pk])
        result = statement_import(file_id=file.public_id, actor=recon.ACTOR)
        assert result.status == FileStatus.RECEIVED
        assert not ReconciliationItem.objects.filter(source=src).exists()
    finally:
        other.close()
    assert statement_import(file_id=file.public_id, actor=recon.ACTOR).status == FileStatus.IMPORTED


# --- card-number-like references (invariant 10) ----------------------------------------------------------


def test_card_number_like_references_are_stored_as_pseudonyms_that_still_compare_equal():
    # Given the ING statement, whose bank reference 00000000001008 passes the Luhn check
    data = fixture_bytes("mt940-ing.940")
    assert card_numbers(data.decode())
    file = recon.imported(source_for("mt940"), data, "ing.940")
    # Then the stored copy and the items hold its pseudonym, never the number
    body = bytes(StatementFileContent.objects.get(file=file).body)
    assert card_numbers(body.decode()) == []
    assert len(body) == len(data) and file.size_bytes == len(data)
    assert file.sha256 == hashlib.sha256(data).hexdigest()  # the file as received
    assert "card-number-like" in file.notes[0]
    line = ReconciliationItem.objects.get(statement_file=file, line_no=31)
    assert line.references["bank_reference"] == pseudonym("00000000001008")
    assert line.references["bank_reference"].endswith("1008") and len(line.references["bank_reference"]) == 14
    assert line.reference == "M" + pseudonym("000000001111111")
    # And a value not passing Luhn is kept as written
    assert ReconciliationItem.objects.get(statement_file=file, line_no=9).references["bank_reference"] == (
        "00000000001005")  # fmt: skip


def test_a_card_number_the_bytes_do_not_show_is_caught_in_the_parsed_fields():
    # Given a camt.054 whose end-to-end id writes a card number's digits as XML character references
    data = fixture_bytes("camt054-example.xml").replace(b"ENDTOENDID-01", b"&#52;111111111111111")
    file = recon.imported(source_for("camt054"), data, "camt054.xml")
    [line] = lines_of(file)
    assert line.reference == pseudonym("4111111111111111")
    assert card_numbers(line.reference + str(line.references)) == []


def test_a_failed_file_does_not_quote_a_card_number_in_its_error():
    data = b"date,amount,currency,reference,description\n2026-03-02,4111111111111111,IDR,R,x\n"
    file = recon.imported(recon.source(), data)
    assert file.status == FileStatus.FAILED
    assert "4111111111111111" not in file.error_message and pseudonym("4111111111111111") in file.error_message


def test_the_quick_look_for_card_like_runs_answers_as_the_full_pattern_does():
    # The receive looks for runs of 13+ digits, spaces and dashes before running the pattern; it must
    # never miss what the pattern finds, at a file's edges, after long blank runs or inside long runs.
    rng = random.Random(20261121)
    alphabet = b"0123456789 -,.x\n"
    samples = [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 48))) for _ in range(20_000)]
    samples += [
        b"4111111111111111",
        b"x4111 1111 1111 1111",
        b"<a>" + b" " * 40 + b"</a>",
        b"1" * 12,
        b"1" + b" " * 11 + b"1",
        b" " * 20 + b"1234567890123",
        b"2026-03-02,1234567.89,IDR,REF-000000001",
    ]
    for sample in samples:
        assert _has_candidate_bytes(sample) == bool(_CANDIDATE_BYTES.search(sample)), sample
    # And a file with a card number is still pseudonymised, one without is left as it is
    assert pseudonymise_bytes(b"2026-03-02,1.00,IDR,4111111111111111\n")[1] == 1
    plain = b"2026-03-02,1.00,IDR,REF-000000001\n" * 1000
    assert pseudonymise_bytes(plain) == (plain, 0)


# --- cut into pieces -----------------------------------------------------------------------------------------


def _rows(n: int) -> list[tuple[str, str, str, str]]:
    return [(f"2026-03-{1 + k % 28:02d}", f"{'-' if k % 3 == 0 else ''}{k}.{k % 100:02d}", "IDR" if k % 7 else "USD",
             f"REF-{k}") for k in range(1, n + 1)]  # fmt: skip


def _content(file) -> list[tuple]:
    columns = ("line_no", "kind", "amount_minor", "currency", "value_date", "reference", "references", "description")
    return list(ReconciliationItem.objects.filter(statement_file=file).order_by("line_no").values_list(*columns))


@pytest.mark.parametrize("processes", [1, 2])
def test_a_file_cut_into_pieces_imports_exactly_as_the_whole_file(settings, processes):
    # Given one export with CRLF line ends, two currencies and a blank line before its 7th row
    lines = recon.bank_csv(_rows(230)).decode().split("\n")
    lines.insert(7, "")
    data = "\r\n".join(lines).encode()
    # When it is imported whole into one source and cut in pieces of 17 rows into another
    settings.RECON_IMPORT_PIECE_LINES = 1_000_000
    whole = recon.imported(recon.source(), data)
    settings.RECON_IMPORT_PIECE_LINES, settings.RECON_IMPORT_PROCESSES = 17, processes
    cut = recon.imported(recon.source(), data)
    # Then both hold the same items, numbered by the file's lines, and the same statement values
    assert _content(cut) == _content(whole)
    assert len(_content(cut)) == 230
    assert [line_no for line_no, *_ in _content(cut)[5:8]] == [7, 9, 10]  # the blank line is file line 8
    assert len(split_csv(data, parser="generic_csv", mapping=recon.BANK_MAPPING, piece_lines=17)[1]) == 14
    assert (cut.line_count, cut.currency, cut.period_start, cut.period_end) == (
        whole.line_count, "", whole.period_start, whole.period_end)  # fmt: skip


def test_a_file_with_a_byte_order_mark_and_lines_before_its_header_is_cut_at_the_same_rows(settings):
    mapping = {**recon.BANK_MAPPING, "skip_rows": 2}
    body = recon.bank_csv(_rows(60)).decode()
    data = ("\ufeffExport of account 123\r\nCreated 2026-03-02\r\n\r\n" + body).encode()
    settings.RECON_IMPORT_PIECE_LINES = 1_000_000
    whole = recon.imported(recon.source(column_mapping=mapping), data)
    settings.RECON_IMPORT_PIECE_LINES, settings.RECON_IMPORT_PROCESSES = 7, 1
    cut = recon.imported(recon.source(column_mapping=mapping), data)
    assert whole.status == cut.status == FileStatus.IMPORTED
    assert _content(cut) == _content(whole)
    assert _content(cut)[0][0] == 5  # two skipped lines, a blank line, the header
    assert len(split_csv(data, parser="generic_csv", mapping=mapping, piece_lines=7)[1]) == 9  # it was cut


def test_a_quoted_file_is_parsed_whole(settings):
    settings.RECON_IMPORT_PIECE_LINES = 2
    data = (
        b'date,amount,currency,reference,description\n2026-03-02,1.00,IDR,R1,"two\nlines"\n2026-03-02,2.00,IDR,R2,x\n'
    )
    file = recon.imported(recon.source(), data)
    assert [(x.line_no, x.description) for x in lines_of(file)] == [(2, "two\nlines"), (4, "x")]
    assert split_csv(data, parser="generic_csv", mapping=recon.BANK_MAPPING, piece_lines=2) is None


# --- progress --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_to_other_connections_while_the_items_are_not(settings, monkeypatch):
    # Given a file of 120 lines loaded in pieces of 25
    settings.RECON_IMPORT_PIECE_LINES = 25
    settings.RECON_IMPORT_PROCESSES = 1
    src = recon.source()
    file = recon.received(src, recon.bank_csv(_rows(120)))
    seen: list[tuple] = []
    report = imports_module._Progress.__call__

    def watching(self, imported: int, line_count: int) -> None:
        report(self, imported, line_count)
        # What another connection (a file page) reads at this moment
        reader = connections.create_connection("default")
        try:
            with reader.cursor() as cursor:
                cursor.execute("SELECT status, imported_count, line_count FROM reconciliation_statementfile "
                               "WHERE id = %s", [file.pk])  # fmt: skip
                row = cursor.fetchone()
                cursor.execute("SELECT count(*) FROM reconciliation_reconciliationitem WHERE statement_file_id = %s",
                               [file.pk])  # fmt: skip
                seen.append((*row, cursor.fetchone()[0]))
        finally:
            reader.close()

    monkeypatch.setattr(imports_module._Progress, "__call__", watching)
    # When it is imported
    done = statement_import(file_id=file.public_id, actor=recon.ACTOR)
    # Then each piece's progress was visible while the items were not yet
    assert seen == [("IMPORTING", n, 120, 0) for n in (25, 50, 75, 100, 120)]
    assert (done.status, done.imported_count, done.line_count) == (FileStatus.IMPORTED, 120, 120)
    assert ReconciliationItem.objects.filter(statement_file=done).aggregate(n=Sum("line_no"))["n"] == sum(
        range(2, 122))  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_two_importers_at_once_load_the_file_once():
    src = recon.source()
    file = recon.received(src, recon.bank_csv(_rows(300)))
    barrier = threading.Barrier(2)
    results, errors = [], []

    def importer() -> None:
        try:
            barrier.wait()
            results.append(statement_import(file_id=file.public_id, actor=recon.ACTOR).status)
        except Exception as exc:  # reported below, never swallowed
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=importer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert FileStatus.IMPORTED in results
    assert ReconciliationItem.objects.filter(statement_file=file).count() == 300
    assert StatementFile.objects.get(pk=file.pk).status == FileStatus.IMPORTED


# --- the command and the task ---------------------------------------------------------------------------


@pytest.fixture
def tasks_in_process():
    """Tasks queued after commit run here, also where REDIS_URL is set (no worker runs beside the tests)."""
    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


def test_recon_import_prints_the_counts_and_the_balance_check():
    src = source_for("mt940")
    out = io.StringIO()
    call_command("recon_import", src.code, str(FIXTURES_DIR / "mt940-ing.940"), stdout=out)
    printed = out.getvalue()
    assert "IMPORTED: 8 of 8 lines, MT940, period 2014-02-19 .. 2014-02-20, balance check OK" in printed
    assert "card-number-like" in printed  # the file's notes


def test_recon_import_of_a_bad_file_fails_naming_the_place_and_imports_nothing():
    src = source_for("mt940")
    with pytest.raises(CommandError, match=r"FAILED at line 1: line 1: expected a :20: transaction reference"):
        call_command("recon_import", src.code, str(FIXTURES_DIR / "mt940-wrong-file.940"), stdout=io.StringIO())
    assert not ReconciliationItem.objects.filter(source=src).exists()
    with pytest.raises(CommandError, match="no reconciliation source"):
        call_command("recon_import", "nope", str(FIXTURES_DIR / "mt940-ing.940"))


def test_recon_import_async_queues_the_task_and_prints_the_file(django_capture_on_commit_callbacks, tasks_in_process):
    src = source_for("stripe_itemized_settlement")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("recon_import", src.code, str(FIXTURES_DIR / "stripe-settlement-report.csv"), "--async",
                     stdout=out)  # fmt: skip
    file = StatementFile.objects.get(source=src)
    assert f"{file.public_id} queued (task {file.task_id})" in out.getvalue()
    assert file.task_id.startswith("recon-import-")
    assert (file.status, file.imported_count) == (FileStatus.IMPORTED, 3)


def test_the_import_task_is_safe_to_run_twice():
    file = recon.received(recon.source(), recon.bank_csv([("2026-03-02", "1.00", "IDR", "R")]))
    first = statement_import_task(file_id=file.public_id)
    second = statement_import_task(file_id=file.public_id)
    assert first == second == {"file": file.public_id, "status": FileStatus.IMPORTED, "lines": 1, "imported": 1,
                               "error": ""}  # fmt: skip
    assert ReconciliationItem.objects.filter(statement_file=file).count() == 1
