"""The operator queues: quarantined webhooks, unknown outcomes, payout holds and merchant freezes.

Who may read each queue and act on its rows (a denial names the permission and is audited), what
each lists (only its rows), filters with counts per value and per age bucket, keyset pages, a fixed
number of queries whatever the row count, masking by role, and the actions: replay, release and
poison a quarantined event (executed at once), refresh one unknown attempt or many (with a hard
limit and one request per attempt however often the form is sent), and proposals to release a
payout hold or lift a freeze (waiting for a checker). Data is made only through the services.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from cases.models import CaseType
from cases.services import case_open
from ledger.models import LedgerJournal
from payments.forms.queues import BULK_LIMIT
from payments.models import (
    AttemptStatus,
    CapabilityRestriction,
    EventProcessing,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    ProviderInquiry,
)
from payments.providers.signing import sign, webhook_secrets_for
from payments.selectors import queues as queue_selectors
from payments.selectors.queues import age_text, decode_cursor
from payments.services.merchants import beneficiary_add
from payments.services.payouts import payout_create, payout_hold
from payments.services.restrictions import restriction_impose
from payments.views.queues import bulk_key
from payments.webhooks.ingest import webhook_receive
from payments.webhooks.mappers import mapper_registered
from payments.webhooks.process import webhook_process
from tests.factories import payments
from tests.factories.ledger import credit_merchant
from tests.factories.users import user_with_role
from tests.payments.test_webhooks import SimMapperV2

pytestmark = pytest.mark.django_db

WEBHOOKS = reverse("payments:webhook_queue")
UNKNOWN = reverse("payments:unknown_queue")
HOLDS = reverse("payments:payout_hold_queue")
FREEZES = reverse("payments:freeze_queue")
BULK = reverse("payments:unknown_bulk_refresh")
SYSTEM = payments.system("queue_tests")
_n = itertools.count(1)


def html(response) -> str:
    return response.content.decode()


def rows(response) -> list:
    assert response.status_code == 200, (response.status_code, html(response)[:2000])
    return response.context["page"].rows


def ids(response) -> list[str]:
    return [getattr(row, "public_id", None) or row.pk for row in rows(response)]


def facet(response, name: str) -> dict[str, int]:
    return {c.value: c.count for c in response.context["page"].facets[name]}


def ages(response) -> dict[str, int]:
    return {c.value: c.count for c in response.context["page"].age_counts}


def message_texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def hidden(page: str, testid: str) -> dict[str, str]:
    form = re.search(rf'<form[^>]*data-testid="{testid}".*?</form>', page, re.S)
    assert form, f"no {testid} on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


def action_form(page: str, action: str) -> dict[str, str]:
    """The hidden fields (the idempotency key) of an action's form on a row's page."""
    section = re.search(rf'<section class="panel" data-action="{action}">.*?</section>', page, re.S)
    assert section, f"no {action} action on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', section.group(0)))


# --- data, made through the services ------------------------------------------------------------------------


def sim_body(**fields) -> bytes:
    event = {
        "id": f"sev_queue_{next(_n)}", "type": "payment.captured", "occurred_at": "2026-03-02T01:00:00.000Z",
        "object": "payment", "provider_reference": "sim_pay_unknown",
        "merchant_reference": "pa_01JD5AAAAAAAAAAAAAAAAAAAAA", "merchant_id": "m_01JD5AAAAAAAAAAAAAAAAAAAAA",
        "amount_minor": 1000, "currency": "IDR", "status": "succeeded",
        "decline_code": None, "error_code": None,
    }  # fmt: skip
    event.update(fields)
    return json.dumps(event).encode()


def received(body: bytes, *, at: dt.datetime, secret: bytes | None = None) -> ProviderEventRaw:
    """A delivery signed as the provider signs it, stored and processed as the worker would."""
    header = sign(secret=secret or webhook_secrets_for(provider_code="sim"), timestamp=int(at.timestamp()), body=body)
    event = webhook_receive(provider_code="sim", headers={"Provider-Signature": header}, body=body, received_at=at,
                            actor=SYSTEM)  # fmt: skip
    if event.processing_status == EventProcessing.RECEIVED:
        webhook_process(event_id=event.public_id, actor=SYSTEM, now=at)
    return ProviderEventRaw.objects.get(pk=event.pk)


def quarantined(*, hours_ago: float = 2, unknown_reference: bool = False) -> ProviderEventRaw:
    """MAPPING_UNKNOWN_EVENT_TYPE (a payment.captured v1 does not know), or UNKNOWN_REFERENCE."""
    at = timezone.now() - dt.timedelta(hours=hours_ago)
    body = sim_body(type="payment.succeeded") if unknown_reference else sim_body()
    event = received(body, at=at)
    assert event.processing_status == EventProcessing.QUARANTINED, event.failure_code
    return event


def captured_elsewhere(attempt) -> bytes:
    """What the provider sends when it captured `attempt`, as an event type v1 does not know."""
    return sim_body(provider_reference=attempt.provider_reference, merchant_reference=attempt.public_id,
                    merchant_id=attempt.payment_intent.merchant.public_id, amount_minor=attempt.amount_minor,
                    currency=attempt.currency)  # fmt: skip


def unknown_attempt(**intent_fields):
    return payments.attempt_in(AttemptStatus.UNKNOWN_OUTCOME, **intent_fields)


def held_payout(*, amount_minor: int = 40_000, reason: str = "FRAUD_SUSPECTED: beneficiary name differs from KYB"):
    merchant = payments.merchant(name=f"Toko Hold {next(_n)}")
    ben = beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                          account_holder="PT Toko Sinar", account_number="1234567890", currency="IDR", actor=SYSTEM,
                          now=payments.T0)  # fmt: skip
    credit_merchant(merchant.public_id, amount_minor * 2)
    payout = payout_create(merchant=merchant, beneficiary=ben, amount_minor=amount_minor, currency="IDR",
                           idempotency_key=f"po-queue-{next(_n)}", actor=SYSTEM, now=payments.T0)  # fmt: skip
    return payout_hold(payout_id=payout.public_id, reason=reason, actor=SYSTEM, now=timezone.now())


def freeze(*, capability: str = "CREATE_PAYOUT", mode: str = "BLOCK", days_ago: float = 3, merchant=None):
    return restriction_impose(
        merchant=merchant or payments.merchant(name=f"Toko Freeze {next(_n)}"), capability=capability, mode=mode,
        reason_code="SANCTIONS_SCREENING", reason_text="Name match on the sanctions list, under review",
        source="COMPLIANCE", actor=SYSTEM, now=timezone.now() - dt.timedelta(days=days_ago),
    )  # fmt: skip


def case_for(user) -> str:
    return case_open(case_type=CaseType.PAYMENT_INVESTIGATION, severity="MEDIUM", title="Queue work",
                     actor=Actor.from_user(user), now=timezone.now()).case_number  # fmt: skip


def signed_in(client, role: str, username: str | None = None):
    user = user_with_role(role, username=username)
    client.force_login(user)
    return user


# --- who may read the queues ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("payment_ops", {WEBHOOKS, UNKNOWN, HOLDS, FREEZES}),
        ("sre", {WEBHOOKS, UNKNOWN, HOLDS, FREEZES}),
        ("support_ops", {UNKNOWN, HOLDS, FREEZES}),
        ("risk_ops", {UNKNOWN, HOLDS, FREEZES}),
    ],
)
def test_each_queue_opens_for_its_read_permission_and_a_denial_names_it_and_is_audited(client, role, allowed):
    signed_in(client, role)
    for url, permission in (
        (WEBHOOKS, "payments.view_providereventraw"),
        (UNKNOWN, "payments.view_paymentattempt"),
        (HOLDS, "payments.view_payout"),
        (FREEZES, "payments.view_capabilityrestriction"),
    ):
        response = client.get(url)
        if url in allowed:
            assert response.status_code == 200, url
        else:
            assert response.status_code == 403 and permission in html(response)
            denied = AuditEvent.objects.filter(event_type="access.denied", target_id=url).get()
            assert (denied.result, denied.error_code) == (AuditResult.REFUSED, "PERMISSION_DENIED")


def test_the_queues_are_in_the_menu_under_operations_with_their_hotkeys(client):
    signed_in(client, "payment_ops")
    nav = html(client.get(WEBHOOKS))
    for title, hotkey in (("Quarantined webhooks", "w"), ("Unknown outcomes", "u"), ("Payout holds", "o"),
                          ("Merchant freezes", "z")):  # fmt: skip
        assert title in nav and f'data-hotkey="{hotkey}"' in nav


def test_anonymous_users_are_sent_to_sign_in(client):
    response = client.get(WEBHOOKS)
    assert response.status_code == 302 and "login" in response["Location"]


# --- quarantined webhooks ----------------------------------------------------------------------------------


def test_webhook_queue_lists_only_quarantined_events_with_counts_ages_and_their_case(client):
    old = quarantined(hours_ago=50)
    young = quarantined(hours_ago=0.5, unknown_reference=True)
    forged = received(sim_body(), at=timezone.now(), secret=b"whsec_forged")  # POISON: not the queue's
    assert forged.processing_status == EventProcessing.POISON
    signed_in(client, "payment_ops")

    response = client.get(WEBHOOKS)

    assert ids(response) == [old.public_id, young.public_id]  # oldest first
    assert response.context["page"].total == 2
    assert facet(response, "failure_code") == {"MAPPING_UNKNOWN_EVENT_TYPE": 1, "UNKNOWN_REFERENCE": 1}
    assert facet(response, "provider") == {"sim": 2}
    assert ages(response) == {"lt1h": 1, "1h-24h": 0, "1d-7d": 1, "gt7d": 0}
    first = rows(response)[0]
    assert (first.age, first.failure_code) == ("2 d", "MAPPING_UNKNOWN_EVENT_TYPE")
    assert first.case_number.startswith("CASE-") and first.case_number in html(response)
    assert rows(response)[1].age == "30 min"
    assert forged.public_id not in html(response)


def test_webhook_filters_narrow_the_rows_and_each_facet_counts_under_the_others(client):
    old = quarantined(hours_ago=50)
    quarantined(hours_ago=3, unknown_reference=True)
    quarantined(hours_ago=2)
    signed_in(client, "sre")

    by_code = client.get(WEBHOOKS, {"failure_code": "MAPPING_UNKNOWN_EVENT_TYPE"})
    assert len(rows(by_code)) == 2 and by_code.context["page"].total == 2
    assert facet(by_code, "failure_code") == {"MAPPING_UNKNOWN_EVENT_TYPE": 2, "UNKNOWN_REFERENCE": 1}
    assert ages(by_code) == {"lt1h": 0, "1h-24h": 1, "1d-7d": 1, "gt7d": 0}

    by_age = client.get(WEBHOOKS, {"failure_code": "MAPPING_UNKNOWN_EVENT_TYPE", "age": "1d-7d"})
    assert ids(by_age) == [old.public_id]
    assert facet(by_age, "failure_code") == {"MAPPING_UNKNOWN_EVENT_TYPE": 1}
    assert ids(client.get(WEBHOOKS, {"provider": "adyen"})) == []


@pytest.mark.parametrize("bad", [{"age": "forever"}, {"provider": "sim'; --"}, {"cursor": "not-a-cursor"}])
def test_a_bad_filter_or_cursor_shows_no_rows_and_says_why(client, bad):
    quarantined()
    signed_in(client, "payment_ops")

    response = client.get(WEBHOOKS, bad)

    assert response.status_code == 400 and response.context["page"] is None
    assert 'data-testid="filter-errors"' in html(response)


def test_replay_from_the_queue_after_a_mapper_fix_processes_it_once_and_a_second_replay_changes_nothing(client):
    attempt = payments.sent_attempt()
    event = received(captured_elsewhere(attempt), at=timezone.now() - dt.timedelta(minutes=10))
    assert event.failure_code == "MAPPING_UNKNOWN_EVENT_TYPE"
    signed_in(client, "payment_ops")
    item = reverse("payments:webhook_item", args=[event.public_id])
    replay = reverse("payments:webhooks_action", args=[event.public_id, "replay"])

    page = html(client.get(item))
    assert "Replay through the pipeline" in page and "Executes at once" in page
    key = action_form(page, "replay")["idempotency_key"]
    form = {"reason_code": "MAPPER_FIXED", "reason_text": "Mapper v2 knows payment.captured", "idempotency_key": key}
    with mapper_registered(SimMapperV2()):
        response = client.post(replay, form, follow=True)

        assert response.redirect_chain[-1][0] == WEBHOOKS
        (text,) = message_texts(response)
        assert "executed" in text and "PROCESSED" in text
        assert event.public_id not in ids(response)
        done = ProviderEventRaw.objects.get(pk=event.pk)
        assert (done.processing_status, done.processing_count) == (EventProcessing.PROCESSED, 2)
        assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.SUCCEEDED
        captures = LedgerJournal.objects.filter(idempotency_key=f"capture:{attempt.public_id}").count()
        assert captures == 1

        # The same form again: answered from its key, nothing replayed.
        again = client.post(replay, form, follow=True)
        assert "already submitted" in message_texts(again)[0]
        # A fresh replay of the processed event: refused as stale, nothing submitted.
        stale = client.post(replay, {**form, "idempotency_key": "idem_fresh_key_1"})

    assert stale.status_code == 409 and "changed since you opened it" in html(stale)
    assert ActionRequest.objects.filter(action_type="REPLAY_WEBHOOK").count() == 1
    after = ProviderEventRaw.objects.get(pk=event.pk)
    assert (after.version, after.processing_count) == (done.version, 2)
    assert LedgerJournal.objects.filter(idempotency_key=f"capture:{attempt.public_id}").count() == 1


def test_release_and_poison_from_the_queue(client, django_capture_on_commit_callbacks):
    to_release, to_poison = quarantined(hours_ago=3), quarantined(hours_ago=2)
    signed_in(client, "sre")

    key = action_form(html(client.get(reverse("payments:webhook_item", args=[to_release.public_id]))),
                      "release")["idempotency_key"]  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        released = client.post(reverse("payments:webhooks_action", args=[to_release.public_id, "release"]),
                                {"reason_code": "TRANSIENT_FAILURE", "reason_text": "The reference exists now",
                                 "idempotency_key": key}, follow=True)  # fmt: skip
    assert "is now RECEIVED" in message_texts(released)[0]
    assert ProviderEventRaw.objects.get(pk=to_release.pk).processing_status == EventProcessing.RECEIVED
    assert callbacks  # its processing is queued after commit

    page = html(client.get(reverse("payments:webhook_item", args=[to_poison.public_id])))
    poisoned = client.post(
        reverse("payments:webhooks_action", args=[to_poison.public_id, "poison"]),
        {
            "reason_code": "TEST_EVENT",
            "reason_text": "Provider confirmed a test event",
            "idempotency_key": action_form(page, "poison")["idempotency_key"],
        },
        follow=True,
    )
    assert "is now POISON" in message_texts(poisoned)[0]
    event = ProviderEventRaw.objects.get(pk=to_poison.pk)
    assert (event.processing_status, event.failure_code) == (EventProcessing.POISON, "MARKED_POISON")
    assert ids(poisoned) == []
    assert list(ActionRequest.objects.order_by("id").values_list("action_type", "status")) == [
        ("RELEASE_WEBHOOK_FROM_QUARANTINE", RequestStatus.SUCCEEDED),
        ("MARK_WEBHOOK_POISON", RequestStatus.SUCCEEDED),
    ]


def test_an_action_needs_a_reason_and_a_refusal_keeps_the_event_as_it_was(client):
    event = quarantined()
    signed_in(client, "payment_ops")
    url = reverse("payments:webhooks_action", args=[event.public_id, "poison"])

    no_reason = client.post(url, {"reason_code": "TEST_EVENT", "reason_text": "", "idempotency_key": "idem_k1"})
    wrong_code = client.post(url, {"reason_code": "MAPPER_FIXED", "reason_text": "Provider says it is a test",
                                   "idempotency_key": "idem_k2"})  # fmt: skip
    card = client.post(url, {"reason_code": "TEST_EVENT", "reason_text": "card 4111 1111 1111 1111 was used",
                             "idempotency_key": "idem_k3"})  # fmt: skip

    assert no_reason.status_code == wrong_code.status_code == card.status_code == 400
    assert "This field is required" in html(no_reason) and "card number" in html(card)
    assert ProviderEventRaw.objects.get(pk=event.pk).processing_status == EventProcessing.QUARANTINED
    assert not ActionRequest.objects.exists()


def test_actions_on_a_webhook_are_shown_and_taken_only_with_their_permission(client):
    event = quarantined()
    signed_in(client, "auditor")  # reads provider events, acts on none

    page = html(client.get(reverse("payments:webhook_item", args=[event.public_id])))
    refused = client.post(
        reverse("payments:webhooks_action", args=[event.public_id, "replay"]),
        {"reason_code": "MAPPER_FIXED", "reason_text": "Trying to replay", "idempotency_key": "k"},
    )

    assert 'data-testid="no-actions"' in page and "<form" not in page.split('data-testid="row-facts"')[1]
    assert refused.status_code == 403 and "payments.replay_webhook" in html(refused)
    assert AuditEvent.objects.filter(event_type="access.denied", result=AuditResult.REFUSED).exists()
    assert not ActionRequest.objects.exists()


# --- unknown outcomes --------------------------------------------------------------------------------------


def test_unknown_queue_lists_only_unknown_attempts_with_counts_and_inquiries(client):
    first, second = unknown_attempt(), unknown_attempt(currency="PHP")
    payments.attempt_in(AttemptStatus.SENT_TO_PROVIDER)  # stuck, but not unknown: not this queue's
    payments.captured_payment()
    signed_in(client, "payment_ops")

    response = client.get(UNKNOWN)

    assert ids(response) == [first.public_id, second.public_id]
    assert facet(response, "currency") == {"IDR": 1, "PHP": 1}
    assert facet(response, "provider") == {"sim": 2}
    assert ages(response)["gt7d"] == 2  # sent on the factories' day
    assert rows(response)[0].age == age_text(first.sent_at, timezone.now())
    assert rows(response)[0].inquiry_count == 0 and rows(response)[0].last_inquiry == ""
    kinds = {v["value"]: v["count"] for v in response.context["kinds"]["values"]}
    assert kinds == {"attempt": 2, "refund": 0, "payout": 0}
    assert ids(client.get(UNKNOWN, {"currency": "PHP"})) == [second.public_id]


def test_refresh_one_attempt_queues_an_inquiry_executed_at_once(client):
    attempt = unknown_attempt()
    signed_in(client, "payment_ops")
    page = html(client.get(reverse("payments:unknown_item", args=[attempt.public_id])))
    key = action_form(page, "refresh")["idempotency_key"]

    response = client.post(reverse("payments:unknown_action", args=[attempt.public_id, "refresh"]),
                           {"reason_code": "UNKNOWN_OUTCOME", "reason_text": "Customer says they were charged",
                            "idempotency_key": key}, follow=True)  # fmt: skip

    inquiry = ProviderInquiry.objects.get()
    assert f"inquiry {inquiry.public_id} queued" in message_texts(response)[0]
    assert inquiry.payment_attempt_id == attempt.pk and inquiry.trigger == "OPERATOR"
    request = ActionRequest.objects.get()
    assert (request.action_type, request.status, request.target_id) == (
        "REFRESH_PROVIDER_STATE", RequestStatus.SUCCEEDED, attempt.public_id)  # fmt: skip
    assert rows(response)[0].last_inquiry == "QUEUED"


def test_support_sees_masked_references_and_cannot_see_or_post_a_refresh(client):
    attempt = unknown_attempt()
    signed_in(client, "support_ops")

    queue = client.get(UNKNOWN)
    page = html(queue)
    item = html(client.get(reverse("payments:unknown_item", args=[attempt.public_id])))
    single = client.post(
        reverse("payments:unknown_action", args=[attempt.public_id, "refresh"]),
        {"reason_code": "UNKNOWN_OUTCOME", "reason_text": "Customer called us", "idempotency_key": "a"},
    )
    bulk = client.post(BULK, {"selected": [attempt.public_id], "reason_code": "UNKNOWN_OUTCOME",
                              "reason_text": "Customer called us", "idempotency_key": "b"})  # fmt: skip

    assert 'data-testid="bulk-form"' not in page and "Refresh from the provider" not in item
    assert 'name="selected"' not in page
    for response in (single, bulk):
        assert response.status_code == 403 and "payments.refresh_provider_state" in html(response)
        assert "payment_ops" in html(response)  # who holds it
    assert AuditEvent.objects.filter(event_type="access.denied", result=AuditResult.REFUSED).count() == 2
    assert not ActionRequest.objects.exists() and not ProviderInquiry.objects.exists()


def test_sre_sees_technical_detail_but_no_card_or_beneficiary(client):
    unknown_attempt()
    payout = held_payout()
    signed_in(client, "sre")

    attempt_row = rows(client.get(UNKNOWN))[0]
    hold_page = client.get(HOLDS)

    assert attempt_row.method == ""
    assert "4242" not in html(client.get(UNKNOWN))
    assert rows(hold_page)[0].beneficiary == "" and "****7890" not in html(hold_page)
    assert payout.public_id in html(hold_page)


def test_bulk_refresh_of_more_than_the_limit_is_refused_before_anything_is_submitted(client):
    attempt = unknown_attempt()
    signed_in(client, "payment_ops")
    many = [attempt.public_id] + [f"pa_01JD5{str(n).zfill(21)}" for n in range(BULK_LIMIT)]

    ticked = client.post(BULK, {"selected": many, "reason_code": "UNKNOWN_OUTCOME", "reason_text": "Sweep by hand",
                                "idempotency_key": "idem_bulk_1"}, follow=True)  # fmt: skip
    oldest = client.post(
        BULK,
        {
            "oldest": BULK_LIMIT + 1,
            "reason_code": "UNKNOWN_OUTCOME",
            "reason_text": "Sweep by hand",
            "idempotency_key": "idem_bulk_2",
        },
        follow=True,
    )

    for response in (ticked, oldest):
        (text,) = message_texts(response)
        assert f"At most {BULK_LIMIT} attempts" in text and "Nothing was submitted" in text
    assert not ActionRequest.objects.exists() and not ProviderInquiry.objects.exists()
    assert not AuditEvent.objects.filter(event_type__startswith="approvals.").exists()


def test_bulk_refresh_submits_once_per_attempt_however_often_the_form_is_sent(client):
    attempts = [unknown_attempt() for _ in range(3)]
    settled = payments.captured_payment()[1]  # ticked by a stale page: refused by name, the others go ahead
    signed_in(client, "payment_ops")
    page = html(client.get(UNKNOWN))
    form = {**hidden(page, "bulk-form"), "selected": [a.public_id for a in attempts] + [settled.public_id],
            "reason_code": "UNKNOWN_OUTCOME", "reason_text": "Provider outage this morning"}  # fmt: skip

    first = client.post(BULK, form)

    outcomes = {o["attempt"]: o for o in first.context["outcomes"]}
    assert [outcomes[a.public_id]["done"] for a in attempts] == [True, True, True]
    assert outcomes[settled.public_id]["done"] is False and "SUCCEEDED" in outcomes[settled.public_id]["text"]
    assert first.context["summary"] == "3 of 4 attempts refreshed"
    requests = ActionRequest.objects.filter(action_type="REFRESH_PROVIDER_STATE")
    assert sorted(requests.values_list("target_id", flat=True)) == sorted(a.public_id for a in attempts)
    assert sorted(requests.values_list("idempotency_key", flat=True)) == sorted(
        bulk_key(form["idempotency_key"], a.public_id) for a in attempts)  # fmt: skip
    assert ProviderInquiry.objects.count() == 3

    # Sent again (a double click, a browser retry): nothing more.
    again = client.post(BULK, form, follow=True)
    assert "already sent" in message_texts(again)[0]
    # Even where the session forgot the form, each attempt's key answers with its first request.
    client.session.flush()
    signed_in(client, "payment_ops", username="payment_ops_user")
    retried = client.post(BULK, form)
    assert all("already submitted" in o["text"] for o in retried.context["outcomes"] if o["request"])
    assert requests.count() == 3 and ProviderInquiry.objects.count() == 3


def test_bulk_refresh_of_the_oldest_n_under_the_filters(client):
    oldest_idr = [unknown_attempt() for _ in range(3)]
    php = unknown_attempt(currency="PHP")
    signed_in(client, "payment_ops")
    page = html(client.get(UNKNOWN, {"currency": "IDR"}))
    form = {**hidden(page, "bulk-form"), "oldest": 2, "reason_code": "UNKNOWN_OUTCOME",
            "reason_text": "The two oldest first"}  # fmt: skip
    assert form["currency"] == "IDR"

    response = client.post(BULK, form)

    assert [o["attempt"] for o in response.context["outcomes"]] == [a.public_id for a in oldest_idr[:2]]
    assert not ActionRequest.objects.filter(target_id=php.public_id).exists()


# --- payout holds ------------------------------------------------------------------------------------------


def test_payout_hold_queue_lists_held_payouts_with_reason_and_age(client):
    held = held_payout()
    merchant = payments.merchant()
    ben = beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="BCA", account_holder="PT A",
                          account_number="9876543210", currency="IDR", actor=SYSTEM, now=payments.T0)  # fmt: skip
    credit_merchant(merchant.public_id, 100_000)
    not_held = payout_create(merchant=merchant, beneficiary=ben, amount_minor=10_000, currency="IDR",
                             idempotency_key="po-not-held", actor=SYSTEM, now=payments.T0)  # fmt: skip
    signed_in(client, "payment_ops")

    response = client.get(HOLDS)

    assert ids(response) == [held.public_id] and not_held.public_id not in html(response)
    row = rows(response)[0]
    assert (row.hold_code, row.hold_reason) == ("FRAUD_SUSPECTED", "beneficiary name differs from KYB")
    assert row.beneficiary == "Bank Central Asia ****7890" and "1234567890" not in html(response)
    assert row.age == "0 min" and facet(response, "currency") == {"IDR": 1}
    assert '<span class="amount">400.00</span> <span class="ccy">IDR</span>' in html(response)


def test_hold_reasons_are_hidden_from_a_role_that_neither_works_holds_nor_reads_restrictions(client):
    held_payout()
    signed_in(client, "support_ops")

    response = client.get(HOLDS)

    assert rows(response)[0].hold_reason == "hidden for your role"
    assert "beneficiary name differs" not in html(response)
    assert "****7890" in html(response)  # support reads personal data, masked


def test_releasing_a_hold_is_a_proposal_that_needs_a_case_and_waits_for_a_finance_manager(client):
    payout = held_payout()
    user = signed_in(client, "payment_ops")
    item = reverse("payments:payout_hold_item", args=[payout.public_id])
    url = reverse("payments:holds_action", args=[payout.public_id, "release"])
    page = html(client.get(item))
    assert "Finance manager" in page and 'name="case_ref"' in page
    key = action_form(page, "release")["idempotency_key"]
    form = {"reason_code": "REVIEW_CLEARED", "reason_text": "Beneficiary verified by phone", "idempotency_key": key}

    without_case = client.post(url, form)
    assert without_case.status_code == 400 and not ActionRequest.objects.exists()

    response = client.post(url, {**form, "case_ref": case_for(user)}, follow=True)

    request = ActionRequest.objects.get()
    assert (request.action_type, request.status) == ("RELEASE_PAYOUT_HOLD", RequestStatus.REQUESTED)
    assert f"{request.public_id} proposed" in message_texts(response)[0]
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.HELD  # nothing until approved
    assert rows(client.get(HOLDS))[0].pending_request == request.public_id
    # The proposal waits: a second one is refused with the reason, nothing more recorded.
    page = html(client.get(item))
    second = client.post(url, {**form, "case_ref": request.case_ref,
                               "idempotency_key": action_form(page, "release")["idempotency_key"]})  # fmt: skip
    assert second.status_code == 403 and "already has a change waiting" in html(second)
    assert ActionRequest.objects.count() == 1


# --- merchant freezes ---------------------------------------------------------------------------------------


def test_freeze_reasons_are_hidden_from_support_and_shown_to_risk(client):
    restriction = freeze()
    signed_in(client, "support_ops")
    support = client.get(FREEZES)
    support_item = client.get(reverse("payments:freeze_item", args=[restriction.pk]))
    signed_in(client, "risk_ops")
    risk = client.get(FREEZES)

    assert rows(support)[0].reason_visible is False
    for response in (support, support_item):
        assert "SANCTIONS_SCREENING" not in html(response) and "sanctions list" not in html(response)
        assert "hidden for your role" in html(response)
    assert rows(risk)[0].reason_code == "SANCTIONS_SCREENING"
    assert "Name match on the sanctions list" in html(risk)


def test_freeze_queue_lists_active_restrictions_with_counts_by_capability(client):
    payout_block = freeze(days_ago=10)
    refund_review = freeze(capability="CREATE_REFUND", mode="REVIEW", days_ago=2)
    lifted = freeze(capability="ACCEPT_QR", days_ago=1)
    from payments.services.restrictions import restriction_lift

    restriction_lift(restriction_id=lifted.pk, reason_text="Cleared", actor=SYSTEM, now=timezone.now())
    signed_in(client, "compliance_ops")

    response = client.get(FREEZES)

    assert ids(response) == [payout_block.pk, refund_review.pk]
    assert facet(response, "capability") == {"CREATE_PAYOUT": 1, "CREATE_REFUND": 1}
    assert {c.value: c.label for c in response.context["page"].facets["capability"]}["CREATE_PAYOUT"] == (
        "Receive payouts")  # fmt: skip
    assert ages(response) == {"lt1h": 0, "1h-24h": 0, "1d-7d": 1, "gt7d": 1}
    assert [r.age for r in rows(response)] == ["10 d", "2 d"]
    assert ids(client.get(FREEZES, {"mode": "REVIEW"})) == [refund_review.pk]


def test_unfreeze_is_proposed_from_the_queue_by_risk_and_not_offered_to_support(client):
    restriction = freeze()
    item = reverse("payments:freeze_item", args=[restriction.pk])
    url = reverse("payments:freezes_action", args=[restriction.pk, "unfreeze"])
    signed_in(client, "support_ops")
    assert "Propose lifting" not in html(client.get(item))
    refused = client.post(url, {"reason_code": "REVIEW_CLEARED", "reason_text": "Looks fine to me",
                                "idempotency_key": "idem_s"})  # fmt: skip
    assert refused.status_code == 403 and "payments.propose_restriction" in html(refused)

    user = signed_in(client, "risk_ops")
    page = html(client.get(item))
    response = client.post(
        url,
        {
            "reason_code": "FALSE_POSITIVE",
            "reason_text": "Different date of birth",
            "case_ref": case_for(user),
            "idempotency_key": action_form(page, "unfreeze")["idempotency_key"],
        },
        follow=True,
    )

    request = ActionRequest.objects.get()
    assert (request.action_type, request.status, request.target_id) == (
        "UNFREEZE_MERCHANT_CAPABILITY",
        RequestStatus.REQUESTED,
        f"{restriction.merchant.public_id}:CREATE_PAYOUT",
    )
    assert "Compliance operations" in message_texts(response)[0]
    assert CapabilityRestriction.objects.get(pk=restriction.pk).status == "ACTIVE"
    assert rows(client.get(FREEZES))[0].pending_request == request.public_id


# --- pages and query counts --------------------------------------------------------------------------------


def test_keyset_pages_walk_every_row_once_in_a_stable_order_with_the_same_query_count(client, monkeypatch):
    made = [unknown_attempt() for _ in range(5)]  # one send time: the id breaks the tie
    monkeypatch.setattr(queue_selectors, "PAGE_SIZE", 2)
    signed_in(client, "payment_ops")
    seen, cursor, counts = [], "", []
    while True:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(UNKNOWN, {"cursor": cursor} if cursor else {})
        counts.append(len(queries))
        seen += ids(response)
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        assert decode_cursor(cursor)[1] > 0 and f"cursor={cursor}" in html(response)
        # A row arriving meanwhile does not shift the next page.
        if len(seen) == 2:
            made.append(unknown_attempt())
    assert seen == [a.public_id for a in made]
    assert len(set(counts)) == 1


def _queries(client, url) -> int:
    client.get(url)  # the session and permission caches warm
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    ("url", "make"),
    [
        (WEBHOOKS, lambda n: quarantined(hours_ago=1 + n)),
        (UNKNOWN, lambda n: unknown_attempt()),
        (HOLDS, lambda n: held_payout()),
        (FREEZES, lambda n: freeze(days_ago=1 + n)),
    ],
    ids=["webhooks", "unknown", "holds", "freezes"],
)
def test_each_queue_costs_the_same_queries_for_3_and_30_rows(client, url, make):
    signed_in(client, "payment_ops")
    for n in range(3):
        make(n)
    few = _queries(client, url)
    for n in range(3, 30):
        make(n)
    many = _queries(client, url)
    assert len(rows(client.get(url))) == 30
    assert many == few


@pytest.mark.parametrize("kind", ["webhooks", "unknown", "holds", "freezes"])
def test_a_row_page_shows_its_state_and_an_unknown_row_is_404(client, kind):
    signed_in(client, "payment_ops")
    name = {"webhooks": "webhook_item", "unknown": "unknown_item", "holds": "payout_hold_item",
            "freezes": "freeze_item"}[kind]  # fmt: skip
    missing = "123456" if kind == "freezes" else "xx_nothing"
    assert client.get(reverse(f"payments:{name}", args=[missing])).status_code == 404
    assert client.post(reverse(f"payments:{kind}_action", args=[missing, "nothing"])).status_code in (403, 404)


def test_get_never_changes_anything(client):
    event, attempt = quarantined(), unknown_attempt()
    signed_in(client, "payment_ops")
    audit = AuditEvent.objects.count()
    for url in (WEBHOOKS, UNKNOWN, HOLDS, FREEZES, reverse("payments:webhook_item", args=[event.public_id]),
                reverse("payments:unknown_item", args=[attempt.public_id])):  # fmt: skip
        assert client.get(url).status_code == 200
    assert client.get(reverse("payments:webhooks_action", args=[event.public_id, "replay"])).status_code == 405
    assert AuditEvent.objects.count() == audit and not ActionRequest.objects.exists()
