"""Handing refunds and payouts to the provider, and the dispatch sweep.

A refund requested and a payout approved (at creation or on release) queue their send task when
their transaction commits; the task run twice sends once. Work whose queued task was lost (a
worker crash, a broker outage) is queued again by the dispatch sweep: refunds REQUESTED, payouts
APPROVED and provider events RECEIVED past the stale time, oldest first, at most the limit of each
kind, claimed with SKIP LOCKED, audited as the sweep's system actor. The sweep racing the original
task still sends once. The provider is the simulated one over HTTP, reached through the configured
adapter (provider_adapter_from_settings), except in the threaded races, which count calls on a
test double."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from audit.models import AuditEvent, AuditResult
from backoffice.beat import BEAT_SCHEDULE
from ledger.models import LedgerJournal
from ledger.verification import ledger_verify
from payments.models import (
    Capability,
    EventProcessing,
    PaymentEvent,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    Refund,
    RefundStatus,
    RestrictionMode,
)
from payments.providers import ProviderAdapter, ProviderPayoutResult, ProviderRefundResult, ProviderStatus, http
from payments.services.dispatch import dispatch_stale
from payments.services.merchants import beneficiary_add
from payments.services.payouts import payout_create, payout_hold, payout_release_hold
from payments.services.refunds import refund_create
from payments.services.restrictions import restriction_impose, restriction_lift
from payments.tasks import (
    DISPATCH_SWEEPER,
    dispatch_stale_task,
    payout_send_task,
    refund_send_task,
    webhook_process_task,
)
from tests.factories import payments as f
from tests.factories.ledger import credit_merchant
from tests.payments.test_webhooks import adapter_for, captures, deliver, pending_attempt, start_test_simulator

ACTOR = f.system("dispatch_tests")
API_KEY = "sk_test_webhooks"  # the test simulator's key (start_test_simulator)


# --- fixtures and set-up ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator():
    handle = start_test_simulator()
    yield handle
    handle.stop()


@pytest.fixture
def sim(simulator, settings):
    """The simulated provider, as the configured one: what the tasks reach through settings."""
    simulator.reset()
    settings.PAYMENTS_PROVIDER_CODE = "sim"
    settings.PAYMENTS_PROVIDER_BASE_URL = simulator.base_url
    settings.PAYMENTS_PROVIDER_API_KEY = API_KEY
    return simulator


@pytest.fixture
def adapter(simulator):
    return adapter_for(simulator)


def posts(sim, collection: str) -> list:
    """The create calls the provider received for `collection` (refunds, payouts)."""
    return [r for r in sim.received() if (r.method, r.path) == ("POST", f"/v1/{collection}")]


def payment():
    """A captured payment of 1,000,000 whose merchant's payable covers a full refund."""
    pi, attempt = f.captured_payment(amount_minor=1_000_000)
    credit_merchant(pi.merchant.public_id, attempt.fee_minor)
    return f.fetch_intent(pi.public_id)


def request_refund(pi, amount: int = 300_000, *, now: dt.datetime | None = None, **kwargs) -> Refund:
    return refund_create(intent=pi, amount_minor=amount, reason_code="CUSTOMER_REQUEST", reason_text="Returned",
                         idempotency_key=f.new_key("rf"), actor=ACTOR, now=now or f.at(1), **kwargs)  # fmt: skip


def funded_merchant(balance: int = 100_000):
    merchant = f.merchant()
    ben = beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                          account_holder="PT Toko Test", account_number="1234567890", currency="IDR", actor=ACTOR,
                          now=f.at(0))  # fmt: skip
    credit_merchant(merchant.public_id, balance)
    return merchant, ben


def request_payout(merchant, ben, amount: int = 40_000, *, now: dt.datetime | None = None) -> Payout:
    return payout_create(merchant=merchant, beneficiary=ben, amount_minor=amount, currency="IDR",
                         idempotency_key=f.new_key("po"), actor=ACTOR, now=now or f.at(1))  # fmt: skip


