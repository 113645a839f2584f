"""End of day (invariant 7): every request still pending from before the business day's cut-off is
rejected by the system with reason END_OF_DAY, once, with one audit event and one history row
each; decided requests are never touched; time is passed in, never read."""

import datetime as dt
import io
import json
import zoneinfo

import pytest
from celery.schedules import crontab
from django.core.management import CommandError, call_command

from approvals.models import ActionRequest
from approvals.services import requests_reject_pending
from approvals.tasks import approvals_reject_pending
from audit.chain import content_hash
from audit.models import AuditEvent
from audit.services import audit_prepare, audit_prepare_many, audit_record_many
from audit.verification import chain_verify
from backoffice.actors import Actor, system_actor
from backoffice.beat import BEAT_SCHEDULE
from backoffice.celery import app
from backoffice.ids import parse_public_id
from tests.factories.approvals import (
    approve,
    cancel,
    checker,
    fetch,
    fund,
    maker,
    open_case,
    propose,
    reject,
    request_state,
)

pytestmark = pytest.mark.django_db

EOD = system_actor("end_of_day")
MANILA = zoneinfo.ZoneInfo("Asia/Manila")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def manila(settings):
    settings.BUSINESS_TIMEZONE = "Asia/Manila"
    settings.BUSINESS_DAY_CUTOFF = dt.time(0, 0)


@pytest.fixture
def alice():
    return maker("alice")


@pytest.fixture
def case(alice):
    return open_case(alice, now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))


def local(*args, tz=MANILA) -> dt.datetime:
    """A business-local wall time as the aware UTC instant the services take."""
    return dt.datetime(*args, tzinfo=tz).astimezone(dt.UTC)


def run(at: dt.datetime):
    return requests_reject_pending(as_of=at, actor=EOD, now=at)


_merchants = iter(range(1, 10_000))


def pending(user, case, created_at: dt.datetime):
    return propose(user, case=case, merchant=f"m_eod_{next(_merchants)}", now=created_at)


def statuses(*requests) -> list[str]:
    return [fetch(r.public_id).status for r in requests]


# --- the cut-off ----------------------------------------------------------------------------------


def test_the_last_second_of_a_day_is_rejected_at_midnight_and_not_a_second_before(alice, case):
    late = pending(alice, case, local(2026, 3, 2, 23, 59, 59))
    next_day = pending(alice, case, local(2026, 3, 3, 0, 0, 0))

    before = run(local(2026, 3, 2, 23, 59, 59))
    assert (before.rejected, before.audit_events, before.cutoff) == (0, 0, local(2026, 3, 2, 0, 0))
    assert statuses(late, next_day) == ["REQUESTED", "REQUESTED"]

    at_midnight = run(local(2026, 3, 3, 0, 0, 0))
    assert (at_midnight.rejected, at_midnight.audit_events, at_midnight.cutoff) == (1, 1, local(2026, 3, 3, 0, 0))
    assert at_midnight.cutoff == dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)
    assert statuses(late, next_day) == ["REJECTED", "REQUESTED"]  # created at the cut-off: the new day's


def test_a_run_late_in_the_day_rejects_everything_from_earlier_days(alice, case):
    old = [pending(alice, case, local(2026, 2, 26 + i, 12, 0)) for i in range(3)]
    today = pending(alice, case, local(2026, 3, 2, 0, 0, 1))
    result = run(local(2026, 3, 2, 22, 0))
    assert result.rejected == 3
    assert statuses(*old, today) == ["REJECTED"] * 3 + ["REQUESTED"]


def test_a_rerun_rejects_nothing_more_and_writes_nothing(alice, case):
    pending(alice, case, local(2026, 3, 2, 10, 0))
    assert run(local(2026, 3, 3, 0, 0)).rejected == 1
    events, history = AuditEvent.objects.count(), ActionRequest.history.count()

    again = run(local(2026, 3, 3, 0, 15))

    assert (again.rejected, again.audit_events) == (0, 0)
    assert (AuditEvent.objects.count(), ActionRequest.history.count()) == (events, history)


