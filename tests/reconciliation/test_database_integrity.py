"""What PostgreSQL refuses whoever writes, raw SQL included: items are fixed, nothing imported or
matched is deleted, a membership only goes from active to undone, an open item is never edited, and
an item has one active match at most; items are written under their source's lock, only an item a run
has considered is open, and a source's watermark only moves forward."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, InternalError, OperationalError, ProgrammingError, connection, transaction

from reconciliation.models import (
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
    ReconciliationWatermark,
    SourceKind,
    StatementFile,
)
from reconciliation.services.common import index_walk_only, lock_source_for_new_items, raw_cursor
from tests.factories import reconciliation as recon

pytestmark = pytest.mark.django_db
REFUSED = (InternalError, ProgrammingError)  # the triggers raise insufficient_privilege


@pytest.fixture
def matched():
    """A bank source whose one line matched one settlement; returns (source, match, line, settlement item)."""
    recon.settlement("stl-integrity", net=25_000)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.refresh(src)
    recon.imported(src, recon.bank_csv([("2026-03-02", "250.00", "IDR", "stl-integrity")]))
    recon.run(src)
    match = ReconciliationMatch.objects.get(source=src)
    members = {m.item.side: m.item for m in ReconciliationMatchItem.objects.filter(match=match).select_related("item")}
    return src, match, members["EXTERNAL"], members["INTERNAL"]


def refused(sql: str, params: list) -> str:
    with pytest.raises(REFUSED) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(caught.value)


def test_an_item_is_fixed_and_kept(matched):
    _, _, line, _ = matched
    message = refused("UPDATE reconciliation_reconciliationitem SET amount_minor = 1 WHERE id = %s", [line.pk])
    assert "fixed at creation" in message
    refused("DELETE FROM reconciliation_reconciliationitem WHERE id = %s", [line.pk])
    assert ReconciliationItem.objects.get(pk=line.pk).amount_minor == line.amount_minor


def test_a_membership_can_only_be_undone_and_is_kept(matched):
    _, match, line, settlement = matched
    other = ReconciliationMatch.objects.exclude(pk=match.pk).first()
    table = "reconciliation_reconciliationmatchitem"
    assert "can only be undone" in refused(
        f"UPDATE {table} SET item_id = %s WHERE match_id = %s AND item_id = %s",
        [settlement.pk, match.pk, line.pk],
    )
    if other is not None:
        refused(f"UPDATE {table} SET match_id = %s WHERE item_id = %s", [other.pk, line.pk])
    refused(f"DELETE FROM {table} WHERE match_id = %s", [match.pk])
    with connection.cursor() as cursor:  # undoing is allowed (match_undo does it)...
        cursor.execute(f"UPDATE {table} SET active = false WHERE match_id = %s", [match.pk])
    # ... and a membership undone stays undone
    assert "can only be undone" in refused(f"UPDATE {table} SET active = true WHERE match_id = %s", [match.pk])
    assert ReconciliationMatchItem.objects.filter(match=match, active=False).count() == 2


def test_an_item_has_one_active_match_at_most(matched):
    src, match, line, _ = matched
    second = ReconciliationMatch.objects.create(
        public_id="rm_SECOND", source=src, rule_code="by-hand", rule_version=1, shape="ONE_TO_ONE", result="MATCHED",
        confidence="1.000", currency="IDR", created_at=recon.T0,
    )  # fmt: skip
    with pytest.raises(IntegrityError, match="recon_item_one_active_match"), transaction.atomic():
        ReconciliationMatchItem.objects.create(match=second, item=line, external=True)
    assert list(ReconciliationMatchItem.objects.filter(item=line).values_list("match_id", flat=True)) == [match.pk]


def test_an_open_item_is_added_or_removed_never_changed():
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.imported(
        src, recon.bank_csv([("2026-03-02", "1.00", "IDR", "ref-a"), ("2026-03-02", "2.00", "IDR", "ref-b")])
    )
    recon.run(src)  # nothing to match them with: the run leaves both lines open
    first, second = ReconciliationOpenItem.objects.filter(source_id=src.pk).order_by("item_id")
    assert "never changed" in refused(
        "UPDATE reconciliation_reconciliationopenitem SET item_id = %s WHERE item_id = %s",
        [second.item_id + 1000, first.item_id],
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # and an item is open once
        ReconciliationOpenItem.objects.create(source_id=src.pk, item_id=first.item_id)


def test_a_files_identity_and_bytes_are_kept(matched):
    src, _, line, _ = matched
    file = StatementFile.objects.get(pk=line.statement_file_id)
    refused("UPDATE reconciliation_statementfile SET sha256 = %s WHERE id = %s", ["0" * 64, file.pk])
    refused("UPDATE reconciliation_statementfilecontent SET body = %s WHERE file_id = %s", [b"x", file.pk])
    refused("DELETE FROM reconciliation_statementfile WHERE id = %s", [file.pk])
    refused("DELETE FROM reconciliation_reconciliationmatch WHERE source_id = %s", [src.pk])


def test_an_error_inside_an_index_walk_surfaces_as_itself():
    # The planner settings are transaction-local: a failed statement's rollback takes them away, and
    # putting them back in the aborted transaction must not hide the statement's own error.
    with (
        pytest.raises(ProgrammingError, match="no_such_table"),
        transaction.atomic(),
        index_walk_only(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT * FROM no_such_table")


# --- references checked per statement (migration 0006) ------------------------------------------------

_MISSING = 987_654_321


def _copy(table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    text = "".join("\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in rows)
    with raw_cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write(text.encode())


def test_every_unconstrained_reference_of_items_matches_and_breaks_is_checked():
    """A foreign key without a database constraint on these tables must have its statement check
    (insert) and its row check (update), or nothing would stop a dangling reference."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, t.tgname, encode(t.tgargs, 'escape') FROM pg_trigger t
                 JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'recon_%%_references_%%'"""
        )
        arguments = {(table, name.rsplit("_", 1)[1]): args for table, name, args in cursor.fetchall()}
    for model in (ReconciliationItem, ReconciliationMatch, ReconciliationBreak):
        table = model._meta.db_table
        unconstrained = [f for f in model._meta.concrete_fields if f.is_relation and not f.db_constraint]
        assert unconstrained, table
        for field in unconstrained:
            expected = f"{field.column}\\000{field.related_model._meta.db_table}\\000"
            for event in ("insert", "update"):
                assert expected in arguments[(table, event)], (table, field.column, event)


def test_a_copy_of_items_naming_a_missing_file_or_source_is_refused_whole(matched):
    src, _, line, _ = matched
    before = ReconciliationItem.objects.count()
    columns = ("side", "source_id", "statement_file_id", "line_no", "kind", "amount_minor", "currency",
               "value_date", "reference", '"references"', "created_at", "internal_type", "internal_id", "counterparty",
               "description", "batch_id", "reversal")  # fmt: skip
    good = ("EXTERNAL", src.pk, line.statement_file_id, 900, "CREDIT", 100, "IDR", "2026-03-02", "r", "{}", recon.T0,
            "", "", "", "", "", "f")  # fmt: skip
    dangling_file = (*good[:2], _MISSING, 901, *good[4:])
    dangling_source = (good[0], _MISSING, good[2], 901, *good[4:])
    for bad, column in ((dangling_file, "statement_file_id"), (dangling_source, "source_id")):
        with pytest.raises(IntegrityError, match=f"{column}={_MISSING} is not present"), transaction.atomic():
            _copy("reconciliation_reconciliationitem", columns, [good, bad])
        assert ReconciliationItem.objects.count() == before  # neither row: the statement is refused whole


def test_a_match_or_break_naming_a_missing_row_is_refused(matched):
    src, match, line, _ = matched
    matches, breaks = ReconciliationMatch.objects.count(), ReconciliationBreak.objects.count()
    with (
        pytest.raises(IntegrityError, match=f"run_id={_MISSING} is not present"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            """INSERT INTO reconciliation_reconciliationmatch (public_id, source_id, run_id, rule_code, rule_version,
                   shape, result, confidence, amount_delta_minor, currency, tolerance, state, created_at, unmatched_by)
               VALUES ('rm_DANGLING', %s, %s, 'x', 1, 'ONE_TO_ONE', 'MATCHED', 1, 0, 'IDR', '{}', 'ACTIVE', now(),
                       '')""",
            [src.pk, _MISSING],
        )
    with pytest.raises(IntegrityError, match=f"item_id={_MISSING} is not present"), transaction.atomic():
        ReconciliationBreak.objects.create(
            public_id="rb_DANGLING", item_id=_MISSING, source=src, break_type="UNMATCHED_EXTERNAL", amount_minor=1,
            currency="IDR", business_date=recon.T0.date(), owner_team="finance_ops", opened_at=recon.T0,
        )  # fmt: skip
    assert (ReconciliationMatch.objects.count(), ReconciliationBreak.objects.count()) == (matches, breaks)
    # An update that moves a reference is checked too; one that leaves it alone is not bothered.
    rb = ReconciliationBreak.objects.create(
        public_id="rb_REAL", item=line, source=src, break_type="DUPLICATE", amount_minor=1, currency="IDR",
        business_date=recon.T0.date(), owner_team="finance_ops", opened_at=recon.T0,
    )  # fmt: skip
    with pytest.raises(IntegrityError, match=f"closed_by_match_id={_MISSING}"), transaction.atomic():
        ReconciliationBreak.objects.filter(pk=rb.pk).update(closed_by_match_id=_MISSING)
    with pytest.raises(IntegrityError, match=f"source_id={_MISSING}"), transaction.atomic():
        ReconciliationMatch.objects.filter(pk=match.pk).update(source_id=_MISSING)
    ReconciliationBreak.objects.filter(pk=rb.pk).update(closed_by_match_id=match.pk, closing_note="checked")
    assert ReconciliationBreak.objects.filter(pk=rb.pk).values_list("closed_by_match_id", "closing_note").get() == (
        match.pk, "checked",
    )  # fmt: skip
    assert ReconciliationMatch.objects.get(pk=match.pk).source_id == src.pk


def test_referenced_rows_are_kept_with_their_ids(matched):
    """What a foreign key also gave: the row a reference names cannot go away or change its id."""
    src, match, line, _ = matched
    refused("DELETE FROM reconciliation_reconciliationsource WHERE id = %s", [src.pk])
    for table, pk in (("reconciliationsource", src.pk), ("reconciliationrun", match.run_id),
                      ("reconciliationmatch", match.pk), ("statementfile", line.statement_file_id)):  # fmt: skip
        assert "changing the id" in refused(f"UPDATE reconciliation_{table} SET id = id + 1000000 WHERE id = %s", [pk])
    assert ReconciliationMatch.objects.get(pk=match.pk).run_id == match.run_id


def test_file_bytes_are_compressed_with_lz4_where_the_server_has_it():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        has_lz4 = cursor.fetchone()[0]
        cursor.execute(
            """SELECT attcompression FROM pg_attribute
                WHERE attrelid = 'reconciliation_statementfilecontent'::regclass AND attname = 'body'"""
        )
        compression = cursor.fetchone()[0]
    assert compression == "l" if has_lz4 else compression in ("", "\x00")  # none set: the server's default


_ITEM_SQL = (
    "INSERT INTO reconciliation_reconciliationitem (side, source_id, internal_type, internal_id, kind, amount_minor,"
    ' currency, value_date, reference, "references", counterparty, description, batch_id, reversal, created_at)'
    " VALUES ('INTERNAL', %s, 'payment_attempt', %s, 'CAPTURE', 100, 'IDR', '2026-03-02', '', '{}', '', '', '',"
    " false, now())"
)


def test_an_item_written_without_its_sources_lock_is_refused():
    # A run could read past an item committed without the lock (its watermark), and never match it.
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    unlocked = pytest.raises(OperationalError, match="without the source's matching lock")
    with unlocked, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_ITEM_SQL, [src.pk, "pa_unlocked"])
    assert not ReconciliationItem.objects.filter(source=src).exists()
    # Another source's lock is not this one's
    other = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    with pytest.raises(OperationalError, match="without the source's matching lock"), transaction.atomic():
        lock_source_for_new_items(other.pk)
        with connection.cursor() as cursor:
            cursor.execute(_ITEM_SQL, [src.pk, "pa_other_lock"])
    # Under its own lock, shared (a writer of items) or exclusive (a run), the item is written
    with transaction.atomic():
        lock_source_for_new_items(src.pk)
        with connection.cursor() as cursor:
            cursor.execute(_ITEM_SQL, [src.pk, "pa_locked"])
    assert list(ReconciliationItem.objects.filter(source=src).values_list("internal_id", flat=True)) == ["pa_locked"]


def test_only_an_item_a_run_has_considered_can_be_open():
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.imported(src, recon.bank_csv([("2026-03-02", "1.00", "IDR", "ref-a")]))
    line = ReconciliationItem.objects.get(source=src)
    # A new line (above the watermark) is the next run's work, not an open item
    with pytest.raises(IntegrityError, match="above its source's watermark"), transaction.atomic():
        ReconciliationOpenItem.objects.create(source_id=src.pk, item_id=line.pk)
    recon.run(src)
    assert list(ReconciliationOpenItem.objects.filter(source_id=src.pk).values_list("item_id", flat=True)) == [line.pk]


def test_a_watermark_only_moves_forward_and_is_kept():
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.imported(src, recon.bank_csv([("2026-03-02", "1.00", "IDR", "ref-a"), ("2026-03-02", "2.00", "IDR", "b")]))
    run = recon.run(src)
    watermark = ReconciliationWatermark.objects.get(source=src)
    assert (watermark.considered_through, watermark.run_id) == (
        ReconciliationItem.objects.filter(source=src).latest("id").pk,
        run.pk,
    )
    table = "reconciliation_reconciliationwatermark"
    assert "only moves forward" in refused(
        f"UPDATE {table} SET considered_through = considered_through - 1 WHERE source_id = %s", [src.pk]
    )
    refused(f"DELETE FROM {table} WHERE source_id = %s", [src.pk])
    ReconciliationWatermark.objects.get(source=src, considered_through=watermark.considered_through)
