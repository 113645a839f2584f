"""End of day: every request still pending from before the business day's cut-off is rejected by
the system with reason END_OF_DAY (invariant 7). Set-based: one UPDATE for the rows, one INSERT
for their history, one INSERT for their audit events, whatever the count.

A request an approver holds locked is waited for; the UPDATE re-checks `status = 'REQUESTED'`
after the wait, so an approval that won the race stays approved and is not touched: exactly one
terminal state. Rerunning finds nothing more to reject.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection, transaction

from approvals.models import RequestStatus
from audit.services import audit_prepare, audit_record_many
from backoffice.actors import Actor
from backoffice.clock import business_day_start

END_OF_DAY = "END_OF_DAY"

_REJECT = """
UPDATE approvals_actionrequest
   SET status = %(rejected)s, checker = %(checker)s, checker_user_id = NULL, decided_at = %(now)s,
       decision_reason = %(reason)s, version = version + 1
 WHERE status = %(pending)s AND created_at < %(cutoff)s
RETURNING id, public_id, action_type, target_type, target_id, case_ref, reason_code
"""

# simple-history rows for the rejected requests, as the ORM would have written them.
_HISTORY = """
INSERT INTO approvals_historicalactionrequest ({columns}, history_date, history_change_reason, history_type,
                                                history_user_id)
SELECT {columns}, %(now)s, %(reason)s, '~', NULL FROM approvals_actionrequest WHERE id = ANY(%(ids)s)
"""


@dataclass(frozen=True)
class EndOfDayResult:
    cutoff: dt.datetime
    rejected: int
    audit_events: int


def _history_columns() -> str:
    from approvals.models import ActionRequest

    names = [field.column for field in ActionRequest._meta.concrete_fields]
    return ", ".join(f'"{name}"' for name in names)


def requests_reject_pending(*, as_of: dt.datetime, actor: Actor, now: dt.datetime) -> EndOfDayResult:
    """Reject, as `actor` (the system), every request pending since before the cut-off that opened
    the business day containing `as_of`. One audit event per request; idempotent."""
    cutoff = business_day_start(as_of)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _REJECT,
                {"rejected": RequestStatus.REJECTED, "pending": RequestStatus.REQUESTED, "checker": actor.label,
                 "now": now, "reason": END_OF_DAY, "cutoff": cutoff},
            )  # fmt: skip
            rows = cursor.fetchall()
            if not rows:
                return EndOfDayResult(cutoff=cutoff, rejected=0, audit_events=0)
            ids = [row[0] for row in rows]
            cursor.execute(_HISTORY.format(columns=_history_columns()), {"now": now, "reason": END_OF_DAY, "ids": ids})
        events = [
            audit_prepare(
                event_type="approvals.request_rejected",
                actor=actor,
                action_type=action_type,
                target_type="action_request",
                target_id=public_id,
                case_ref=case_ref,
                approval_ref=public_id,
                reason_code=END_OF_DAY,
                reason_text=f"still pending at the business-day cut-off {cutoff.isoformat()}",
                after={"status": RequestStatus.REJECTED, "target": f"{target_type}:{target_id}"},
                now=now,
            )
            for _, public_id, action_type, target_type, target_id, case_ref, _ in sorted(rows, key=lambda r: r[0])
        ]
        written = audit_record_many(events)
    return EndOfDayResult(cutoff=cutoff, rejected=len(rows), audit_events=written)