def refund_of(refund: Refund) -> Refund:
    return Refund.objects.get(pk=refund.pk)


def payout_of(payout: Payout) -> Payout:
    return Payout.objects.get(pk=payout.pk)


def counts() -> tuple[int, int, int]:
    return PaymentEvent.objects.count(), AuditEvent.objects.count(), LedgerJournal.objects.count()


def journals(key: str) -> int:
    return LedgerJournal.objects.filter(idempotency_key=key).count()


def sent_by(subject_id: str, status: str) -> str:
    return PaymentEvent.objects.get(subject_id=subject_id, to_status=status).actor


def later(minutes: int = 30) -> dt.datetime:
    """A sweep's moment: wall-clock time (webhooks are stamped with it) plus `minutes`."""
    return timezone.now() + dt.timedelta(minutes=minutes)


# --- sending after commit, and the task run twice ------------------------------------------------------


@pytest.mark.django_db
def test_the_refund_send_task_run_twice_sends_once(sim, django_capture_on_commit_callbacks):
    # Given a refund requested whose queued send never ran (the test's transaction never commits).
    refund = request_refund(payment())
    assert refund_of(refund).status == RefundStatus.REQUESTED and posts(sim, "refunds") == []

    # When the task runs, and runs again (a redelivery after a lost acknowledgement),
    with django_capture_on_commit_callbacks(execute=True):
        first = refund_send_task.delay(refund_id=refund.public_id).get()
    before = counts()
    with django_capture_on_commit_callbacks(execute=True) as after_second:
        second = refund_send_task.delay(refund_id=refund.public_id).get()

    # then the provider was asked once, the refund succeeded and posted once; the second run changed nothing.
    assert first == {"refund": refund.public_id, "status": RefundStatus.PROCESSING}  # the answer comes after commit
    assert second == {"refund": refund.public_id, "status": RefundStatus.SUCCEEDED}
    assert (after_second, counts()) == ([], before)
    (call,) = posts(sim, "refunds")
    assert call.idempotency_key == refund.public_id
    assert refund_of(refund).status == RefundStatus.SUCCEEDED
    assert journals(f"refund:{refund.public_id}") == 1
    assert sent_by(refund.public_id, RefundStatus.PROCESSING) == "system:refund_dispatcher"


@pytest.mark.django_db
def test_the_payout_send_task_run_twice_sends_once(sim, django_capture_on_commit_callbacks):
    merchant, ben = funded_merchant(100_000)
    payout = request_payout(merchant, ben, 40_000)
    assert payout_of(payout).status == PayoutStatus.APPROVED

    with django_capture_on_commit_callbacks(execute=True):
        first = payout_send_task.delay(payout_id=payout.public_id).get()
    before = counts()
    with django_capture_on_commit_callbacks(execute=True) as after_second:
        second = payout_send_task.delay(payout_id=payout.public_id).get()

    assert first == {"payout": payout.public_id, "status": PayoutStatus.SENT}
    assert second == {"payout": payout.public_id, "status": PayoutStatus.SUCCEEDED}
    assert (after_second, counts()) == ([], before)
    (call,) = posts(sim, "payouts")
    assert call.idempotency_key == payout.public_id
    assert payout_of(payout).status == PayoutStatus.SUCCEEDED
    assert journals(f"payout:{payout.public_id}:sent") == 1
    assert f.payable_minor(merchant) == 60_000
    assert sent_by(payout.public_id, PayoutStatus.SENT) == "system:payout_dispatcher"


