"""Real threads against real PostgreSQL, released together by a barrier: one open request per
target, one execution per approval, one terminal state when an approval races the end of day."""

import datetime as dt
import threading

import pytest
from django.db import connection

from approvals.models import ActionRequest
from approvals.services import requests_reject_pending
from audit.models import AuditEvent
from audit.verification import chain_verify
from backoffice.actors import system_actor
from backoffice.errors import IdempotencyConflict, IllegalTransition, PolicyDenied
from ledger.models import LedgerJournal
from ledger.verification import ledger_verify
from tests.factories.approvals import approve, at, checker, fetch, maker, open_case, payable_balance, propose

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def run_together(workers: int, work) -> list:
    """Run work(i) in `workers` threads started at the same instant; return results or exceptions."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_eight_makers_proposing_for_one_target_leave_one_open_request():
    makers = [maker(f"maker_{i}") for i in range(8)]
    case = open_case(makers[0])

    results = run_together(
        8, lambda i: propose(makers[i], case=case, merchant="m_hot", amount_minor=100 + i, now=at(1)).public_id
    )

    winners = [r for r in results if isinstance(r, str)]
    refusals = [r for r in results if isinstance(r, PolicyDenied)]
    assert len(winners) == 1 and len(refusals) == 7, results
    (winner,) = winners
    assert list(ActionRequest.objects.filter(target_id="m_hot:IDR").values_list("public_id", "status")) == [
        (winner, "REQUESTED")
    ]
    assert all(f"already has a change waiting: {winner} (pending)" in r.message for r in refusals)
    refused = AuditEvent.objects.filter(event_type="approvals.submit_refused", target_id=case.case_number)
    assert sorted(refused.values_list("error_code", flat=True)) == ["POLICY_DENIED"] * 7
    assert AuditEvent.objects.filter(event_type="approvals.request_submitted").count() == 1


def test_eight_copies_of_one_submission_are_one_request():
    alice = maker("alice")
    case = open_case(alice)

    results = run_together(8, lambda i: propose(alice, case=case, merchant="m_dbl", key="idem_storm", now=at(1)).pk)

    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert ActionRequest.objects.count() == 1
    assert AuditEvent.objects.filter(event_type="approvals.request_submitted").count() == 1
    assert not AuditEvent.objects.filter(event_type="approvals.submit_refused").exists()


def test_one_key_sent_at_once_for_two_targets_is_one_request():
    alice = maker("alice")
    case = open_case(alice)

    results = run_together(
        2, lambda i: propose(alice, case=case, merchant=f"m_key_{i}", key="one_key_two_targets", now=at(1)).pk
    )

    made = [r for r in results if isinstance(r, int)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(made) == 1 and len(conflicts) == 1, results
    assert ActionRequest.objects.filter(idempotency_key="one_key_two_targets").count() == 1


def test_two_finance_managers_approving_at_once_execute_once():
    alice, checkers = maker("alice"), [checker("bob"), checker("carol")]
    case = open_case(alice)
    request = propose(alice, case=case, merchant="m_two", amount_minor=2_500, now=at(1))

    results = run_together(2, lambda i: approve(checkers[i], request, now=at(2)).status)

    won = [i for i, r in enumerate(results) if r == "SUCCEEDED"]
    lost = [i for i, r in enumerate(results) if isinstance(r, IllegalTransition)]
    assert len(won) == 1 and len(lost) == 1, results
    winner, loser = checkers[won[0]], checkers[lost[0]]
    assert f"is no longer pending: it is succeeded ({winner.username})" in results[lost[0]].message
    done = fetch(request.public_id)
    assert (done.status, done.checker, done.checker_user_id) == ("SUCCEEDED", winner.username, winner.pk)
    assert LedgerJournal.objects.filter(approval_ref=request.public_id).count() == 1
    assert payable_balance("m_two") == 2_500
    refused = AuditEvent.objects.get(event_type="approvals.approve_refused", target_id=request.public_id)
    assert (refused.actor_user_id, refused.error_code) == (loser.pk, "ILLEGAL_TRANSITION")
    assert ledger_verify().ok


def test_an_approval_racing_the_end_of_day_ends_in_exactly_one_terminal_state():
    alice, bob = maker("alice"), checker("bob")
    case = open_case(alice)
    eod = system_actor("end_of_day")
    midnight = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)  # 00:00 on 3 March in Manila
    outcomes = []
    for n in range(6):
        request = propose(
            alice, case=case, merchant=f"m_race_{n}", amount_minor=1_000, now=midnight - dt.timedelta(hours=1)
        )

        def work(i: int, request=request):
            if i == 0:
                return approve(bob, request, now=midnight)
            return requests_reject_pending(as_of=midnight, actor=eod, now=midnight)

        approval, end_of_day = run_together(2, work)

        final = fetch(request.public_id)
        journals = LedgerJournal.objects.filter(approval_ref=request.public_id).count()
        if final.status == "SUCCEEDED":
            assert journals == 1 and payable_balance(f"m_race_{n}") == 1_000
            assert (end_of_day.rejected, end_of_day.audit_events) == (0, 0), end_of_day
            assert not isinstance(approval, Exception), approval
        else:
            assert final.status == "REJECTED" and final.checker == "system:end_of_day", final.status
            assert journals == 0 and payable_balance(f"m_race_{n}") == 0
            assert end_of_day.rejected == 1, end_of_day
            assert isinstance(approval, IllegalTransition), approval
            refusal = AuditEvent.objects.get(event_type="approvals.approve_refused", target_id=request.public_id)
            assert refusal.error_code == "ILLEGAL_TRANSITION"
        terminal = AuditEvent.objects.filter(
            approval_ref=request.public_id,
            event_type__in=["approvals.request_executed", "approvals.request_rejected", "approvals.request_failed"],
        )
        assert terminal.count() == 1, list(terminal.values_list("event_type", flat=True))
        outcomes.append(final.status)
    assert set(outcomes) <= {"SUCCEEDED", "REJECTED"}
    assert chain_verify().intact
    assert ledger_verify().ok
