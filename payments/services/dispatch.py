"""The dispatch sweep: work whose queued task was lost is queued again.

A refund becomes REQUESTED, a payout APPROVED and a provider event RECEIVED in a transaction that
queues the task handing it on (to the provider, or to webhook processing) when it commits. A
worker that dies, or a broker that is down at that moment, loses that task and nothing else would
ever pick the row up. This sweep (Celery beat, every few minutes) finds such rows older than
`stale_minutes` and queues their task again, at most `limit` of each kind per run, oldest first.

The tasks are safe to run twice: their services lock the row and act only on a refund still
REQUESTED, a payout still APPROVED, an event still RECEIVED, so a sweep racing the original task,
two overlapping sweeps or a task queued twice still send or process once. Candidates are claimed
with SKIP LOCKED in the sweep's own short transaction, so overlapping sweeps split the work and a
row a command is working on right now is left to it; the tasks are queued after that commits.
Each row queued again is audited as the sweep's system actor.

Refunds and payouts a restriction in force would refuse (CREATE_REFUND or CREATE_PAYOUT blocked;
a refund under review that no approval made) are not offered: they wait unchanged until the
restriction ends (the next sweep then sends them) or an operator cancels them, instead of leaving a
refused send in the audit trail every few minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from audit.services import audit_prepare, audit_record_many
from backoffice.actors import Actor
from payments.models import (
    Capability,
    CapabilityRestriction,
    EventProcessing,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    Refund,
    RefundStatus,
    RestrictionMode,
    RestrictionStatus,
)

logger = logging.getLogger(__name__)


@dataclass
class DispatchResult:
    """What one sweep queued again, by public id."""

    refunds: list[str] = field(default_factory=list)
    payouts: list[str] = field(default_factory=list)
    provider_events: list[str] = field(default_factory=list)


def _in_force(capability: str, merchant: str, at: dt.datetime):
    """Restrictions of `capability` in force at `at` for the outer row's merchant (as
    payments.selectors.restrictions_in_force, as a subquery)."""
    return CapabilityRestriction.objects.filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=at),
        merchant_id=OuterRef(merchant), capability=capability, status=RestrictionStatus.ACTIVE, effective_at__lte=at,
    )  # fmt: skip


def _stale_refunds(cutoff: dt.datetime, now: dt.datetime):
    in_force = _in_force(Capability.CREATE_REFUND, "payment_intent__merchant_id", now)
    return (
        Refund.objects.filter(status=RefundStatus.REQUESTED, updated_at__lte=cutoff)
        .exclude(Exists(in_force.filter(mode=RestrictionMode.BLOCK)))
        .exclude(Q(approval_ref=""), Exists(in_force.filter(mode=RestrictionMode.REVIEW)))
        .order_by("updated_at", "pk")
    )


def _stale_payouts(cutoff: dt.datetime, now: dt.datetime):
    in_force = _in_force(Capability.CREATE_PAYOUT, "merchant_id", now)
    return (
        Payout.objects.filter(status=PayoutStatus.APPROVED, updated_at__lte=cutoff)
        .exclude(Exists(in_force.filter(mode=RestrictionMode.BLOCK)))
        .order_by("updated_at", "pk")
    )


def _stale_events(cutoff: dt.datetime):
    return ProviderEventRaw.objects.filter(
        processing_status=EventProcessing.RECEIVED, received_at__lte=cutoff
    ).order_by("received_at", "pk")


def _enqueue(kind: str, public_id: str):
    """The after-commit hook queuing one row's task (named: on_commit logs a robust hook's failure by name)."""

    def enqueue_again() -> None:
        from payments.tasks import payout_send_task, refund_send_task, webhook_process_task

        if kind == "refund":
            refund_send_task.delay(refund_id=public_id)
        elif kind == "payout":
            payout_send_task.delay(payout_id=public_id)
        else:
            webhook_process_task.delay(event_id=public_id)

    return enqueue_again


def dispatch_stale(*, stale_minutes: int, limit: int, actor: Actor, now: dt.datetime) -> DispatchResult:
    """Queue again the send of refunds still REQUESTED and payouts still APPROVED, and the
    processing of provider events still RECEIVED, `stale_minutes` or more after they got there
    (at most `limit` of each kind, oldest first). Claims with SKIP LOCKED, audits each row it
    queues (payments.<kind>_requeued) and queues after commit (robust: a broker still down is
    logged, and the next sweep tries again). A run with nothing stale writes nothing."""
    if stale_minutes < 0 or limit < 1:
        raise ValueError("stale_minutes >= 0 and limit >= 1, please")
    cutoff = now - dt.timedelta(minutes=stale_minutes)
    result = DispatchResult()
    with transaction.atomic():
        refunds = list(
            _stale_refunds(cutoff, now)
            .select_for_update(skip_locked=True, of=("self",), no_key=True)
            .values_list("public_id", "status", "updated_at")[:limit]
        )
        payouts = list(
            _stale_payouts(cutoff, now)
            .select_for_update(skip_locked=True, of=("self",), no_key=True)
            .values_list("public_id", "status", "updated_at")[:limit]
        )
        # FOR NO KEY UPDATE throughout: the claim changes no row, and a row referencing one (a
        # duplicate delivery referencing its event) must still be able to commit meanwhile.
        events = list(
            _stale_events(cutoff)
            .select_for_update(skip_locked=True, no_key=True)
            .values_list("public_id", "processing_status", "received_at")[:limit]
        )
        audit = []
        for kind, rows, found in (
            ("refund", refunds, result.refunds),
            ("payout", payouts, result.payouts),
            ("provider_event", events, result.provider_events),
        ):
            for public_id, status, since in rows:
                found.append(public_id)
                minutes = int((now - since).total_seconds() // 60)
                audit.append(audit_prepare(
                    event_type=f"payments.{kind}_requeued", actor=actor, action_type="DISPATCH_STALE",
                    target_type=kind, target_id=public_id, now=now,
                    after={"status": status, "since": since.isoformat(), "minutes": minutes,
                           "stale_minutes": stale_minutes},
                ))  # fmt: skip
                transaction.on_commit(_enqueue(kind, public_id), robust=True)
        if audit:
            audit_record_many(audit)
    if audit:
        logger.info("dispatch sweep queued again %d refunds, %d payouts and %d provider events",
                    len(result.refunds), len(result.payouts), len(result.provider_events))  # fmt: skip
    return result
