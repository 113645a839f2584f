"""Provider state inquiries against the simulated provider on loopback: an unknown outcome repaired
(the capture posted once, the provider's answer kept as evidence), a provider that does not answer
in time (nothing re-submitted), a provider whose amount differs (a case, nothing moved), a task run
twice, the stale-attempt sweeper's backoff and escalation, sweepers and webhooks racing, the
operator's REFRESH_PROVIDER_STATE through the approvals engine, and every refusal audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.db import connection

from approvals.models import ActionRequest
from approvals.services import request_submit
from audit.models import AuditEvent, AuditResult
from audit.verification import chain_verify
from backoffice.actors import Actor
from backoffice.beat import BEAT_SCHEDULE
from backoffice.errors import IdempotencyConflict, NotFound, PermissionMissing, ValidationFailed
from cases.models import CaseLink, OpsCase
from ledger.models import LedgerJournal
from ledger.verification import ledger_verify
from payments.models import (
    AttemptStatus,
    EventSource,
    InquiryOutcome,
    InquiryStatus,
    InquiryTrigger,
    PaymentAttempt,
    PaymentEvent,
    ProviderInquiry,
)
from payments.providers.base import ProviderTimeout
from payments.providers.http import HttpProviderAdapter
from payments.providers.simulator import start_simulator
from payments.services import attempt_apply_outcome, attempt_send
from payments.services.inquiry import (
    InquiryNotAllowed,
    attempts_inquire_stale,
    backoff_delay,
    inquiry_request,
    inquiry_run,
)
from payments.services.outcomes import OutcomeStatus
from payments.tasks import attempts_inquire_stale_task, inquiry_run_task
from tests.factories import payments as f
from tests.factories import user_with_role
from tests.factories.cases import open_case

API_KEY = "sk_test_inquiry"
READ_TIMEOUT = 0.25
# Longer than the read timeout, so the simulator's timeout scenario (amounts ending in 91) times out.
TIMEOUT_DELAY = 0.6
# Amounts by the simulator's scenarios (the last two digits).
TIMES_OUT = 1_000_091  # recorded as succeeded, the answer held past our read timeout
SETTLES_LATER = 1_000_092  # "pending" until settled
AMOUNT_DIFFERS = 1_000_094  # queries report the amount minus one
STALE = 15  # minutes
BACKOFF = dt.timedelta(minutes=5)


# --- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator():
    handle = start_simulator(api_key=API_KEY, timeout_delay=TIMEOUT_DELAY, settle_delay=3600, auto_webhooks="off")
    yield handle
    handle.stop()


@pytest.fixture
def sim(simulator, settings):
    """The simulator, emptied, and the settings pointing the configured adapter (what the task uses) at it."""
    simulator.reset()
    settings.PAYMENTS_PROVIDER_CODE = "sim"
    settings.PAYMENTS_PROVIDER_BASE_URL = simulator.base_url
    settings.PAYMENTS_PROVIDER_API_KEY = API_KEY
    settings.PAYMENTS_PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PAYMENTS_PROVIDER_READ_TIMEOUT = READ_TIMEOUT
    return simulator


@pytest.fixture
def adapter(sim):
    return adapter_for(sim.base_url)


def adapter_for(base_url: str) -> HttpProviderAdapter:
    return HttpProviderAdapter(base_url=base_url, provider_code="sim", api_key=API_KEY, connect_timeout=1.0,
                               read_timeout=READ_TIMEOUT)  # fmt: skip


class LostAnswer:
    """The provider processes the create call and its answer is lost on the way back."""

    def __init__(self, adapter: HttpProviderAdapter) -> None:
        self.adapter = adapter
        self.provider_code = adapter.provider_code

    def create_payment(self, req):
        self.adapter.create_payment(req)
        raise ProviderTimeout("connection lost before the answer", provider_code=self.provider_code,
                              phase="connection_lost")  # fmt: skip


class _SlowHandler(BaseHTTPRequestHandler):
    """Forwards a GET to the provider at once and relays its answer only after `delay` seconds."""

    def do_GET(self) -> None:
        server = self.server
        upstream = http.client.HTTPConnection(server.upstream_host, server.upstream_port, timeout=5)
        try:
            upstream.request("GET", self.path, headers={"Authorization": self.headers.get("Authorization", ""),
                                                       "Accept": "application/json"})  # fmt: skip
            response = upstream.getresponse()
            status, body = response.status, response.read()
        finally:
            upstream.close()
        time.sleep(server.delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up waiting, which is the point

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def slow_provider(sim):
    """A loopback hop in front of the simulator that answers status queries too late."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    server.upstream_host, server.upstream_port, server.delay = sim.host, sim.port, READ_TIMEOUT * 3
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sent(adapter, *, amount_minor: int, now: dt.datetime = f.T0) -> PaymentAttempt:
    """An attempt sent through `adapter` (to the simulator) at `now`."""
    created = f.attempt(f.intent(amount_minor=amount_minor, now=now), now=now)
    attempt_send(attempt_id=created.public_id, actor=f.system(), now=now, adapter=adapter, card_token=f.CARD_TOKEN)
    return f.fetch_attempt(created.public_id)


