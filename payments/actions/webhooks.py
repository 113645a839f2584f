"""Webhook operations (replay, release from quarantine, mark poison) as recorded actions.

None needs a second person (policy mode NEVER): each is recorded as an action request, the audit
anchor saying who asked for what and why, and executes at once through the webhook services, which
refuse what must never happen (replaying a POISON or DUPLICATE event, applying a delivery whose
signature failed). The target is the provider event and its version the raw event's version, which
every processing step bumps, so the request records the state it was made against.
"""

from __future__ import annotations

import datetime as dt
import re

from approvals.registry import ActionSpec, Target
from backoffice.actors import Actor
from backoffice.errors import IllegalTransition, NotFound, ValidationFailed
from payments.models import EventProcessing, ProviderEventRaw
from payments.webhooks.mappers import current_mapper, is_known_provider
from payments.webhooks.replay import replay_refusal, webhook_mark_poison, webhook_release, webhook_replay

_EVENT_ID = re.compile(r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")
E = EventProcessing

REPLAY_REASONS = ("MAPPER_FIXED", "REFERENCE_NOW_KNOWN", "TRANSIENT_FAILURE", "PROVIDER_CONFIRMED", "STUCK_EVENT")
POISON_REASONS = ("INVALID_PAYLOAD", "NOT_OUR_EVENT", "HANDLED_MANUALLY", "PROVIDER_CONFIRMED_INVALID", "TEST_EVENT")


def _event(payload: dict) -> ProviderEventRaw:
    event = ProviderEventRaw.objects.select_related("duplicate_of").filter(public_id=payload["event"]).first()
    if event is None:
        raise NotFound(f"no provider event {payload['event']}")
    return event


def _validated(payload: dict, allowed_from: tuple[str, ...] | None = None, verb: str = "") -> dict:
    public_id = str(payload.get("event", "")).strip()
    if not _EVENT_ID.match(public_id):
        raise ValidationFailed("give the provider event's id (evt_...)")
    try:
        event = _event({"event": public_id})
    except NotFound as exc:
        raise ValidationFailed(exc.message) from None
    if allowed_from is not None and event.processing_status not in allowed_from:
        raise IllegalTransition(
            f"{public_id} is {event.processing_status}; only {' or '.join(allowed_from)} events can be {verb}"
        )
    return {"event": public_id}


def _validate_replay(payload: dict, actor: Actor) -> dict:
    normalized = _validated(payload)
    refusal = replay_refusal(_event(normalized))
    if refusal is not None:
        raise refusal
    return normalized


def _validate_release(payload: dict, actor: Actor) -> dict:
    return _validated(payload, (E.QUARANTINED,), "released from quarantine")


def _validate_poison(payload: dict, actor: Actor) -> dict:
    return _validated(payload, (E.RECEIVED, E.QUARANTINED), "marked poison")


def _target(payload: dict) -> Target:
    event = _event(payload)
    detail = f" {event.provider_event_id}" if event.provider_event_id else ""
    return Target(
        target_type="provider_event", target_id=event.public_id,
        label=f"Provider event {event.public_id} ({event.provider_code}{detail})", version=str(event.version),
    )  # fmt: skip


def _mapper_version(event: ProviderEventRaw) -> str:
    return current_mapper(event.provider_code).version if is_known_provider(event.provider_code) else "none"


def _preview(before: str, after: str, summary: str, event: ProviderEventRaw, **extra) -> dict:
    return {
        "kind": "diff", "summary": summary,
        "changes": [{"field": "processing status", "before": before, "after": after}],
        "event": {"provider": event.provider_code, "provider_event_id": event.provider_event_id,
                  "signature": event.signature_verdict, "failure_code": event.failure_code,
                  "failure_message": event.failure_message, "received_at": event.received_at.isoformat()},
        "reversible": False, **extra,
    }  # fmt: skip


def _replay_preview(payload: dict, now: dt.datetime) -> dict:
    event = _event(payload)
    version = _mapper_version(event)
    if event.processing_status == E.PROCESSED:
        return _preview(E.PROCESSED, E.PROCESSED, f"Replay {event.public_id}: already processed, nothing changes",
                        event)  # fmt: skip
    return _preview(
        event.processing_status, f"{E.PROCESSED} (or {E.QUARANTINED} again with the new error)",
        f"Replay {event.public_id} through the current pipeline (mapper {event.provider_code} {version})", event,
        mapper_version=version,
        reversal="a processed event's effect is corrected by the owning object's own commands, not by webhooks",
    )  # fmt: skip


def _release_preview(payload: dict, now: dt.datetime) -> dict:
    event = _event(payload)
    return _preview(event.processing_status, f"{E.RECEIVED}, processed by the next worker",
                    f"Release {event.public_id} from quarantine to the processing queue", event)  # fmt: skip


def _poison_preview(payload: dict, now: dt.datetime) -> dict:
    event = _event(payload)
    return _preview(event.processing_status, E.POISON,
                    f"Mark {event.public_id} poison: never applied, never replayed", event)  # fmt: skip


def _result(event: ProviderEventRaw, **extra) -> dict:
    return {"provider_event": event.public_id, "processing_status": event.processing_status,
            "failure_code": event.failure_code, **extra}  # fmt: skip


def _execute_replay(request, actor: Actor, now: dt.datetime) -> dict:
    outcome = webhook_replay(event_id=request.payload["event"], actor=actor, now=now, reason_text=request.reason_text)
    return _result(outcome.event, result=outcome.result, message=outcome.message, case=outcome.case_number)


def _execute_release(request, actor: Actor, now: dt.datetime) -> dict:
    event = webhook_release(event_id=request.payload["event"], actor=actor, now=now, reason_text=request.reason_text)
    return _result(event)


def _execute_poison(request, actor: Actor, now: dt.datetime) -> dict:
    event = webhook_mark_poison(
        event_id=request.payload["event"], actor=actor, now=now, reason_text=request.reason_text
    )
    return _result(event)


def describe_events(ids: list[str]) -> dict[str, dict]:
    """How a case shows a linked provider event (plain values: cases imports no domain app)."""
    return {
        e.public_id: {"label": e.public_id, "status": e.processing_status,
                      "detail": f"{e.provider_code} {e.provider_event_id} {e.failure_code}".strip()}
        for e in ProviderEventRaw.objects.filter(public_id__in=ids)
    }  # fmt: skip


_LINKABLE = {"provider_event": ("Provider event", describe_events)}


def _policy(reasons: tuple[str, ...], risk_level: str) -> dict:
    return {
        "mode": "NEVER", "approver_roles": [], "case_required": False, "evidence_required": False,
        "allowed_reason_codes": list(reasons), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": risk_level,
    }  # fmt: skip


REPLAY_WEBHOOK = ActionSpec(
    action_type="REPLAY_WEBHOOK", title="a webhook replay",
    propose_permission="payments.replay_webhook", decide_permission="payments.replay_webhook",
    validate=_validate_replay, target=_target, preview=_replay_preview, execute=_execute_replay,
    reason_codes=REPLAY_REASONS, linkable_types=_LINKABLE, default_policy=_policy(REPLAY_REASONS, "MEDIUM"),
)  # fmt: skip

RELEASE_WEBHOOK_FROM_QUARANTINE = ActionSpec(
    action_type="RELEASE_WEBHOOK_FROM_QUARANTINE", title="a release of a webhook from quarantine",
    propose_permission="payments.release_webhook", decide_permission="payments.release_webhook",
    validate=_validate_release, target=_target, preview=_release_preview, execute=_execute_release,
    reason_codes=REPLAY_REASONS, linkable_types=_LINKABLE, default_policy=_policy(REPLAY_REASONS, "MEDIUM"),
)  # fmt: skip

MARK_WEBHOOK_POISON = ActionSpec(
    action_type="MARK_WEBHOOK_POISON", title="marking a webhook poison",
    propose_permission="payments.poison_webhook", decide_permission="payments.poison_webhook",
    validate=_validate_poison, target=_target, preview=_poison_preview, execute=_execute_poison,
    reason_codes=POISON_REASONS, linkable_types=_LINKABLE, default_policy=_policy(POISON_REASONS, "MEDIUM"),
)  # fmt: skip

ACTIONS: list = [REPLAY_WEBHOOK, RELEASE_WEBHOOK_FROM_QUARANTINE, MARK_WEBHOOK_POISON]
