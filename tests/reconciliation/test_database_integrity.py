"""What PostgreSQL refuses whoever writes, raw SQL included: items are fixed, nothing imported or
matched is deleted, a membership only goes from active to undone, an open item is never edited, and
an item has one active match at most."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction

from reconciliation.models import (
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
    SourceKind,
    StatementFile,
)
from reconciliation.services.common import index_walk_only
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
