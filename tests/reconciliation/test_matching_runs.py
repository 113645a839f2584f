"""Reconciliation runs against the database: statuses and matches written, reruns, items arriving
later, duplicates across files, batches, undo and manual matches."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent, AuditResult
from backoffice.errors import IllegalTransition, ValidationFailed
from reconciliation.models import (
    BreakStatus,
    DecisionType,
    ItemSide,
    MatchShape,
    MatchState,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationManualDecision,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
    ReconciliationRule,
    ReconciliationRun,
    ReconciliationWatermark,
    RunStatus,
    SourceKind,
)
from reconciliation.selectors.items import item_states, match_items, not_yet_considered, unmatched_items
from reconciliation.services import ItemsAlreadyMatched, match_manual, match_undo
from reconciliation.services import common as common_module
from reconciliation.services import matching as matching_module
from reconciliation.tasks import reconciliation_run_task
from tests.factories import reconciliation as recon
from tests.factories.payments import T0

pytestmark = pytest.mark.django_db


def money(minor: int) -> str:
    return f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def status_of(item) -> tuple[str, int | None]:
    state = item_states([item.pk])[item.pk]
    return state.status, state.match_id


@pytest.fixture
def provider_day():
    """A provider source with four captures and a settlement report of four lines: one exact, one
    within the amount tolerance, one with another fee than expected, one unknown; the fourth
    capture is not on the report."""
    exact, near, fee, missing = (recon.capture(amount_minor=a) for a in (1_000_000, 250_000, 400_000, 600_000))
    src = recon.provider_source("sim", parser="stripe_itemized_settlement", column_mapping={})
    recon.refresh(src)
    report = recon.stripe_csv([
        (exact.provider_reference, money(1_000_000), money(exact.fee_minor), "IDR", "charge"),
        (near.provider_reference, money(250_050), money(near.fee_minor), "IDR", "charge"),
        (fee.provider_reference, money(400_000), money(fee.fee_minor + 700), "IDR", "charge"),
        ("sim_pay_UNKNOWN", money(99_900), "0.00", "IDR", "charge"),
    ])  # fmt: skip
    file = recon.imported(src, report, "settlement.csv")
    assert file.status == "IMPORTED"
    lines = {line.line_no: line for line in recon.items(src, side=ItemSide.EXTERNAL)}
    internal = {i.internal_id: i for i in recon.items(src, side=ItemSide.INTERNAL)}
    return src, lines, {k: internal[a.public_id] for k, a in
                        {"exact": exact, "near": near, "fee": fee, "missing": missing}.items()}  # fmt: skip


def test_a_run_matches_by_its_rules_and_leaves_the_rest_as_breaks(provider_day):
    src, lines, expected = provider_day
    # When the source is reconciled
    run = recon.run(src)
    # Then each line has its result, and each match its rule, version, confidence, delta and tolerance
    assert status_of(lines[2])[0] == MatchStatus.MATCHED
    assert status_of(lines[3])[0] == MatchStatus.MATCHED
    assert status_of(lines[4])[0] == MatchStatus.FEE_MISMATCH
    assert status_of(lines[5]) == (MatchStatus.UNMATCHED_EXTERNAL, None)
    assert status_of(expected["missing"]) == (MatchStatus.UNMATCHED_INTERNAL, None)
    exact = ReconciliationMatch.objects.get(memberships__item=lines[2].pk, memberships__active=True)
    assert (exact.rule_code, exact.rule_version, exact.result, exact.confidence, exact.amount_delta_minor) == (
        "exact-reference", 1, MatchStatus.MATCHED, pytest.approx(1), 0)  # fmt: skip
    assert sorted(i.pk for i in match_items([exact.pk])[exact.pk]) == sorted([lines[2].pk, expected["exact"].pk])
    near = ReconciliationMatch.objects.get(memberships__item=lines[3].pk, memberships__active=True)
    assert (near.rule_code, near.amount_delta_minor, float(near.confidence)) == ("reference-tolerance", 50, 0.9)
    assert near.tolerance == {"tolerance_minor": 100, "tolerance_bps": 50, "allowed_minor": 1250, "compared": "gross"}
    fee = ReconciliationMatch.objects.get(memberships__item=lines[4].pk, memberships__active=True)
    assert (fee.rule_code, fee.result, fee.amount_delta_minor) == ("fee-aware", MatchStatus.FEE_MISMATCH, 700)
    assert status_of(expected["fee"])[0] == MatchStatus.FEE_MISMATCH
    assert {m.run_id for m in ReconciliationMatch.objects.filter(source=src)} == {run.pk}
    # And the run records what it did; breaks opened for what is left unexplained
    assert (run.status, run.items_considered, run.matches_made) == (RunStatus.SUCCEEDED, 8, 3)
    assert run.breaks_opened == 3 and run.breaks_closed == 0
    assert sorted(ReconciliationBreak.objects.filter(source=src).values_list("break_type", flat=True)) == [
        MatchStatus.FEE_MISMATCH, MatchStatus.UNMATCHED_EXTERNAL, MatchStatus.UNMATCHED_INTERNAL]  # fmt: skip
    event = AuditEvent.objects.get(event_type="reconciliation.run_finished", target_id=run.public_id)
    assert event.after["by_rule"] == {
        "exact-reference": 1, "reference-tolerance": 1, "fee-aware": 1, "amount-date-window": 0,
        "batch-many-to-one": 0, "duplicate-check": 0,
    }  # fmt: skip


def test_a_second_run_changes_nothing(provider_day):
    src = provider_day[0]
    recon.run(src)
    before = recon.snapshot(src)
    matches = list(ReconciliationMatch.objects.filter(source=src).values_list("pk", "state", "result"))
    breaks = list(ReconciliationBreak.objects.filter(source=src).values_list("pk", "status"))
    again = recon.run(src)
    assert (again.status, again.items_considered, again.matches_made) == (RunStatus.SUCCEEDED, 2, 0)
    assert (again.breaks_opened, again.breaks_closed) == (0, 0)
    assert recon.snapshot(src) == before
    assert list(ReconciliationMatch.objects.filter(source=src).values_list("pk", "state", "result")) == matches
    assert list(ReconciliationBreak.objects.filter(source=src).values_list("pk", "status")) == breaks


def test_a_capture_recorded_later_matches_the_line_left_unmatched_yesterday():
    # Given yesterday's line, unmatched, its break open
    src = recon.provider_source("sim")
    file = recon.imported(src, recon.bank_csv([("2026-03-02", "3000.00", "IDR", "sim_pay_LATE")]))
    first = recon.run(src)
    [line] = recon.items(src, statement_file=file)
    assert status_of(line)[0] == MatchStatus.UNMATCHED_EXTERNAL and first.breaks_opened == 1
    # When the capture is recorded and the expected items refreshed
    capture = recon.capture(amount_minor=300_000, provider_reference="sim_pay_LATE")
    recon.refresh(src)
    second = recon.run(src)
    # Then the line matches it and its break closes
    status, match_id = status_of(line)
    assert status == MatchStatus.MATCHED
    [paired] = [i for i in match_items([match_id])[match_id] if i.side == ItemSide.INTERNAL]
    assert paired.internal_id == capture.public_id
    assert (second.matches_made, second.breaks_closed) == (1, 1)
    assert ReconciliationBreak.objects.get(item=line).status == BreakStatus.CLOSED


def test_a_line_repeated_in_a_later_file_is_a_duplicate_of_the_original():
    src = recon.provider_source("sim")
    capture = recon.capture(amount_minor=150_000, provider_reference="sim_pay_TWICE")
    recon.refresh(src)
    recon.imported(src, recon.bank_csv([("2026-03-02", "1500.00", "IDR", "sim_pay_TWICE")]), "monday.csv")
    recon.run(src)
    original = ReconciliationMatch.objects.get(source=src)
    # The same line again, in Tuesday's file (and twice in it)
    tuesday = recon.imported(src, recon.bank_csv([("2026-03-02", "1500.00", "IDR", "sim_pay_TWICE")] * 2,
                                                 description="tuesday"), "tuesday.csv")  # fmt: skip
    run = recon.run(src)
    dupes = ReconciliationMatch.objects.filter(source=src, result=MatchStatus.DUPLICATE).order_by("id")
    assert run.matches_made == 2 and dupes.count() == 2
    for dupe in dupes:
        assert (dupe.rule_code, dupe.shape, dupe.tolerance) == ("duplicate-check", MatchShape.ONE_TO_ONE,
                                                                {"duplicate_of": original.public_id})  # fmt: skip
        assert [i.statement_file_id for i in match_items([dupe.pk])[dupe.pk]] == [tuesday.pk]
    assert status_of(ReconciliationItem.objects.get(internal_id=capture.public_id))[1] == original.pk


def test_a_batched_bank_credit_matches_the_settlements_of_its_batch():
    for net in (40_000, 35_000, 25_000):
        recon.settlement("stl-batch-7", net=net, fee=1_000)
    recon.settlement("stl-batch-8", net=12_345)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    recon.refresh(src)
    recon.imported(src, recon.bank_csv([("2026-03-03", "1000.00", "IDR", "stl-batch-7"),
                                        ("2026-03-03", "999.99", "IDR", "stl-batch-8")]))  # fmt: skip
    run = recon.run(src)
    batch = ReconciliationMatch.objects.get(source=src, rule_code="batch-many-to-one")
    assert (batch.shape, batch.result, batch.amount_delta_minor) == (MatchShape.ONE_TO_MANY, MatchStatus.MATCHED, 0)
    members = match_items([batch.pk])[batch.pk]
    assert sorted(i.amount_minor for i in members if i.side == ItemSide.INTERNAL) == [25_000, 35_000, 40_000]
    # A batch whose sum differs by one unit is left alone
    assert run.matches_made == 1
    assert status_of(ReconciliationItem.objects.filter(source=src, batch_id="stl-batch-8").get())[0] == (
        MatchStatus.UNMATCHED_INTERNAL)  # fmt: skip


def test_rules_of_the_source_apply_in_position_order_and_inactive_or_other_sources_rules_do_not(provider_day):
    src, lines, _ = provider_day
    # Given the default tolerance rule switched off, a wide one for another source and a narrow one for this
    ReconciliationRule.objects.filter(code="reference-tolerance").update(active=False)
    rule = {"kind": "REFERENCE_TOLERANCE", "created_at": T0}
    ReconciliationRule.objects.create(code="other-tolerance", version=1, position=21, source=recon.source(),
                                      params={"tolerance_minor": 1_000}, **rule)  # fmt: skip
    ReconciliationRule.objects.create(code="own-tolerance", version=3, position=26, source=src,
                                      params={"tolerance_minor": 60}, **rule)  # fmt: skip
    recon.run(src)
    # Then the line 50 over is matched by this source's rule, with its version
    match = ReconciliationMatch.objects.get(memberships__item=lines[3].pk, memberships__active=True)
    assert (match.rule_code, match.rule_version, match.result) == ("own-tolerance", 3, MatchStatus.MATCHED)
    assert match.tolerance["tolerance_minor"] == 60


def test_a_rule_the_engine_cannot_apply_fails_the_run_and_changes_nothing(provider_day):
    src = provider_day[0]
    ReconciliationRule.objects.create(code="broken", version=1, position=5, kind="REFERENCE_TOLERANCE",
                                      params={"tolerance_bps": "lots"}, source=src, created_at=T0)  # fmt: skip
    before = recon.snapshot(src)
    with pytest.raises(ValidationFailed, match="tolerance_bps"):
        recon.run(src)
    run = ReconciliationRun.objects.get(source=src)
    assert run.status == RunStatus.FAILED and "tolerance_bps" in run.error_message
    assert recon.snapshot(src) == before
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    event = AuditEvent.objects.get(event_type="reconciliation.run_failed", target_id=run.public_id)
    assert (event.result, event.error_code) == (AuditResult.FAILED, "VALIDATION_FAILED")


def test_a_failure_while_the_matches_are_being_sent_fails_the_run_and_changes_nothing(provider_day, monkeypatch):
    # Given a run whose own thread fails while psycopg's thread is still sending the matches
    src = provider_day[0]
    before = recon.snapshot(src)
    watermark = list(ReconciliationWatermark.objects.filter(source=src).values_list("considered_through", flat=True))

    def broken(matches):
        raise RuntimeError("rendering the memberships failed")

    monkeypatch.setattr(matching_module, "_membership_rows", broken)
    with pytest.raises(RuntimeError, match="rendering the memberships"):
        recon.run(src)
    # Then the COPY is abandoned with the transaction: no match, no membership, no watermark, no break
    run = ReconciliationRun.objects.get(source=src)
    assert run.status == RunStatus.FAILED and "rendering the memberships" in run.error_message
    assert recon.snapshot(src) == before
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert not ReconciliationMatchItem.objects.filter(item__source=src).exists()
    assert list(ReconciliationWatermark.objects.filter(source=src).values_list("considered_through", flat=True)) == (
        watermark)  # fmt: skip
    assert not ReconciliationBreak.objects.filter(source=src).exists()
    event = AuditEvent.objects.get(event_type="reconciliation.run_failed", target_id=run.public_id)
    assert (event.result, event.error_code) == (AuditResult.FAILED, "RuntimeError")
    # And the connection is usable: the same run, without the failure, matches
    monkeypatch.undo()
    assert recon.run(src).status == RunStatus.SUCCEEDED
    assert ReconciliationMatch.objects.filter(source=src).exists()


@pytest.mark.parametrize(("threshold", "analysed"), [(3, True), (4, False)])
def test_a_run_that_changes_many_breaks_refreshes_their_statistics(provider_day, monkeypatch, threshold, analysed):
    # Given a threshold of changed breaks (100,000 in production), and a run that opens three
    monkeypatch.setattr(common_module, "ANALYZE_AFTER_ITEMS", threshold)
    with CaptureQueriesContext(connection) as queries:
        run = recon.run(provider_day[0])
    # Then the break tables are analysed after the run once it reached the threshold, and only then
    assert run.breaks_opened + run.breaks_closed == 3
    statements = [q["sql"] for q in queries.captured_queries]
    assert ("ANALYZE reconciliation_reconciliationbreak" in statements) is analysed
    assert ("ANALYZE reconciliation_reconciliationopenitem" in statements) is analysed
    assert "statistics" in run.timings


# --- undo and manual ---------------------------------------------------------------------------------------


def test_undoing_a_match_releases_its_items_and_reopens_their_breaks(provider_day):
    src, lines, expected = provider_day
    recon.run(src)
    match = ReconciliationMatch.objects.get(memberships__item=lines[2].pk, memberships__active=True)
    undone = match_undo(match_id=match.public_id, actor=recon.ACTOR, now=T0, reason_text="Wrong capture",
                        approval_ref="act_01TEST")  # fmt: skip
    assert (undone.state, undone.unmatched_by, undone.unmatched_at) == (MatchState.UNMATCHED, recon.ACTOR.label, T0)
    assert status_of(lines[2]) == (MatchStatus.UNMATCHED_EXTERNAL, None)
    assert status_of(expected["exact"]) == (MatchStatus.UNMATCHED_INTERNAL, None)
    assert ReconciliationBreak.objects.filter(item_id__in=[lines[2].pk, expected["exact"].pk],
                                              status=BreakStatus.OPEN).count() == 2  # fmt: skip
    event = AuditEvent.objects.get(event_type="reconciliation.match_undone", target_id=match.public_id)
    assert (event.reason_text, event.approval_ref, event.after["items_released"]) == ("Wrong capture",
                                                                                       "act_01TEST", 2)  # fmt: skip
    # Undoing it again is refused and audited; the next run matches the pair again, in a new match
    with pytest.raises(IllegalTransition):
        match_undo(match_id=match.public_id, actor=recon.ACTOR, now=T0, reason_text="again")
    assert AuditEvent.objects.filter(event_type="reconciliation.match_undo_refused", result=AuditResult.REFUSED).count()
    rerun = recon.run(src)
    assert rerun.matches_made == 1 and status_of(lines[2])[0] == MatchStatus.MATCHED
    assert status_of(lines[2])[1] != match.pk
    # And the undone match still shows what it grouped
    assert sorted(i.pk for i in match_items([match.pk])[match.pk]) == sorted([lines[2].pk, expected["exact"].pk])


def _decision(src, line, n: int = 0) -> ReconciliationManualDecision:
    # The decision service is another module's; its row is set up directly here.
    rb = ReconciliationBreak.objects.get(item=line, status=BreakStatus.OPEN)
    return ReconciliationManualDecision.objects.create(
        public_id=f"rd_01TESTDECISION{n:013d}", recon_break=rb, decision_type=DecisionType.ACCEPT_TOLERANCE_MATCH,
        reason_code="FX_ROUNDING", reason_text="Rounding at the provider", currency="IDR", decided_by="maker",
        decided_at=T0, approval_ref="act_01APPROVAL",
    )  # fmt: skip


def test_a_manual_match_takes_unmatched_items_once(provider_day):
    src, lines, expected = provider_day
    recon.run(src)
    decision = _decision(src, lines[5])
    match = match_manual(source=src, external_ids=[lines[5].pk], internal_ids=[expected["missing"].pk],
                         decision=decision, actor=recon.ACTOR, now=T0)  # fmt: skip
    assert (match.result, match.shape, match.decision_id, match.rule_code) == (
        MatchStatus.MANUAL_MATCHED, MatchShape.ONE_TO_ONE, decision.pk, "")  # fmt: skip
    assert match.amount_delta_minor == 99_900 - 600_000
    assert status_of(lines[5]) == (MatchStatus.MANUAL_MATCHED, match.pk)
    assert status_of(expected["missing"]) == (MatchStatus.MANUAL_MATCHED, match.pk)
    # The same items again: refused, nothing changes, the refusal audited
    before = recon.snapshot(src)
    with pytest.raises(ItemsAlreadyMatched):
        match_manual(source=src, external_ids=[lines[5].pk], internal_ids=[], decision=decision, actor=recon.ACTOR,
                     now=T0)  # fmt: skip
    assert recon.snapshot(src) == before
    refusal = AuditEvent.objects.filter(event_type="reconciliation.match_manual_refused").latest("seq")
    assert refusal.error_code == "RECON_ITEMS_ALREADY_MATCHED"
    # An item of another source, or on the wrong side, is refused too
    with pytest.raises(ValidationFailed):
        match_manual(source=recon.source(), external_ids=[lines[2].pk], internal_ids=[], decision=decision,
                     actor=recon.ACTOR, now=T0)  # fmt: skip
    with pytest.raises(ValidationFailed, match="is INTERNAL"):
        match_manual(source=src, external_ids=[expected["missing"].pk], internal_ids=[], decision=decision,
                     actor=recon.ACTOR, now=T0)  # fmt: skip


def _late_capture(src, amount_minor: int) -> ReconciliationItem:
    """A capture recorded after the source's last run: a new item (above its watermark)."""
    late = recon.capture(amount_minor=amount_minor)
    recon.refresh(src)
    item = ReconciliationItem.objects.get(source=src, internal_id=late.public_id)
    assert not_yet_considered(src.pk, [item.pk]) == [item.pk]
    return item


