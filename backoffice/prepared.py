"""Prepared statements for the few hot write paths (ledger posting, audit append).

Django binds parameters on the client, so the server parses and plans every statement again. For
a large statement run thousands of times a second (the posting statement with its CTEs plans in
about as long as it runs) that is most of the cost. These paths use a server-side-binding cursor
and ask psycopg to prepare the statement once per connection; PostgreSQL then reuses the plan.

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
        return cursor.fetchall() if cursor.description else []
