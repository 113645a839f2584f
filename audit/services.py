"""The only writer of the audit trail."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
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
from backoffice.prepared import execute_prepared

_INSERT_COLUMNS = (*CONTENT_FIELDS, "seq", "prev_hash", "hash")
# In INSERT ... SELECT the parameters are typed by their casts, not by the target columns.
_CASTS = {"occurred_at": "timestamptz", "actor_user_id": "bigint", "actor_roles": "varchar[]",
          "before": "jsonb", "after": "jsonb"}  # fmt: skip


@dataclass(frozen=True)
class PreparedEvent:
    """An audit event ready to append: its fields, content hash, and the one INSERT that appends it.

    The statement calls audit_chain_link (migration 0003), which takes the chain lock, reads the
    head with a fresh snapshot, takes the sequence value and computes the chain hash. It can run on
    its own (audit_record) or as a data-modifying CTE of a service's own write statement, so a
    command and its audit event are one round trip; `only_if` then names the SQL condition under
    which the event is written (e.g. "the command inserted a row").
    """

    fields: dict[str, Any]
    digest: str
    prefix: str = "audit_"

    def sql(self, only_if: str = "") -> str:
        p = self.prefix
        values = ", ".join(f"%({p}{name})s::{_CASTS.get(name, 'text')}" for name in CONTENT_FIELDS)
        where = f" WHERE {only_if}" if only_if else ""
        return (
            f"INSERT INTO audit_auditevent ({', '.join(_INSERT_COLUMNS)})"  # noqa: S608 (column names are constants)
            f" SELECT {values}, l.link_seq, l.link_prev, l.link_hash FROM audit_chain_link(%({p}digest)s) AS l{where}"
            " RETURNING seq, prev_hash, hash"
        )

    def params(self) -> dict[str, Any]:
        values = {
            f"{self.prefix}{name}": (
                json.dumps(self.fields[name])
                if name in ("before", "after") and self.fields[name] is not None
                else self.fields[name]
            )
            for name in CONTENT_FIELDS
        }
        values[f"{self.prefix}digest"] = self.digest
        return values

    def as_written(self, seq: int, prev_hash: str, chain_hash: str) -> AuditEvent:
        event = AuditEvent(**self.fields, seq=seq, prev_hash=prev_hash, hash=chain_hash)
        event._state.adding = False
        return event


def _json_safe(value: Any) -> Any:
    """Snapshots are stored as jsonb; normalise them first so the hash sees what the row holds."""
    if value is None:
        return None
    return json.loads(json.dumps(mask_snapshot(value), cls=DjangoJSONEncoder))


def audit_prepare(
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
) -> PreparedEvent:
    """Build an event (masked, with its content hash) without writing it. The content hash is
    computed here, before the chain lock is taken, so the lock covers one statement and the commit."""
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
    return PreparedEvent(fields=fields, digest=content_hash(fields))


def audit_record(**event: Any) -> AuditEvent:
    """Append one event to the hash chain, inside the caller's transaction (arguments as for
    `audit_prepare`).

    Guarantees: the event commits or rolls back with the caller's effect; events form one strict
    chain even with concurrent writers (the chain head is serialised by a transaction-scoped
    advisory lock, held until the caller commits, so call this as the last write of a command);
    snapshots are masked. Outside a transaction it runs in one of its own (a refusal's record).
    """
    prepared = audit_prepare(**event)
    with transaction.atomic(savepoint=False):
        (row,) = execute_prepared(prepared.sql(), prepared.params())
    return prepared.as_written(*row)


def _array_literal(values) -> str:
    """A PostgreSQL array literal for simple strings (role names)."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def audit_record_many(events: list[PreparedEvent]) -> int:
    """Append many prepared events in one statement, chained in the order given, inside the
    caller's transaction (for set-based commands: one event per row they changed). The chain lock
    is taken once (audit_chain_link_many, migration 0005)."""
    if not events:
        return 0
    columns: dict[str, list] = {name: [] for name in CONTENT_FIELDS}
    for event in events:
        for name in CONTENT_FIELDS:
            value = event.fields[name]
            if name in ("before", "after"):
                value = None if value is None else json.dumps(value)
            elif name == "actor_roles":
                value = _array_literal(value or [])
            columns[name].append(value)
    casts = {"occurred_at": "timestamptz[]", "actor_user_id": "bigint[]"}
    unnest = ", ".join(f"%({name})s::{casts.get(name, 'text[]')}" for name in CONTENT_FIELDS)
    select = ", ".join(
        f"u.{name}::varchar[]" if name == "actor_roles" else f"u.{name}::jsonb" if name in ("before", "after")
        else f"u.{name}"
        for name in CONTENT_FIELDS
    )  # fmt: skip
    sql = (
        f"INSERT INTO audit_auditevent ({', '.join(_INSERT_COLUMNS)})"  # noqa: S608 (column names are constants)
        f" SELECT {select}, l.link_seq, l.link_prev, l.link_hash"
        f" FROM unnest({unnest}) WITH ORDINALITY AS u({', '.join(CONTENT_FIELDS)}, ord)"
        " JOIN audit_chain_link_many(%(digests)s::text[]) AS l ON l.ord = u.ord"
        " ORDER BY u.ord"
    )
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, {**columns, "digests": [event.digest for event in events]})
        return cursor.rowcount
