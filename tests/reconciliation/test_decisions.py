"""Manual decisions on breaks go through maker-checker: an exact match runs at once, a difference
above tolerance and a write-off wait for a finance manager who is not the maker, a correction
posts its journal once, and undoing a match brings the break back."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_approve, request_submit
from audit.models import AuditEvent
from backoffice.actors import Actor, system_actor
from backoffice.errors import SelfApprovalRefused
from ledger.models import LedgerJournal
from reconciliation.models import (
    BreakStatus,
    ItemSide,
    MatchState,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationManualDecision,
    ReconciliationMatch,
    ReconciliationSource,
    StatementFile,
)
from reconciliation.services.breaks import breaks_sync
from reconciliation.services.matching import reconciliation_run
from tests.factories import user_with_role
from tests.factories.ledger import credit_merchant
from tests.factories.reconciliation import considered_item, left_open, match_directly, match_of, status_of

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC)
SYSTEM = system_actor("recon_tests")
_n = itertools.count(1)


@pytest.fixture
def source():
    return ReconciliationSource.objects.create(code="sim-idr", name="Simulated provider IDR", kind="PROVIDER_ACCOUNT",
                                               parser="generic_csv", currency="IDR", created_at=NOW)  # fmt: skip


@pytest.fixture
def file(source):
    return StatementFile.objects.create(public_id="sf_01DECISIONS", source=source, filename="s.csv", sha256="1" * 64,
                                        size_bytes=10, parser="generic_csv", parser_version="1", uploaded_by="t",
                                        uploaded_at=NOW)  # fmt: skip


@pytest.fixture
def maker():
    return Actor.from_user(user_with_role("finance_ops", username="fran"))


@pytest.fixture
def checker():
    return Actor.from_user(user_with_role("finance_manager", username="morgan"))


def item(source, side, amount, file=None):
    # Items as an import or a refresh leaves them (their own services are tested elsewhere).
    fields = {"statement_file": file, "line_no": next(_n)} if side == ItemSide.EXTERNAL else {
        "internal_type": "payment_attempt", "internal_id": f"pa_{next(_n)}"}  # fmt: skip
    return considered_item(side=side, source=source, kind="SETTLED", amount_minor=amount, currency="IDR",
                           value_date=dt.date(2026, 3, 3), reference=f"ref-{next(_n)}", created_at=NOW,
                           **fields)  # fmt: skip


def break_for(source, line) -> ReconciliationBreak:
    # As a run leaves it: every open item unexplained.
    breaks_sync(source=source, actor=SYSTEM, now=NOW, left=left_open(source))
    return ReconciliationBreak.objects.get(item=line, status=BreakStatus.OPEN)


def propose(actor, action_type, payload, key="k1", reason="PROVIDER_CONFIRMED"):
    return request_submit(action_type=action_type, payload=payload, reason_code=reason,
                          reason_text="Checked against the provider's portal", actor=actor, now=NOW,
                          idempotency_key=key)  # fmt: skip


def fresh(rb) -> ReconciliationBreak:
    return ReconciliationBreak.objects.get(pk=rb.pk)


def test_an_exact_manual_match_is_approved_by_another_person_and_closes_the_break(source, file, maker, checker):
    line, capture = item(source, ItemSide.EXTERNAL, 50_000, file), item(source, ItemSide.INTERNAL, 50_000)
    rb = break_for(source, line)

    payload = {"break": rb.public_id, "decision_type": "ACCEPT_EXACT_MATCH", "items": [capture.pk]}
    request = propose(maker, "MANUAL_RECONCILIATION_MATCH", payload)
    assert request.status == RequestStatus.REQUESTED and request.amount_minor is None

    request = request_approve(public_id=request.public_id, actor=checker, now=NOW)

    assert request.status == RequestStatus.SUCCEEDED
    match = ReconciliationMatch.objects.get(public_id=request.result["reconciliation_match"])
    assert (match.result, match.amount_delta_minor, match.decision.decision_type) == (
        MatchStatus.MANUAL_MATCHED, 0, "ACCEPT_EXACT_MATCH")  # fmt: skip
    assert fresh(rb).status == BreakStatus.CLOSED
    assert {status_of(line), status_of(capture)} == {MatchStatus.MANUAL_MATCHED}
    assert match_of(line) == match_of(capture) == match.pk


def test_a_difference_above_tolerance_waits_for_a_checker_who_is_not_the_maker(source, file, maker, checker):
    line, capture = item(source, ItemSide.EXTERNAL, 1_050_000, file), item(source, ItemSide.INTERNAL, 1_000_000)
    rb = break_for(source, line)
    payload = {"break": rb.public_id, "decision_type": "ACCEPT_TOLERANCE_MATCH", "items": [capture.pk]}
    request = propose(maker, "MANUAL_RECONCILIATION_MATCH", payload)
    assert request.status == RequestStatus.REQUESTED and request.amount_minor == 50_000
    assert request.preview["delta_minor"] == 50_000

    events = AuditEvent.objects.count()
    with pytest.raises(SelfApprovalRefused):
        request_approve(public_id=request.public_id, actor=maker, now=NOW)
    assert fresh(rb).status == BreakStatus.OPEN and not ReconciliationMatch.objects.exists()
    assert AuditEvent.objects.filter(pk__gt=0).count() == events + 1  # the refusal, recorded

    request_approve(public_id=request.public_id, actor=checker, now=NOW, reason_text="Provider confirmed the FX")
    decision = ReconciliationManualDecision.objects.get()
    assert (decision.decided_by, decision.approved_by, decision.amount_delta_minor) == ("fran", "morgan", 50_000)
    assert fresh(rb).status == BreakStatus.CLOSED


def test_marking_unrecoverable_always_needs_approval(source, file, maker, checker):
    rb = break_for(source, item(source, ItemSide.EXTERNAL, 100, file))
    request = propose(maker, "MARK_RECONCILIATION_UNRECOVERABLE",
                      {"break": rb.public_id, "decision_type": "MARK_UNRECOVERABLE"}, reason="WRITE_OFF")  # fmt: skip
    assert request.status == RequestStatus.REQUESTED
    request_approve(public_id=request.public_id, actor=checker, now=NOW)
    rb = fresh(rb)
    assert rb.status == BreakStatus.CLOSED and rb.closing_note.startswith("Mark unrecoverable (rd_")


def test_a_correction_posts_its_journal_once_and_closes_the_break(source, file, maker, checker):
    credit_merchant("m_recon", 1_000_000)
    rb = break_for(source, item(source, ItemSide.EXTERNAL, -2_500, file))
    request = propose(maker, "RECONCILIATION_CORRECTION", {"break": rb.public_id, "rule_code": "MERCHANT_DEBIT",
                                                           "amount_minor": 2_500, "merchant_ref": "m_recon"},
                      reason="DATA_CORRECTION")  # fmt: skip
    assert request.preview["lines"][0]["direction"] == "DEBIT"
    request_approve(public_id=request.public_id, actor=checker, now=NOW)

    journal = LedgerJournal.objects.get(idempotency_key=f"{request.public_id}:correction")
    assert (journal.source_type, journal.source_id, journal.approval_ref) == (
        "reconciliation_break", rb.public_id, request.public_id)  # fmt: skip
    assert ReconciliationManualDecision.objects.get().correction_journal_ref == journal.public_id
    assert fresh(rb).status == BreakStatus.CLOSED


def test_undoing_a_match_reopens_the_break_with_its_own_trail(source, file, maker, checker):
    line, capture = item(source, ItemSide.EXTERNAL, 7_000, file), item(source, ItemSide.INTERNAL, 7_000)
    rb = break_for(source, line)
    payload = {"break": rb.public_id, "decision_type": "ACCEPT_EXACT_MATCH", "items": [capture.pk]}
    done = request_approve(public_id=propose(maker, "MANUAL_RECONCILIATION_MATCH", payload).public_id, actor=checker,
                           now=NOW)  # fmt: skip
    match_id = done.result["reconciliation_match"]

    undo = propose(maker, "UNDO_RECONCILIATION_MATCH", {"match": match_id}, key="k2", reason="DATA_CORRECTION")
    request_approve(public_id=undo.public_id, actor=checker, now=NOW)

    assert ReconciliationMatch.objects.get(public_id=match_id).state == MatchState.UNMATCHED
    reopened = ReconciliationBreak.objects.get(item=line, status=BreakStatus.OPEN)
    assert reopened.pk != rb.pk and fresh(rb).status == BreakStatus.CLOSED  # history kept
    assert ActionRequest.objects.get(public_id=undo.public_id).status == RequestStatus.SUCCEEDED


def test_a_classified_break_stays_closed_and_its_line_is_not_offered_to_later_runs(source, file, maker, checker):
    line = item(source, ItemSide.EXTERNAL, 42_000, file)
    rb = break_for(source, line)
    payload = {"break": rb.public_id, "decision_type": "TIMING_DIFFERENCE"}
    request = propose(maker, "CLASSIFY_RECONCILIATION_BREAK", payload, reason="SETTLEMENT_TIMING")
    request_approve(public_id=request.public_id, actor=checker, now=NOW)
    rb = fresh(rb)
    assert rb.status == BreakStatus.CLOSED and rb.closed_by_match is not None
    assert status_of(line) == MatchStatus.TIMING_DIFFERENCE

    # An internal movement of the same amount arrives; the next run neither pairs the line nor reopens its break.
    item(source, ItemSide.INTERNAL, 42_000)
    run = reconciliation_run(source=source, actor=SYSTEM)

    assert run.matches_made == 0
    assert not ReconciliationBreak.objects.filter(item=line, status=BreakStatus.OPEN).exists()
    assert status_of(line) == MatchStatus.TIMING_DIFFERENCE


def test_classifying_a_mismatch_replaces_the_difference_match_with_the_decisions_own(source, file, maker, checker):
    line = item(source, ItemSide.EXTERNAL, 1_090_000, file)
    capture = item(source, ItemSide.INTERNAL, 1_000_000)
    run = reconciliation_run(source=source, actor=SYSTEM)
    assert run.matches_made == 0  # different references: no rule pairs them; pair them as a difference
    difference = ReconciliationMatch.objects.create(
        public_id="rm_DIFFERENCE", source=source, rule_code="reference-tolerance", rule_version=1, shape="ONE_TO_ONE",
        result=MatchStatus.AMOUNT_MISMATCH, confidence="0.500", amount_delta_minor=90_000, currency="IDR",
        created_at=NOW,
    )  # fmt: skip
    match_directly(difference, [line, capture])
    breaks_sync(source=source, actor=SYSTEM, now=NOW)
    rb = ReconciliationBreak.objects.get(item=line, status=BreakStatus.OPEN)
    assert (rb.break_type, rb.amount_minor) == (MatchStatus.AMOUNT_MISMATCH, 90_000)

    payload = {"break": rb.public_id, "decision_type": "PROVIDER_FEE_DIFFERENCE"}
    request = propose(maker, "CLASSIFY_RECONCILIATION_BREAK", payload, reason="FEE_SCHEDULE")
    request_approve(public_id=request.public_id, actor=checker, now=NOW)

    assert ReconciliationMatch.objects.get(pk=difference.pk).state == MatchState.UNMATCHED
    replacement = ReconciliationMatch.objects.get(pk=match_of(line))
    assert replacement.decision is not None and replacement.tolerance["replaces"] == "rm_DIFFERENCE"
    assert match_of(capture) == replacement.pk and status_of(capture) == MatchStatus.MANUAL_MATCHED
    assert fresh(rb).status == BreakStatus.CLOSED
    assert breaks_sync(source=source, actor=SYSTEM, now=NOW).opened == 0
