"""The sources and statement files screens: who may read them, the upload (once per content, a bad
file's refusal, the request size cap), the file page (progress while importing, balance check, lines),
running matching, keyset pages and a fixed number of queries.

Data is made only through the reconciliation services (source_create, statement_receive and
statement_import, reconciliation_run), as production makes it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from backoffice.clock import business_date
from reconciliation.models import (
    BreakStatus,
    FileStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationRun,
    StatementFile,
)
from reconciliation.selectors import files as file_selectors
from reconciliation.services import imports as imports_module
from reconciliation.services import statement_import
from tests.factories import reconciliation as recon
from tests.factories.users import user_with_role
from tests.reconciliation import fixture_bytes

pytestmark = pytest.mark.django_db

READERS = ("finance_ops", "finance_manager", "auditor")
MAPPING = {"date": "date", "amount": "amount", "currency": "currency", "reference": "reference",
           "description": "description", "counterparty": "counterparty"}  # fmt: skip


# --- helpers (also used by the other screen tests) -------------------------------------------------


def csv_file(rows) -> bytes:
    """A bank export for MAPPING: rows of (date, amount in major units, currency, reference[, description
    [, counterparty]]), quoted as a spreadsheet writes it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "amount", "currency", "reference", "description", "counterparty"])
    for n, row in enumerate(rows, 1):
        date, amount, currency, reference, *rest = row
        description = rest[0] if rest else f"line {n}"
        counterparty = rest[1] if len(rest) > 1 else "PT Toko Contoh"
        writer.writerow([date.isoformat() if isinstance(date, dt.date) else date, amount, currency, reference,
                         description, counterparty])  # fmt: skip
    return out.getvalue().encode()


def bank_source(code: str = "bank-idr", *, currency: str = "IDR", **fields):
    return recon.source(code=code, column_mapping=MAPPING, currency=currency, name=f"Bank {code}", **fields)


def today() -> dt.date:
    return business_date(timezone.now())


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def html(response) -> str:
    return response.content.decode()


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def source_url(src) -> str:
    return reverse("reconciliation:source_detail", args=[src.code])


def file_url(file: StatementFile) -> str:
    return reverse("reconciliation:file_detail", args=[file.source.code, file.public_id])


def upload(client: Client, src, data: bytes, name: str = "statement.csv"):
    return client.post(reverse("reconciliation:file_upload", args=[src.code]),
                       {"file": SimpleUploadedFile(name, data, content_type="text/csv")})  # fmt: skip


GOOD_ROWS = [("2026-03-02", "150.00", "IDR", "REF-1"), ("2026-03-02", "-25.50", "IDR", "REF-2"),
             ("2026-03-03", "1000.00", "IDR", "REF-3")]  # fmt: skip


# --- who may read --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_every_reader_sees_sources_a_source_and_a_file(client_as, role):
    src = bank_source()
    file = recon.imported(src, csv_file(GOOD_ROWS))
    client = client_as(role)
    for url in (reverse("reconciliation:source_list"), source_url(src), file_url(file)):
        response = client.get(url)
        assert response.status_code == 200, url
    listing = html(client.get(reverse("reconciliation:source_list")))
    assert src.code in listing and file.public_id in listing
    assert "Statement files" in html(client.get(reverse("reconciliation:source_list")))  # in the menu


def test_a_role_without_the_view_permission_is_refused_with_the_reason(client_as):
    src = bank_source()
    file = recon.imported(src, csv_file(GOOD_ROWS))
    client = client_as("support_ops")
    for url in (reverse("reconciliation:source_list"), source_url(src), file_url(file)):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "reconciliation.view_" in html(response) and "finance_ops" in html(response)
    assert "Statement files" not in html(client_as("support_ops").get(reverse("home")))
    assert Client().get(reverse("reconciliation:source_list")).status_code == 302  # anonymous: to the login page


def test_the_auditor_reads_but_has_no_upload_or_run_form(client_as):
    src = bank_source()
    file = recon.imported(src, csv_file(GOOD_ROWS))
    client = client_as("auditor")
    for url in (source_url(src), file_url(file)):
        page = html(client.get(url))
        assert 'data-testid="upload-form"' not in page and 'data-testid="run-form"' not in page
        assert 'data-testid="read-only"' in page
    refused = upload(client, src, csv_file([("2026-03-02", "1.00", "IDR", "X")]))
    assert refused.status_code == 403 and "reconciliation.import_statement" in html(refused)
    run = client.post(reverse("reconciliation:source_run", args=[src.code]), {"refresh": ""})
    assert run.status_code == 403 and "reconciliation.run_reconciliation" in html(run)
    assert StatementFile.objects.filter(source=src).count() == 1 and not ReconciliationRun.objects.exists()