def unknown_at_simulator(adapter, *, amount_minor: int = TIMES_OUT, now: dt.datetime = f.T0) -> PaymentAttempt:
    """UNKNOWN_OUTCOME here; at the simulator, a payment (succeeded unless the amount says otherwise)."""
    sender = adapter if amount_minor % 100 == 91 else LostAnswer(adapter)
    attempt = sent(sender, amount_minor=amount_minor, now=now)
    assert attempt.status == AttemptStatus.UNKNOWN_OUTCOME, attempt.status
    return attempt


def creates(sim) -> list[str]:
    return [r.path for r in sim.received() if r.method == "POST"]


def queries(sim) -> list[str]:
    return [r.path for r in sim.received() if r.method == "GET"]


def captures(attempt: PaymentAttempt) -> list[LedgerJournal]:
    return list(LedgerJournal.objects.filter(journal_type="CAPTURE_SUCCEEDED", source_id=attempt.public_id))


def request(attempt: PaymentAttempt, *, key: str | None = None, minutes: float = 10, **fields) -> ProviderInquiry:
    return inquiry_request(
        attempt_id=attempt.public_id, trigger=fields.pop("trigger", InquiryTrigger.OPERATOR),
        reason_code=fields.pop("reason_code", "UNKNOWN_OUTCOME"),
        reason_text=fields.pop("reason_text", "Timed out at the provider; no webhook yet"),
        idempotency_key=key or f.new_key("inq"), actor=f.system("ops_tests"), now=f.at(minutes),
        enqueue=fields.pop("enqueue", False), **fields,
    )  # fmt: skip


def run(inquiry: ProviderInquiry, adapter, *, minutes: float = 11) -> ProviderInquiry:
    return inquiry_run(inquiry_id=inquiry.public_id, actor=f.system("inquiry_tests"), now=f.at(minutes),
                       adapter=adapter)  # fmt: skip


def sweep(minutes: float, *, max_tries: int = 3, limit: int = 100, enqueue: bool = False, actor: str = "sweeper"):
    return attempts_inquire_stale(stale_minutes=STALE, actor=f.system(actor), now=f.at(minutes), limit=limit,
                                  max_tries=max_tries, backoff=BACKOFF, max_backoff=dt.timedelta(hours=1),
                                  enqueue=enqueue)  # fmt: skip


def snapshot(attempt: PaymentAttempt) -> dict:
    """What a refusal or an answer that changes nothing must leave exactly as it was."""
    fresh = f.fetch_attempt(attempt.public_id)
    intent = fresh.payment_intent
    return {
        "attempt": {fld.attname: getattr(fresh, fld.attname) for fld in PaymentAttempt._meta.concrete_fields},
        "intent": (intent.status, intent.version, intent.captured_minor),
        "journals": LedgerJournal.objects.count(),
        "events": PaymentEvent.objects.filter(subject_id=attempt.public_id).count(),
        "inquiries": ProviderInquiry.objects.count(),
    }


def refusal(event_type: str, target_id: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type, target_id=target_id, result=AuditResult.REFUSED).latest(
        "seq"
    )


def run_together(workers: int, work) -> list:
    """Run work(i) in `workers` threads released at the same instant; results or exceptions."""
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


