"""Provider webhooks end to end: real signed events from the simulated provider, posted to
/webhooks/sim/, stored first, verified, deduplicated, mapped, applied through the attempt and refund
services, quarantined into cases when they cannot be, and replayed by operators."""

from __future__ import annotations

import datetime as dt
import io
import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client

from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_submit
from audit.models import AuditEvent, AuditResult
from backoffice.errors import IllegalTransition, NotFound, PermissionMissing, ValidationFailed
from cases.models import CaseLink, OpsCase
from ledger.models import LedgerJournal
from payments.models import (
    AttemptStatus,
    EventProcessing,
    NormalizedEventType,
    PaymentEvent,
    ProviderEventRaw,
    Refund,
    RefundStatus,
    SignatureVerdict,
)
from payments.providers import HttpProviderAdapter
from payments.providers.simulator import start_simulator
from payments.services import attempt_apply_outcome, attempt_send
from payments.services.refunds import refund_create, refund_send
from payments.tasks import webhook_process_task
from payments.webhooks import ingest
from payments.webhooks.mappers import SimMapperV1, WebhookMappingError, mapper_registered
from payments.webhooks.process import ProcessResult, webhook_process
from payments.webhooks.replay import webhook_mark_poison, webhook_release, webhook_replay
from payments.webhooks.views import MAX_BODY_BYTES
from tests.factories import payments, user_with_role

URL = "/webhooks/sim/"
E = EventProcessing
OPS = payments.system("webhook_tests")
# Amounts ending in 92: the simulator answers the create call "pending" and settles later, so the
# webhook is what captures the payment.
PENDING_AMOUNT = 1_000_092


# --- fixtures and helpers (shared with test_webhook_concurrency) --------------------------------------


def start_test_simulator():
    # Signs with the development secret the back-office verifies "sim" webhooks with; settles and
    # sends nothing by itself, so each test decides what arrives and when.
    return start_simulator(api_key="sk_test_webhooks", settle_delay=3600, auto_webhooks="off")


def adapter_for(simulator) -> HttpProviderAdapter:
    return HttpProviderAdapter(base_url=simulator.base_url, provider_code="sim", api_key="sk_test_webhooks",
                               connect_timeout=1.0, read_timeout=2.0)  # fmt: skip


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


def sim_attempt(adapter, *, amount_minor: int):
    """An attempt sent to the simulated provider, which now holds the payment under our pa_ id."""
    created = payments.attempt(payments.intent(amount_minor=amount_minor))
    attempt_send(attempt_id=created.public_id, actor=payments.system(), now=payments.T0, adapter=adapter,
                 card_token=payments.CARD_TOKEN)  # fmt: skip
    found = payments.fetch_attempt(created.public_id)
    assert found.provider_reference
    return found


def pending_attempt(adapter):
    """An attempt the simulator holds as pending: SENT_TO_PROVIDER here, nothing captured yet."""
    found = sim_attempt(adapter, amount_minor=PENDING_AMOUNT)
    assert found.status == AttemptStatus.SENT_TO_PROVIDER
    return found


def captured_attempt(adapter):
    """An attempt the provider's answer captured at once (amounts ending in 00 succeed)."""
    found = sim_attempt(adapter, amount_minor=1_000_000)
    assert found.status == AttemptStatus.SUCCEEDED and captures(found.public_id) == 1
    return found


def post(body: bytes, headers: dict[str, str], *, client: Client | None = None, url: str = URL):
    extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    return (client or Client()).post(url, data=body, content_type="application/json", headers=extra)


def deliver(sim, event_type: str, reference: str, *, after_commit=None, **options):
    """Build a signed event at the simulator and POST it; with `after_commit` (the on-commit capture
    fixture) the processing queued after commit runs as a worker would run it."""
    event, body, headers = sim.build_webhook(event_type, reference, **options)
    if after_commit is None:
        return event, post(body, headers)
    with after_commit(execute=True):
        response = post(body, headers)
    return event, response


def stored(response) -> ProviderEventRaw:
    return ProviderEventRaw.objects.get(public_id=response.json()["event"])


def captures(attempt_id: str) -> int:
    return LedgerJournal.objects.filter(idempotency_key=f"capture:{attempt_id}").count()


def audit_of(event_id: str) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(target_id=event_id).order_by("seq").values_list("event_type", "result"))


class SimMapperV2(SimMapperV1):
    """The fix: the provider began sending `payment.captured` for card captures, which v1 refused."""

    version = "v2"
    TYPES = {**SimMapperV1.TYPES, "payment.captured": ("payment", {"succeeded": NormalizedEventType.PAYMENT_SUCCEEDED})}


