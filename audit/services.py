"""The only writer of the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import CONTENT_FIELDS, content_hash
from audit.context import current
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from backoffice.ids import new_public_id
from backoffice.masking import mask_card_numbers, mask_snapshot

_INSERT_COLUMNS = (*CONTENT_FIELDS, "seq", "prev_hash", "hash")
# In INSERT ... SELECT the parameters are typed by their casts, not by the target columns.
_CASTS = {"occurred_at": "timestamptz", "actor_user_id": "bigint", "actor_roles": "varchar[]",
          "before": "jsonb", "after": "jsonb"}  # fmt: skip
# One statement appends the event: audit_chain_link (migration 0003) takes the chain lock, reads
# the head with a fresh snapshot, takes the sequence value and computes the chain hash.
_APPEND_SQL = (
    "INSERT INTO audit_auditevent ("  # noqa: S608 (column names are constants)
    + ", ".join(_INSERT_COLUMNS)
    + ") SELECT "
    + ", ".join("%s::" + _CASTS.get(name, "text") for name in CONTENT_FIELDS)
    + ", l.link_seq, l.link_prev, l.link_hash FROM audit_chain_link(%s) AS l RETURNING seq, prev_hash, hash"
)


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
    digest = content_hash(fields)  # before the chain lock: the lock covers one statement and the commit
    params = [
        json.dumps(fields[name]) if name in ("before", "after") and fields[name] is not None else fields[name]
        for name in CONTENT_FIELDS
    ]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_APPEND_SQL, [*params, digest])
        fields["seq"], fields["prev_hash"], fields["hash"] = cursor.fetchone()
    event = AuditEvent(**fields)
    event._state.adding = False
    return event
