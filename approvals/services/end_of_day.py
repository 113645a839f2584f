"""End of day: every request still pending from before the business day's cut-off is rejected by
the system with reason END_OF_DAY (invariant 7). Set-based, whatever the count: one statement
rejects the rows and writes their history, one statement appends their audit events.

It works in chunks (CHUNK requests per transaction, each chunk's rejections and audit events
committing together), so the audit chain and the rejected rows are never held for the whole run.
A request an approver holds locked is waited for; the UPDATE re-checks `status = 'REQUESTED'`
after the wait, so an approval that won the race stays approved and is not touched: exactly one
terminal state. Rerunning finds nothing more to reject.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection, transaction

from approvals.models import RequestStatus
from audit.services import audit_prepare_many, audit_record_many
from backoffice.actors import Actor
from backoffice.clock import business_day_start

END_OF_DAY = "END_OF_DAY"
CHUNK = 10_000

# Reject and write the simple-history rows (as the ORM would have written them) in one statement:
# the history is copied from the rows as updated, without reading them back. Chunks walk the
# (status, created_at) index from where the previous chunk stopped: ordering by id instead would
# make every chunk step over all the requests already decided, a cost growing with the table.
_REJECT = """
WITH rejected AS (
    UPDATE approvals_actionrequest
       SET status = %(rejected)s, checker = %(checker)s, checker_user_id = NULL, decided_at = %(now)s,
           decision_reason = %(reason)s, version = version + 1
     WHERE id IN (SELECT id FROM approvals_actionrequest
                   WHERE status = %(pending)s AND created_at < %(cutoff)s
                     AND (created_at, id) > (%(after_created)s, %(after_id)s)
                   ORDER BY created_at, id LIMIT %(chunk)s)
       AND status = %(pending)s
    RETURNING *
), history AS (
    INSERT INTO approvals_historicalactionrequest ({columns}, history_date, history_change_reason, history_type,
                                                    history_user_id)
    SELECT {columns}, %(now)s, %(reason)s, '~', NULL FROM rejected
)
SELECT created_at, id, public_id, action_type, target_type, target_id, case_ref FROM rejected ORDER BY created_at, id
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
    rejected = written = 0
    after: tuple[dt.datetime, int] = (dt.datetime.min.replace(tzinfo=dt.UTC), 0)
    while True:
        count, events, after = _reject_chunk(cutoff=cutoff, after=after, actor=actor, now=now)
        rejected, written = rejected + count, written + events
        if count < CHUNK:
            return EndOfDayResult(cutoff=cutoff, rejected=rejected, audit_events=written)


def _reject_chunk(
    *, cutoff: dt.datetime, after: tuple[dt.datetime, int], actor: Actor, now: dt.datetime
) -> tuple[int, int, tuple[dt.datetime, int]]:
    """Reject the next CHUNK pending requests created after `after` (created_at, id); return how
    many, the audit events written and where the next chunk starts."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _REJECT.format(columns=_history_columns()),
                {"rejected": RequestStatus.REJECTED, "pending": RequestStatus.REQUESTED, "checker": actor.label,
                 "now": now, "reason": END_OF_DAY, "cutoff": cutoff, "chunk": CHUNK,
                 "after_created": after[0], "after_id": after[1]},
            )  # fmt: skip
            rows = cursor.fetchall()
        if not rows:
            return 0, 0, after
        events = audit_prepare_many(
            [
                {"action_type": action_type, "target_id": public_id, "case_ref": case_ref, "approval_ref": public_id,
                 "after": {"status": RequestStatus.REJECTED.value, "target": f"{target_type}:{target_id}"}}
                for _, _, public_id, action_type, target_type, target_id, case_ref in rows
            ],
            event_type="approvals.request_rejected", actor=actor, target_type="action_request", reason_code=END_OF_DAY,
            reason_text=f"still pending at the business-day cut-off {cutoff.isoformat()}", now=now,
        )  # fmt: skip
        return len(rows), audit_record_many(events), (rows[-1][0], rows[-1][1])
