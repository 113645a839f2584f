"""The hot write paths' prepared statements: array literals that PostgreSQL reads back exactly,
and one generic plan per connection."""

import datetime as dt

import psycopg
import pytest
from django.db import DataError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from backoffice.prepared import array_literal, execute_prepared

# PostgreSQL text cannot hold NUL; everything else must survive the literal unchanged.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30)


@pytest.mark.django_db
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT), max_size=8))
def test_text_arrays_come_back_exactly(values):
    (row,) = execute_prepared("SELECT %(v)s::text[]", {"v": array_literal(values)})
    assert row[0] == values


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["NULL", "null", "", " ", "{}", "a,b", '"', "\\", '\\\\"', '{a,"b"}', "ünï €"])
def test_awkward_strings_are_strings(value):
    (row,) = execute_prepared("SELECT %(v)s::text[]", {"v": array_literal([value, None])})
    assert row[0] == [value, None]


@pytest.mark.django_db
def test_numbers_dates_and_timestamps_keep_their_values():
    at = dt.datetime(2026, 11, 21, 23, 59, 59, 999999, tzinfo=dt.UTC)
    (row,) = execute_prepared(
        "SELECT %(i)s::bigint[], %(d)s::date[], %(t)s::timestamptz[]",
        {"i": array_literal([0, -1, 2**62, None]), "d": array_literal([dt.date(2026, 2, 28)]),
         "t": array_literal([at])},
    )  # fmt: skip
    assert row == ([0, -1, 2**62, None], [dt.date(2026, 2, 28)], [at])


@pytest.mark.django_db
def test_a_malformed_value_is_refused_not_guessed():
    with pytest.raises(DataError, match="invalid input syntax"), transaction.atomic():
        execute_prepared("SELECT %(i)s::bigint[]", {"i": array_literal(["12abc"])})


@pytest.mark.django_db
def test_connections_keep_one_generic_plan():
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"


@pytest.mark.django_db
def test_the_posting_statement_is_planned_once_per_connection():
    """Every run uses the generic plan, never a custom plan made for the arrays at hand (which is what
    PostgreSQL chose by default, re-planning on every call)."""
    connection.ensure_connection()
    raw = connection.connection
    sql = "SELECT x FROM unnest(%(v)s::bigint[]) AS u(x) WHERE x > 0"
    for n in range(1, 12):
        execute_prepared(sql, {"v": array_literal(list(range(n)))})
    with psycopg.ClientCursor(raw) as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
                       ["%unnest($1::bigint[])%"])  # fmt: skip
        assert cursor.fetchall() == [(11, 0)]
