"""Real threads against real PostgreSQL, released together by a barrier: a retry storm is one case,
different root causes are different cases, and one case has one taker."""

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from backoffice.errors import PolicyDenied
from cases.models import ExceptionOccurrence, OpsCase, OpsCaseUserObjectPermission
from cases.services import case_take, cases_sla_sweep, exception_report
from tests.factories.cases import SYSTEM, actor_for, at, fetch, open_case, team_user

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


def report(i: int, business_key: str = "pi_storm"):
    case, opened = exception_report(
        source_system="gateway", business_key=business_key, exception_type="capture_failed",
        error_code="PROVIDER_TIMEOUT", detail=f"timed out after {1000 + i} ms (worker {i})", severity="LOW",
        now=at(i), actor=SYSTEM, trace_id=f"tr-{i}",
    )  # fmt: skip
    return case.case_number, opened


def test_a_retry_storm_of_eight_is_one_case_with_eight_occurrences():
    results = run_together(8, report)
    assert all(isinstance(r, tuple) for r in results), results
    numbers = {number for number, _ in results}
    assert len(numbers) == 1, results
    assert sorted(opened for _, opened in results) == [False] * 7 + [True]
    (number,) = numbers
    case = fetch(number)
    assert (OpsCase.objects.count(), case.status, case.occurrence_count) == (1, "OPEN", 8)
    assert sorted(ExceptionOccurrence.objects.filter(case=case).values_list("trace_id", flat=True)) == [
        f"tr-{i}" for i in range(8)
    ]
    assert case.last_occurred_at == at(7)
    assert case.severity == "MEDIUM"  # five or more occurrences
    assert AuditEvent.objects.filter(target_id=number, event_type="case.opened").count() == 1
    assert AuditEvent.objects.filter(target_id=number, event_type="case.occurrence_recorded").count() == 7


def test_eight_business_keys_are_eight_cases():
    results = run_together(8, lambda i: report(i, business_key=f"pi_{i}"))
    assert all(isinstance(r, tuple) and r[1] is True for r in results), results
    numbers = [number for number, _ in results]
    assert len(set(numbers)) == 8
    assert sorted(OpsCase.objects.values_list("case_number", flat=True)) == sorted(numbers)
    assert sorted(OpsCase.objects.values_list("occurrence_count", flat=True)) == [1] * 8
    assert ExceptionOccurrence.objects.count() == 8


def test_two_takers_one_case_one_assignee():
    alice, bob = team_user("payment_ops", "alice"), team_user("payment_ops", "bob")
    case = open_case()
    takers = [alice, bob]
    results = run_together(2, lambda i: case_take(case_number=case.case_number, actor=actor_for(takers[i]),
                                                  now=at(1)).owner_user_id)  # fmt: skip
    winners = [r for r in results if isinstance(r, int)]
    losers = [(i, r) for i, r in enumerate(results) if isinstance(r, PolicyDenied)]
    assert len(winners) == 1 and len(losers) == 1, results
    (loser_index, refusal) = losers[0]
    winner = takers[1 - loser_index]
    assert winners == [winner.pk]
    assert refusal.message == f"{case.case_number} was already taken by {winner.username}"
    case = fetch(case.case_number)
    assert (case.owner_user_id, case.version) == (winner.pk, 2)
    assert sorted(
        OpsCaseUserObjectPermission.objects.filter(content_object=case).values_list("user__username", flat=True)
    ) == [winner.username, winner.username]
    assert AuditEvent.objects.filter(target_id=case.case_number, event_type="case.assigned").count() == 1
    refused = AuditEvent.objects.get(target_id=case.case_number, event_type="case.command_refused")
    assert (refused.actor_user_id, refused.error_code) == (takers[loser_index].pk, "POLICY_DENIED")


def test_two_sweepers_mark_each_breach_once():
    numbers = [open_case(severity="CRITICAL").case_number for _ in range(10)]
    results = run_together(2, lambda i: cases_sla_sweep(now=at(61), actor=SYSTEM, batch_size=3))
    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 10
    assert OpsCase.objects.filter(case_number__in=numbers, escalation_level=1, sla_breached_at=at(61)).count() == 10
    assert AuditEvent.objects.filter(event_type="case.sla_breached").count() == 10