# --- the unknown payment repaired ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_outcome_is_repaired_by_an_inquiry_and_captured_once(sim, adapter):
    attempt = unknown_at_simulator(adapter)
    at_provider = sim.get(attempt.public_id)
    assert (attempt.provider_reference, at_provider.status) == ("", "succeeded")

    inquiry = request(attempt)
    assert (inquiry.status, inquiry.outcome, inquiry.trigger) == (InquiryStatus.QUEUED, "", InquiryTrigger.OPERATOR)
    done = run(inquiry, adapter)

    assert (done.status, done.outcome) == (InquiryStatus.COMPLETED, InquiryOutcome.APPLIED)
    found = f.fetch_attempt(attempt.public_id)
    assert (found.status, found.provider_reference) == (AttemptStatus.SUCCEEDED, at_provider.provider_reference)
    assert (found.payment_intent.status, found.payment_intent.captured_minor) == ("SUCCEEDED", TIMES_OUT)
    (journal,) = captures(attempt)
    assert (journal.idempotency_key, found.capture_journal_ref) == (f"capture:{attempt.public_id}", journal.public_id)
    # The provider's answer, as received, is the evidence.
    stored = ProviderInquiry.objects.get(pk=done.pk)
    (answer,) = json.loads(stored.response_body)["data"]  # asked by our reference: a list of one
    assert (answer["id"], answer["status"], answer["amount_minor"]) == (
        at_provider.provider_reference, "succeeded", TIMES_OUT)  # fmt: skip
    assert stored.response_sha256 == hashlib.sha256(stored.response_body.encode()).hexdigest()
    assert stored.response_status == 200 and 0 <= stored.duration_ms < READ_TIMEOUT * 1000
    assert stored.request == {
        "provider_reference": "", "merchant_reference": attempt.public_id, "kind": "payment",
        "provider_account": "acct_main", "connect_timeout_s": 1.0, "read_timeout_s": READ_TIMEOUT,
    }  # fmt: skip
    assert (stored.completed_at, stored.mismatch) == (f.at(11), None)
    # Asked once, by our reference; the payment itself was sent once and never again.
    assert creates(sim) == ["/v1/payments"]
    assert queries(sim) == [f"/v1/payments?merchant_reference={attempt.public_id}"]
    events = PaymentEvent.objects.filter(subject_id=attempt.public_id, inquiry=stored)
    assert sorted(events.values_list("event_type", "source")) == [
        ("payment_attempt.inquiry_completed", EventSource.INQUIRY),
        ("payment_attempt.inquiry_requested", EventSource.OPERATOR),
        ("payment_attempt.succeeded", EventSource.INQUIRY),
    ]
    assert events.get(event_type="payment_attempt.inquiry_completed").data["journal_ref"] == journal.public_id
    # The repaired attempt is final: asking again is refused, and the capture stays single.
    with pytest.raises(InquiryNotAllowed):
        request(attempt, minutes=20)
    assert len(captures(attempt)) == 1
    assert ledger_verify().ok and chain_verify().intact


@pytest.mark.django_db
def test_pending_is_recorded_and_a_later_inquiry_applies_the_settled_answer(sim, adapter):
    attempt = sent(adapter, amount_minor=SETTLES_LATER)
    assert attempt.status == AttemptStatus.SENT_TO_PROVIDER

    first = run(request(attempt), adapter)
    assert first.outcome == InquiryOutcome.PENDING
    assert f.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER
    assert captures(attempt) == []

    sim.settle(attempt.public_id)
    second = run(request(attempt, minutes=30), adapter, minutes=31)
    assert second.outcome == InquiryOutcome.APPLIED
    assert f.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
    assert len(captures(attempt)) == 1
    # By the provider's reference once we had it: the first answer to the create call carried it.
    assert queries(sim)[-1] == f"/v1/payments/{attempt.provider_reference}"


@pytest.mark.django_db
def test_an_attempt_the_provider_never_received_is_not_found_and_left_unknown(sim, adapter):
    attempt = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)  # the create call never reached the simulator
    inquiry = request(attempt)
    before = snapshot(attempt)

    done = run(inquiry, adapter)

    assert done.outcome == InquiryOutcome.NOT_FOUND
    assert json.loads(done.response_body) == {"object": "list", "data": []}
    after = snapshot(attempt)
    assert after["attempt"] == before["attempt"] and after["journals"] == before["journals"]
    assert creates(sim) == []


# --- no answer, an error: nothing moves, nothing re-submitted ----------------------------------------


@pytest.mark.django_db
def test_an_inquiry_timeout_leaves_the_attempt_unknown_and_resubmits_nothing(sim, adapter, slow_provider):
    attempt = unknown_at_simulator(adapter)
    inquiry = request(attempt)
    before = snapshot(attempt)

    done = run(inquiry, adapter_for(slow_provider))

    assert (done.status, done.outcome) == (InquiryStatus.COMPLETED, InquiryOutcome.TIMEOUT)
    stored = ProviderInquiry.objects.get(pk=done.pk)
    assert (stored.response_status, stored.response_body, stored.response_sha256) == (None, "", "")
    assert stored.duration_ms >= READ_TIMEOUT * 1000
    after = snapshot(attempt)
    assert after["attempt"] == before["attempt"]  # still UNKNOWN_OUTCOME, not a field touched
    assert (after["journals"], after["events"]) == (before["journals"], before["events"] + 1)
    # The provider was asked (and answered too late); the payment was sent once, never again.
    assert creates(sim) == ["/v1/payments"]
    assert len(queries(sim)) == 1
    audit = AuditEvent.objects.filter(event_type="payments.provider_inquiry_completed").latest("seq")
    assert (audit.result, audit.error_code) == (AuditResult.FAILED, "PROVIDER_TIMEOUT")
    # A later inquiry, answered in time, repairs it.
    assert run(request(attempt, minutes=40), adapter, minutes=41).outcome == InquiryOutcome.APPLIED
    assert creates(sim) == ["/v1/payments"]
    assert len(captures(attempt)) == 1