# --- the happy path ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_signed_success_webhook_captures_the_payment_once(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)

    event, response = deliver(sim, "payment.succeeded", attempt.public_id,
                              after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    assert response.status_code == 200
    assert response.json()["status"] == "ACCEPTED"
    raw = stored(response)
    assert (raw.provider_code, raw.provider_event_id, raw.signature_verdict) == ("sim", event["id"], "VALID")
    assert raw.processing_status == E.PROCESSED and raw.processing_count == 1 and raw.failure_code == ""
    assert json.loads(bytes(raw.body)) == event
    assert "Provider-Signature" in raw.headers
    (normalized,) = raw.normalized.all()
    assert (normalized.mapper_version, normalized.event_type, normalized.our_reference, normalized.amount_minor,
            normalized.currency) == ("v1", "PAYMENT_SUCCEEDED", attempt.public_id, PENDING_AMOUNT, "IDR")  # fmt: skip
    assert normalized.merchant_ref == attempt.payment_intent.merchant.public_id
    assert normalized.provider_reference == attempt.provider_reference
    captured = payments.fetch_attempt(attempt.public_id)
    assert captured.status == AttemptStatus.SUCCEEDED and captured.payment_intent.status == "SUCCEEDED"
    assert captures(attempt.public_id) == 1
    # The timeline says it was the webhook, and which stored event.
    (moved,) = PaymentEvent.objects.filter(subject_id=attempt.public_id, to_status="SUCCEEDED")
    assert (moved.source, moved.provider_event_id) == ("WEBHOOK", raw.pk)
    assert audit_of(raw.public_id) == [("payments.webhook_received", "SUCCEEDED"),
                                       ("payments.webhook_processed", "SUCCEEDED")]  # fmt: skip


@pytest.mark.django_db
def test_the_answer_does_not_wait_for_processing(sim, adapter):
    """Without the commit having been acted on, the event is stored RECEIVED and answered 200."""
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)

    _, response = deliver(sim, "payment.succeeded", attempt.public_id)

    assert response.status_code == 200
    assert stored(response).processing_status == E.RECEIVED
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER


@pytest.mark.django_db
def test_refund_webhook_succeeds_the_refund_through_the_refund_service(
    sim, adapter, django_capture_on_commit_callbacks
):
    attempt = captured_attempt(adapter)
    intent = payments.fetch_intent(attempt.payment_intent.public_id)
    refund = refund_create(intent=intent, amount_minor=200_092, reason_code="CUSTOMER_REQUEST", reason_text="Return",
                           idempotency_key="refund-webhook-1", actor=OPS, now=payments.T0)  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):  # the provider is called after commit
        refund_send(refund_id=refund.public_id, actor=OPS, now=payments.T0, adapter=adapter)
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PROCESSING
    sim.settle(refund.public_id)

    _, response = deliver(sim, "refund.succeeded", refund.public_id, after_commit=django_capture_on_commit_callbacks)

    assert response.status_code == 200
    assert stored(response).processing_status == E.PROCESSED
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED
    assert LedgerJournal.objects.filter(idempotency_key=f"refund:{refund.public_id}").count() == 1


# --- refused deliveries: stored first, never applied ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tamper", "status", "verdict"),
    [
        ("wrong_secret", 401, SignatureVerdict.BAD_SIGNATURE),
        ("changed_body", 401, SignatureVerdict.BAD_SIGNATURE),
        ("no_header", 401, SignatureVerdict.MISSING),
        ("garbled_header", 400, SignatureVerdict.MALFORMED),
    ],
)
def test_bad_signature_is_stored_poison_and_never_applied(
    sim, adapter, django_capture_on_commit_callbacks, tamper, status, verdict
):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, body, headers = sim.build_webhook(
        "payment.succeeded", attempt.public_id, secret=b"whsec_someone_else" if tamper == "wrong_secret" else None
    )
    if tamper == "changed_body":
        body = body.replace(str(PENDING_AMOUNT).encode(), b"9000092")
    elif tamper == "no_header":
        del headers["Provider-Signature"]
    elif tamper == "garbled_header":
        headers["Provider-Signature"] = "t=soon,v1=zz"

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = post(body, headers)

    assert response.status_code == status
    assert response.json()["error"] == f"SIGNATURE_{verdict}"
    raw = stored(response)
    assert raw.signature_verdict == verdict and raw.processing_status == E.POISON
    assert raw.failure_code == f"SIGNATURE_{verdict}" and bytes(raw.body) == body
    assert queued == []  # nothing was queued for processing
    # Nothing moved.
    assert raw.normalized.count() == 0
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER
    assert captures(attempt.public_id) == 0
    refusal = AuditEvent.objects.get(target_id=raw.public_id)
    assert (refusal.event_type, refusal.result, refusal.error_code) == (
        "payments.webhook_refused", AuditResult.REFUSED, f"SIGNATURE_{verdict}")  # fmt: skip


