"""Small pieces the reconciliation services share: ids minted in bulk, the advisory locks, COPY text."""

from __future__ import annotations

import base64
import gc
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import DatabaseError, connection, transaction

from reconciliation.models import MatchStatus

logger = logging.getLogger(__name__)

# Statuses of an item no match explains yet (an open item; see reconciliation.selectors.items).
UNMATCHED_STATES = (MatchStatus.UNMATCHED, MatchStatus.UNMATCHED_EXTERNAL, MatchStatus.UNMATCHED_INTERNAL)

# Advisory lock classes (the two-integer form; the audit chain uses the one-bigint form, a separate
# key space). "rcrn": the source's matching lock, exclusive for a run (or manual match, or unmatch),
# shared for a writer of new items (migration 0008 refuses items written without it); "rcim": one
# importer per statement file.
LOCK_SOURCE_RUN = 0x7263726E
LOCK_FILE_IMPORT = 0x7263696D

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)
_BYTE_TO_CROCKFORD = bytes(_CROCKFORD.encode()[b % 32] for b in range(256))
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def public_ids(prefix: str, n: int) -> list[str]:
    """n public ids laid out as backoffice.ids.new_public_id lays them out (48-bit milliseconds, 80
    more bits, Crockford base32), minted together and ascending: a run writing a million matches
    cannot afford one call each. A single id has 80 random bits; in a batch, the first 25 of them
    are the id's position and 55 are random."""
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    stamp = "".join(_CROCKFORD[(ms >> shift) & 31] for shift in range(45, -1, -5))
    if n <= 1:
        noise = base64.b32encode(os.urandom(10 * n)).decode().translate(_TO_CROCKFORD)
        return [f"{prefix}_{stamp}{noise}"] if n else []
    # Ascending without sorting (sorting a million random values was most of the cost): of the 16
    # characters after the stamp, the first 5 are the id's position in the batch and the other 11
    # are random (55 bits). The batch is laid out as one ASCII string, column by column.
    if n > 32**5:
        raise ValueError(f"at most {32**5} public ids at once")
    alphabet = _CROCKFORD.encode()
    text = bytearray(16 * n)
    for column in range(5):  # the position's base32 digits, most significant first
        repeat = 32 ** (4 - column)  # each digit stands for this many consecutive positions
        if 32 * repeat <= n:
            cycle = b"".join(bytes([char]) * repeat for char in alphabet)
            digits = cycle * (n // len(cycle) + 1)
        else:  # fewer than 32 blocks: never build a cycle longer than the batch
            digits = b"".join(bytes([alphabet[block]]) * repeat for block in range(n // repeat + 1))
        text[column::16] = digits[:n]
    noise = os.urandom(11 * n).translate(_BYTE_TO_CROCKFORD)  # 256 = 8 x 32: every character equally likely
    for column in range(11):
        text[5 + column :: 16] = noise[column::11]
    text = text.decode("ascii")
    head = f"{prefix}_{stamp}"
    return [head + text[i : i + 16] for i in range(0, 16 * n, 16)]


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
    """Take the source's matching lock until the transaction ends (waits for a run in progress and
    for the writers of new items)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SOURCE_RUN, source_id])


def lock_source_for_new_items(source_id: int) -> None:
    """Take the source's matching lock in shared mode until the transaction ends, before writing
    items: writers do not wait for each other, a run waits for them and they for it. A run then
    never reads past an item that commits after it (the watermark, ReconciliationWatermark)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_SOURCE_RUN, source_id])


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
            cursor.execute("ANALYZE reconciliation_reconciliationopenitem")


def break_statistics_refresh(changed_breaks: int) -> None:
    """After a run that opened or closed many breaks: the break queue is the next screen an operator
    opens, and planned with the statistics of a table a tenth its size it joined every open break to
    its item before sorting (2.4 s a page with 360,000 open breaks; 0.22-0.34 s analysed). The open
    items change with the breaks."""
    if changed_breaks < ANALYZE_AFTER_ITEMS:
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint inside a caller's transaction
            cursor.execute("ANALYZE reconciliation_reconciliationbreak")
            cursor.execute("ANALYZE reconciliation_reconciliationopenitem")
    except DatabaseError:  # statistics only: the run they follow has committed
        logger.warning("ANALYZE of the break tables failed after a run", exc_info=True)


@contextmanager
def index_walk_only() -> Iterator[None]:
    """For the statements inside: no sequential scan of a table, no hash or merge join, so the plan
    walks indexes from the rows asked for (a source's open items, a file's lines) and fetches each
    row by key. What such a statement costs then grows with the rows it is about, never with the
    item table's history; and it does not depend on statistics, which lag behind a table that just
    grew or shrank by a million rows. Transaction-local settings, put back after the block succeeds;
    after a failure the transaction (or savepoint) rolls back, and the settings with it."""
    names = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"current_setting('{name}')" for name in names))
        before = cursor.fetchone()
        cursor.execute("SELECT " + ", ".join(f"set_config('{name}', 'off', true)" for name in names))
    yield  # on an error nothing is put back: the failed transaction would refuse it and hide the error
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"set_config('{name}', %s, true)" for name in names), list(before))
