"""Small pieces the reconciliation services share: ids minted in bulk, the advisory locks, COPY text."""

from __future__ import annotations

import base64
import gc
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

from reconciliation.models import MatchStatus

# Statuses of an item no match explains yet: what a run loads, and what the item check constraint
# requires of an item without a match.
UNMATCHED_STATES = (MatchStatus.UNMATCHED, MatchStatus.UNMATCHED_EXTERNAL, MatchStatus.UNMATCHED_INTERNAL)

# Advisory lock classes (the two-integer form; the audit chain uses the one-bigint form, a separate
# key space). "rcrn": one reconciliation run (or manual match, or unmatch) per source at a time;
# "rcim": one importer per statement file.
LOCK_SOURCE_RUN = 0x7263726E
LOCK_FILE_IMPORT = 0x7263696D

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def public_ids(prefix: str, n: int) -> list[str]:
    """n public ids laid out as backoffice.ids.new_public_id lays them out (48-bit milliseconds,
    80 random bits, Crockford base32), minted together and ascending: a run writing half a million
    matches cannot afford one call each."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    stamp = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
    noise = base64.b32encode(os.urandom(10 * n)).decode().translate(_TO_CROCKFORD)
    return [f"{prefix}_{stamp}{tail}" for tail in sorted(noise[i : i + 16] for i in range(0, 16 * n, 16))]


def copy_text(value: str) -> str:
    """A value for PostgreSQL's COPY text format (backslash, tab and line ends escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


@contextmanager
def raw_cursor() -> Iterator[psycopg.Cursor]:
    """A psycopg cursor on Django's connection (server-side binding, COPY), errors wrapped as
    Django wraps them."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def lock_source_for_matching(source_id: int) -> None:
    """Take the source's matching lock until the transaction ends (waits for a run in progress)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SOURCE_RUN, source_id])


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for a block that creates millions of small objects and frees
    none of them before it ends (parsing a file, loading a run's items): the collector would walk
    them again and again, for nothing, and double the block's time. Reference counting still frees
    what is dropped; the collector runs again afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# After this many new items, the item table's statistics are refreshed (ANALYZE samples a fixed
# number of rows: about a second, whatever the table's size): queries planned right after a large
# import would otherwise see a table of the size it had before.
ANALYZE_AFTER_ITEMS = 100_000


def item_statistics_refresh(new_items: int) -> None:
    if new_items >= ANALYZE_AFTER_ITEMS:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE reconciliation_reconciliationitem")