def test_each_rejection_is_recorded_once_by_the_system(alice, case):
    requests = [pending(alice, case, local(2026, 3, 2, 9, i)) for i in range(3)]
    versions = [fetch(r.public_id).version for r in requests]
    now = local(2026, 3, 3, 0, 0, 7)

    result = run(now)

    assert (result.rejected, result.audit_events) == (3, 3)
    for request, version in zip(requests, versions, strict=True):
        row = fetch(request.public_id)
        assert (row.status, row.checker, row.checker_user_id, row.decided_at, row.decision_reason) == (
            "REJECTED", "system:end_of_day", None, now, "END_OF_DAY",
        )  # fmt: skip
        assert (row.version, row.executed_at, row.result, row.maker_user_id) == (version + 1, None, None, alice.pk)
        (event,) = AuditEvent.objects.filter(approval_ref=request.public_id, event_type="approvals.request_rejected")
        assert (event.actor, event.actor_user_id, event.actor_roles, event.result) == (
            "system:end_of_day", None, ["system"], "SUCCEEDED",
        )  # fmt: skip
        assert (event.reason_code, event.target_type, event.target_id, event.case_ref, event.occurred_at) == (
            "END_OF_DAY", "action_request", request.public_id, case.case_number, now,
        )  # fmt: skip
        assert event.action_type == "CREATE_LEDGER_ADJUSTMENT"
        assert event.reason_text == "still pending at the business-day cut-off 2026-03-02T16:00:00+00:00"
        assert event.after == {"status": "REJECTED", "target": f"merchant_ledger:{request.target_id}"}
        latest = row.history.order_by("-history_id").first()
        assert (latest.status, latest.history_change_reason, latest.history_type, latest.history_date) == (
            "REJECTED", "END_OF_DAY", "~", now,
        )  # fmt: skip
        assert row.history.filter(status="REJECTED").count() == 1
    assert chain_verify().intact


def test_a_business_day_cut_off_other_than_midnight(alice, case, settings):
    settings.BUSINESS_DAY_CUTOFF = dt.time(17, 0)
    before_cut = pending(alice, case, local(2026, 3, 2, 16, 59, 59))
    after_cut = pending(alice, case, local(2026, 3, 2, 17, 0, 0))

    assert run(local(2026, 3, 2, 16, 59, 59)).rejected == 0
    result = run(local(2026, 3, 2, 17, 0, 0))

    assert (result.rejected, result.cutoff) == (1, local(2026, 3, 2, 17, 0))
    assert statuses(before_cut, after_cut) == ["REJECTED", "REQUESTED"]
    assert run(local(2026, 3, 3, 16, 59, 59)).rejected == 0
    assert run(local(2026, 3, 3, 17, 0, 0)).rejected == 1


@pytest.mark.parametrize(
    ("last_second", "cut_off_utc"),
    [
        # Spring forward (Sunday 8 March 2026, 02:00 EST -> 03:00 EDT): that business day has 23 hours.
        ((2026, 3, 7, 23, 59, 59), dt.datetime(2026, 3, 8, 5, 0, tzinfo=dt.UTC)),
        ((2026, 3, 8, 23, 59, 59), dt.datetime(2026, 3, 9, 4, 0, tzinfo=dt.UTC)),
        # Fall back (Sunday 1 November 2026, 02:00 EDT -> 01:00 EST): that business day has 25 hours.
        ((2026, 10, 31, 23, 59, 59), dt.datetime(2026, 11, 1, 4, 0, tzinfo=dt.UTC)),
        ((2026, 11, 1, 23, 59, 59), dt.datetime(2026, 11, 2, 5, 0, tzinfo=dt.UTC)),
    ],
)
def test_midnight_cut_offs_around_daylight_saving_changes(alice, case, settings, last_second, cut_off_utc):
    settings.BUSINESS_TIMEZONE = "America/New_York"
    late = pending(alice, case, local(*last_second, tz=NEW_YORK))
    assert late.created_at == cut_off_utc - dt.timedelta(seconds=1)

    assert run(cut_off_utc - dt.timedelta(seconds=1)).rejected == 0
    result = run(cut_off_utc)

    assert (result.rejected, result.cutoff) == (1, cut_off_utc)
    assert result.cutoff.astimezone(NEW_YORK).time() == dt.time(0, 0)