# --- the source page -----------------------------------------------------------------------------------


def test_the_source_page_shows_each_file_with_counts_balance_check_period_and_refusal(client_as):
    camt = recon.source(code="bank-eur", parser="camt053", column_mapping={})
    mismatched = recon.imported(camt, fixture_bytes("camt053-example.xml"), "camt053-example.xml")
    mt940 = recon.source(code="bank-mt940", parser="mt940", column_mapping={})
    balanced = recon.imported(mt940, fixture_bytes("mt940-ing.940"), "mt940-ing.940")
    src = bank_source()
    bad = recon.imported(src, csv_file([("2026-03-02", "12.5x", "IDR", "REF-1")]), "bad.csv")
    client = client_as("finance_ops")

    page = html(client.get(source_url(camt)))
    row = re.search(rf'<tr data-file="{mismatched.public_id}">.*?</tr>', page, re.S).group(0)
    assert "MISMATCH" in row and mismatched.balance_difference_minor == -43416
    assert '<span class="amount">-434.16</span>' in row and f"{mismatched.line_count} / {mismatched.line_count}" in row
    assert mismatched.period_start.isoformat() in row

    row = re.search(rf'<tr data-file="{balanced.public_id}">.*?</tr>', html(client.get(source_url(mt940))), re.S)
    assert ">OK<" in row.group(0) and "8 / 8" in row.group(0)

    row = re.search(rf'<tr data-file="{bad.public_id}">.*?</tr>', html(client.get(source_url(src))), re.S).group(0)
    assert "FAILED" in row and "row 2, column &#x27;amount&#x27;" in row and "0 / 0" in row


def test_the_file_page_of_a_failed_file_says_where_and_why(client_as):
    src = bank_source()
    bad = recon.imported(src, csv_file([("2026-03-02", "1.00", "IDR", "OK"), ("2026-03-02", "12.5x", "IDR", "X")]))
    page = html(client_as("finance_manager").get(file_url(bad)))
    assert 'data-testid="file-refusal"' in page
    assert re.search(r'data-testid="error-location">row 3, column &#x27;amount&#x27;<', page)
    assert "expected an amount" in re.search(r'data-testid="error-message">([^<]*)<', page).group(1)
    assert 'data-testid="line-table"' not in page and "Refresh" not in client_as("auditor").get(file_url(bad))


def test_the_file_page_of_an_imported_file_shows_balances_and_its_lines_with_their_state(client_as):
    src = bank_source()
    file = recon.imported(src, csv_file(GOOD_ROWS))
    recon.run(src)
    response = client_as("finance_ops").get(file_url(file))
    page = html(response)
    assert "Refresh" not in response
    assert re.search(r'data-testid="line-counts">3 imported of 3 found<', page)
    assert 'data-testid="line-table"' in page and page.count("<tr data-line=") == 3
    assert "UNMATCHED EXTERNAL" in page  # where each line stands, read through the item-state selector
    # (line numbers are the file's rows: the header is row 1)
    open_break = ReconciliationBreak.objects.get(item__statement_file=file, item__line_no=2, status=BreakStatus.OPEN)
    assert reverse("reconciliation:break_detail", args=[open_break.public_id]) in page
    assert "Open breaks on this file: 3" in page


# --- uploading -----------------------------------------------------------------------------------------


def test_an_upload_is_received_imported_and_a_second_upload_of_the_same_bytes_changes_nothing(
    django_capture_on_commit_callbacks,
):
    src = bank_source()
    fran = user_with_role("finance_ops", username="fran")
    client = signed_in(fran)
    data = csv_file(GOOD_ROWS)

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, src, data, "march.csv")
    file = StatementFile.objects.get(source=src)
    assert response.status_code == 302 and response["Location"] == file_url(file)
    assert (file.status, file.line_count, file.imported_count, file.uploaded_by) == (FileStatus.IMPORTED, 3, 3, "fran")
    assert file.task_id.startswith("recon-import-")
    # The import ran after the upload's commit (as a worker would): the page said it was queued.
    assert message_texts(response) == [f"{file.public_id} received; its import is queued."]
    items = ReconciliationItem.objects.filter(source=src).count()
    events = AuditEvent.objects.count()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = upload(client, src, data, "march-again.csv")
    assert again.status_code == 200 and callbacks == []
    page = html(again)
    assert re.search(r'data-testid="already-received">\s*<strong>Already received:</strong>', page)
    assert f'href="{file_url(file)}"' in page and "Nothing was changed." in page
    assert StatementFile.objects.filter(source=src).count() == 1
    assert ReconciliationItem.objects.filter(source=src).count() == items
    refreshed = StatementFile.objects.get(pk=file.pk)
    assert (refreshed.filename, refreshed.task_id) == ("march.csv", file.task_id)
    # Only the repeat upload is recorded.
    assert list(AuditEvent.objects.filter(seq__gt=0).order_by("seq").values_list("event_type", flat=True))[
        events:] == ["reconciliation.statement_received_again"]  # fmt: skip


