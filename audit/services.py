"""The only writer of the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import event_hash
from audit.context import current
from audit.models import GENESIS_HASH, AuditEvent, AuditResult
from backoffice.actors import Actor
from backoffice.ids import new_public_id
from backoffice.masking import mask_card_numbers, mask_snapshot

# pg_advisory_xact_lock key that serialises the chain head ("audit" in ASCII).
CHAIN_LOCK_KEY = 0x6175646974
_CHAIN_HEAD_SQL = "SELECT nextval('audit_event_seq'), (SELECT hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1)"


def _json_safe(value: Any) -> Any:
    """Snapshots are stored as jsonb; normalise them first so the hash sees what the row holds."""
    if value is None:
        return None
    return json.loads(json.dumps(mask_snapshot(value), cls=DjangoJSONEncoder))


def audit_record(
    *,
    event_type: str,
    result: str = AuditResult.SUCCEEDED,
    actor: Actor | None = None,
    action_type: str = "",
    target_type: str = "",
    target_id: str = "",
    reason_code: str = "",
    reason_text: str = "",
    case_ref: str = "",
    approval_ref: str = "",
    error_code: str = "",
    error_message: str = "",
    before: Any = None,
    after: Any = None,
    now: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event to the hash chain, inside the caller's transaction.

    Guarantees: the event commits or rolls back with the caller's effect; events form one strict
    chain even with concurrent writers (the chain head is serialised by a transaction-scoped
    advisory lock, held until the caller commits, so call this as the last write of a command);
    snapshots are masked. Outside a transaction it runs in one of its own (a refusal's record).
    """
    if result not in AuditResult.values:
        raise ValueError(f"unknown audit result {result!r}")
    ctx = current()
    who = actor or ctx.actor
    fields: dict[str, Any] = {
        "event_id": new_public_id("ae"),
        "occurred_at": now or timezone.now(),
        "actor": who.label,
        "actor_user_id": who.user_id,
        "actor_roles": sorted(who.roles),
        "session_hash": ctx.session_hash,
        "ip_hash": ctx.ip_hash,
        "correlation_id": ctx.correlation_id,
        "event_type": event_type,
        "action_type": action_type,
        "target_type": target_type,
        "target_id": str(target_id),
        "reason_code": reason_code,
        "reason_text": mask_card_numbers(reason_text),
        "case_ref": case_ref,
        "approval_ref": approval_ref,
        "result": str(result),
        "error_code": error_code,
        "error_message": mask_card_numbers(error_message),
        "before": _json_safe(before),
        "after": _json_safe(after),
    }
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            # The head must be read by a statement that starts after the lock is held: under
            # READ COMMITTED each statement takes its snapshot when it starts, so a head read in
            # the locking statement itself could miss the previous holder's commit.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
            cursor.execute(_CHAIN_HEAD_SQL)
            seq, head = cursor.fetchone()
        fields["prev_hash"] = head or GENESIS_HASH
        fields["seq"] = seq
        fields["hash"] = event_hash(fields)
        return AuditEvent.objects.create(**fields)