def test_a_decision_can_match_a_new_item_and_the_next_run_leaves_it_out(provider_day):
    src, lines, _ = provider_day
    recon.run(src)
    # Given a capture recorded after the run, offered as a candidate for the unknown line's break
    late = _late_capture(src, 99_900)
    assert unmatched_items(src).filter(pk=late.pk).exists()
    # When a decision matches it with the line, before any run has considered it
    match = match_manual(source=src, external_ids=[lines[5].pk], internal_ids=[late.pk],
                         decision=_decision(src, lines[5]), actor=recon.ACTOR, now=T0)  # fmt: skip
    assert not unmatched_items(src).filter(pk=late.pk).exists()
    # And a later report states the same capture again (a line the engine would pair with it)
    recon.imported(
        src, recon.stripe_csv([(late.reference, money(99_900), money(late.fee_minor), "IDR", "charge")]), "later.csv"
    )
    # Then the next run leaves the decided item out: the run succeeds, the decision's match stands
    rerun = recon.run(src)
    assert rerun.status == RunStatus.SUCCEEDED
    assert status_of(late) == (MatchStatus.MANUAL_MATCHED, match.pk)
    later_line = ReconciliationItem.objects.filter(source=src, side=ItemSide.EXTERNAL).latest("id")
    assert status_of(later_line) == (MatchStatus.UNMATCHED_EXTERNAL, None)
    # And undoing the decision's match now makes the item open (a run has considered it since)
    match_undo(match_id=match.public_id, actor=recon.ACTOR, now=T0, reason_text="Wrong capture")
    assert ReconciliationOpenItem.objects.filter(source_id=src.pk, item_id=late.pk).exists()
    assert recon.run(src).matches_made == 1 and status_of(late)[0] == MatchStatus.MATCHED