@pytest.mark.django_db
def test_a_provider_error_is_recorded_with_its_answer_and_changes_nothing(sim, adapter):
    attempt = unknown_at_simulator(adapter)
    inquiry = request(attempt)
    before = snapshot(attempt)
    sim.fail_next(1, http_status=503)

    done = run(inquiry, adapter)

    assert done.outcome == InquiryOutcome.ERROR
    assert done.response_status == 503
    assert json.loads(done.response_body)["error"]["code"] == "forced_failure"
    assert snapshot(attempt)["attempt"] == before["attempt"]
    assert captures(attempt) == []


# --- a provider that disagrees ----------------------------------------------------------------------


@pytest.mark.django_db
def test_an_amount_mismatch_opens_a_case_and_moves_nothing(sim, adapter):
    attempt = unknown_at_simulator(adapter, amount_minor=AMOUNT_DIFFERS)
    inquiry = request(attempt)
    before = snapshot(attempt)

    done = run(inquiry, adapter)

    assert (done.status, done.outcome) == (InquiryStatus.COMPLETED, InquiryOutcome.MISMATCH)
    assert done.mismatch == {"amount_minor": {"ours": AMOUNT_DIFFERS, "theirs": AMOUNT_DIFFERS - 1}}
    assert json.loads(done.response_body)["data"][0]["amount_minor"] == AMOUNT_DIFFERS - 1
    after = snapshot(attempt)
    assert after["attempt"] == before["attempt"] and after["intent"] == before["intent"]
    assert captures(attempt) == [] and after["journals"] == before["journals"]
    case = OpsCase.objects.get(business_key=attempt.public_id)
    assert (case.case_type, case.severity, case.source_system, case.occurrence_count) == (
        "PAYMENT_INVESTIGATION", "HIGH", "payments", 1)  # fmt: skip
    assert done.case_ref == case.case_number
    assert set(CaseLink.objects.filter(case=case).values_list("object_type", "object_id", "relation_type")) == {
        ("payment_attempt", attempt.public_id, "AFFECTS"),
        ("provider_inquiry", done.public_id, "EVIDENCE_FOR"),
    }
    event = PaymentEvent.objects.get(subject_id=attempt.public_id, event_type="payment_attempt.inquiry_completed")
    assert (event.case_ref, event.data["outcome"], event.data["mismatch"]) == (
        case.case_number, "MISMATCH", done.mismatch)  # fmt: skip

    # Asking again joins the same case: one case per attempt and mismatch, not one per inquiry.
    again = run(request(attempt, minutes=30), adapter, minutes=31)
    assert again.outcome == InquiryOutcome.MISMATCH
    assert OpsCase.objects.filter(business_key=attempt.public_id).count() == 1
    assert OpsCase.objects.get(pk=case.pk).occurrence_count == 2
    assert ledger_verify().ok and chain_verify().intact


# --- redelivery ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_task_run_twice_has_one_effect(sim, adapter):
    attempt = unknown_at_simulator(adapter)
    inquiry = request(attempt)

    first = inquiry_run_task(inquiry_id=inquiry.public_id)
    counts = (PaymentEvent.objects.count(), AuditEvent.objects.count(), LedgerJournal.objects.count())
    second = inquiry_run_task(inquiry_id=inquiry.public_id)

    assert first == second == {"inquiry": inquiry.public_id, "status": "COMPLETED", "outcome": "APPLIED"}
    assert (PaymentEvent.objects.count(), AuditEvent.objects.count(), LedgerJournal.objects.count()) == counts
    assert len(queries(sim)) == 1  # a completed inquiry is not asked again
    assert len(captures(attempt)) == 1
    assert ProviderInquiry.objects.get(pk=inquiry.pk).requested_by == "system:ops_tests"


