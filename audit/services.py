"""The only writer of the audit trail."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import CONTENT_FIELDS, canonical_bytes, content_hash
from audit.context import current
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers, mask_card_numbers, mask_snapshot
from backoffice.prepared import execute_prepared

_INSERT_COLUMNS = (*CONTENT_FIELDS, "seq", "prev_hash", "hash", "lane")
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
            f" SELECT {values}, l.link_seq, l.link_prev, l.link_hash, l.link_lane"
            f" FROM audit_chain_link(%({p}digest)s) AS l{where}"
            " RETURNING seq, prev_hash, hash, lane"
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

    def as_written(self, seq: int, prev_hash: str, chain_hash: str, lane: int) -> AuditEvent:
        event = AuditEvent(**self.fields, seq=seq, prev_hash=prev_hash, hash=chain_hash, lane=lane)
        event._state.adding = False
        return event


_RESULTS = frozenset(AuditResult.values)


def _json_native(value: Any) -> bool:
    """Whether a JSON round trip would give `value` back unchanged (strings, whole numbers, booleans,
    None, lists and string-keyed dicts of them), so it can be skipped."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is list:
        return all(map(_json_native, value))
    if kind is dict:
        return all(type(k) is str for k in value) and all(map(_json_native, value.values()))
    return False