def test_the_watermark_moves_past_a_new_item_a_decision_took_even_when_it_is_the_newest(provider_day):
    src, lines, _ = provider_day
    recon.run(src)
    # Given a new line, then a newer capture a decision matches before any run
    recon.imported(src, recon.stripe_csv([("sim_pay_OTHER", money(12_300), "0.00", "IDR", "charge")]), "later.csv")
    late = _late_capture(src, 99_900)
    match = match_manual(source=src, external_ids=[lines[5].pk], internal_ids=[late.pk],
                         decision=_decision(src, lines[5]), actor=recon.ACTOR, now=T0)  # fmt: skip
    # When two runs follow (the first leaves the capture out, the second must not take it for new)
    first, second = recon.run(src), recon.run(src)
    # Then the capture is past the watermark, never open, and still the decision's
    assert (first.status, second.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert not_yet_considered(src.pk, [late.pk]) == [] and second.matches_made == 0
    assert not ReconciliationOpenItem.objects.filter(item_id=late.pk).exists()
    assert status_of(late) == (MatchStatus.MANUAL_MATCHED, match.pk)


def test_undoing_a_decision_on_a_new_item_before_any_run_makes_it_new_again(provider_day):
    src, lines, _ = provider_day
    recon.run(src)
    late = _late_capture(src, 99_900)
    match = match_manual(source=src, external_ids=[lines[5].pk], internal_ids=[late.pk],
                         decision=_decision(src, lines[5]), actor=recon.ACTOR, now=T0)  # fmt: skip
    # A second decision on the same new item is refused: a match holds it; nothing changes, the refusal audited
    before = recon.snapshot(src)
    with pytest.raises(ItemsAlreadyMatched):
        match_manual(source=src, external_ids=[], internal_ids=[late.pk], decision=_decision(src, lines[5], 1),
                     actor=recon.ACTOR, now=T0)  # fmt: skip
    assert recon.snapshot(src) == before
    assert ReconciliationMatch.objects.filter(source=src, decision__isnull=False).count() == 1
    refusal = AuditEvent.objects.filter(event_type="reconciliation.match_manual_refused").latest("seq")
    assert (refusal.error_code, refusal.after["internal_items"]) == ("RECON_ITEMS_ALREADY_MATCHED", [late.pk])
    match_undo(match_id=match.public_id, actor=recon.ACTOR, now=T0, reason_text="Chose too early")
    # Then the item is new again (no open-item row: no run has considered it), and the next run does
    assert not ReconciliationOpenItem.objects.filter(item_id=late.pk).exists()
    assert not_yet_considered(src.pk, [late.pk]) == [late.pk]
    run = recon.run(src)
    assert run.items_considered >= 1 and not_yet_considered(src.pk, [late.pk]) == []
    assert status_of(late)[0] in (MatchStatus.MATCHED, MatchStatus.UNMATCHED_INTERNAL)
    assert ReconciliationMatch.objects.filter(memberships__item=late, memberships__active=True).count() <= 1


# --- the command and the task ----------------------------------------------------------------------------


def test_recon_run_refreshes_the_period_and_matches():
    capture = recon.capture(amount_minor=300_000, provider_reference="sim_pay_CMD")
    src = recon.provider_source("sim")
    recon.imported(src, recon.bank_csv([("2026-03-02", "3000.00", "IDR", "sim_pay_CMD")]))
    out = io.StringIO()
    call_command("recon_run", src.code, "--since", "2026-03-01", "--until", "2026-03-02", stdout=out)
    printed = out.getvalue()
    assert "expected items 2026-03-01 .. 2026-03-02: 1 new" in printed
    assert "SUCCEEDED: 2 items considered, 1 matches" in printed
    assert status_of(ReconciliationItem.objects.get(internal_id=capture.public_id))[0] == MatchStatus.MATCHED
    with pytest.raises(CommandError, match="expected a date"):
        call_command("recon_run", src.code, "--since", "yesterday")


def test_the_run_task_is_safe_to_run_twice(provider_day):
    src = provider_day[0]
    first = reconciliation_run_task(source_code=src.code)
    second = reconciliation_run_task(source_code=src.code)
    assert (first["matches"], second["matches"], second["breaks_opened"]) == (3, 0, 0)
    assert ReconciliationMatch.objects.filter(source=src).count() == 3


def test_a_run_loads_each_lines_reference_keys_and_batch_keys_as_the_engine_reads_them():
    # Given lines whose references name nothing but their reference, other references, or a batch,
    # and internal movements with and without a batch: new ones, and one the last run left open
    src = recon.source()
    file = recon.imported(src, recon.bank_csv([("2024-01-31", "1.00", "IDR", "R0")]))
    day = dt.date(2024, 1, 31)
    common = {"source": src, "amount_minor": 100, "currency": "IDR", "value_date": day, "created_at": T0}

    def line(n, reference, references, batch_id=""):
        return recon.new_item(side=ItemSide.EXTERNAL, statement_file=file, line_no=10 + n, kind="CREDIT",
                              reference=reference, references=references, batch_id=batch_id, **common)  # fmt: skip

    def movement(n, reference, batch_id=""):
        return recon.new_item(side=ItemSide.INTERNAL, internal_type="payment_attempt", internal_id=f"pa_{n}",
                              kind="CAPTURE", reference=reference, batch_id=batch_id, **common)  # fmt: skip

    opened = recon.open_item(line(1, "R1", {}))
    items = [
        opened,
        line(2, "R2", {"reference": "R2"}),
        line(3, "R3", {"reference": "R3", "merchant_reference": "M3"}),
        line(4, "R4", {"reference": "R4", "payout_id": "PO4"}),
        line(5, 'R"5\t\\', {"reference": 'R"5\t\\'}),
        line(6, "", {"end_to_end_id": "E6"}),
        line(7, "R7", {"reference": "R7-long-form"}),
        movement(8, "C8"),
        movement(9, "", batch_id="B9"),
    ]
    # When a run loads them
    loaded, _ = matching_module._load_items(src.pk, matching_module._watermark(src.pk))
    keys = {item.id: (item.keys, item.batch_keys) for item in loaded}
    # Then each has the reference keys and batch keys its references give, whatever the reference holds
    assert [keys[item.pk] for item in items] == [
        (("R1",), ("R1",)),
        (("R2",), ("R2",)),
        (("R3", "M3"), ("R3",)),
        (("R4",), ("PO4", "R4")),
        (('R"5\t\\',), ('R"5\t\\',)),
        (("E6",), ()),
        (("R7", "R7-long-form"), ("R7",)),
        (("C8",), ()),
        ((), ("B9",)),
    ]