@pytest.mark.django_db
def test_a_request_enqueues_its_run_after_commit(sim, adapter, django_capture_on_commit_callbacks):
    attempt = unknown_at_simulator(adapter)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        inquiry = request(attempt, enqueue=True)
    assert len(callbacks) == 1
    assert queries(sim) == []  # nothing is asked inside the transaction

    callbacks[0]()
    assert ProviderInquiry.objects.get(pk=inquiry.pk).outcome == InquiryOutcome.APPLIED
    assert len(captures(attempt)) == 1


# --- the sweeper --------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap():
    cap = dt.timedelta(hours=1)
    assert [backoff_delay(tries=n, backoff=BACKOFF, max_backoff=cap) for n in (1, 2, 3, 4, 5)] == [
        dt.timedelta(minutes=m) for m in (5, 10, 20, 40, 60)
    ]


@pytest.mark.django_db
def test_the_sweeper_backs_off_and_escalates_once_after_max_tries(sim, django_capture_on_commit_callbacks):
    attempt = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)  # the provider never received it: NOT_FOUND each time
    other = f.attempt_in(AttemptStatus.SUCCEEDED)  # settled: never swept

    def sweep_and_run(minutes):
        with django_capture_on_commit_callbacks(execute=True):
            return sweep(minutes, enqueue=True)

    def state():
        found = f.fetch_attempt(attempt.public_id)
        return found.inquiry_count, found.next_inquiry_at, found.escalated_case_ref

    assert sweep_and_run(10).inquiries == []  # sent 10 minutes ago: not stale yet
    assert state() == (0, f.T0, "")
    tries = [(15, 20), (20, 30), (30, 50)]  # (sweep at, next inquiry due at): 5, 10, 20 minutes later
    for n, (minutes, due) in enumerate(tries, start=1):
        assert sweep_and_run(minutes - 1).inquiries == []  # not stale yet, then not due yet
        result = sweep_and_run(minutes)
        assert [i.payment_attempt_id for i in result.inquiries] == [attempt.pk]
        assert state() == (n, f.at(due), "")
    inquiries = ProviderInquiry.objects.filter(payment_attempt=attempt).order_by("id")
    assert [(i.trigger, i.status, i.outcome, i.idempotency_key) for i in inquiries] == [
        (InquiryTrigger.SWEEPER, InquiryStatus.COMPLETED, InquiryOutcome.NOT_FOUND, f"sweep:{attempt.public_id}:{n}")
        for n in (1, 2, 3)
    ]
    assert not ProviderInquiry.objects.filter(payment_attempt=other).exists()

    assert sweep_and_run(49).escalated == {}
    result = sweep_and_run(50)
    case = OpsCase.objects.get(business_key=attempt.public_id)
    assert (result.inquiries, result.escalated) == ([], {attempt.public_id: case.case_number})
    assert state() == (3, f.at(55), case.case_number)
    assert (case.severity, case.occurrence_count) == ("HIGH", 1)
    assert CaseLink.objects.filter(case=case, object_type="payment_attempt", object_id=attempt.public_id).exists()
    assert f.fetch_attempt(attempt.public_id).status == AttemptStatus.UNKNOWN_OUTCOME

    # Escalated: later sweeps neither inquire nor open another case.
    for minutes in (60, 120, 600):
        later = sweep_and_run(minutes)
        assert (later.inquiries, later.escalated) == ([], {})
    assert inquiries.count() == 3
    assert OpsCase.objects.filter(business_key=attempt.public_id).count() == 1
    assert OpsCase.objects.get(pk=case.pk).occurrence_count == 1
    # An operator may still ask.
    assert request(attempt, minutes=700).status == InquiryStatus.QUEUED