def test_the_long_autumn_day_keeps_its_requests_for_all_25_hours(alice, case, settings):
    settings.BUSINESS_TIMEZONE = "America/New_York"
    # 01:30 happens twice on 1 November; both belong to that day, which ends at 05:00 UTC on the 2nd.
    first = pending(alice, case, dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK).astimezone(dt.UTC))
    second = pending(alice, case, dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NEW_YORK).astimezone(dt.UTC))
    assert second.created_at - first.created_at == dt.timedelta(hours=1)
    assert run(dt.datetime(2026, 11, 2, 4, 59, 59, tzinfo=dt.UTC)).rejected == 0
    assert run(dt.datetime(2026, 11, 2, 5, 0, tzinfo=dt.UTC)).rejected == 2


CLOCK_BUG = (
    "backoffice.clock.business_day_end compares business-local wall times (same tzinfo), not instants: "
    "a cut-off inside a DST gap or fold is reported as past when it is not, or not when it is"
)


def test_a_cut_off_in_the_repeated_autumn_hour_is_not_late(alice, case, settings):
    settings.BUSINESS_TIMEZONE = "America/New_York"
    settings.BUSINESS_DAY_CUTOFF = dt.time(1, 30)
    # The 01:30 cut-off of 1 November is first reached at 01:30 EDT (05:30 UTC).
    late = pending(alice, case, dt.datetime(2026, 11, 1, 5, 29, 59, tzinfo=dt.UTC))
    result = run(dt.datetime(2026, 11, 1, 6, 15, tzinfo=dt.UTC))  # 01:15 EST, 45 minutes past the cut-off
    assert (result.rejected, result.cutoff) == (1, dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC))
    assert statuses(late) == ["REJECTED"]


def test_a_cut_off_in_the_skipped_spring_hour_is_not_early(alice, case, settings):
    settings.BUSINESS_TIMEZONE = "America/New_York"
    settings.BUSINESS_DAY_CUTOFF = dt.time(2, 30)  # does not exist on 8 March: read as 03:30 EDT (07:30 UTC)
    early = pending(alice, case, dt.datetime(2026, 3, 8, 7, 5, tzinfo=dt.UTC))  # 03:05 EDT
    result = run(dt.datetime(2026, 3, 8, 7, 10, tzinfo=dt.UTC))  # 03:10 EDT: before that cut-off
    assert result.cutoff <= dt.datetime(2026, 3, 8, 7, 10, tzinfo=dt.UTC)  # a cut-off that has happened
    assert statuses(early) == ["REQUESTED"]


# --- what is not pending is not touched ------------------------------------------------------------


def test_decided_requests_are_untouched(alice, case):
    bob = checker("bob")
    yesterday = local(2026, 3, 2, 10, 0)
    fund("m_poor", 10)
    succeeded = approve(bob, pending(alice, case, yesterday), now=yesterday)
    failed = approve(bob, propose(alice, case=case, merchant="m_poor", kind="MERCHANT_DEBIT", amount_minor=11,
                                  now=yesterday), now=yesterday)  # fmt: skip
    rejected = reject(bob, pending(alice, case, yesterday), now=yesterday)
    cancelled = cancel(alice, pending(alice, case, yesterday), now=yesterday)
    still_pending = pending(alice, case, yesterday)
    decided = [succeeded, failed, rejected, cancelled]
    assert statuses(*decided) == ["SUCCEEDED", "FAILED", "REJECTED", "CANCELLED"]
    before = {r.public_id: request_state(r.public_id) for r in decided}

    result = run(local(2026, 3, 3, 0, 0))

    assert result.rejected == 1 and fetch(still_pending.public_id).status == "REJECTED"
    assert {r.public_id: request_state(r.public_id) for r in decided} == before


# --- the command and the task ---------------------------------------------------------------------


