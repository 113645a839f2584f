"""Runs at the same time, against real PostgreSQL: a line is matched once whoever runs."""

import threading

import pytest
from django.db import connection, connections

from reconciliation.models import (
    ItemSide,
    MatchState,
    MatchStatus,
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationRun,
    RunStatus,
    SourceKind,
)
from reconciliation.services import ItemsAlreadyMatched
from reconciliation.services import matching as matching_module
from tests.factories import reconciliation as recon

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
PAIRS = 20


def bank_day(batch_prefix: str = "stl"):
    """A bank source with PAIRS settlements and a statement crediting each (same amount and day)."""
    for k in range(PAIRS):
        recon.settlement(f"{batch_prefix}-{k}", net=10_000 + k)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.refresh(src)
    rows = [("2026-03-02", f"{(10_000 + k) // 100}.{(10_000 + k) % 100:02d}", "IDR", f"{batch_prefix}-{k}")
            for k in range(PAIRS)]  # fmt: skip
    recon.imported(src, recon.bank_csv(rows))
    return src


def in_threads(n: int, work) -> tuple[list, list]:
    barrier = threading.Barrier(n)
    results, errors = [], []

    def target() -> None:
        try:
            barrier.wait()
            results.append(work())
        except Exception as exc:  # reported by the test, never swallowed
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_two_runs_at_once_match_each_line_once():
    # Given a day of 20 bank credits and their 20 settlements
    src = bank_day()
    # When two runs start together
    runs, errors = in_threads(2, lambda: recon.run(src))
    # Then both succeed, one made every match and the other none
    assert errors == []
    assert sorted(run.matches_made for run in runs) == [0, PAIRS]
    assert {run.status for run in ReconciliationRun.objects.filter(source=src)} == {RunStatus.SUCCEEDED}
    # And every item is in exactly one active match of two items
    matches = ReconciliationMatch.objects.filter(source=src, state=MatchState.ACTIVE)
    assert matches.count() == PAIRS
    for match in matches:
        assert sorted(match.items.values_list("side", flat=True)) == [ItemSide.EXTERNAL, ItemSide.INTERNAL]
    assert set(ReconciliationItem.objects.filter(source=src).values_list("match_status", flat=True)) == {
        MatchStatus.MATCHED}  # fmt: skip
    assert ReconciliationItem.objects.filter(source=src, match__isnull=False).count() == 2 * PAIRS


def test_a_writer_that_takes_an_item_meanwhile_makes_the_run_roll_back(monkeypatch):
    # Given a match elsewhere, and a source whose run is interrupted, between reading and writing, by a
    # writer that takes one of its lines without the source's lock
    elsewhere = bank_day("other")
    recon.run(elsewhere)
    foreign = ReconciliationMatch.objects.filter(source=elsewhere).first()
    src = bank_day()
    victim = ReconciliationItem.objects.filter(source=src, side=ItemSide.EXTERNAL).order_by("id").first()
    find_duplicates = matching_module.duplicates

    def interrupted(*args, **kwargs):
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("UPDATE reconciliation_reconciliationitem SET match_id = %s, match_status = %s "
                               "WHERE id = %s", [foreign.pk, MatchStatus.MANUAL_MATCHED, victim.pk])  # fmt: skip
        finally:
            other.close()
        return find_duplicates(*args, **kwargs)

    monkeypatch.setattr(matching_module, "duplicates", interrupted)
    # When the run writes
    with pytest.raises(ItemsAlreadyMatched):
        recon.run(src)
    # Then nothing of the run is kept: no match, no status, the run FAILED; the other writer's match stands
    run = ReconciliationRun.objects.get(source=src)
    assert run.status == RunStatus.FAILED and "matched meanwhile" in run.error_message
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert set(ReconciliationItem.objects.filter(source=src).exclude(pk=victim.pk).values_list(
        "match_status", flat=True)) == {MatchStatus.UNMATCHED}  # fmt: skip
    assert ReconciliationItem.objects.get(pk=victim.pk).match_id == foreign.pk