@pytest.mark.django_db
def test_the_sweeper_repairs_an_unknown_outcome_unattended(sim, adapter, django_capture_on_commit_callbacks):
    attempt = unknown_at_simulator(adapter)

    with django_capture_on_commit_callbacks(execute=True):
        result = sweep(20, enqueue=True)

    (inquiry,) = result.inquiries
    assert ProviderInquiry.objects.get(pk=inquiry.pk).outcome == InquiryOutcome.APPLIED
    found = f.fetch_attempt(attempt.public_id)
    assert (found.status, found.next_inquiry_at) == (AttemptStatus.SUCCEEDED, None)
    assert len(captures(attempt)) == 1
    assert sweep(60).inquiries == []  # final: no longer swept


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_inquire_each_attempt_once_and_escalate_it_once():
    attempts = [f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME) for _ in range(8)]

    first = run_together(2, lambda i: sweep(20, max_tries=1, actor=f"sweeper_{i}"))

    assert not [r for r in first if isinstance(r, BaseException)], first
    assert sum(len(r.inquiries) for r in first) == len(attempts)
    for attempt in attempts:
        found = f.fetch_attempt(attempt.public_id)
        assert ProviderInquiry.objects.filter(payment_attempt=found).count() == 1
        assert (found.inquiry_count, found.next_inquiry_at) == (1, f.at(25))

    second = run_together(2, lambda i: sweep(30, max_tries=1, actor=f"sweeper_{i}"))

    assert not [r for r in second if isinstance(r, BaseException)], second
    escalated = {**second[0].escalated, **second[1].escalated}
    assert sorted(escalated) == sorted(a.public_id for a in attempts)
    assert not set(second[0].escalated) & set(second[1].escalated)
    for attempt in attempts:
        (case,) = OpsCase.objects.filter(business_key=attempt.public_id)
        assert case.occurrence_count == 1
        assert f.fetch_attempt(attempt.public_id).escalated_case_ref == case.case_number == escalated[attempt.public_id]
    assert ProviderInquiry.objects.count() == len(attempts)
    assert chain_verify().intact


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_inquiry_webhook_and_sweeper_racing_capture_once(sim, adapter):
    attempts = [unknown_at_simulator(adapter) for _ in range(3)]
    queued = [request(a) for a in attempts]
    references = {a.public_id: sim.get(a.public_id).provider_reference for a in attempts}

    def webhook(attempt):
        outcome = f.outcome_for(attempt, OutcomeStatus.SUCCEEDED, provider_reference=references[attempt.public_id])
        return attempt_apply_outcome(attempt_id=attempt.public_id, outcome=outcome, source=EventSource.WEBHOOK,
                                     actor=f.system("webhook_tests"), now=f.at(20))  # fmt: skip

    def sweeper():
        result = sweep(20)
        return [run(i, adapter, minutes=20) for i in result.inquiries]

    work = [
        lambda: [run(i, adapter, minutes=20) for i in queued],
        lambda: [webhook(a) for a in attempts],
        sweeper,
    ]
    results = run_together(3, lambda i: work[i]())

    assert not [r for r in results if isinstance(r, BaseException)], results
    for attempt in attempts:
        found = f.fetch_attempt(attempt.public_id)
        (journal,) = captures(attempt)
        assert (found.status, found.capture_journal_ref) == (AttemptStatus.SUCCEEDED, journal.public_id)
        assert (found.payment_intent.status, found.payment_intent.captured_minor) == ("SUCCEEDED", TIMES_OUT)
        inquiries = ProviderInquiry.objects.filter(payment_attempt=found)
        assert {i.status for i in inquiries} == {InquiryStatus.COMPLETED}
        assert {i.outcome for i in inquiries} <= {InquiryOutcome.APPLIED, InquiryOutcome.NO_CHANGE}
        applied = [i for i in inquiries if i.outcome == InquiryOutcome.APPLIED]
        webhook_changed = [r for r in results[1] if r.attempt.pk == found.pk and r.changed]
        assert len(applied) + len(webhook_changed) == 1
        assert PaymentEvent.objects.filter(subject_id=found.public_id, to_status="SUCCEEDED",
                                           event_type="payment_attempt.succeeded").count() == 1  # fmt: skip
    assert creates(sim) == ["/v1/payments"] * 3
    assert ledger_verify().ok and chain_verify().intact


# --- the operator's refresh through the approvals engine ---------------------------------------------


@pytest.mark.django_db
def test_refresh_provider_state_records_a_request_and_an_inquiry(sim, adapter, django_capture_on_commit_callbacks):
    attempt = unknown_at_simulator(adapter)
    operator = user_with_role("payment_ops", username="ops_refresher")
    case = open_case(title=f"Customer says {attempt.public_id} was paid")
    submit = dict(
        action_type="REFRESH_PROVIDER_STATE", payload={"payment_attempt": attempt.public_id},
        reason_code="MISSING_WEBHOOK", reason_text="Timed out; the customer shows a debit",
        actor=Actor.from_user(operator), now=f.at(10), idempotency_key="refresh-1", case_ref=case.case_number,
    )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        action = request_submit(**submit)

    assert (action.status, action.needs_approval, action.risk_level) == ("SUCCEEDED", False, "LOW")
    assert (action.target_type, action.target_id, action.target_version) == (
        "payment_attempt", attempt.public_id, str(attempt.version))  # fmt: skip
    inquiry = ProviderInquiry.objects.get(payment_attempt=attempt)
    assert action.result == {"provider_inquiry": inquiry.public_id}
    assert (inquiry.trigger, inquiry.requested_by, inquiry.reason_code, inquiry.case_ref) == (
        InquiryTrigger.OPERATOR, "ops_refresher", "MISSING_WEBHOOK", case.case_number)  # fmt: skip
    assert inquiry.idempotency_key == f"{action.public_id}:inquiry"
    assert (inquiry.status, inquiry.outcome) == (InquiryStatus.COMPLETED, InquiryOutcome.APPLIED)
    assert f.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
    assert len(captures(attempt)) == 1
    queued = PaymentEvent.objects.get(subject_id=attempt.public_id, event_type="payment_attempt.inquiry_requested")
    assert (queued.approval_ref, queued.case_ref, queued.actor) == (action.public_id, case.case_number, "ops_refresher")
    assert set(CaseLink.objects.filter(case=case).values_list("object_type", "object_id")) >= {
        ("action_request", action.public_id), ("provider_inquiry", inquiry.public_id)}  # fmt: skip
    assert AuditEvent.objects.filter(event_type="approvals.request_executed", target_id=action.public_id).exists()

    # A double submit is the same request: no second inquiry, nothing asked again.
    assert request_submit(**submit).pk == action.pk
    assert ProviderInquiry.objects.filter(payment_attempt=attempt).count() == 1
    assert ActionRequest.objects.filter(action_type="REFRESH_PROVIDER_STATE").count() == 1
    assert len(queries(sim)) == 1