@pytest.mark.django_db
def test_expired_timestamp_is_refused_and_the_providers_retry_is_accepted(
    sim, adapter, django_capture_on_commit_callbacks
):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    an_hour_ago = int(time.time()) - 3600

    event, stale = deliver(sim, "payment.succeeded", attempt.public_id, timestamp=an_hour_ago,
                           after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    assert stale.status_code == 401 and stale.json()["error"] == "SIGNATURE_EXPIRED"
    refused = stored(stale)
    assert (refused.signature_verdict, refused.processing_status) == ("EXPIRED", E.POISON)
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER
    assert captures(attempt.public_id) == 0

    # The provider retries the same event, signed now: a refused delivery does not count as accepted.
    _, retry = deliver(sim, "payment.succeeded", attempt.public_id, event_id=event["id"],
                       after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    assert retry.status_code == 200 and stored(retry).processing_status == E.PROCESSED
    assert captures(attempt.public_id) == 1


@pytest.mark.django_db
def test_unknown_provider_is_stored_and_answered_404(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = post(body, headers, url="/webhooks/acme/")

    assert response.status_code == 404
    raw = stored(response)
    assert (raw.provider_code, raw.signature_verdict, raw.processing_status, raw.failure_code) == (
        "acme", "UNKNOWN_PROVIDER", E.POISON, "SIGNATURE_UNKNOWN_PROVIDER")  # fmt: skip
    assert raw.provider_event_id == "" and queued == []
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER


@pytest.mark.django_db
def test_oversized_body_is_refused_unstored_and_audited():
    before = ProviderEventRaw.objects.count()

    response = Client().post(URL, data=b"{" + b" " * MAX_BODY_BYTES + b"}", content_type="application/json")

    assert response.status_code == 413
    assert ProviderEventRaw.objects.count() == before
    refusal = AuditEvent.objects.get(event_type="payments.webhook_refused")
    assert (refusal.result, refusal.error_code) == (AuditResult.REFUSED, "PAYLOAD_TOO_LARGE")


@pytest.mark.django_db
def test_only_post_is_answered():
    assert Client().get(URL).status_code == 405
    assert ProviderEventRaw.objects.count() == 0


@pytest.mark.django_db
def test_credentials_and_card_numbers_are_never_stored(sim, adapter):
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook(
        "payment.succeeded", attempt.public_id, overrides={"note": "card 4111 1111 1111 1111 was used"}
    )

    response = post(body, {**headers, "Authorization": "Bearer sk_live_secret", "Cookie": "sessionid=abc"})

    raw = stored(response)
    assert response.status_code == 200 and raw.signature_verdict == "VALID"  # verified on the bytes received
    assert not {"authorization", "cookie"} & {name.lower() for name in raw.headers}
    assert b"4111" not in bytes(raw.body) and b"****1111" in bytes(raw.body)
    assert "4111 1111" not in json.dumps(raw.headers)


# --- duplicates ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_delivery_of_an_event_is_a_duplicate_and_ignored(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)
    with django_capture_on_commit_callbacks(execute=True):
        first = post(body, headers)

    with django_capture_on_commit_callbacks(execute=True) as queued:
        second = post(body, headers)

    assert (first.status_code, second.status_code) == (200, 200)
    duplicate = stored(second)
    assert duplicate.processing_status == E.DUPLICATE and duplicate.duplicate_of == stored(first)
    assert second.json()["duplicate_of"] == first.json()["event"]
    assert queued == [] and duplicate.normalized.count() == 0
    assert captures(attempt.public_id) == 1
    assert audit_of(duplicate.public_id) == [("payments.webhook_duplicate", "SUCCEEDED")]


@pytest.mark.django_db
def test_a_delivery_that_loses_the_insert_race_becomes_the_duplicate(sim, adapter, monkeypatch):
    """The partial unique index decides when both deliveries passed the look-up before either
    inserted (the concurrent case, made deterministic here): the loser is stored as the duplicate."""
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)
    first = stored(post(body, headers))
    real_lookup, lookups = ingest._first_accepted, []

    def raced(provider_code: str, provider_event_id: str):
        lookups.append(provider_event_id)
        return None if len(lookups) == 1 else real_lookup(provider_code, provider_event_id)

    monkeypatch.setattr(ingest, "_first_accepted", raced)

    response = post(body, headers)

    assert response.status_code == 200 and len(lookups) == 2
    second = stored(response)
    assert (second.processing_status, second.duplicate_of) == (E.DUPLICATE, first)


@pytest.mark.django_db
def test_junk_that_postgresql_text_cannot_hold_is_still_stored():
    body = json.dumps({"id": "sev_\u0000", "type": "payment.succeeded"}).encode()

    response = Client().post(URL, data=body, content_type="application/json", headers={"X-Note": "a\x00b"})

    assert response.status_code == 401
    raw = stored(response)
    assert (raw.provider_event_id, raw.failure_code, bytes(raw.body)) == ("", "SIGNATURE_MISSING", body)


# --- quarantine, cases, replay -----------------------------------------------------------------------


@pytest.mark.django_db
def test_unmappable_event_is_quarantined_then_replayed_after_a_mapper_fix(
    sim, adapter, django_capture_on_commit_callbacks
):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)

    assert response.status_code == 200  # stored and ours to deal with: the provider must not retry
    raw = stored(response)
    assert raw.processing_status == E.QUARANTINED and raw.failure_code == "MAPPING_UNKNOWN_EVENT_TYPE"
    assert "does not know the event type 'payment.captured'" in raw.failure_message
    assert raw.normalized.count() == 0 and captures(attempt.public_id) == 0
    case = OpsCase.objects.get(business_key=f"sim:{attempt.public_id}")
    assert (case.source_system, case.occurrence_count, case.severity) == ("payments.webhooks", 1, "MEDIUM")
    assert CaseLink.objects.filter(case=case, object_type="provider_event", object_id=raw.public_id).exists()

    with mapper_registered(SimMapperV2()):
        outcome = webhook_replay(event_id=raw.public_id, actor=OPS, now=payments.at(5), reason_text="v2 deployed")

        assert outcome.result == ProcessResult.PROCESSED
        raw = ProviderEventRaw.objects.get(pk=raw.pk)
        assert raw.processing_status == E.PROCESSED and raw.failure_code == "" and raw.processing_count == 2
        assert list(raw.normalized.values_list("mapper_version", "event_type")) == [("v2", "PAYMENT_SUCCEEDED")]
        assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
        assert captures(attempt.public_id) == 1

        # A second replay changes nothing (and says so).
        version, audit_count = raw.version, AuditEvent.objects.count()
        again = webhook_replay(event_id=raw.public_id, actor=OPS, now=payments.at(6), reason_text="again")

    assert (again.result, again.changed) == (ProcessResult.NO_CHANGE, False)
    raw = ProviderEventRaw.objects.get(pk=raw.pk)
    assert (raw.processing_status, raw.version, raw.processing_count) == (E.PROCESSED, version, 2)
    assert raw.normalized.count() == 1 and captures(attempt.public_id) == 1
    # Only the replay command itself is recorded.
    assert list(AuditEvent.objects.order_by("seq").values_list("event_type", flat=True)[audit_count:]) == [
        "payments.webhook_replayed"
    ]


@pytest.mark.django_db
def test_amount_mismatch_is_quarantined_into_a_case_and_moves_nothing(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    journals = LedgerJournal.objects.count()

    _, response = deliver(sim, "payment.succeeded", attempt.public_id, overrides={"amount_minor": 999_992},
                          after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    assert response.status_code == 200
    raw = stored(response)
    assert (raw.processing_status, raw.failure_code) == (E.QUARANTINED, "OUTCOME_MISMATCH")
    assert "amount_minor" in raw.failure_message
    assert raw.normalized.get().amount_minor == 999_992  # the mapping was fine: kept for the investigation
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER
    assert LedgerJournal.objects.count() == journals
    assert not PaymentEvent.objects.filter(subject_id=attempt.public_id, provider_event=raw).exists()
    case = OpsCase.objects.get(business_key=f"sim:{attempt.public_id}")
    assert (case.severity, case.occurrence_count, case.merchant_ref) == (
        "HIGH", 1, attempt.payment_intent.merchant.public_id)  # fmt: skip
    quarantined = AuditEvent.objects.get(target_id=raw.public_id, event_type="payments.webhook_quarantined")
    assert (quarantined.result, quarantined.error_code, quarantined.case_ref) == (
        AuditResult.FAILED, "OUTCOME_MISMATCH", case.case_number)  # fmt: skip
    assert quarantined.after["mismatch"]["amount_minor"] == {"ours": PENDING_AMOUNT, "theirs": 999_992}

    # The provider sends the same wrong amount again as a new event: one case, two occurrences.
    _, repeat = deliver(sim, "payment.succeeded", attempt.public_id, overrides={"amount_minor": 999_992},
                        after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    assert stored(repeat).processing_status == E.QUARANTINED
    assert OpsCase.objects.get(pk=case.pk).occurrence_count == 2
    assert OpsCase.objects.filter(business_key=f"sim:{attempt.public_id}").count() == 1

    # Replaying it changes nothing while the provider's claim still differs: quarantined again.
    outcome = webhook_replay(event_id=raw.public_id, actor=OPS, now=payments.at(5), reason_text="recheck")
    assert outcome.result == ProcessResult.QUARANTINED and outcome.case_number == case.case_number
    assert LedgerJournal.objects.count() == journals


@pytest.mark.django_db
def test_unknown_reference_is_quarantined(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    stranger = "pa_01JD5ZZZZZZZZZZZZZZZZZZZZZ"

    _, response = deliver(sim, "payment.succeeded", attempt.public_id, overrides={"merchant_reference": stranger},
                          after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    raw = stored(response)
    assert (raw.processing_status, raw.failure_code) == (E.QUARANTINED, "UNKNOWN_REFERENCE")
    assert OpsCase.objects.filter(business_key=f"sim:{stranger}").count() == 1


@pytest.mark.django_db
def test_a_contradicting_outcome_is_quarantined(sim, adapter, django_capture_on_commit_callbacks):
    """A decline for a payment already captured: a conflict with a final state, not a transition."""
    attempt = captured_attempt(adapter)

    _, response = deliver(sim, "payment.failed", attempt.public_id,
                          overrides={"status": "declined", "decline_code": "do_not_honor"},
                          after_commit=django_capture_on_commit_callbacks)  # fmt: skip

    raw = stored(response)
    assert (raw.processing_status, raw.failure_code) == (E.QUARANTINED, "OUTCOME_CONFLICT")
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
    assert captures(attempt.public_id) == 1


@pytest.mark.django_db
def test_replay_refuses_poison_and_duplicates_and_audits_the_refusal(sim, adapter):
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id, secret=b"whsec_forged")
    forged = stored(post(body, headers))
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id)
    post(body, headers)
    duplicate = stored(post(body, headers))

    with pytest.raises(IllegalTransition, match=r"POISON .*SIGNATURE_BAD_SIGNATURE"):
        webhook_replay(event_id=forged.public_id, actor=OPS, now=payments.at(1), reason_text="force it")
    with pytest.raises(IllegalTransition, match=f"DUPLICATE delivery of {duplicate.duplicate_of.public_id}"):
        webhook_replay(event_id=duplicate.public_id, actor=OPS, now=payments.at(1), reason_text="again")
    with pytest.raises(ValidationFailed):
        webhook_replay(event_id=forged.public_id, actor=OPS, now=payments.at(1), reason_text="  ")
    with pytest.raises(NotFound):
        webhook_replay(event_id="evt_01JD5ZZZZZZZZZZZZZZZZZZZZZ", actor=OPS, now=payments.at(1), reason_text="x")

    assert ProviderEventRaw.objects.get(pk=forged.pk).processing_status == E.POISON
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SENT_TO_PROVIDER
    refused = list(AuditEvent.objects.filter(event_type="payments.webhook_replay_refused").order_by("seq")
                   .values_list("target_id", "result", "error_code"))  # fmt: skip
    assert refused == [
        (forged.public_id, "REFUSED", "ILLEGAL_TRANSITION"), (duplicate.public_id, "REFUSED", "ILLEGAL_TRANSITION"),
        (forged.public_id, "REFUSED", "VALIDATION_FAILED"), ("evt_01JD5ZZZZZZZZZZZZZZZZZZZZZ", "REFUSED", "NOT_FOUND"),
    ]  # fmt: skip


@pytest.mark.django_db
def test_release_queues_processing_and_poison_stops_it_for_good(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    raw = stored(response)
    assert raw.processing_status == E.QUARANTINED

    # Released while the fix is live: processed by the worker after commit.
    with mapper_registered(SimMapperV2()), django_capture_on_commit_callbacks(execute=True):
        released = webhook_release(event_id=raw.public_id, actor=OPS, now=payments.at(2), reason_text="v2 is live")
        assert released.processing_status == E.RECEIVED
    assert ProviderEventRaw.objects.get(pk=raw.pk).processing_status == E.PROCESSED
    assert captures(attempt.public_id) == 1

    # Release and poison refuse what is not theirs to move.
    with pytest.raises(IllegalTransition, match="only a QUARANTINED event can be released"):
        webhook_release(event_id=raw.public_id, actor=OPS, now=payments.at(3), reason_text="again")
    with pytest.raises(IllegalTransition, match="only a RECEIVED or QUARANTINED event can be marked poison"):
        webhook_mark_poison(event_id=raw.public_id, actor=OPS, now=payments.at(3), reason_text="no")

    # A second unmappable event, marked poison after investigation: never replayed.
    _, other = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    poisoned = webhook_mark_poison(event_id=stored(other).public_id, actor=OPS, now=payments.at(4),
                                   reason_text="provider test event")  # fmt: skip
    assert (poisoned.processing_status, poisoned.failure_code, poisoned.failure_message) == (
        E.POISON, "MARKED_POISON", "provider test event")  # fmt: skip
    with mapper_registered(SimMapperV2()), pytest.raises(IllegalTransition, match="POISON"):
        webhook_replay(event_id=poisoned.public_id, actor=OPS, now=payments.at(5), reason_text="try")


# --- the task and direct processing ----------------------------------------------------------------------


@pytest.mark.django_db
def test_task_run_twice_has_one_effect(sim, adapter):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id)  # stored; its task not run yet
    raw = stored(response)

    first = webhook_process_task.apply(kwargs={"event_id": raw.public_id}).get()
    second = webhook_process_task.apply(kwargs={"event_id": raw.public_id}).get()

    assert (first["result"], first["status"]) == ("PROCESSED", "PROCESSED")
    assert (second["result"], second["status"]) == ("NO_CHANGE", "PROCESSED")
    raw = ProviderEventRaw.objects.get(pk=raw.pk)
    assert raw.processing_count == 1 and raw.normalized.count() == 1
    assert captures(attempt.public_id) == 1
    assert PaymentEvent.objects.filter(subject_id=attempt.public_id, provider_event=raw).count() == 1


@pytest.mark.django_db
def test_replay_of_an_event_whose_task_was_lost_processes_it(sim, adapter):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id)

    outcome = webhook_replay(event_id=response.json()["event"], actor=OPS, now=payments.at(3), reason_text="stuck")

    assert outcome.result == ProcessResult.PROCESSED and captures(attempt.public_id) == 1


@pytest.mark.django_db
def test_webhook_after_a_direct_apply_changes_nothing_more(sim, adapter):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id)
    attempt_apply_outcome(attempt_id=attempt.public_id, outcome=payments.outcome_for(attempt), source="INQUIRY",
                          actor=OPS, now=payments.at(1))  # fmt: skip

    outcome = webhook_process(event_id=response.json()["event"], actor=OPS, now=payments.at(2))

    assert outcome.result == ProcessResult.PROCESSED  # applied: the service found nothing left to do
    assert captures(attempt.public_id) == 1


# --- the raw event is immutable ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE payments_providereventraw SET body = convert_to('{}', 'UTF8') WHERE id = %s",
        "UPDATE payments_providereventraw SET signature_verdict = 'VALID' WHERE id = %s",
        "UPDATE payments_providereventraw SET headers = '{}'::jsonb WHERE id = %s",
        "DELETE FROM payments_providereventraw WHERE id = %s",
    ],
)
def test_raw_event_content_cannot_be_changed_or_deleted_by_sql(sim, adapter, statement):
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id, secret=b"whsec_forged")
    raw = stored(post(body, headers))

    with pytest.raises(DatabaseError, match="raw provider event"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(statement, [raw.pk])

    kept = ProviderEventRaw.objects.get(pk=raw.pk)
    assert (bytes(kept.body), kept.signature_verdict) == (body, "BAD_SIGNATURE")


@pytest.mark.django_db
def test_normalized_events_are_append_only(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.succeeded", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    normalized = stored(response).normalized.get()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE payments_providereventnormalized SET amount_minor = 1 WHERE id = %s", [normalized.pk])


# --- the command ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_provider_reference_holding_a_card_like_run_is_kept_as_sent(
    sim, adapter, monkeypatch, django_capture_on_commit_callbacks
):
    # Hex references sometimes hold 13-19 digits that pass Luhn. The card-number guard once masked
    # them in the stored body, so the event no longer named the provider's reference and the
    # payment was quarantined as a mismatch.
    from payments.providers import simulator as simulator_module

    counter = iter(range(10, 100))

    class CardLikeTokens:
        @staticmethod
        def token_hex(nbytes: int) -> str:
            return f"ab4111111111111111cd{next(counter)}"

    monkeypatch.setattr(simulator_module, "secrets", CardLikeTokens)
    attempt = pending_attempt(adapter)
    assert "4111111111111111" in attempt.provider_reference
    sim.settle(attempt.public_id)

    _, response = deliver(sim, "payment.succeeded", attempt.public_id, after_commit=django_capture_on_commit_callbacks)

    raw = stored(response)
    assert attempt.provider_reference.encode() in bytes(raw.body)
    assert raw.processing_status == E.PROCESSED and captures(attempt.public_id) == 1