@pytest.mark.django_db
def test_a_refund_is_handed_to_the_provider_once_its_request_commits(sim, django_capture_on_commit_callbacks):
    pi = payment()

    with django_capture_on_commit_callbacks(execute=True) as queued:
        refund = request_refund(pi, 250_000)

    assert queued[0].__name__ == "enqueue_refund_send"  # then the send's own provider call, after its commit
    assert refund_of(refund).status == RefundStatus.SUCCEEDED
    assert len(posts(sim, "refunds")) == 1
    assert journals(f"refund:{refund.public_id}:reserved") == journals(f"refund:{refund.public_id}") == 1
    assert f.fetch_intent(pi.public_id).refunded_minor == 250_000


@pytest.mark.django_db
def test_a_refund_refused_at_sending_stays_requested_and_the_task_reports_it(sim, django_capture_on_commit_callbacks):
    # Given a refund whose merchant's refunds were blocked after it was requested.
    pi = payment()
    refund = request_refund(pi)
    restriction_impose(merchant=pi.merchant, capability=Capability.CREATE_REFUND, mode=RestrictionMode.BLOCK,
                       reason_code="FRAUD_SUSPECTED", reason_text="Refund abuse pattern", source="RISK", actor=ACTOR,
                       now=f.at(2))  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        result = refund_send_task.delay(refund_id=refund.public_id).get()

    # The refusal is the service's (audited); the task reports it, raises nothing and retries nothing.
    assert (result["refund"], result["refused"]) == (refund.public_id, "CAPABILITY_RESTRICTED")
    assert refund_of(refund).status == RefundStatus.REQUESTED and posts(sim, "refunds") == []
    refusal = AuditEvent.objects.get(event_type="payments.refund_send_refused", target_id=refund.public_id)
    assert (refusal.result, refusal.actor) == (AuditResult.REFUSED, "system:refund_dispatcher")


@pytest.mark.django_db
def test_a_payout_is_handed_to_the_provider_when_approved_at_creation_or_on_release(
    sim, django_capture_on_commit_callbacks
):
    merchant, ben = funded_merchant(100_000)

    # Approved at creation: sent once the creation commits.
    with django_capture_on_commit_callbacks(execute=True):
        approved = request_payout(merchant, ben, 20_000)
    assert payout_of(approved).status == PayoutStatus.SUCCEEDED

    # Waiting for review: nothing is queued; released by an approved request: sent once that commits.
    restriction_impose(merchant=merchant, capability=Capability.CREATE_PAYOUT, mode=RestrictionMode.REVIEW,
                       reason_code="RISK_REVIEW", reason_text="New beneficiary", source="RISK", actor=ACTOR,
                       now=f.at(2))  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True) as queued:
        reviewed = request_payout(merchant, ben, 30_000, now=f.at(3))
    assert (queued, payout_of(reviewed).status) == ([], PayoutStatus.APPROVAL_REQUIRED)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        payout_release_hold(payout_id=reviewed.public_id, reason="Reviewed", actor=ACTOR, now=f.at(4),
                            approval_ref="act_01REVIEWED")  # fmt: skip
    assert queued[0].__name__ == "enqueue_payout_send" and payout_of(reviewed).status == PayoutStatus.SUCCEEDED

    # Held, then released: sent once the release commits.
    held = request_payout(merchant, ben, 10_000, now=f.at(5))
    payout_hold(payout_id=held.public_id, reason="Name check", actor=ACTOR, now=f.at(6), approval_ref="act_01HOLD")
    with django_capture_on_commit_callbacks(execute=True):
        payout_release_hold(payout_id=held.public_id, reason="Name verified", actor=ACTOR, now=f.at(7),
                            approval_ref="act_01RELEASE")  # fmt: skip
    assert payout_of(held).status == PayoutStatus.SUCCEEDED

    assert sorted(c.idempotency_key for c in posts(sim, "payouts")) == sorted(
        [approved.public_id, reviewed.public_id, held.public_id]
    )
    assert f.payable_minor(merchant) == 40_000


