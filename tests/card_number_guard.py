"""Invariant 10 across the whole suite: no card number (PAN) is stored in any table or written to
any log line, whatever a test does.

Every log record emitted during a test is checked, and, at the end of every test that used the
database, every text, JSON and binary column of every table (history tables too) is searched,
before the test's transaction is rolled back. A finding fails that test at teardown, naming the
table and column or the logger, with the number shown by its last four digits only.

A card number here is 13-19 digits passing Luhn, unbroken or grouped as cards are printed (fours,
or Amex's 4-6-5), standing alone (the product masks more widely: any spacing). A digit run inside
a longer token of letters and digits (a hash, a ULID), an international phone number (+...) and
numbers joined by dashes in a key are not card numbers.
"""

from __future__ import annotations

import logging
import re

import pytest

from backoffice.masking import luhn_valid

# Standalone: no letter or digit on either side (hex digests and ids hold digit runs too), and no
# "+" before it (an E.164 phone number such as +639171234567 can pass Luhn; a card number never
# starts with a plus).
_STANDALONE = re.compile(r"(?<![0-9A-Za-z+])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z])")
# The same shape for PostgreSQL (ARE): finds candidate rows; Python applies Luhn.
_SQL_PATTERN = r"(^|[^0-9A-Za-z+])([0-9][ -]?){12,18}[0-9]([^0-9A-Za-z]|$)"
_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "bytea")
_SKIPPED_TABLES = ("django_migrations",)
_LOGS = pytest.StashKey["_LogCollector"]()


def _card_shaped(written: str) -> bool:
    """Written as card numbers are: unbroken, in groups of four (the last may be shorter), or the
    4-6-5 / 4-6-4 grouping of Amex and Diners. A key like "rev-3-1763701234" is not."""
    groups = [len(g) for g in re.split(r"[ -]", written)]
    if len(groups) == 1:
        return True
    return groups in ([4, 6, 5], [4, 6, 4]) or (all(n == 4 for n in groups[:-1]) and 1 <= groups[-1] <= 4)


def card_numbers(text: str) -> list[str]:
    found = []
    for match in _STANDALONE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and _card_shaped(match.group()):
            found.append(digits)
    return found


def _shown(digits: str) -> str:
    return f"{len(digits)} digits ending {digits[-4:]}"


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.findings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot format is the logging call's bug, not ours
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f"\n{record.exc_info[1]}"
        for digits in card_numbers(text):
            self.findings.append(f"log {record.name} {record.levelname}: {_shown(digits)}")


_columns: dict[str, list[tuple[str, str]]] | None = None


def _text_columns(connection) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, data type)] of its text-like columns (read once per session, after
    migrations: the schema does not change during the run)."""
    global _columns
    if _columns is None:
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT c.table_name, c.column_name, c.data_type
                     FROM information_schema.columns c
                     JOIN information_schema.tables t
                       ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                    WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                      AND c.data_type = ANY(%s) AND NOT c.table_name = ANY(%s)
                    ORDER BY 1, 2""",
                [list(_TEXT_TYPES), list(_SKIPPED_TABLES)],
            )
            _columns = {}
            for table, column, data_type in cursor.fetchall():
                _columns.setdefault(table, []).append((column, data_type))
    return _columns


def tables_written_in_this_transaction(connection) -> list[str]:
    """Tables this transaction inserted into or updated (PostgreSQL counts them per transaction):
    what a test inside one transaction can have written."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd > 0")
        return [row[0] for row in cursor.fetchall()]


def stored_card_numbers(connection, tables: list[str] | None = None) -> list[str]:
    """Card numbers in the text, JSON and binary columns of `tables` (default: every table)."""
    columns = _text_columns(connection)
    parts = []
    for table in sorted(columns if tables is None else set(tables) & set(columns)):
        for column, data_type in columns[table]:
            value = f"encode(\"{column}\", 'escape')" if data_type == "bytea" else f'"{column}"::text'
            # Identifiers come from the catalogue, never from input.
            parts.append(f"SELECT '{table}', '{column}', {value} FROM \"{table}\" WHERE {value} ~ '{_SQL_PATTERN}'")
    if not parts:
        return []
    findings = []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts))
        for table, column, text in cursor.fetchall():
            findings.extend(f"stored in {table}.{column}: {_shown(digits)}" for digits in card_numbers(text or ""))
    return findings


def _database_use(item: pytest.Item) -> str:
    """ "": none; "transaction": the test runs in one transaction rolled back at the end;
    "committed": it commits (transactional tests, the live server)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    marker = item.get_closest_marker("django_db")
    if {"transactional_db", "live_server", "django_db_reset_sequences"} & fixtures or (
        marker is not None and marker.kwargs.get("transaction")
    ):
        return "committed"
    return "transaction" if marker is not None or "db" in fixtures else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    collector = _LogCollector()
    logging.getLogger().addHandler(collector)
    item.stash[_LOGS] = collector
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    """Searches the tables before the fixtures are torn down (the test's rows are still there),
    and fails the test after they are, so the teardown itself always runs."""
    findings = []
    use = _database_use(item)
    if use:
        findings.extend(_stored(use))
    result = yield
    collector = item.stash.get(_LOGS, None)
    if collector is not None:
        logging.getLogger().removeHandler(collector)
        findings.extend(collector.findings)
    if findings:
        pytest.fail("a card number was kept (invariant 10):\n  " + "\n  ".join(sorted(set(findings))), pytrace=False)
    return result


def _stored(use: str) -> list[str]:
    from django.db import DatabaseError, connection

    if connection.connection is None or connection.needs_rollback:
        return []  # nothing opened, or a transaction the test left broken (its rows are not readable)
    try:
        # A test inside one transaction: only what it wrote (the search stays cheap, a few ms).
        # A committing test: everything, before the flush empties the tables.
        tables = tables_written_in_this_transaction(connection) if use == "transaction" else None
        return stored_card_numbers(connection, tables)
    except DatabaseError as exc:
        return [f"the tables could not be searched: {exc}"]
