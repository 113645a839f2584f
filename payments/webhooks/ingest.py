"""Receiving a webhook: store it first, exactly as it arrived, whatever its signature says.

The stored row is the evidence of what a provider sent and when, so it is written before anything
acts on the delivery, in a transaction of its own that commits before processing starts:

- a delivery whose signature does not verify (missing, malformed, wrong, outside the replay
  window) or that names a provider we do not know is stored POISON with failure code
  SIGNATURE_<VERDICT> and a REFUSED audit event; it is never applied, and no operator command can
  apply it (replay refuses POISON);
- a verified delivery of an event already accepted (same provider and provider event id) is stored
  DUPLICATE pointing at the first and ignored; the partial unique index
  payments_event_accepted_once decides between two concurrent deliveries, so the loser ends as a
  DUPLICATE too rather than a 500;
- a verified first delivery is stored RECEIVED and its processing is queued after commit.

Headers are kept minus credentials (Authorization, Cookie, ...). A card number must never be
stored: one found in the body or a header is masked to its last four digits before the row is
written (the signature was checked on the bytes as received, and body_sha256 is of those bytes, so
the row still proves which delivery it was).

A verified delivery also keeps the references its body names (the provider's and ours), read
before any mapping, so the event is found by the object it is about even if no mapper can read it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping

from django.db import IntegrityError, connection, transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers, mask_card_numbers
from payments.models import ProviderEventRaw, SignatureVerdict
from payments.providers.signing import SIGNATURE_HEADER, verify, webhook_secrets_for, webhook_tolerance_seconds
from payments.webhooks.mappers import current_mapper, is_known_provider
from payments.webhooks.process import TARGET_TYPE, record_progress

logger = logging.getLogger(__name__)

# Credentials a sender (or a proxy on the way) may attach; never kept.
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})
MAX_PROVIDER_CODE = 32  # ProviderEventRaw.provider_code
ACCEPTED_ONCE = "payments_event_accepted_once"


def _text(value: object) -> str:
    # jsonb cannot hold NUL; what arrived is still in the body bytes and its digest.
    return mask_card_numbers(str(value).replace("\x00", "\ufffd"), standalone=True)


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {_text(name): _text(value) for name, value in headers.items() if str(name).lower() not in DROPPED_HEADERS}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _stored_body(body: bytes) -> bytes:
    text = body.decode("utf-8", errors="replace")
    # Standalone runs only: a provider's references (hex, ULIDs) hold digit runs that pass Luhn, and
    # masking inside them would corrupt the reference the event is applied by.
    if not find_card_numbers(text, standalone=True):
        return body
    logger.warning("a webhook body held what looks like a card number; it is stored masked")
    return mask_card_numbers(text, standalone=True).encode("utf-8")


def _verdict(*, provider_code: str, headers: Mapping[str, str], body: bytes, received_at: dt.datetime) -> str:
    if not is_known_provider(provider_code):
        return SignatureVerdict.UNKNOWN_PROVIDER
    verdict = verify(
        secret=webhook_secrets_for(provider_code=provider_code), header=_header(headers, SIGNATURE_HEADER),
        body=body, now=received_at, tolerance_seconds=webhook_tolerance_seconds(),
    )  # fmt: skip
    return str(verdict)


def webhook_receive(
    *, provider_code: str, headers: Mapping[str, str], body: bytes, received_at: dt.datetime, actor: Actor
) -> ProviderEventRaw:
    """Store one delivery (see the module docstring) and return its row: RECEIVED (processing
    queued after commit), DUPLICATE (duplicate_of set) or POISON (failure_code SIGNATURE_<VERDICT>).
    Never raises for what arrives over the wire; the caller turns the row into the HTTP answer."""
    provider_code = provider_code[:MAX_PROVIDER_CODE]
    body = bytes(body)
    verdict = _verdict(provider_code=provider_code, headers=headers, body=body, received_at=received_at)
    # Only a provider whose format we know names its event ids; the id is kept even on a refused
    # delivery so an investigation can find every delivery of an event.
    event_id = current_mapper(provider_code).event_id_of(body) if verdict != SignatureVerdict.UNKNOWN_PROVIDER else ""
    # The objects it is about only from a delivery the provider signed: a forged body could name any
    # payment, and would then stand on that payment's timeline.
    provider_reference, our_reference = (
        current_mapper(provider_code).references_of(body) if verdict == SignatureVerdict.VALID else ("", "")
    )
    row = {
        "provider_code": provider_code, "provider_event_id": mask_card_numbers(event_id, standalone=True),
        "provider_reference": mask_card_numbers(provider_reference, standalone=True),
        "our_reference": mask_card_numbers(our_reference, standalone=True),
        "received_at": received_at,
        "headers": stored_headers(headers), "body": _stored_body(body),
        "body_sha256": hashlib.sha256(body).hexdigest(), "signature_verdict": verdict,
    }  # fmt: skip
    with transaction.atomic():
        if verdict != SignatureVerdict.VALID:
            return _refused(row, actor=actor, now=received_at)
        first = _first_accepted(provider_code, row["provider_event_id"])
        if first is None:
            try:
                with transaction.atomic():  # a savepoint: a concurrent delivery may win the index
                    event = ProviderEventRaw.objects.create(public_id=new_public_id("evt"), **row)
            except IntegrityError as exc:
                if ACCEPTED_ONCE not in str(exc):
                    raise
                # The winner has committed (the index waited for it): this delivery is its duplicate.
                first = _first_accepted(provider_code, row["provider_event_id"])
                if first is None:
                    raise
            else:
                _accepted(event, actor=actor)
                return event
        return _duplicate(row, first, actor=actor)


def _first_accepted(provider_code: str, provider_event_id: str) -> ProviderEventRaw | None:
    """The accepted delivery of this event, share-locked the way the duplicate's foreign key will
    lock it, now rather than at commit, so this transaction never waits for it while holding the
    audit chain lock."""
    if not provider_event_id:
        return None
    first = ProviderEventRaw.objects.filter(
        provider_code=provider_code, provider_event_id=provider_event_id,
        signature_verdict=SignatureVerdict.VALID, duplicate_of__isnull=True,
    ).first()  # fmt: skip
    if first is not None:
        with connection.cursor() as cursor:  # the ORM has no FOR KEY SHARE
            cursor.execute("SELECT 1 FROM payments_providereventraw WHERE id = %s FOR KEY SHARE", [first.pk])
    return first


def _accepted(event: ProviderEventRaw, *, actor: Actor) -> None:
    audit_record(
        event_type="payments.webhook_received", actor=actor, now=event.received_at, target_type=TARGET_TYPE,
        target_id=event.public_id, action_type="RECEIVE_WEBHOOK",
        after={"provider_code": event.provider_code, "provider_event_id": event.provider_event_id,
               "signature_verdict": event.signature_verdict, "body_sha256": event.body_sha256,
               "status": event.processing_status},
    )  # fmt: skip
    # Mapping and applying run once the delivery is durably stored; with an eager worker, right
    # after this commit. A failure there must not turn a stored delivery into an error answer.
    enqueue_processing(event.public_id)


def enqueue_processing(event_id: str) -> None:
    """Queue the event's processing for when the current transaction commits (robust: a broker
    outage, or a failure in an eager run, is logged and leaves the event RECEIVED for a replay)."""

    def send() -> None:
        from payments.tasks import webhook_process_task

        webhook_process_task.delay(event_id=event_id)

    transaction.on_commit(send, robust=True)


def _duplicate(row: dict, first: ProviderEventRaw, *, actor: Actor) -> ProviderEventRaw:
    event = ProviderEventRaw.objects.create(public_id=new_public_id("evt"), duplicate_of=first, **row)
    event.processed_at = row["received_at"]
    record_progress(event, "mark_duplicate", fields=("processed_at",))
    audit_record(
        event_type="payments.webhook_duplicate", actor=actor, now=row["received_at"], target_type=TARGET_TYPE,
        target_id=event.public_id, action_type="RECEIVE_WEBHOOK",
        after={"provider_code": event.provider_code, "provider_event_id": event.provider_event_id,
               "duplicate_of": first.public_id, "status": event.processing_status},
    )  # fmt: skip
    return event


def _refused(row: dict, *, actor: Actor, now: dt.datetime) -> ProviderEventRaw:
    event = ProviderEventRaw.objects.create(public_id=new_public_id("evt"), **row)
    verdict = event.signature_verdict
    event.failure_code = f"SIGNATURE_{verdict}"
    event.failure_message = _REFUSAL_MESSAGES[verdict]
    event.processed_at = now
    record_progress(event, "poison", fields=("failure_code", "failure_message", "processed_at"))
    audit_record(
        event_type="payments.webhook_refused", result=AuditResult.REFUSED, actor=actor, now=now,
        target_type=TARGET_TYPE, target_id=event.public_id, action_type="RECEIVE_WEBHOOK",
        error_code=event.failure_code, error_message=event.failure_message,
        after={"provider_code": event.provider_code, "provider_event_id": event.provider_event_id,
               "signature_verdict": verdict, "body_sha256": event.body_sha256, "status": event.processing_status},
    )  # fmt: skip
    logger.warning("webhook %s from %r refused: %s", event.public_id, event.provider_code, event.failure_code)
    return event


_REFUSAL_MESSAGES = {
    SignatureVerdict.MISSING: f"no {SIGNATURE_HEADER} header; stored and never applied",
    SignatureVerdict.MALFORMED: f"the {SIGNATURE_HEADER} header is not in the expected form; stored and never applied",
    SignatureVerdict.BAD_SIGNATURE: "the signature does not match any of the provider's secrets; stored and never "
    "applied",
    SignatureVerdict.EXPIRED: "the signature is genuine but its timestamp is outside the replay window; stored and "
    "never applied (the provider's retry is accepted)",
    SignatureVerdict.UNKNOWN_PROVIDER: "no webhook mapper is registered for this provider; stored and never applied",
}