# --- the dispatch sweep ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_lost_tasks_are_picked_up_by_the_sweep(sim, adapter, django_capture_on_commit_callbacks):
    # Given a refund REQUESTED and a payout APPROVED whose queued send was lost, a provider event
    # RECEIVED whose processing was lost, and a refund requested only five minutes before the sweep.
    refund = request_refund(payment())
    merchant, ben = funded_merchant(100_000)
    payout = request_payout(merchant, ben, 40_000)
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id)
    event = ProviderEventRaw.objects.get(public_id=response.json()["event"])
    assert event.processing_status == EventProcessing.RECEIVED
    sweep_at = later(30)
    young = request_refund(payment(), now=sweep_at - dt.timedelta(minutes=5))

    # When the sweep runs (stale after 10 minutes),
    with django_capture_on_commit_callbacks(execute=True) as queued:
        result = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=sweep_at)

    # then each lost task was queued again once and did its work once; the young refund waits.
    assert (result.refunds, result.payouts, result.provider_events) == (
        [refund.public_id], [payout.public_id], [event.public_id],
    )  # fmt: skip
    assert len(queued) >= 3
    assert refund_of(refund).status == RefundStatus.SUCCEEDED and journals(f"refund:{refund.public_id}") == 1
    assert payout_of(payout).status == PayoutStatus.SUCCEEDED and journals(f"payout:{payout.public_id}:sent") == 1
    assert ProviderEventRaw.objects.get(pk=event.pk).processing_status == EventProcessing.PROCESSED
    assert captures(attempt.public_id) == 1
    assert refund_of(young).status == RefundStatus.REQUESTED
    assert (len(posts(sim, "refunds")), len(posts(sim, "payouts"))) == (1, 1)
    requeued = AuditEvent.objects.filter(event_type__endswith="_requeued").order_by("seq")
    assert [(e.event_type, e.target_id, e.actor, e.action_type) for e in requeued] == [
        ("payments.refund_requeued", refund.public_id, "system:dispatch_sweeper", "DISPATCH_STALE"),
        ("payments.payout_requeued", payout.public_id, "system:dispatch_sweeper", "DISPATCH_STALE"),
        ("payments.provider_event_requeued", event.public_id, "system:dispatch_sweeper", "DISPATCH_STALE"),
    ]
    assert requeued[0].after["status"] == RefundStatus.REQUESTED and requeued[0].after["minutes"] >= 30

    # A second sweep finds nothing left behind, and writes nothing.
    before = counts()
    with django_capture_on_commit_callbacks(execute=True) as queued:
        again = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=sweep_at)
    assert (again.refunds, again.payouts, again.provider_events, queued) == ([], [], [], [])
    assert counts() == before


@pytest.mark.django_db
def test_a_provider_event_left_received_is_processed_once(sim, adapter, django_capture_on_commit_callbacks):
    # Given a webhook stored RECEIVED whose processing task was lost.
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id)
    event_id = response.json()["event"]

    # When the sweep queues it again, a second sweep runs and the lost task finally arrives too,
    with django_capture_on_commit_callbacks(execute=True):
        first = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=later(30))
    with django_capture_on_commit_callbacks(execute=True):
        second = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=later(35))
    with django_capture_on_commit_callbacks(execute=True):
        late = webhook_process_task.delay(event_id=event_id).get()

    # then it was processed once: one capture, one processing, one processed audit event.
    assert (first.provider_events, second.provider_events) == ([event_id], [])
    assert late["result"] == "NO_CHANGE"
    event = ProviderEventRaw.objects.get(public_id=event_id)
    assert (event.processing_status, event.processing_count) == (EventProcessing.PROCESSED, 1)
    assert captures(attempt.public_id) == 1
    assert AuditEvent.objects.filter(event_type="payments.webhook_processed", target_id=event_id).count() == 1
    assert f.fetch_attempt(attempt.public_id).status == "SUCCEEDED"