def _json_safe(value: Any) -> Any:
    """Snapshots are stored as jsonb; normalise them first so the hash sees what the row holds."""
    if value is None:
        return None
    masked = mask_snapshot(value)
    if _json_native(masked):
        return masked
    return json.loads(json.dumps(masked, cls=DjangoJSONEncoder))


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
    if result not in _RESULTS:
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

    Guarantees: the event commits or rolls back with the caller's effect; each chain lane stays one
    strict chain even with concurrent writers (the lane's head is serialised by a transaction-scoped
    advisory lock, held until the caller commits, so call this as the last write of a command; all
    events of one transaction link into the same lane); snapshots are masked. Outside a
    transaction it runs in one of its own (a refusal's record).
    """
    prepared = audit_prepare(**event)
    with transaction.atomic(savepoint=False):
        (row,) = execute_prepared(prepared.sql(), prepared.params())
    return prepared.as_written(*row)


def _array_literal(values) -> str:
    """A PostgreSQL array literal for simple strings (role names)."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


# --- many events at once (set-based commands: one event per row they changed) -------------------

# The fields that may differ between the events of one batch, and how audit_prepare normalises
# each before hashing. Every other field is shared by the batch and normalised once, by
# audit_prepare itself.
_MASKED_TEXT = ("reason_text", "error_message")
_SNAPSHOTS = ("before", "after")
_ROW_FIELDS = frozenset({"action_type", "target_type", "target_id", "reason_code", "reason_text", "case_ref",
                         "approval_ref", "error_code", "error_message", "before", "after"})  # fmt: skip
# Encodes a value exactly as audit.chain.canonical_bytes encodes it inside the document (json.dumps
# with these options builds this same encoder on every call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_encode_string = json.encoder.encode_basestring  # what that encoder uses for a string (ensure_ascii=False)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


@dataclass(frozen=True)
class PreparedBatch:
    """Events prepared together (audit_prepare_many), held by column: the fields they share once,
    the fields that differ as one list per field, each event's content hash."""

    shared: dict[str, Any]
    columns: dict[str, list[Any]]  # always holds event_id
    digests: list[str]
    encoded: dict[str, list[str | None]] = field(default_factory=dict)  # JSON text of snapshot columns

    def __len__(self) -> int:
        return len(self.digests)

    def event(self, i: int) -> PreparedEvent:
        """The i-th event on its own (what audit_prepare would have returned for it)."""
        fields = {**self.shared, **{name: values[i] for name, values in self.columns.items()}}
        return PreparedEvent(fields=fields, digest=self.digests[i])

    def events(self) -> list[PreparedEvent]:
        return [self.event(i) for i in range(len(self))]


def _event_ids(n: int) -> list[str]:
    """n event ids laid out as backoffice.ids.new_public_id("ae") lays them out (48-bit
    milliseconds, then 80 random bits, in Crockford base32), minted together and ascending in the
    order of the events, so the batch appends to the event_id indexes instead of scattering."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    stamp = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
    noise = base64.b32encode(os.urandom(10 * n)).decode().translate(_TO_CROCKFORD)
    return [f"ae_{stamp}{tail}" for tail in sorted(noise[i : i + 16] for i in range(0, 16 * n, 16))]


def _none_has_card_numbers(texts: list[str]) -> bool:
    """One scan for the whole column: a card number cannot span the line breaks joining them."""
    return not find_card_numbers("\n".join(texts))


def _masked_texts(values: list[Any]) -> list[Any]:
    if _none_has_card_numbers([v for v in values if isinstance(v, str)]):
        return values
    return [mask_card_numbers(v) for v in values]


def _plain_flat(value: Any) -> bool:
    """A dict of string keys to strings, whole numbers, booleans or None: its JSON round trip is
    the identity, so masking is all _json_safe would do to it."""
    return type(value) is dict and all(
        type(k) is str and (v is None or type(v) in (str, int, bool)) for k, v in value.items()
    )


def _snapshots(values: list[Any]) -> list[Any]:
    """_json_safe for a column of snapshots, with one card-number scan for the plain ones."""
    plain = [_plain_flat(v) for v in values]
    clean = _none_has_card_numbers([x for v, p in zip(values, plain, strict=True) if p for x in v.values()
                                    if type(x) is str])  # fmt: skip
    return [
        None if v is None else dict(v) if clean and p else _json_safe(v)
        for v, p in zip(values, plain, strict=True)
    ]  # fmt: skip


def audit_prepare_many(rows: Sequence[dict[str, Any]], **shared: Any) -> PreparedBatch:
    """Prepare one event per row for audit_record_many: `shared` as for audit_prepare, each row the
    fields that differ (the same keys in every row, from _ROW_FIELDS).

    Each event gets exactly the fields and the content hash audit_prepare(**shared, **row) would
    give it, so audit_verify cannot tell them apart; the cost per event is a fraction of it: shared
    fields are checked, masked and encoded once, and each event's canonical document is the shared
    text with its own values filled in. The first event is also hashed by audit.chain itself, so a
    drift between the two fails loudly instead of breaking the chain."""
    if not rows:
        return PreparedBatch(shared={}, columns={"event_id": []}, digests=[])
    keys = list(rows[0])
    if not set(keys) <= _ROW_FIELDS:
        raise ValueError(f"audit_prepare_many: fields that cannot differ per event: {sorted(set(keys) - _ROW_FIELDS)}")
    if set(keys) & set(shared):
        raise ValueError(f"audit_prepare_many: fields given as shared and per event: {sorted(set(keys) & set(shared))}")
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError("audit_prepare_many: every row must give the same fields")
    base = audit_prepare(**shared).fields
    columns: dict[str, list[Any]] = {"event_id": _event_ids(len(rows))}
    encoded: dict[str, list[str | None]] = {}
    for name in keys:
        values = [row[name] for row in rows]
        if name == "target_id":
            values = [v if type(v) is str else str(v) for v in values]
        elif name in _MASKED_TEXT:
            values = _masked_texts(values)
        elif name in _SNAPSHOTS:
            values = _snapshots(values)
            encoded[name] = [None if v is None else _CANONICAL.encode(v) for v in values]
        columns[name] = values
    shared_fields = {name: value for name, value in base.items() if name not in columns}
    # The canonical document (audit.chain.canonical_bytes) as a template: the shared fields as the
    # document holds them (timestamp as text, roles as a list), a slot for each field that differs.
    document = json.loads(canonical_bytes(base))
    slots = sorted(columns)
    template = "{" + ",".join(
        _CANONICAL.encode(name) + ":" + ("\0" if name in columns else _CANONICAL.encode(document[name]))
        for name in sorted(CONTENT_FIELDS)
    ) + "}"  # fmt: skip
    template = template.replace("%", "%%").replace("\0", "%s")
    filled = [
        ["null" if v is None else v for v in encoded[name]] if name in encoded
        else [_encode_string(v) if type(v) is str else _CANONICAL.encode(v) for v in columns[name]]
        for name in slots
    ]  # fmt: skip
    digests = [hashlib.sha256((template % values).encode()).hexdigest() for values in zip(*filled, strict=True)]
    batch = PreparedBatch(shared=shared_fields, columns=columns, digests=digests, encoded=encoded)
    first = batch.event(0)
    if first.digest != content_hash(first.fields):
        raise AssertionError("audit_prepare_many drifted from audit.chain.canonical_bytes")
    return batch


def _db_value(name: str, value: Any) -> Any:
    if name in _SNAPSHOTS:
        return None if value is None else _CANONICAL.encode(value)
    if name == "actor_roles":
        return _array_literal(value or [])
    return value


def _as_batch(events: Sequence[PreparedEvent]) -> PreparedBatch:
    """Events prepared one by one, held by column: a field with one value for all is shared."""
    shared: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for name in CONTENT_FIELDS:
        values = [event.fields[name] for event in events]
        first = values[0]
        if all(v == first and type(v) is type(first) for v in values):
            shared[name] = first
        else:
            columns[name] = values
    encoded = {name: [_db_value(name, v) for v in values] for name, values in columns.items() if name in _SNAPSHOTS}
    return PreparedBatch(shared=shared, columns=columns, digests=[e.digest for e in events], encoded=encoded)


# The type of each column's values (text unless named), and the cast that makes the value sent (as
# text) into the table's type. Arrays of text travel in binary: no quoting on the client, no parsing
# of one huge literal on the server.
_COLUMN_TYPES = {"occurred_at": "timestamptz", "actor_user_id": "bigint"}
_FINAL_CASTS = {"actor_roles": "::varchar[]", "before": "::jsonb", "after": "::jsonb"}


def audit_record_many(events: Sequence[PreparedEvent] | PreparedBatch) -> int:
    """Append many prepared events in one statement, chained in the order given, inside the
    caller's transaction (for set-based commands: one event per row they changed). One lane's lock
    is taken once (audit_chain_link_many, migration 0009).

    A field the events share is sent once; the others as arrays, zipped row by row with the chain
    links (ROWS FROM), bound on the server."""
    batch = events if isinstance(events, PreparedBatch) else _as_batch(events) if events else None
    if batch is None or not len(batch):
        return 0
    params: dict[str, Any] = {"digests": batch.digests}
    select, arrays, names = [], [], []
    for name in CONTENT_FIELDS:
        kind = _COLUMN_TYPES.get(name, "text")
        if name in batch.shared:
            params[name] = _db_value(name, batch.shared[name])
            select.append(f"%({name})s::{kind}{_FINAL_CASTS.get(name, '')}")
            continue
        values = batch.encoded.get(name) or batch.columns[name]
        if name == "actor_roles":
            values = [_array_literal(v or []) for v in values]
        params[name] = values
        arrays.append(f"unnest(%({name}){'s' if name in _COLUMN_TYPES else 'b'}::{kind}[])")
        names.append(name)
        select.append(f"u.{name}{_FINAL_CASTS.get(name, '')}")
    sql = (
        f"INSERT INTO audit_auditevent ({', '.join(_INSERT_COLUMNS)})"  # noqa: S608 (column names are constants)
        f" SELECT {', '.join(select)}, u.link_seq, u.link_prev, u.link_hash, u.link_lane"
        f" FROM ROWS FROM ({', '.join([*arrays, 'audit_chain_link_many(%(digests)b::text[])'])})"
        f" AS u({', '.join([*names, 'ord', 'link_seq', 'link_prev', 'link_hash', 'link_lane'])})"
    )
    with transaction.atomic(savepoint=False):
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