def test_a_bad_file_upload_shows_its_specific_error_and_imports_nothing(client_as, django_capture_on_commit_callbacks):
    src = bank_source()
    client = client_as("finance_ops")
    data = csv_file([("2026-03-02", "10.00", "IDR", "A"), ("2026-03-02", "ten", "IDR", "B")])
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, src, data, "bad.csv")
    file = StatementFile.objects.get(source=src)
    assert file.status == FileStatus.FAILED and response["Location"] == file_url(file)
    page = html(client.get(response["Location"]))
    assert re.search(r'data-testid="error-location">row 3, column &#x27;amount&#x27;<', page)
    assert "expected an amount" in page and "nothing of it was imported" in page
    assert not ReconciliationItem.objects.filter(source=src).exists()


def test_an_empty_file_is_refused_before_anything_is_stored(client_as):
    src = bank_source()
    response = upload(client_as("finance_ops"), src, b"", "empty.csv")
    assert response.status_code == 400
    assert message_texts(response) == ["Refused: The submitted file is empty."]
    assert not StatementFile.objects.exists()


def test_an_upload_past_the_request_cap_is_refused_before_it_is_stored(client_as, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    src = bank_source()
    big = csv_file([("2026-03-02", f"{n}.00", "IDR", f"REF-{n}") for n in range(1, 400)])
    response = upload(client_as("finance_ops"), src, big)
    assert response.status_code == 413
    assert "larger than the 4096 bytes this service accepts" in html(response)
    assert not StatementFile.objects.exists()


# --- importing and running -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_file_being_imported_shows_its_progress_and_refreshes_itself(client_as, monkeypatch):
    src = bank_source()
    file = recon.received(src, csv_file(GOOD_ROWS))

    waiting = client_as("finance_ops").get(file_url(file))
    assert waiting["Refresh"] == "3" and "waiting for the importer" in html(waiting)

    # The importer has loaded 120 of 1,000 lines when its connection is lost: the file stays IMPORTING
    # with the progress it wrote (through its own connection), and a retry would load it again.
    def lost(file, **kwargs):
        imports_module._Progress(file.pk)(120, 1000)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(imports_module, "_load", lost)
    with pytest.raises(OperationalError):
        statement_import(file_id=file.public_id, actor=recon.ACTOR)
    response = client_as("auditor").get(file_url(file))
    page = html(response)
    assert response["Refresh"] == "3"
    assert re.search(r'data-testid="progress-count">120 of 1000<', page)
    assert 'max="1000" value="120"' in page and "(12 %)" in page
    assert "<script" not in page.split("</head>")[1]  # no script of the page's own: the header does it


def test_running_matching_from_the_file_page_refreshes_the_period_and_reports_the_run(client_as):
    src = bank_source()
    file = recon.imported(src, csv_file(GOOD_ROWS))
    client = client_as("finance_ops")
    page = html(client.get(file_url(file)))
    form = re.search(r'<form[^>]*data-testid="run-form".*?</form>', page, re.S).group(0)
    assert 'value="2026-02-23"' in form and 'value="2026-03-03"' in form  # a week before the file's period
    assert f'value="{file.public_id}"' in form

    response = client.post(
        reverse("reconciliation:source_run", args=[src.code]),
        {"refresh": "on", "since": "2026-02-23", "until": "2026-03-03", "file": file.public_id},
    )
    assert response.status_code == 302 and response["Location"] == file_url(file)
    run = ReconciliationRun.objects.get(source=src)
    assert (run.status, run.items_considered, run.breaks_opened, run.started_by) == (
        "SUCCEEDED",
        3,
        3,
        "finance_ops_user",
    )
    assert message_texts(response) == [
        f"0 expected movements added for 2026-02-23 to 2026-03-03; run {run.public_id}: 3 items considered, "
        "0 matches, 3 breaks opened, 0 closed."
    ]  # fmt: skip
    refreshed = AuditEvent.objects.get(event_type="reconciliation.expected_items_refreshed")
    assert refreshed.actor == "finance_ops_user"


def test_a_run_with_an_impossible_period_is_not_run(client_as):
    src = bank_source()
    response = client_as("finance_ops").post(
        reverse("reconciliation:source_run", args=[src.code]),
        {"refresh": "on", "since": "2026-03-05", "until": "2026-03-01"},
    )
    assert response.status_code == 302 and response["Location"] == source_url(src)
    assert message_texts(response) == ["Not run: The period starts after it ends."]
    assert not ReconciliationRun.objects.exists()


# --- pages and queries ---------------------------------------------------------------------------------


def test_the_sources_are_keyset_paged_by_code(client_as, monkeypatch):
    monkeypatch.setattr(file_selectors, "PAGE_SIZE", 2)
    for code in ("bank-c", "bank-a", "bank-e", "bank-b", "bank-d"):
        bank_source(code)
    client = client_as("finance_manager")
    seen, cursor = [], ""
    while True:
        page = client.get(reverse("reconciliation:source_list"), {"cursor": cursor} if cursor else {}).context["page"]
        seen += [s.code for s in page.sources]
        cursor = page.next_cursor
        if not cursor:
            break
    assert seen == ["bank-a", "bank-b", "bank-c", "bank-d", "bank-e"]
    assert client.get(reverse("reconciliation:source_list"), {"cursor": "e30"}).status_code == 400


def test_the_files_of_a_source_are_keyset_paged_newest_first(client_as, monkeypatch):
    monkeypatch.setattr(file_selectors, "PAGE_SIZE", 2)
    src = bank_source()
    made = [recon.received(src, csv_file([("2026-03-02", f"{n}.00", "IDR", f"R{n}")]), f"f{n}.csv",
                           now=recon.T0 + dt.timedelta(minutes=n)) for n in range(5)]  # fmt: skip
    client = client_as("finance_ops")
    seen, cursor = [], ""
    while True:
        response = client.get(source_url(src), {"cursor": cursor} if cursor else {})
        page = response.context["page"]
        seen += [f.public_id for f in page.files]
        cursor = page.next_cursor
        if not cursor:
            break
        assert f"cursor={cursor}" in html(response)
    assert seen == [f.public_id for f in reversed(made)]
    assert client.get(source_url(src), {"cursor": "bm90LWEtY3Vyc29y"}).status_code == 400


def test_the_lines_of_a_file_are_keyset_paged(client_as, monkeypatch):
    monkeypatch.setattr(file_selectors, "LINES_PAGE_SIZE", 2)
    src = bank_source()
    file = recon.imported(src, csv_file([("2026-03-02", f"{n}.00", "IDR", f"R{n}") for n in range(1, 6)]))
    client = client_as("finance_ops")
    seen, after = [], None
    while True:
        lines = client.get(file_url(file), {"after": after} if after else {}).context["lines"]
        seen += [line.item.line_no for line in lines.lines]
        after = lines.next_after
        if after is None:
            break
    assert seen == [2, 3, 4, 5, 6]  # the file's rows, after its header


def test_query_counts_do_not_grow_with_sources_files_or_lines(client_as):
    client = client_as("auditor")
    first = bank_source("bank-a")
    file = recon.imported(first, csv_file(GOOD_ROWS[:1]))
    recon.run(first)
    urls = (reverse("reconciliation:source_list"), source_url(first), file_url(file))
    for url in urls:
        client.get(url)  # warm the session and permission caches
    few = {}
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        few[url] = len(queries)
    for n in range(6):
        bank_source(f"bank-more-{n}")
    for n in range(6):
        recon.imported(first, csv_file([("2026-03-02", f"{n}.00", "IDR", f"M{n}")]), f"m{n}.csv")
    bigger = recon.imported(first, csv_file([("2026-03-02", f"{n}.00", "IDR", f"B{n}") for n in range(1, 30)]))
    recon.run(first)
    for url in urls:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        assert len(queries) == few[url], url
    with CaptureQueriesContext(connection) as queries:
        response = client.get(file_url(bigger))
    assert len(response.context["lines"].lines) == 29 and len(queries) == few[file_url(file)]