@pytest.mark.django_db
def test_refresh_provider_state_refusals_are_audited_and_change_nothing(sim):
    unknown = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)
    captured = f.attempt_in(AttemptStatus.SUCCEEDED)
    support = Actor.from_user(user_with_role("support_ops", username="support_clerk"))
    operator = Actor.from_user(user_with_role("payment_ops", username="ops_analyst"))
    before = snapshot(unknown)

    def submit(actor, attempt, key):
        return request_submit(action_type="REFRESH_PROVIDER_STATE", payload={"payment_attempt": attempt.public_id},
                              reason_code="UNKNOWN_OUTCOME", reason_text="Check with the provider", actor=actor,
                              now=f.at(10), idempotency_key=key)  # fmt: skip

    with pytest.raises(PermissionMissing, match=r"payments\.refresh_provider_state"):
        submit(support, unknown, "k-support")
    with pytest.raises(InquiryNotAllowed, match="final"):
        submit(operator, captured, "k-final")

    refusals = AuditEvent.objects.filter(event_type="approvals.submit_refused", result=AuditResult.REFUSED)
    assert sorted(refusals.values_list("actor", "error_code")) == [
        ("ops_analyst", "INQUIRY_NOT_ALLOWED"), ("support_clerk", "PERMISSION_DENIED")]  # fmt: skip
    assert ActionRequest.objects.count() == 0 and ProviderInquiry.objects.count() == 0
    assert snapshot(unknown) == before


# --- inquiry_request: refusals and idempotency ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status", [AttemptStatus.CREATED, AttemptStatus.AUTHORIZED, AttemptStatus.SUCCEEDED, AttemptStatus.DECLINED]
)
def test_an_attempt_the_provider_cannot_answer_for_is_refused_audited_and_unchanged(status):
    attempt = f.attempt_in(status)
    before = snapshot(attempt)

    with pytest.raises(InquiryNotAllowed, match=f"is {status}"):
        request(attempt, key="refused-1")

    assert snapshot(attempt) == before
    audit = refusal("payments.provider_inquiry_request_refused", attempt.public_id)
    assert (audit.error_code, audit.action_type, audit.reason_code) == (
        "INQUIRY_NOT_ALLOWED", "REFRESH_PROVIDER_STATE", "UNKNOWN_OUTCOME")  # fmt: skip


@pytest.mark.django_db
def test_bad_requests_are_refused_and_audited():
    attempt = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)
    before = snapshot(attempt)

    with pytest.raises(NotFound):
        inquiry_request(attempt_id="pa_missing", trigger=InquiryTrigger.OPERATOR, reason_code="X", reason_text="y",
                        idempotency_key="k1", actor=f.system(), now=f.at(5), enqueue=False)  # fmt: skip
    with pytest.raises(ValidationFailed, match="card number"):
        request(attempt, reason_text="Customer card 4111 1111 1111 1111 was charged")
    with pytest.raises(ValidationFailed, match="trigger"):
        request(attempt, trigger="WHENEVER")
    with pytest.raises(ValidationFailed, match="explanation"):
        request(attempt, reason_text="  ")
    with pytest.raises(ValidationFailed, match="no case"):
        request(attempt, case_ref="CASE-2026-999999")

    assert snapshot(attempt) == before
    refused = AuditEvent.objects.filter(event_type="payments.provider_inquiry_request_refused")
    assert sorted(refused.values_list("error_code", flat=True)) == ["NOT_FOUND"] + ["VALIDATION_FAILED"] * 4
    assert not any("4111" in (a.error_message + a.reason_text) for a in refused)