def call(*args) -> str:
    out = io.StringIO()
    call_command("approvals_reject_pending", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_the_cut_off_and_counts_and_is_idempotent(alice, case):
    pending(alice, case, local(2026, 3, 2, 23, 0))
    pending(alice, case, local(2026, 3, 3, 1, 0))

    printed = call("--as-of", "2026-03-03T00:00:00+08:00")

    assert printed.splitlines() == [
        "cut-off: 2026-03-02T16:00:00+00:00 UTC (2026-03-03T00:00:00+08:00 Asia/Manila)",
        "rejected: 1 request(s) pending since before the cut-off",
        "audit events: 1",
    ]
    assert "rejected: 0 request(s)" in call("--as-of", "2026-03-03T00:00:00+08:00")
    event = AuditEvent.objects.get(event_type="approvals.request_rejected")
    assert (event.actor, event.correlation_id[:4]) == ("system:end_of_day", "req_")
    # Without an offset the time is business-local; without --as-of it is now, which ends both days.
    assert "rejected: 0" in call("--as-of", "2026-03-03 00:30")
    assert "rejected: 1" in call()
    assert ActionRequest.objects.filter(status="REQUESTED").count() == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not an ISO-8601 date-time"),
        ("2026-13-01T00:00:00Z", "is not an ISO-8601 date-time"),
        ("", "is not an ISO-8601 date-time"),
        ("2999-01-01T00:00:00Z", "is in the future"),
    ],
)
def test_the_command_refuses_a_bad_as_of_and_changes_nothing(alice, case, value, message):
    request = pending(alice, case, local(2026, 3, 2, 10, 0))
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message):
        call("--as-of", value)
    assert fetch(request.public_id).status == "REQUESTED" and AuditEvent.objects.count() == events


def test_the_task_runs_the_same_rejection_and_is_safe_to_run_twice(alice, case):
    request = pending(alice, case, local(2026, 3, 2, 10, 0))
    first = approvals_reject_pending.apply().get()
    assert (first["rejected"], first["audit_events"]) == (1, 1)
    assert fetch(request.public_id).checker == "system:end_of_day"
    second = approvals_reject_pending.apply().get()
    assert (second["rejected"], second["audit_events"], second["cutoff"]) == (0, 0, first["cutoff"])


def test_the_benchmark_rejects_what_it_made_and_ends_with_its_figures(settings, alice, case):
    ours = pending(alice, case, local(2026, 3, 2, 10, 0))
    out = io.StringIO()
    call_command("approvals_bench_eod", "--pending", "25", "--json", stdout=out)
    figures = json.loads(out.getvalue().splitlines()[-1])
    assert (figures["pending"], figures["audit_events"]) == (25, 26)  # the end of day takes ours too
    assert figures["seconds"] >= 0 and fetch(ours.public_id).status == "REJECTED"
    assert ActionRequest.objects.filter(status="REJECTED", checker="system:end_of_day").count() == 26
    assert not ActionRequest.objects.filter(status="REQUESTED").exists()
    settings.DJANGO_ENV = "production"
    with pytest.raises(CommandError, match="refuses to run in production"):
        call_command("approvals_bench_eod", "--pending", "1")
    assert ActionRequest.objects.count() == 26


def test_beat_wakes_the_task_every_quarter_hour_in_utc():
    (entry,) = [e for e in BEAT_SCHEDULE.values() if e["task"] == "approvals.tasks.approvals_reject_pending"]
    assert entry["schedule"] == crontab(minute="*/15")
    assert app.conf.timezone == "UTC"
    assert approvals_reject_pending.name in app.tasks


# --- the audit events of a set-based run ----------------------------------------------------------

TRICKY = [
    "plain", 'quote " and backslash \\', "tab\tnew\nline\r", "control \x01\x1f", "unicode ñ 東京 \u2028 😀",
    "4111 1111 1111 1111", "4111-1111-1111-1111 and 5500000000000004", "%s %(x)s %% {}",
]  # fmt: skip


