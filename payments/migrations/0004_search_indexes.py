"""Indexes for the global search (backoffice.search).

- Trigram (pg_trgm, GIN) indexes for contains-search on merchant names, merchant references
  (business_id) and provider references of attempts, refunds and payouts. They need the pg_trgm
  extension: where PostgreSQL does not ship it (the embedded development server has no contrib
  extensions) they are skipped with a warning and the search runs the same ILIKE without them.
- B-tree indexes for the exact lookups no existing index serves: amount and currency (newest
  first) of intents, refunds and payouts; refund and payout provider references alone (their
  unique constraints lead with the provider code).

Built CONCURRENTLY (the migration is not atomic), so a deploy does not block payments being
written; an index a failed earlier build left invalid is dropped and built again.
"""

import logging

from django.db import DatabaseError, migrations

logger = logging.getLogger("payments.migrations")

TRIGRAM = [
    ("payments_merchant_name_trgm", "payments_merchant", "name"),
    ("payments_intent_business_trgm", "payments_paymentintent", "business_id"),
    ("payments_attempt_provref_trgm", "payments_paymentattempt", "provider_reference"),
    ("payments_refund_provref_trgm", "payments_refund", "provider_refund_reference"),
    ("payments_payout_provref_trgm", "payments_payout", "provider_payout_reference"),
]
BTREE = [
    ("payments_intent_amount_idx", "payments_paymentintent", "currency, amount_minor, id"),
    ("payments_refund_amount_idx", "payments_refund", "currency, amount_minor, id"),
    ("payments_payout_amount_idx", "payments_payout", "currency, amount_minor, id"),
    ("payments_refund_provref_idx", "payments_refund", "provider_refund_reference"),
    ("payments_payout_provref_idx", "payments_payout", "provider_payout_reference"),
]


def _create(cursor, name: str, sql: str) -> None:
    cursor.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
        [name],
    )
    row = cursor.fetchone()
    if row is not None and not row[0]:
        cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    cursor.execute(sql)


def trigram_available(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    return cursor.fetchone() is not None


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name, table, columns in BTREE:
            _create(cursor, name, f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" ({columns})')
        if not trigram_available(cursor):
            logger.warning(
                "pg_trgm is not available on this PostgreSQL server: the search's contains-matching runs "
                "without trigram indexes (fine for development data, slow on large tables)."
            )
            return
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:  # e.g. a role that may not create extensions
            logger.warning("pg_trgm could not be created (%s): contains-search runs without trigram indexes.", exc)
            return
        for name, table, column in TRIGRAM:
            _create(
                cursor,
                name,
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" USING gin ("{column}" gin_trgm_ops)',
            )


def backward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # The extension stays: other objects may have come to use it since.
        for name, _table, _columns in [*TRIGRAM, *BTREE]:
            cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("payments", "0003_operator_screen_permissions"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
