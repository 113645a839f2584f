"""Deciding several requests at once (the inbox's "approve selected" / "reject selected" and the
admin actions). Each request is one service call in its own transaction, so one refusal (a request
the checker proposed, one decided meanwhile) refuses that request only and is reported by name."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from approvals.models import RequestStatus
from approvals.services.requests import request_approve, request_reject
from backoffice.actors import Actor
from backoffice.errors import DomainError


@dataclass(frozen=True)
class Outcome:
    public_id: str
    done: bool  # the decision was recorded (an approval may still have failed on execution)
    message: str


@dataclass(frozen=True)
class BulkResult:
    outcomes: list[Outcome]

    @property
    def done(self) -> int:
        return sum(1 for o in self.outcomes if o.done)

    @property
    def refused(self) -> int:
        return sum(1 for o in self.outcomes if not o.done)

    def summary(self, decision: str) -> str:
        verb = "Approved" if decision == "approve" else "Rejected"
        return f"{verb} {self.done} of {len(self.outcomes)}; refused {self.refused}."


def requests_decide(*, public_ids: list[str], decision: str, reason_text: str, actor: Actor,
                now: dt.datetime) -> BulkResult:  # fmt: skip
    """Approve or reject each request through approvals.services; every refusal is audited there."""
    if decision not in ("approve", "reject"):
        raise ValueError(f"unknown decision {decision!r}")
    outcomes = []
    for public_id in public_ids:
        try:
            if decision == "approve":
                ar = request_approve(public_id=public_id, actor=actor, now=now, reason_text=reason_text)
                if ar.status == RequestStatus.FAILED:
                    text = f"approved, but it failed when executed ({ar.error_code}): {ar.error_message}"
                elif isinstance(ar.result, dict) and ar.result:
                    text = "approved and executed: " + ", ".join(str(v) for v in ar.result.values())
                else:
                    text = f"approved; it is {ar.get_status_display().lower()}"
            else:
                request_reject(public_id=public_id, actor=actor, now=now, reason_text=reason_text)
                text = "rejected"
            outcomes.append(Outcome(public_id, True, f"{public_id}: {text}"))
        except DomainError as exc:
            outcomes.append(Outcome(public_id, False, f"{public_id}: refused: {exc.message}"))
    return BulkResult(outcomes)