@pytest.mark.django_db
def test_replay_command_after_a_mapper_fix(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    event_id = response.json()["event"]

    # Before the fix: replayed, quarantined again, and the command says so with a non-zero exit.
    with pytest.raises(CommandError, match="quarantined again"):
        call_command("webhooks_replay", event_id, "--reason", "retry before the fix", stdout=io.StringIO())

    out, again = io.StringIO(), io.StringIO()
    ops = user_with_role("payment_ops")
    with mapper_registered(SimMapperV2()):
        call_command("webhooks_replay", event_id, "--reason", "sim mapper v2 deployed", stdout=out)
        call_command("webhooks_replay", event_id, "--reason", "check again", "--as", ops.username, stdout=again)

    assert "PROCESSED" in out.getvalue() and f"event {event_id} is PROCESSED" in out.getvalue()
    assert "NO_CHANGE" in again.getvalue()
    assert captures(attempt.public_id) == 1
    requests = ActionRequest.objects.filter(action_type="REPLAY_WEBHOOK", target_id=event_id).order_by("id")
    assert [(r.maker, r.status, r.result["result"]) for r in requests] == [
        ("system:webhooks_replay", RequestStatus.SUCCEEDED, "QUARANTINED"),
        ("system:webhooks_replay", RequestStatus.SUCCEEDED, "PROCESSED"),
        (ops.username, RequestStatus.SUCCEEDED, "NO_CHANGE"),
    ]


@pytest.mark.django_db
def test_replay_command_refuses_poison_and_users_without_the_permission(sim, adapter):
    attempt = pending_attempt(adapter)
    _, body, headers = sim.build_webhook("payment.succeeded", attempt.public_id, secret=b"whsec_forged")
    forged = stored(post(body, headers)).public_id
    user_with_role("support_ops", username="support_1")
    user_with_role("payment_ops", username="payops_1")

    with pytest.raises(CommandError, match=r"refused \(ILLEGAL_TRANSITION\).*POISON"):
        call_command("webhooks_replay", forged, "--reason", "force it", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"refused \(PERMISSION_DENIED\)"):
        call_command("webhooks_replay", forged, "--reason", "force it", "--as", "support_1", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no active user"):
        call_command("webhooks_replay", forged, "--reason", "x", "--as", "nobody", stdout=io.StringIO())
    with pytest.raises(CommandError, match=r"refused \(ILLEGAL_TRANSITION\)"):
        call_command("webhooks_replay", forged, "--reason", "force it", "--as", "payops_1", stdout=io.StringIO())

    assert ProviderEventRaw.objects.get(public_id=forged).processing_status == E.POISON
    assert AuditEvent.objects.filter(event_type="approvals.submit_refused", actor="support_1").count() == 1


# --- the recorded actions -------------------------------------------------------------------------------


def _submit(action_type: str, event_id: str, user, reason_code: str, key: str) -> ActionRequest:
    from backoffice.actors import Actor

    return request_submit(action_type=action_type, payload={"event": event_id}, reason_code=reason_code,
                          reason_text="investigated on the provider's dashboard", actor=Actor.from_user(user),
                          now=payments.at(10), idempotency_key=key)  # fmt: skip


@pytest.mark.django_db
def test_actions_run_at_once_and_are_recorded(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, first = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    _, second = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    ops = user_with_role("payment_ops")
    sre = user_with_role("sre")

    with mapper_registered(SimMapperV2()):
        replay = _submit("REPLAY_WEBHOOK", first.json()["event"], ops, "MAPPER_FIXED", "k1")
    poison = _submit("MARK_WEBHOOK_POISON", second.json()["event"], sre, "HANDLED_MANUALLY", "k2")

    assert (replay.status, replay.needs_approval, replay.target_type, replay.target_version) == (
        RequestStatus.SUCCEEDED, False, "provider_event", "2")  # fmt: skip
    assert (replay.result["result"], replay.result["processing_status"]) == ("PROCESSED", "PROCESSED")
    assert replay.preview["changes"][0]["before"] == "QUARANTINED"
    assert (poison.status, poison.result["processing_status"]) == (RequestStatus.SUCCEEDED, "POISON")
    assert captures(attempt.public_id) == 1
    replayed = AuditEvent.objects.get(event_type="payments.webhook_replayed")
    assert (replayed.actor, replayed.reason_text) == (ops.username, "investigated on the provider's dashboard")

    # Refused at once, audited, nothing recorded as a request: a poison event is never replayed;
    # releasing needs a quarantined event; support may not touch webhooks.
    support = user_with_role("support_ops")
    with pytest.raises(IllegalTransition):
        _submit("REPLAY_WEBHOOK", second.json()["event"], ops, "MAPPER_FIXED", "k3")
    with pytest.raises(IllegalTransition):
        _submit("RELEASE_WEBHOOK_FROM_QUARANTINE", first.json()["event"], ops, "MAPPER_FIXED", "k4")
    with pytest.raises(PermissionMissing):
        _submit("REPLAY_WEBHOOK", first.json()["event"], support, "MAPPER_FIXED", "k5")
    assert ActionRequest.objects.count() == 2
    assert AuditEvent.objects.filter(event_type="approvals.submit_refused").count() == 3


@pytest.mark.django_db
def test_release_action_returns_the_event_to_the_queue(sim, adapter, django_capture_on_commit_callbacks):
    attempt = pending_attempt(adapter)
    sim.settle(attempt.public_id)
    _, response = deliver(sim, "payment.captured", attempt.public_id, after_commit=django_capture_on_commit_callbacks)
    ops = user_with_role("payment_ops")

    with mapper_registered(SimMapperV2()), django_capture_on_commit_callbacks(execute=True):
        request = _submit("RELEASE_WEBHOOK_FROM_QUARANTINE", response.json()["event"], ops, "MAPPER_FIXED", "r1")
        assert request.result["processing_status"] == "RECEIVED"

    assert stored(response).processing_status == E.PROCESSED
    assert captures(attempt.public_id) == 1


# --- the mapper ---------------------------------------------------------------------------------------------


def _sim_event(**changes) -> bytes:
    event = {
        "id": "sev_1", "type": "payment.succeeded", "occurred_at": "2026-03-02T01:00:00.000Z", "object": "payment",
        "provider_reference": "sim_pay_1", "merchant_reference": "pa_01JD5AAAAAAAAAAAAAAAAAAAAA",
        "merchant_id": "m_01JD5AAAAAAAAAAAAAAAAAAAAA", "amount_minor": 1000, "currency": "IDR",
        "status": "succeeded", "decline_code": None, "error_code": None,
    }  # fmt: skip
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def test_mapper_reads_the_simulators_events():
    fields = SimMapperV1().map(_sim_event())
    assert (fields.event_type, fields.our_reference, fields.amount_minor, fields.currency, fields.occurred_at) == (
        "PAYMENT_SUCCEEDED", "pa_01JD5AAAAAAAAAAAAAAAAAAAAA", 1000, "IDR", dt.datetime(2026, 3, 2, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    declined = SimMapperV1().map(_sim_event(type="payment.failed", status="declined", decline_code="do_not_honor"))
    assert (declined.event_type, declined.reason_code) == ("PAYMENT_DECLINED", "do_not_honor")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"not json", "MAPPING_INVALID_JSON", "not JSON"),
        (b"[1]", "MAPPING_INVALID_JSON", "not an object"),
        (_sim_event(type="payment.captured"), "MAPPING_UNKNOWN_EVENT_TYPE", "does not know the event type"),
        (_sim_event(amount_minor="1000"), "MAPPING_INVALID_FIELD", "'amount_minor' must be a positive whole number"),
        (_sim_event(amount_minor=10.5), "MAPPING_INVALID_FIELD", "'amount_minor' must be a positive whole number"),
        (_sim_event(amount_minor=True), "MAPPING_INVALID_FIELD", "'amount_minor' must be a positive whole number"),
        (_sim_event(currency="XXX"), "MAPPING_INVALID_FIELD", "'currency' 'XXX' is not a currency we know"),
        (_sim_event(status="failed"), "MAPPING_INVALID_FIELD", "'status' is 'failed', which contradicts"),
        (_sim_event(object="refund"), "MAPPING_INVALID_FIELD", "'object' is 'refund'"),
        (_sim_event(merchant_reference="rf_01JD5AAAAAAAAAAAAAAAAAAAAA"), "MAPPING_INVALID_FIELD", "not one of our"),
        (_sim_event(occurred_at="2026-03-02 01:00"), "MAPPING_INVALID_FIELD", "has no UTC offset"),
        (_sim_event(occurred_at="yesterday"), "MAPPING_INVALID_FIELD", "not an ISO-8601"),
        (_sim_event(id=...), "MAPPING_INVALID_FIELD", "'id' is missing"),
    ],
)
def test_mapper_refuses_bad_fields_with_a_clear_message(body, code, message):
    with pytest.raises(WebhookMappingError) as refused:
        SimMapperV1().map(body)
    assert refused.value.code == code
    assert message in refused.value.message


def test_event_id_is_read_whatever_the_rest_of_the_body_says():
    mapper = SimMapperV1()
    assert mapper.event_id_of(_sim_event(type="payment.captured")) == "sev_1"
    assert mapper.event_id_of(b"not json") == "" and mapper.event_id_of(_sim_event(id="x" * 129)) == ""


def test_ingest_drops_credentials_from_headers():
    kept = ingest.stored_headers({"Authorization": "Bearer x", "COOKIE": "a", "X-Api-Key": "k", "User-Agent": "p/1"})
    assert kept == {"User-Agent": "p/1"}
