"""The provider webhook endpoint, /webhooks/<provider_code>/: store, answer, and process later.

Providers retry until they get a 2xx, so the answer says only whether the delivery was accepted:
200 for a stored event (new or duplicate: a retry of an event we already hold must stop the
provider retrying), 401 when the signature is missing, wrong or outside the replay window, 400 when
the signature header is malformed, 404 for a provider we do not know, 413 for a body over the cap.
Every one of those except the 413 is stored first. Mapping and applying run after the storing
transaction commits (a Celery task), so a slow ledger never makes a provider time out and retry.

An oversized body is refused before it is read and is not stored: its signature cannot be checked
without reading it, and storing unbounded input is what the cap is there to prevent. The refusal is
audited and logged with the provider and the declared length.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from audit.context import audit_context
from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import system_actor
from payments.models import EventProcessing, SignatureVerdict
from payments.webhooks.ingest import webhook_receive

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
WEBHOOK_ACTOR = system_actor("webhook_receiver")

_STATUS_FOR_VERDICT = {
    SignatureVerdict.MISSING: 401,
    SignatureVerdict.BAD_SIGNATURE: 401,
    SignatureVerdict.EXPIRED: 401,
    SignatureVerdict.MALFORMED: 400,
    SignatureVerdict.UNKNOWN_PROVIDER: 404,
}


@method_decorator(csrf_exempt, name="dispatch")
class ProviderWebhookView(View):
    """Signed server-to-server deliveries: no session, no CSRF token; the signature is the check."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, provider_code: str) -> JsonResponse:
        received_at = timezone.now()
        with audit_context(actor=WEBHOOK_ACTOR):
            body = _read_capped(request)
            if body is None:
                return _too_large(request, provider_code, received_at)
            event = webhook_receive(
                provider_code=provider_code, headers=dict(request.headers), body=body, received_at=received_at,
                actor=WEBHOOK_ACTOR,
            )  # fmt: skip
        answer = {"event": event.public_id, "status": event.processing_status}
        if event.processing_status == EventProcessing.DUPLICATE:
            return JsonResponse({**answer, "duplicate_of": event.duplicate_of.public_id})
        if event.signature_verdict != SignatureVerdict.VALID:
            return JsonResponse({**answer, "error": event.failure_code},
                                status=_STATUS_FOR_VERDICT[event.signature_verdict])  # fmt: skip
        return JsonResponse({**answer, "status": "ACCEPTED"})


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _read_capped(request: HttpRequest) -> bytes | None:
    """The body, or None when it is (or claims to be) over the cap. Read from the stream with a
    bound, so a missing or lying Content-Length cannot make us buffer more than the cap."""
    declared = _declared_length(request)
    if declared is None or declared > MAX_BODY_BYTES:
        return None
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return None
    return body


def _too_large(request: HttpRequest, provider_code: str, received_at) -> JsonResponse:
    declared = request.META.get("CONTENT_LENGTH", "")
    audit_record(
        event_type="payments.webhook_refused", result=AuditResult.REFUSED, actor=WEBHOOK_ACTOR, now=received_at,
        target_type="provider_event", target_id=f"{provider_code[:32]}:oversized", action_type="RECEIVE_WEBHOOK",
        error_code="PAYLOAD_TOO_LARGE",
        error_message=f"body over {MAX_BODY_BYTES} bytes (declared length {declared!s:.20}); not stored",
    )  # fmt: skip
    logger.warning("webhook for %r refused: body over %s bytes (declared %s)", provider_code, MAX_BODY_BYTES, declared)
    return JsonResponse({"error": "PAYLOAD_TOO_LARGE", "max_bytes": MAX_BODY_BYTES}, status=413)