@pytest.mark.django_db
def test_the_sweep_respects_its_limit(sim, django_capture_on_commit_callbacks):
    # Given three refunds and three payouts whose queued sends were lost, a minute apart.
    refunds = [request_refund(payment(), now=f.at(n)) for n in range(3)]
    merchant, ben = funded_merchant(100_000)
    payouts = [request_payout(merchant, ben, 10_000, now=f.at(n)) for n in range(3)]

    # When a sweep may take two of each, it takes the two oldest of each;
    with django_capture_on_commit_callbacks(execute=True) as queued:
        first = dispatch_stale(stale_minutes=10, limit=2, actor=DISPATCH_SWEEPER, now=later())
    assert (first.refunds, first.payouts) == ([r.public_id for r in refunds[:2]], [p.public_id for p in payouts[:2]])
    assert len(queued) >= 4
    assert [refund_of(r).status for r in refunds] == [RefundStatus.SUCCEEDED] * 2 + [RefundStatus.REQUESTED]
    assert [payout_of(p).status for p in payouts] == [PayoutStatus.SUCCEEDED] * 2 + [PayoutStatus.APPROVED]

    # the next sweep takes the rest.
    with django_capture_on_commit_callbacks(execute=True):
        second = dispatch_stale(stale_minutes=10, limit=2, actor=DISPATCH_SWEEPER, now=later())
    assert (second.refunds, second.payouts) == ([refunds[2].public_id], [payouts[2].public_id])
    assert (len(posts(sim, "refunds")), len(posts(sim, "payouts"))) == (3, 3)


@pytest.mark.django_db
def test_a_refund_a_restriction_stops_is_left_until_the_restriction_ends(sim, django_capture_on_commit_callbacks):
    # Given a refund whose send was lost and whose merchant's refunds were then blocked.
    pi = payment()
    refund = request_refund(pi)
    block = restriction_impose(merchant=pi.merchant, capability=Capability.CREATE_REFUND, mode=RestrictionMode.BLOCK,
                               reason_code="FRAUD_SUSPECTED", reason_text="Refund abuse pattern", source="RISK",
                               actor=ACTOR, now=f.at(2))  # fmt: skip

    # The sweep does not offer it while the block is in force (no refused send every few minutes);
    before = counts()
    with django_capture_on_commit_callbacks(execute=True):
        blocked = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=later())
    assert (blocked.refunds, counts()) == ([], before)

    # once it is lifted, the next sweep sends it.
    restriction_lift(restriction_id=block.pk, reason_text="Cleared", actor=ACTOR, now=f.at(3))
    with django_capture_on_commit_callbacks(execute=True):
        lifted = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=later())
    assert lifted.refunds == [refund.public_id]
    assert refund_of(refund).status == RefundStatus.SUCCEEDED


@pytest.mark.django_db
def test_under_review_only_an_approved_refund_is_offered_again(sim, django_capture_on_commit_callbacks):
    # Given two refunds of one merchant whose sends were lost: one requested before its refunds were
    # put under review, one made through an approved correction after.
    pi = payment()
    unapproved = request_refund(pi, 100_000)
    restriction_impose(merchant=pi.merchant, capability=Capability.CREATE_REFUND, mode=RestrictionMode.REVIEW,
                       reason_code="RISK_REVIEW", reason_text="Refund pattern", source="RISK", actor=ACTOR,
                       now=f.at(2))  # fmt: skip
    approved = request_refund(pi, 200_000, now=f.at(3), approval_ref="act_01APPROVED")

    with django_capture_on_commit_callbacks(execute=True):
        result = dispatch_stale(stale_minutes=10, limit=200, actor=DISPATCH_SWEEPER, now=later())

    assert result.refunds == [approved.public_id]
    assert (refund_of(unapproved).status, refund_of(approved).status) == (RefundStatus.REQUESTED,
                                                                          RefundStatus.SUCCEEDED)  # fmt: skip
    assert not AuditEvent.objects.filter(event_type="payments.refund_send_refused").exists()


