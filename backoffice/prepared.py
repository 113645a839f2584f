"""Prepared statements for the few hot write paths (ledger posting, audit append).

Django binds parameters on the client, so the server parses and plans every statement again. For
a large statement run thousands of times a second (the posting statement with its CTEs plans in
about as long as it runs) that is most of the cost. These paths use a server-side-binding cursor
and ask psycopg to prepare the statement once per connection; PostgreSQL then reuses the plan.

Reusing it needs `plan_cache_mode = force_generic_plan`, set for every connection in settings:
left to choose, PostgreSQL plans a statement taking arrays anew on every call, because a plan
made for the arrays' actual lengths always looks cheaper than the generic one (measured on the
posting statement: 0.93 ms of server CPU per posting with custom plans, 0.66 ms generic). Only
these statements and the ledger's and audit's database functions (key lookups) are server-side
prepared; every other query is bound on the client and planned with its values as before.

Array parameters are sent as PostgreSQL array literals (`array_literal`), cast in the statement:
psycopg's own list adaptation inspects every list in Python, and on the posting statement (twenty
arrays) that was the largest part of the client's CPU per posting.

Errors are wrapped exactly as Django wraps them (IntegrityError, OperationalError, ...), so callers
handle them like any other database error. Prepared statements need session-level connections:
behind a transaction-pooling proxy, turn them off with DATABASE_PREPARED_STATEMENTS=false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection

_NEVER_AUTOMATICALLY = 2**31 - 1


def execute_prepared(sql: str, params: Mapping[str, Any] | Sequence[Any]) -> list[tuple]:
    """Run one statement with server-side binding, prepared on this connection; return its rows."""
    connection.ensure_connection()
    raw = connection.connection
    prepare = getattr(settings, "DATABASE_PREPARED_STATEMENTS", True)
    if prepare and raw.prepare_threshold is None:
        # Django's client-side binding turns psycopg's preparation off, which also ignores an
        # explicit prepare=True. A threshold nobody reaches keeps automatic preparation off for
        # every other statement while honouring prepare=True here.
        raw.prepare_threshold = _NEVER_AUTOMATICALLY
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchall() if cursor.rownumber is not None else []  # None: no rows came back


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of `values` (strings, whole numbers, dates and timestamps, None),
    for a parameter the statement casts to its array type (e.g. `%(ids)s::bigint[]`)."""
    return "{" + ",".join(map(_element, values)) + "}"
