"""Breaks agree with the items after every sync: one open break per unexplained item, closed by
the match that explains it, superseded when the item's problem changes, grouped into cases that
repeated runs join rather than multiply."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from backoffice.actors import system_actor
from cases.models import OpsCase
from reconciliation.models import (
    BreakStatus,
    ItemSide,
    MatchShape,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationMatch,
    ReconciliationSource,
    StatementFile,
)
from reconciliation.services.breaks import age_bucket, breaks_sync
from tests.factories.reconciliation import considered_item, left_open, match_directly

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC)
ACTOR = system_actor("recon_tests")
_lines = itertools.count(1)


@pytest.fixture
def source():
    # Set-up rows made directly: the import and matching services have their own tests; here only
    # the items' statuses matter.
    return ReconciliationSource.objects.create(code="sim-idr", name="Simulated provider IDR", kind="PROVIDER_ACCOUNT",
                                               parser="generic_csv", currency="IDR", created_at=NOW)  # fmt: skip


@pytest.fixture
def file(source):
    return StatementFile.objects.create(public_id="sf_01TEST", source=source, filename="s.csv", sha256="0" * 64,
                                        size_bytes=10, parser="generic_csv", parser_version="1", uploaded_by="t",
                                        uploaded_at=NOW)  # fmt: skip


def external(file, amount=10_000, day=3, **fields):
    return considered_item(
        side=ItemSide.EXTERNAL, source=file.source, statement_file=file, line_no=next(_lines), kind="SETTLED",
        amount_minor=amount, currency="IDR", value_date=dt.date(2026, 3, day),
        reference=fields.pop("reference", f"ref-{next(_lines)}"), created_at=NOW, **fields,
    )  # fmt: skip


def internal(source, amount=10_000, day=3, **fields):
    return considered_item(
        side=ItemSide.INTERNAL, source=source, internal_type="payment_attempt", internal_id=f"pa_{next(_lines)}",
        kind="CAPTURE", amount_minor=amount, currency="IDR", value_date=dt.date(2026, 3, day), created_at=NOW,
        **fields,
    )  # fmt: skip


def match(source, items, result=MatchStatus.MATCHED, delta=0, rule="exact-reference"):
    made = ReconciliationMatch.objects.create(
        public_id=f"rm_{next(_lines)}", source=source, rule_code=rule, rule_version=1, shape=MatchShape.ONE_TO_ONE,
        result=result, confidence="1.000", amount_delta_minor=delta, currency="IDR", created_at=NOW,
    )  # fmt: skip
    return match_directly(made, items)


def sync(source, now=NOW):
    """breaks_sync as a run calls it: with every item still open as left unexplained."""
    return breaks_sync(source=source, actor=ACTOR, now=now, left=left_open(source))


def open_breaks(source):
    return ReconciliationBreak.objects.filter(source=source).exclude(status=BreakStatus.CLOSED)


def test_every_unexplained_item_gets_one_open_break_and_a_second_sync_changes_nothing(source, file):
    lost_line, lost_capture = external(file, 12_500), internal(source, 7_000)
    paired = match(source, [external(file, 5_000), internal(source, 5_000)])

    first = sync(source)

    assert (first.opened, first.closed) == (2, 0)
    assert set(open_breaks(source).values_list("item_id", "break_type", "amount_minor", "owner_team")) == {
        (lost_line.pk, "UNMATCHED_EXTERNAL", 12_500, "finance_ops"),
        (lost_capture.pk, "UNMATCHED_INTERNAL", 7_000, "finance_ops"),
    }
    assert all(b.public_id.startswith("rb_") for b in open_breaks(source))
    assert not ReconciliationBreak.objects.filter(item__memberships__match=paired).exists()
    events = AuditEvent.objects.count()
    again = sync(source)
    assert (again.opened, again.closed) == (0, 0)
    assert open_breaks(source).count() == 2
    assert AuditEvent.objects.count() == events + 1  # the sync itself is recorded, nothing else moved


def test_a_mismatch_is_one_break_on_the_external_side_worth_the_difference(source, file):
    line, capture = external(file, 10_150), internal(source, 10_000)
    match(source, [line, capture], result=MatchStatus.AMOUNT_MISMATCH, delta=150, rule="reference-tolerance")

    sync(source)

    assert list(open_breaks(source).values_list("item_id", "break_type", "amount_minor")) == [
        (line.pk, "AMOUNT_MISMATCH", 150)
    ]


def test_a_break_whose_item_is_matched_later_closes_naming_the_rule(source, file):
    line = external(file, 9_900)
    sync(source)
    rb = open_breaks(source).get()
    # A later run pairs it (the capture arrived a day late)
    capture = internal(source, 9_900)
    made = match(source, [line, capture], rule="amount-date-window")

    result = sync(source, now=NOW + dt.timedelta(days=1))

    rb = ReconciliationBreak.objects.get(pk=rb.pk)  # a fresh copy: a protected FSM field cannot be refreshed
    assert (result.opened, result.closed) == (0, 1)
    assert rb.status == BreakStatus.CLOSED and rb.closed_by_match == made and rb.version == 2
    assert rb.closing_note == f"explained by {made.public_id} (amount-date-window v1)"
    assert rb.closed_at == NOW + dt.timedelta(days=1)


def test_a_break_whose_problem_changes_is_superseded_by_a_break_of_the_new_type(source, file):
    line = external(file, 10_400)
    sync(source)
    old = open_breaks(source).get()
    match(source, [line, internal(source, 10_000)], result=MatchStatus.AMOUNT_MISMATCH,
          delta=400, rule="reference-tolerance")  # fmt: skip

    sync(source)

    old = ReconciliationBreak.objects.get(pk=old.pk)
    assert old.status == BreakStatus.CLOSED and old.closed_by_match is None
    assert old.closing_note == "superseded: the item is now AMOUNT_MISMATCH"
    assert list(open_breaks(source).values_list("break_type", "amount_minor")) == [("AMOUNT_MISMATCH", 400)]


def test_new_breaks_join_one_case_per_day_and_type_and_repeated_runs_do_not_open_more(source, file):
    external(file, 1_000, day=3)
    external(file, 2_000, day=3)
    external(file, 3_000, day=4)

    first = sync(source)
    external(file, 4_000, day=3)  # a new line for the same day and type, in a later run
    second = sync(source)

    assert len(first.cases) == 2
    assert len(second.cases) == 1 and second.cases[0] in first.cases  # joined the open case for day 3
    cases = OpsCase.objects.filter(case_type="RECONCILIATION_BREAK")
    assert cases.count() == 2
    day3 = open_breaks(source).filter(business_date=dt.date(2026, 3, 3))
    assert day3.count() == 3 and len(set(day3.values_list("case_ref", flat=True))) == 1


def test_the_database_keeps_one_open_break_per_item(source, file):
    line = external(file)
    sync(source)
    with pytest.raises(IntegrityError), transaction.atomic():
        ReconciliationBreak.objects.create(public_id="rb_DUPLICATE", item=line, source=source,
                                           break_type="UNMATCHED_EXTERNAL", amount_minor=1, currency="IDR",
                                           business_date=line.value_date, owner_team="x", opened_at=NOW)  # fmt: skip


@pytest.mark.parametrize(
    ("days", "bucket"), [(0, "0-1"), (1, "0-1"), (2, "2-7"), (7, "2-7"), (8, "8-30"), (30, "8-30"), (31, ">30")]
)
def test_age_buckets(days, bucket):
    assert age_bucket(dt.date(2026, 3, 31) - dt.timedelta(days=days), dt.date(2026, 3, 31)) == bucket
