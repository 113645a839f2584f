"""Runs at the same time, against real PostgreSQL: a line is matched once whoever runs."""

import threading
import time

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
    ReconciliationWatermark,
    RunStatus,
    SourceKind,
)
from reconciliation.selectors.items import not_yet_considered
from reconciliation.services import ItemsAlreadyMatched
from reconciliation.services import imports as imports_module
from reconciliation.services import matching as matching_module
from reconciliation.services.common import LOCK_SOURCE_RUN
from tests.factories import reconciliation as recon

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]
PAIRS = 20


def statement(batch_prefix: str, ks: range) -> bytes:
    return recon.bank_csv([("2026-03-02", f"{(10_000 + k) // 100}.{(10_000 + k) % 100:02d}", "IDR",
                            f"{batch_prefix}-{k}") for k in ks])  # fmt: skip


def bank_day(batch_prefix: str = "stl", *, run_before_statement: bool = False):
    """A bank source with PAIRS settlements and a statement crediting each (same amount and day). With
    run_before_statement, a run has considered the settlements (open items) before the statement came."""
    for k in range(PAIRS):
        recon.settlement(f"{batch_prefix}-{k}", net=10_000 + k)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.refresh(src)
    if run_before_statement:
        recon.run(src)
    recon.imported(src, statement(batch_prefix, range(PAIRS)))
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
    " VALUES (%(match)s, %(item)s, false, true)"
)


def interrupted_run(monkeypatch, *statements: str):
    """A source whose run is interrupted, between reading and writing, by another connection that runs
    `statements` on one of its open items (a settlement an earlier run left unexplained), without the
    source's lock, to give it a match elsewhere. Returns (source, the item, the match elsewhere)."""
    elsewhere = bank_day("other")
    recon.run(elsewhere)
    foreign = ReconciliationMatch.objects.filter(source=elsewhere).first()
    src = bank_day(run_before_statement=True)
    victim = ReconciliationItem.objects.get(source=src, side=ItemSide.INTERNAL, batch_id="stl-0")
    assert ReconciliationOpenItem.objects.filter(source_id=src.pk, item_id=victim.pk).exists()
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
    run = ReconciliationRun.objects.filter(source=src).latest("id")
    assert run.status == RunStatus.FAILED and "matched meanwhile" in run.error_message
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    # And the watermark is where the first run left it: the statement's lines are still new
    assert ReconciliationWatermark.objects.get(source=src).run_id != run.pk
    lines = list(ReconciliationItem.objects.filter(source=src, side=ItemSide.EXTERNAL).values_list("pk", flat=True))
    assert not_yet_considered(src.pk, lines) == sorted(lines)
    assert {status for pk, status, _ in recon.snapshot(src) if pk != victim.pk} == {
        MatchStatus.UNMATCHED,  # the new lines
        MatchStatus.UNMATCHED_INTERNAL,  # the settlements the first run left with a break
    }
    assert recon.match_of(victim) == foreign.pk


def test_a_writer_that_ignores_the_open_items_still_cannot_give_an_item_a_second_active_match(monkeypatch):
    # Given a writer that gives an open item an active match directly, leaving it among the open items
    src, _, _ = interrupted_run(monkeypatch, TAKE_DIRECTLY)
    still_open = ReconciliationOpenItem.objects.filter(source_id=src.pk).count()
    # When the run writes, the database's unique index on an item's active match refuses it
    with pytest.raises(IntegrityError):
        recon.run(src)
    # Then nothing of the run is kept and the run is recorded FAILED
    run = ReconciliationRun.objects.filter(source=src).latest("id")
    assert run.status == RunStatus.FAILED and "recon_item_one_active_match" in run.error_message
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert ReconciliationOpenItem.objects.filter(source_id=src.pk).count() == still_open


def waiting_for_the_source_lock(src) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s AND objid = %s",
            [LOCK_SOURCE_RUN, src.pk],
        )
        return cursor.fetchone()[0]


def test_a_run_waits_for_an_import_in_progress_and_misses_none_of_its_lines(monkeypatch):
    """The watermark's hazard: a file's lines get their ids, then, before they commit, newer items of
    the source commit and a run reads past the file's ids. The source's lock rules it out: items are
    written under it shared, a run takes it exclusively and so waits for the file."""
    # Given a bank source with settlements, and a statement paying the first half of them
    for k in range(PAIRS):
        recon.settlement(f"wm-{k}", net=10_000 + k)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.refresh(src)
    file = recon.received(src, statement("wm", range(PAIRS // 2)))
    # And an import of it paused after writing its lines, before its commit
    written, release = threading.Event(), threading.Event()
    record = imports_module._record_statement

    def paused(*args, **kwargs):
        written.set()
        assert release.wait(60), "the test never released the import"
        return record(*args, **kwargs)

    monkeypatch.setattr(imports_module, "_record_statement", paused)
    importer = threading.Thread(target=lambda: (recon.statement_import(file_id=file.public_id, actor=recon.ACTOR,
                                                                       now_fn=lambda: recon.T0),
                                                connection.close()))  # fmt: skip
    importer.start()
    assert written.wait(60)
    # When, meanwhile, newer items of the source commit (a second statement, under the same lock shared)
    monkeypatch.setattr(imports_module, "_record_statement", record)
    later = recon.imported(src, statement("wm", range(PAIRS // 2, PAIRS)), "later.csv")
    assert ReconciliationItem.objects.filter(source=src, statement_file=later).count() == PAIRS // 2
    # And a run starts: it waits for the paused import
    runs, errors = [], []
    runner = threading.Thread(target=lambda: (runs.append(recon.run(src)), connection.close()))
    runner.start()
    for _ in range(600):
        if waiting_for_the_source_lock(src):
            break
        time.sleep(0.05)
    assert waiting_for_the_source_lock(src) == 1 and not runs
    # Then, once the import commits, the run finds both files' lines, and matches every one
    release.set()
    importer.join(60)
    runner.join(60)
    assert errors == [] and len(runs) == 1
    assert runs[0].matches_made == PAIRS
    assert {status for _, status, _ in recon.snapshot(src)} == {MatchStatus.MATCHED}
    assert recon.run(src).matches_made == 0
