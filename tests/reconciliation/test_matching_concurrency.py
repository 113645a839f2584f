"""Runs at the same time, against real PostgreSQL: a line is matched once whoever runs."""

import threading

import pytest
from django.db import IntegrityError, connection, connections

from reconciliation.models import (
    ItemSide,
    MatchState,
    MatchStatus,
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
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
        sides = match.memberships.filter(active=True).values_list("item__side", flat=True)
        assert sorted(sides) == [ItemSide.EXTERNAL, ItemSide.INTERNAL]
    assert {status for _, status, _ in recon.snapshot(src)} == {MatchStatus.MATCHED}
    assert ReconciliationMatchItem.objects.filter(item__source=src, active=True).count() == 2 * PAIRS
    assert not ReconciliationOpenItem.objects.filter(source_id=src.pk).exists()


RELEASE_OPEN = "DELETE FROM reconciliation_reconciliationopenitem WHERE item_id = %(item)s"
TAKE_DIRECTLY = (
    "INSERT INTO reconciliation_reconciliationmatchitem (match_id, item_id, external, active)"
    " VALUES (%(match)s, %(item)s, true, true)"
)


def interrupted_run(monkeypatch, *statements: str):
    """A source whose run is interrupted, between reading and writing, by another connection that runs
    `statements` on one of its lines (without the source's lock) to give it a match elsewhere.
    Returns (source, the line, the match elsewhere)."""
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
                for sql in statements:
                    cursor.execute(sql, {"match": foreign.pk, "item": victim.pk})
        finally:
            other.close()
        return find_duplicates(*args, **kwargs)

    monkeypatch.setattr(matching_module, "duplicates", interrupted)
    return src, victim, foreign


def test_a_writer_that_takes_an_item_meanwhile_makes_the_run_roll_back(monkeypatch):
    # Given a writer that takes one of the lines the run read, as a manual match would
    src, victim, foreign = interrupted_run(monkeypatch, RELEASE_OPEN, TAKE_DIRECTLY)
    # When the run writes
    with pytest.raises(ItemsAlreadyMatched):
        recon.run(src)
    # Then nothing of the run is kept: no match, no status, the run FAILED; the other writer's match stands
    run = ReconciliationRun.objects.get(source=src)
    assert run.status == RunStatus.FAILED and "matched meanwhile" in run.error_message
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert {status for pk, status, _ in recon.snapshot(src) if pk != victim.pk} == {MatchStatus.UNMATCHED}
    assert recon.match_of(victim) == foreign.pk


def test_a_writer_that_ignores_the_open_items_still_cannot_give_an_item_a_second_active_match(monkeypatch):
    # Given a writer that gives a line an active match directly, leaving it among the open items
    src, _, _ = interrupted_run(monkeypatch, TAKE_DIRECTLY)
    still_open = ReconciliationOpenItem.objects.filter(source_id=src.pk).count()
    # When the run writes, the database's unique index on an item's active match refuses it
    with pytest.raises(IntegrityError):
        recon.run(src)
    # Then nothing of the run is kept and the run is recorded FAILED
    run = ReconciliationRun.objects.get(source=src)
    assert run.status == RunStatus.FAILED and "recon_item_one_active_match" in run.error_message
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert ReconciliationOpenItem.objects.filter(source_id=src.pk).count() == still_open