def test_events_prepared_in_a_batch_are_exactly_what_audit_prepare_makes():
    now = dt.datetime(2026, 3, 2, 16, 0, 0, 123456, tzinfo=dt.UTC)
    shared = {"event_type": "approvals.request_rejected", "actor": EOD, "target_type": "action_request",
              "reason_code": "END_OF_DAY", "reason_text": "cut-off %s 4111111111111111", "now": now}  # fmt: skip
    rows = [
        {"target_id": text, "approval_ref": f"act_{i}", "case_ref": text[:20], "after": after}
        for i, text in enumerate(TRICKY)
        for after in ({"status": "REJECTED", "target": text}, {"nested": [text, {"card": text}]}, None)
    ]

    batch = audit_prepare_many(rows, **shared)

    assert len(batch) == len(rows)
    ids = batch.columns["event_id"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(parse_public_id(event_id)[0] == "ae" for event_id in ids)
    for event, row in zip(batch.events(), rows, strict=True):
        expected = audit_prepare(**shared, **row)
        assert event.fields == {**expected.fields, "event_id": event.fields["event_id"]}
        assert event.digest == content_hash(event.fields)
    cards = batch.event(3 * TRICKY.index("4111-1111-1111-1111 and 5500000000000004"))  # its plain snapshot
    assert cards.fields["after"] == {"status": "REJECTED", "target": "****1111 and ****0004"}
    assert cards.fields["target_id"] == "4111-1111-1111-1111 and 5500000000000004"  # ids are not masked, as before


def test_texts_that_differ_per_event_are_masked_as_audit_prepare_masks_them():
    now = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)
    rows = [{"reason_text": text, "error_message": text[::-1], "error_code": str(i)} for i, text in enumerate(TRICKY)]
    batch = audit_prepare_many(rows, event_type="test.texts", actor=EOD, result="FAILED", now=now)
    for event, row in zip(batch.events(), rows, strict=True):
        expected = audit_prepare(event_type="test.texts", actor=EOD, result="FAILED", now=now, **row)
        assert event.fields == {**expected.fields, "event_id": event.fields["event_id"]}
        assert event.digest == content_hash(event.fields)
    assert batch.event(TRICKY.index("4111 1111 1111 1111")).fields["reason_text"] == "****1111"


@pytest.mark.parametrize("as_batch", [True, False])
def test_events_appended_many_at_once_verify_with_the_chain(as_batch):
    now = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)
    rows = [{"target_id": f"act_{i}", "after": {"status": "REJECTED", "target": text}} for i, text in enumerate(TRICKY)]
    batch = audit_prepare_many(rows, event_type="test.batch", actor=EOD, now=now)
    before = AuditEvent.objects.count()

    written = audit_record_many(batch if as_batch else batch.events())

    assert written == len(rows) == AuditEvent.objects.count() - before
    stored = list(AuditEvent.objects.filter(event_type="test.batch").order_by("seq"))
    assert [e.event_id for e in stored] == batch.columns["event_id"]
    assert [e.after for e in stored] == [batch.event(i).fields["after"] for i in range(len(rows))]
    report = chain_verify()
    assert report.intact, report.problem


def test_events_that_differ_in_any_field_append_and_verify():
    now = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)
    alice = maker("alice")
    events = [
        audit_prepare(event_type="test.mixed", actor=EOD, target_id="a", now=now, after={"k": TRICKY[1]}),
        audit_prepare(event_type="test.other", actor=Actor.from_user(alice), target_id=7, result="REFUSED",
                      now=now + dt.timedelta(microseconds=1), before={"x": [1, 2.5, None]}, error_code="E"),
    ]  # fmt: skip
    assert audit_record_many(events) == 2
    assert [e.actor for e in AuditEvent.objects.filter(event_type__startswith="test.").order_by("seq")] == [
        "system:end_of_day", "alice",
    ]  # fmt: skip
    assert chain_verify().intact
    assert audit_record_many([]) == 0


def test_a_batch_refuses_rows_that_do_not_line_up():
    with pytest.raises(ValueError, match="cannot differ per event"):
        audit_prepare_many([{"actor": "x"}], event_type="t")
    with pytest.raises(ValueError, match="the same fields"):
        audit_prepare_many([{"target_id": "a"}, {"case_ref": "b"}], event_type="t")
    with pytest.raises(ValueError, match="shared and per event"):
        audit_prepare_many([{"target_id": "a"}], event_type="t", target_id="b")
    assert len(audit_prepare_many([], event_type="t")) == 0