@pytest.mark.django_db
def test_the_sweep_task_reads_its_settings(settings, django_capture_on_commit_callbacks):
    settings.PAYMENTS_DISPATCH_SWEEP_LIMIT = 1
    first, _second = request_refund(payment(), now=f.at(0)), request_refund(payment(), now=f.at(1))

    with django_capture_on_commit_callbacks() as queued:  # queued, not run
        result = dispatch_stale_task.delay().get()

    assert result == {"refunds": [first.public_id], "payouts": [], "provider_events": []}
    assert len(queued) == 1
    settings.PAYMENTS_DISPATCH_STALE_MINUTES = 10 * 366 * 24 * 60  # nothing here is ten years old
    assert dispatch_stale_task.delay().get() == {"refunds": [], "payouts": [], "provider_events": []}


def test_the_sweep_is_scheduled_every_five_minutes_in_utc():
    entry = BEAT_SCHEDULE["payments-dispatch-stale"]
    assert entry["task"] == "payments.tasks.dispatch_stale_task"
    assert entry["schedule"].minute == {2, 7, 12, 17, 22, 27, 32, 37, 42, 47, 52, 57}


# --- the sweep racing the original task --------------------------------------------------------------------


class CountingProvider(ProviderAdapter):
    """Answers every refund and payout with success and counts the calls (thread-safe)."""

    provider_code = "sim"

    def __init__(self):
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def _record(self, subject_id: str) -> None:
        with self.lock:
            self.calls.append(subject_id)

    def refund(self, req):
        self._record(req.refund_id)
        return ProviderRefundResult(
            status=ProviderStatus.SUCCEEDED, provider_reference=f"sim_re_{req.refund_id}",
            merchant_reference=req.refund_id, amount_minor=req.amount_minor, currency=req.currency,
            merchant_id=req.merchant_id, provider_status="succeeded",
        )  # fmt: skip

    def payout(self, req):
        self._record(req.payout_id)
        return ProviderPayoutResult(
            status=ProviderStatus.SUCCEEDED, provider_reference=f"sim_po_{req.payout_id}",
            merchant_reference=req.payout_id, amount_minor=req.amount_minor, currency=req.currency,
            merchant_id=req.merchant_id, provider_status="paid",
        )  # fmt: skip

    def create_payment(self, req):
        raise NotImplementedError

    def query_status(self, **kwargs):
        raise NotImplementedError


def run_together(workers: int, work) -> list:
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


def broker_down(**kwargs):
    raise BrokerDown("the broker is down")


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["refund", "payout"])
def test_the_sweep_and_the_original_task_racing_send_once(kind, monkeypatch):
    provider = CountingProvider()
    monkeypatch.setattr(http, "provider_adapter_from_settings", lambda *, provider_code=None: provider)
    # Given a refund (or payout) whose send could not be queued when it committed (the broker was down),
    with monkeypatch.context() as outage:
        outage.setattr(refund_send_task, "delay", broker_down)
        outage.setattr(payout_send_task, "delay", broker_down)
        if kind == "refund":
            subject = request_refund(payment(), now=f.at(0))
            task, key, journal = refund_send_task, {"refund_id": subject.public_id}, f"refund:{subject.public_id}"
        else:
            merchant, ben = funded_merchant(100_000)
            subject = request_payout(merchant, ben, 40_000, now=f.at(0))
            task, key, journal = payout_send_task, {"payout_id": subject.public_id}, f"payout:{subject.public_id}:sent"
    assert provider.calls == []

    # when the sweep and the task, delivered late after all, run at the same instant,
    results = run_together(2, lambda i: dispatch_stale_task() if i == 0 else task(**key))

    # then the provider was asked once and the money moved once.
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert provider.calls == [subject.public_id]
    assert journals(journal) == 1
    fresh = refund_of(subject) if kind == "refund" else payout_of(subject)
    assert fresh.status == (RefundStatus.SUCCEEDED if kind == "refund" else PayoutStatus.SUCCEEDED)
    assert ledger_verify().ok
