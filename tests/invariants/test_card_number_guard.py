"""The suite-wide card number guard (tests/card_number_guard.py) finds what it must and only that:
a guard that cannot fail would make every test's silence meaningless."""

from __future__ import annotations

import logging

import pytest
from django.db import connection, transaction

from tests.card_number_guard import (
    _LogCollector,
    card_numbers,
    stored_card_numbers,
    tables_written_in_this_transaction,
)

VISA = "4111111111111111"  # a well-known test card number, Luhn-valid


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        f"card {VISA}.",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        '{"note": "5500005555555559"}',
        "3782 822463 10005",
    ],
)
def test_a_standalone_card_number_is_found(text):
    assert card_numbers(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "411111111111",  # 12 digits: too short
        f"sha256:ab{VISA}cd",  # inside a hex digest
        f"evt_01M7Y{VISA}XZ",  # inside an id
        "amount 1000000 IDR on 2026-03-02 01:00:00",
        "+639171234567",  # a phone number in E.164 that happens to pass Luhn
        "rev-3-12-1700000004",  # an idempotency key (its digits pass Luhn): numbers joined by dashes, not card groups
    ],
)
def test_what_is_not_a_card_number_is_left_alone(text):
    assert card_numbers(text) == []


@pytest.mark.django_db
def test_a_card_number_written_to_any_table_is_found_by_the_search():
    # Given a card number written by raw SQL into a free-text column, inside a savepoint the test
    # rolls back itself (the guard would otherwise, rightly, fail this test at teardown)
    assert stored_card_numbers(connection) == []
    with pytest.raises(RuntimeError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE auth_permission SET name = %s WHERE id = (SELECT min(id) FROM auth_permission)",
                           [f"leaked {VISA}"])  # fmt: skip
        # When the tables are searched: all of them, or those this transaction wrote (what the
        # guard searches after a test that runs inside one transaction)
        found = stored_card_numbers(connection)
        assert "auth_permission" in tables_written_in_this_transaction(connection)
        assert stored_card_numbers(connection, tables_written_in_this_transaction(connection)) == found
        raise RuntimeError("roll back")
    # Then it is named by table and column, by its last four digits only
    assert found == ["stored in auth_permission.name: 16 digits ending 1111"]
    assert stored_card_numbers(connection) == []


def test_a_card_number_in_a_log_line_is_found():
    collector = _LogCollector()
    logger = logging.getLogger("tests.card_number_guard.probe")
    logger.addHandler(collector)
    logger.propagate = False  # kept away from the suite-wide collector, which would fail this test
    try:
        logger.warning("charge for card %s refused", VISA)
        logger.warning("charge for card ****1111 refused")
    finally:
        logger.removeHandler(collector)
        logger.propagate = True
    assert collector.findings == ["log tests.card_number_guard.probe WARNING: 16 digits ending 1111"]
