"""Webhooks under real concurrency: threads released together by a barrier against real PostgreSQL,
each on its own connection, committing for real (so processing runs after commit, as in production
with an eager worker)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from celery._state import _set_task_join_will_block
from django.db import connection
from django.test import Client

from audit.verification import chain_verify
from cases.models import OpsCase
from ledger.verification import ledger_verify
from payments.models import AttemptStatus, EventProcessing, ProviderEventRaw
from payments.services import attempt_apply_outcome
from payments.tasks import webhook_process_task
from payments.webhooks.replay import webhook_replay
from tests.factories import payments
from tests.payments.test_webhooks import adapter_for, captures, pending_attempt, post, start_test_simulator

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]
E = EventProcessing
OPS = payments.system("webhook_race")


@pytest.fixture(autouse=True)
def _celery_join_flag():
    """Eager tasks running in several threads at once race on Celery's process-wide "inside a
    task" flag (saved and restored without a lock) and can leave it set, after which any
    result.get() in a later test refuses to run. Put it back."""
    yield
    _set_task_join_will_block(False)


@pytest.fixture(scope="module")
def simulator():
    handle = start_test_simulator()
    yield handle
    handle.stop()


@pytest.fixture
def sim(simulator):
    simulator.reset()
    return simulator


@pytest.fixture
def adapter(simulator):
    return adapter_for(simulator)


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


def test_concurrent_deliveries_of_one_event_apply_it_once(sim, adapter):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    event, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)

    results = run_together(6, lambda i: post(body, headers, client=Client()))

    assert [r.status_code for r in results] == [200] * 6, results
    rows = ProviderEventRaw.objects.filter(provider_event_id=event["id"])
    assert Counter(rows.values_list("processing_status", flat=True)) == {E.PROCESSED: 1, E.DUPLICATE: 5}
    first = rows.get(duplicate_of__isnull=True)
    assert set(rows.exclude(pk=first.pk).values_list("duplicate_of", flat=True)) == {first.pk}
    assert Counter(r.json()["status"] for r in results) == {"ACCEPTED": 1, "DUPLICATE": 5}
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
    assert captures(attempt.public_id) == 1
    assert ledger_verify().ok
    assert chain_verify().intact


def test_webhook_replay_and_direct_apply_racing_capture_once(sim, adapter, monkeypatch):
    for _ in range(3):
        attempt = pending_attempt(adapter)
        sim.settle(attempt.public_id)
        _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)
        # Stored but not yet processed (the broker is slow): the worker, an operator's replay and an
        # inquiry's direct apply then all arrive at once.
        with monkeypatch.context() as slow_broker:
            slow_broker.setattr(webhook_process_task, "delay", lambda **kwargs: None)
            event_id = post(body, headers).json()["event"]
        assert ProviderEventRaw.objects.get(public_id=event_id).processing_status == E.RECEIVED
        outcome = payments.outcome_for(payments.fetch_attempt(attempt.public_id))

        def work(i: int, event_id=event_id, outcome=outcome, attempt_id=attempt.public_id):
            if i == 0:
                return webhook_process_task.apply(kwargs={"event_id": event_id}).get()["result"]
            if i == 1:
                return webhook_replay(event_id=event_id, actor=OPS, now=payments.at(1), reason_text="race").result
            return attempt_apply_outcome(attempt_id=attempt_id, outcome=outcome, source="INQUIRY", actor=OPS,
                                         now=payments.at(1)).changed  # fmt: skip

        results = run_together(3, work)

        assert not [r for r in results if isinstance(r, BaseException)], results
        # The event is processed once (the other run found it done); the capture happens once,
        # by whichever reached the attempt first.
        assert sorted(map(str, results[:2])) == ["NO_CHANGE", "PROCESSED"], results
        raw = ProviderEventRaw.objects.get(public_id=event_id)
        assert (raw.processing_status, raw.processing_count, raw.normalized.count()) == (E.PROCESSED, 1, 1)
        assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
        assert captures(attempt.public_id) == 1
    assert ledger_verify().ok
    assert chain_verify().intact


def test_mismatching_events_quarantined_at_once_join_one_case(sim, adapter):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    deliveries = [sim.build_webhook("payment.succeeded", attempt.public_id, overrides={"amount_minor": 5_092})
                  for _ in range(4)]  # fmt: skip

    results = run_together(4, lambda i: post(deliveries[i][1], deliveries[i][2], client=Client()))

    assert [r.status_code for r in results] == [200] * 4
    statuses = ProviderEventRaw.objects.filter(public_id__in=[r.json()["event"] for r in results])
    assert set(statuses.values_list("processing_status", "failure_code")) == {(E.QUARANTINED, "OUTCOME_MISMATCH")}
    (case,) = OpsCase.objects.filter(business_key=f"sim:{attempt.public_id}")
    assert case.occurrence_count == 4
    assert captures(attempt.public_id) == 0
    assert chain_verify().intact
