"""The references a provider event's body names, kept on the stored delivery: a payment whose answer
was lost (we never learned the provider's reference) is found from the reference the provider
quotes, through a delivery no mapper could read; such a delivery stands on the payment's timeline
and can be replayed from there; a forged delivery names nothing; the database refuses to change the
references afterwards; stored events get theirs when the columns are added."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from payments.models import AttemptStatus, EventProcessing, ProviderEventRaw
from payments.providers.signing import SIGNATURE_HEADER, sign
from payments.webhooks.ingest import webhook_receive
from payments.webhooks.mappers import SimMapperV1
from tests.factories import payments
from tests.payments.test_screen_payment import form_data, offered, page_url, signed_webhook, unknown_payment

pytestmark = pytest.mark.django_db
OPS = payments.system("event_reference_tests")


def lost_answer_with_unreadable_webhook():
    """A timed-out attempt (we hold no provider reference) and the provider's later event about it,
    of a type our mapper does not know yet, so it is quarantined unapplied."""
    attempt = unknown_payment()
    assert attempt.provider_reference == ""
    raw = signed_webhook(attempt, minutes=3, event_type="payment.captured")
    assert (raw.processing_status, raw.failure_code) == (EventProcessing.QUARANTINED, "MAPPING_UNKNOWN_EVENT_TYPE")
    assert raw.normalized.count() == 0
    return attempt, raw, payments.provider_reference_for(attempt.public_id)


def test_a_delivery_keeps_the_references_its_body_names_even_when_it_cannot_be_mapped():
    attempt, raw, reference = lost_answer_with_unreadable_webhook()
    assert (raw.provider_reference, raw.our_reference) == (reference, attempt.public_id)
    assert payments.fetch_attempt(attempt.public_id).status == AttemptStatus.UNKNOWN_OUTCOME


def test_search_finds_the_payment_from_the_provider_reference_only_a_webhook_named(client_as):
    attempt, raw, reference = lost_answer_with_unreadable_webhook()
    intent_id = attempt.payment_intent.public_id

    response = client_as("payment_ops").get("/search/", {"q": reference})
    result = response.context["result"]
    (group,) = [g for g in result.groups if g.key == "provider_event.provider_reference"]
    (row,) = group.rows
    assert row.public_id == raw.public_id and row.url == page_url(intent_id)
    assert reference in row.detail and "MAPPING_UNKNOWN_EVENT_TYPE" in row.detail
    # No attempt holds the reference: the event is the only way to the payment.
    assert not [g for g in result.groups if g.key == "payment_attempt.provider_reference" and g.rows]

    # Support reads no raw provider events: the search says it did not look there.
    support = client_as("support_ops").get("/search/", {"q": reference})
    assert "provider events (needs payments.view_providereventraw)" in support.context["result"].not_searched
    assert not [r for g in support.context["result"].groups for r in g.rows]


def test_an_unmappable_delivery_stands_on_the_payment_timeline_and_is_offered_for_replay(client_as):
    attempt, raw, reference = lost_answer_with_unreadable_webhook()
    response = client_as("payment_ops").get(page_url(attempt.payment_intent.public_id))
    entries = [e for e in response.context["page"].timeline if e.kind == "provider_event"]
    (entry,) = entries
    assert (entry.anchor, entry.title, entry.provider_reference, entry.subject) == (
        raw.public_id, "not mapped", reference, attempt.public_id
    )  # fmt: skip
    assert "replay" in offered(response)
    assert form_data(response, "replay", raw.public_id)["event"] == raw.public_id


def test_a_forged_delivery_names_no_object():
    attempt = unknown_payment()
    document = {"id": "sev_forged_1", "type": "payment.succeeded", "object": "payment",
                "provider_reference": "pay_forged", "merchant_reference": attempt.public_id}  # fmt: skip
    body = json.dumps(document).encode()
    received = payments.at(1)
    headers = {SIGNATURE_HEADER: sign(secret=b"not-the-secret", timestamp=int(received.timestamp()), body=body)}
    raw = webhook_receive(provider_code="sim", headers=headers, body=body, received_at=received, actor=OPS)
    assert raw.processing_status == EventProcessing.POISON
    assert (raw.provider_event_id, raw.provider_reference, raw.our_reference) == ("sev_forged_1", "", "")
    assert not ProviderEventRaw.objects.filter(our_reference=attempt.public_id).exists()


@pytest.mark.parametrize(
    "document",
    [
        {"provider_reference": "pay_\x00nul", "merchant_reference": ["pa_x"]},
        {"provider_reference": "p" * 129, "merchant_reference": "pa_" + "x" * 62},
        {"provider_reference": "   ", "merchant_reference": 12},
        ["not", "an", "object"],
    ],
)
def test_references_are_read_only_from_short_printable_strings(document):
    assert SimMapperV1().references_of(json.dumps(document).encode()) == ("", "")


def test_references_are_read_from_any_body_the_format_names_them_in():
    body = json.dumps({"provider_reference": " pay_1 ", "merchant_reference": "pa_2", "type": "unknown"}).encode()
    assert SimMapperV1().references_of(body) == ("pay_1", "pa_2")
    assert SimMapperV1().references_of(b"{not json") == ("", "")
    assert SimMapperV1().references_of(b"[" * 100_000) == ("", "")


def test_the_database_refuses_to_change_a_stored_events_references():
    _, raw, _ = lost_answer_with_unreadable_webhook()
    for column in ("provider_reference", "our_reference"):
        with (
            pytest.raises(DatabaseError, match="content is immutable"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"UPDATE payments_providereventraw SET {column} = 'pay_other' WHERE id = %s", [raw.pk])
    stored = ProviderEventRaw.objects.get(pk=raw.pk)
    assert (stored.provider_reference, stored.our_reference) == (raw.provider_reference, raw.our_reference)


@pytest.mark.django_db(transaction=True)
def test_events_stored_before_the_columns_existed_get_their_references():
    call_command("migrate", "payments", "0004", verbosity=0)
    try:
        body = json.dumps({"id": "sev_old", "provider_reference": "pay_old", "merchant_reference": "pa_old"})
        with connection.cursor() as cursor:
            for public_id, verdict, raw_body in [
                ("evt_old_valid", "VALID", body), ("evt_old_forged", "INVALID", body), ("evt_old_junk", "VALID", "{"),
            ]:  # fmt: skip
                cursor.execute(
                    "INSERT INTO payments_providereventraw (public_id, provider_code, provider_event_id, received_at,"
                    " headers, body, body_sha256, signature_verdict, processing_status, failure_code, failure_message,"
                    " processing_count, version) VALUES (%s, 'sim', '', now(), '{}', %s, '', %s, 'RECEIVED', '', '',"
                    " 0, 1)",
                    [public_id, raw_body.encode(), verdict],
                )
    finally:
        call_command("migrate", "payments", verbosity=0)
    found = dict(
        ProviderEventRaw.objects.filter(public_id__startswith="evt_old_").values_list("public_id", "provider_reference")
    )
    assert found == {"evt_old_valid": "pay_old", "evt_old_forged": "", "evt_old_junk": ""}
    assert ProviderEventRaw.objects.get(public_id="evt_old_valid").our_reference == "pa_old"