@pytest.mark.django_db
def test_the_same_key_returns_the_first_inquiry_and_another_request_with_it_is_refused():
    attempt = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)
    other = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)

    first = request(attempt, key="same-key")
    assert request(attempt, key="same-key", minutes=12).pk == first.pk
    with pytest.raises(IdempotencyConflict):
        request(other, key="same-key")
    with pytest.raises(IdempotencyConflict, match="reason_text"):
        request(attempt, key="same-key", reason_text="Something else")

    assert ProviderInquiry.objects.count() == 1
    assert PaymentEvent.objects.filter(event_type="payment_attempt.inquiry_requested").count() == 1


@pytest.mark.django_db
def test_running_an_unknown_inquiry_or_with_another_providers_adapter_is_refused_and_audited(sim, adapter):
    with pytest.raises(NotFound):
        inquiry_run(inquiry_id="inq_missing", actor=f.system(), now=f.at(1), adapter=adapter)
    assert refusal("payments.provider_inquiry_run_refused", "inq_missing").error_code == "NOT_FOUND"

    inquiry = request(f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME))
    other = HttpProviderAdapter(base_url=sim.base_url, provider_code="other", api_key=API_KEY, connect_timeout=1.0,
                                read_timeout=READ_TIMEOUT)  # fmt: skip
    with pytest.raises(ValidationFailed, match="provider sim, not other"):
        inquiry_run(inquiry_id=inquiry.public_id, actor=f.system(), now=f.at(12), adapter=other)
    assert refusal("payments.provider_inquiry_run_refused", inquiry.public_id).error_code == "VALIDATION_FAILED"
    assert ProviderInquiry.objects.get(pk=inquiry.pk).status == InquiryStatus.QUEUED
    assert queries(sim) == []


# --- the command and the schedule ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_sweeps_synchronously_and_says_what_it_did(sim, adapter):
    repaired = unknown_at_simulator(adapter)
    unknown = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)
    out = io.StringIO()

    call_command("payments_inquire", "--stale-minutes", "15", "--limit", "10", stdout=out)

    text = out.getvalue()
    assert f"{repaired.public_id}: APPLIED" in text and "attempt now SUCCEEDED" in text
    assert f"{unknown.public_id}: NOT_FOUND" in text
    assert "2 inquired, 0 escalated" in text
    assert {i.requested_by for i in ProviderInquiry.objects.all()} == {"system:payments_inquire"}
    assert len(captures(repaired)) == 1


@pytest.mark.django_db
def test_the_command_inquires_one_attempt_with_a_reason(sim, adapter):
    attempt = unknown_at_simulator(adapter)
    out = io.StringIO()

    call_command("payments_inquire", "--attempt", attempt.public_id, "--reason", "Provider incident follow-up",
                 stdout=out)  # fmt: skip

    assert f"{attempt.public_id}: APPLIED" in out.getvalue()
    inquiry = ProviderInquiry.objects.get(payment_attempt=attempt)
    assert (inquiry.trigger, inquiry.reason_code, inquiry.reason_text) == (
        InquiryTrigger.COMMAND, "MAINTENANCE", "Provider incident follow-up")  # fmt: skip


def test_the_sweeper_is_scheduled_every_five_minutes():
    entry = BEAT_SCHEDULE["payments-inquire-stale"]
    assert entry["task"] == "payments.tasks.attempts_inquire_stale_task"
    assert entry["schedule"].minute == {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55}


@pytest.mark.django_db
def test_the_sweeper_task_reads_its_settings(settings):
    settings.PAYMENTS_INQUIRY_STALE_MINUTES = 30
    settings.PAYMENTS_INQUIRY_MAX_TRIES = 2
    settings.PAYMENTS_INQUIRY_BACKOFF_SECONDS = 120
    attempt = f.attempt_in(AttemptStatus.UNKNOWN_OUTCOME)  # sent long before the wall clock's now

    result = attempts_inquire_stale_task()

    (inquiry,) = ProviderInquiry.objects.filter(payment_attempt=attempt)
    assert result == {"inquiries": [inquiry.public_id], "escalated": {}, "skipped": 0, "failed": {}}
    assert inquiry.reason_text.endswith("try 1 of 2") and inquiry.requested_by == "system:inquiry_sweeper"
    found = f.fetch_attempt(attempt.public_id)
    assert found.next_inquiry_at - inquiry.created_at == dt.timedelta(seconds=120)
