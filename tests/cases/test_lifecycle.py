"""Case lifecycle: which transitions are legal from where, what resolve, reopen and cancel need,
who may move a case, SLA clocks and the SLA sweep. Every refusal changes nothing and is audited."""

import datetime as dt
import io
import re
import zoneinfo

import pytest
from django.core.management import call_command

from audit.models import AuditEvent, AuditResult
from backoffice.errors import (
    IllegalTransition,
    NotFound,
    PermissionMissing,
    PolicyDenied,
    StaleTarget,
    ValidationFailed,
)
from cases import registry
from cases.models import CaseStatus, CaseType, OpsCase, Severity
from cases.services import (
    OPERATOR_TRANSITIONS,
    case_take,
    case_transition,
    cases_sla_sweep,
    evidence_add,
    finding_add,
    legal_transitions,
)
from cases.sla import sla_clock
from tests.factories.cases import (
    PATHS,
    SYSTEM,
    T0,
    Upload,
    actor_for,
    assigned_case,
    at,
    case_state,
    drive_to,
    fetch,
    last_refusal,
    open_case,
    refusals,
    rolled_back,
    team_user,
    transition,
)

pytestmark = pytest.mark.django_db

MANILA = zoneinfo.ZoneInfo("Asia/Manila")
SWEEPER = SYSTEM

# The legality matrix, written out independently of the model: transition -> {from: to}.
LEGAL = {
    "triage": {"OPEN": "TRIAGED", "REOPENED": "TRIAGED"},
    "start": {"OPEN": "IN_PROGRESS", "TRIAGED": "IN_PROGRESS", "REOPENED": "IN_PROGRESS"},
    "wait_external": {"IN_PROGRESS": "WAITING_EXTERNAL"},
    # WAITING_APPROVAL is left by the approvals engine only, never by an operator.
    "resume": {"WAITING_EXTERNAL": "IN_PROGRESS"},
    "resolve": {s: "RESOLVED" for s in ("OPEN", "TRIAGED", "IN_PROGRESS", "WAITING_EXTERNAL", "REOPENED")},
    "close": {"RESOLVED": "CLOSED"},
    "reopen": {"RESOLVED": "REOPENED", "CLOSED": "REOPENED"},
    "cancel": {"OPEN": "CANCELLED", "TRIAGED": "CANCELLED", "REOPENED": "CANCELLED"},
}


def manila(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=MANILA)


@pytest.fixture
def alice(db):
    return team_user("payment_ops", "alice")


@pytest.fixture
def bob(db):
    return team_user("payment_ops", "bob")


@pytest.fixture
def fiona(db):
    return team_user("finance_ops", "fiona")


def assert_refused(case_number: str, before: dict, error_code: str, action: str) -> None:
    assert case_state(case_number) == before
    refusal = last_refusal(case_number)
    assert (refusal.result, refusal.error_code, refusal.action_type, refusal.case_ref) == (
        AuditResult.REFUSED,
        error_code,
        action,
        case_number,
    )


class TestTransitionMatrix:
    def test_the_matrix_covers_every_operator_transition_and_reachable_status(self):
        assert set(LEGAL) == set(OPERATOR_TRANSITIONS)
        assert set(PATHS) == set(CaseStatus.values)

    @pytest.mark.parametrize("status", list(PATHS))
    def test_every_operator_transition_from(self, alice, status, subtests):
        # given a case of alice's in `status`
        actor = actor_for(alice)
        case = drive_to(assigned_case(alice), status, actor)
        before = case_state(case.case_number)
        row = [name for name in OPERATOR_TRANSITIONS if status in LEGAL[name]]
        assert legal_transitions(fetch(case.case_number)) == row
        for name in OPERATOR_TRANSITIONS:
            # each transition is tried on the same case, rolled back afterwards
            with subtests.test(transition=name), rolled_back():
                expected = LEGAL[name].get(status)
                if expected is not None:
                    # when the assignee asks for a legal transition, then it happens, once, audited
                    moved = transition(case.case_number, name, actor, at(5))
                    after = fetch(case.case_number)
                    assert (moved.status, after.status) == (expected, expected)
                    assert after.version == before["row"]["version"] + 1
                    assert after.history.count() == before["history"] + 1
                    events = AuditEvent.objects.filter(target_id=case.case_number, event_type=f"case.{name}")
                    event = events.latest("seq")
                    assert (event.before["status"], event.after["status"]) == (status, expected)
                else:
                    # when it is not legal from here, then nothing changes and the refusal is audited
                    with pytest.raises(IllegalTransition, match=re.escape(case.case_number)):
                        transition(case.case_number, name, actor, at(5))
                    assert_refused(case.case_number, before, "ILLEGAL_TRANSITION", f"CASE_{name.upper()}")
            assert case_state(case.case_number) == before  # the rollback isolated the attempt

    def test_the_approvals_engine_enters_and_leaves_waiting_approval(self, alice):
        case = drive_to(assigned_case(alice), "IN_PROGRESS", actor_for(alice))
        assert transition(case.case_number, "wait_approval", SYSTEM, at(1)).status == "WAITING_APPROVAL"
        assert transition(case.case_number, "resume", SYSTEM, at(2)).status == "IN_PROGRESS"

    @pytest.mark.parametrize("name", ["wait_approval", "explode", ""])
    def test_an_operator_cannot_name_an_engine_or_unknown_transition(self, alice, name):
        case = drive_to(assigned_case(alice), "IN_PROGRESS", actor_for(alice))
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="unknown case transition"):
            transition(case.case_number, name, actor_for(alice), at(1))
        assert_refused(case.case_number, before, "VALIDATION_FAILED", f"CASE_{name.upper()}")


class TestResolve:
    @pytest.mark.parametrize(
        ("code", "summary", "message"),
        [
            ("", "Fixed it", "choose a resolution code"),
            ("MAGIC", "Fixed it", "choose a resolution code"),
            ("FIXED", "", "resolution summary is required"),
            ("FIXED", "   ", "resolution summary is required"),
        ],
    )
    def test_needs_a_code_and_a_summary(self, alice, code, summary, message):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match=message):
            transition(case.case_number, "resolve", actor_for(alice), at(1), resolution_code=code,
                       resolution_summary=summary)  # fmt: skip
        assert_refused(case.case_number, before, "VALIDATION_FAILED", "CASE_RESOLVE")

    def test_records_the_resolution(self, alice):
        case = assigned_case(alice)
        transition(case.case_number, "resolve", actor_for(alice), at(7), resolution_code="NO_ACTION_NEEDED",
                   resolution_summary="Duplicate alert; capture settled normally.")  # fmt: skip
        case = fetch(case.case_number)
        assert (case.status, case.resolution_code, case.resolution_summary, case.resolved_at) == (
            "RESOLVED",
            "NO_ACTION_NEEDED",
            "Duplicate alert; capture settled normally.",
            at(7),
        )
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.resolve")
        assert (event.reason_code, event.actor) == ("NO_ACTION_NEEDED", "alice")

    @pytest.mark.parametrize("severity", [Severity.HIGH, Severity.CRITICAL])
    def test_high_severity_needs_a_verification_finding(self, alice, severity):
        # given a high-severity case with only a root-cause finding
        case = assigned_case(alice, severity=severity)
        actor = actor_for(alice)
        finding_add(case_number=case.case_number, finding_type="ROOT_CAUSE", source="provider_api",
                    conclusion="Provider timed out", actor=actor, now=at(1))  # fmt: skip
        before = case_state(case.case_number)
        # when the assignee resolves it, then it is refused: a root cause is not a verification
        with pytest.raises(PolicyDenied, match=f"a {severity.lower()} severity case needs a verification finding"):
            transition(case.case_number, "resolve", actor, at(2))
        assert_refused(case.case_number, before, "POLICY_DENIED", "CASE_RESOLVE")
        # when a verification finding is recorded, then it resolves
        finding_add(case_number=case.case_number, finding_type="VERIFICATION", source="ledger",
                    conclusion="Ledger shows the capture", actor=actor, now=at(3))  # fmt: skip
        assert transition(case.case_number, "resolve", actor, at(4)).status == "RESOLVED"

    def test_attached_evidence_counts_as_verification(self, alice, settings, tmp_path):
        settings.CASE_EVIDENCE_ROOT = tmp_path
        case = assigned_case(alice, severity=Severity.CRITICAL)
        evidence_add(case_number=case.case_number, upload=Upload("confirmation.pdf", b"%PDF-1.4\n%%EOF\n"),
                     evidence_type="PROVIDER_RESPONSE", classification="INTERNAL", retention_class="FINANCIAL_10Y",
                     actor=actor_for(alice), now=at(1))  # fmt: skip
        assert transition(case.case_number, "resolve", actor_for(alice), at(2)).status == "RESOLVED"

    @pytest.mark.parametrize("severity", [Severity.LOW, Severity.MEDIUM])
    def test_lower_severity_resolves_without_verification(self, alice, severity):
        case = assigned_case(alice, severity=severity)
        assert transition(case.case_number, "resolve", actor_for(alice), at(1)).status == "RESOLVED"


@pytest.fixture
def guard():
    """A registered close guard objecting for the case numbers in the returned set."""
    objecting: set[str] = set()
    registry.register_close_guard(
        "test_pending_refund",
        lambda case: "a refund request is still pending" if case.case_number in objecting else None,
    )
    yield objecting
    registry.unregister_close_guard("test_pending_refund")


class TestCloseGuards:
    def test_a_guard_blocks_resolve_with_its_message(self, alice, guard):
        case = assigned_case(alice)
        guard.add(case.case_number)
        before = case_state(case.case_number)
        with pytest.raises(PolicyDenied) as refused:
            transition(case.case_number, "resolve", actor_for(alice), at(1))
        assert refused.value.message == "cannot resolve yet: a refund request is still pending (test_pending_refund)"
        assert_refused(case.case_number, before, "POLICY_DENIED", "CASE_RESOLVE")
        guard.discard(case.case_number)
        assert transition(case.case_number, "resolve", actor_for(alice), at(2)).status == "RESOLVED"

    def test_a_guard_blocks_close_with_its_message(self, alice, guard):
        case = drive_to(assigned_case(alice), "RESOLVED", actor_for(alice))
        guard.add(case.case_number)
        before = case_state(case.case_number)
        with pytest.raises(PolicyDenied) as refused:
            transition(case.case_number, "close", actor_for(alice), at(1))
        assert refused.value.message == "cannot close yet: a refund request is still pending (test_pending_refund)"
        assert_refused(case.case_number, before, "POLICY_DENIED", "CASE_CLOSE")
        guard.discard(case.case_number)
        assert transition(case.case_number, "close", actor_for(alice), at(2)).status == "CLOSED"

    def test_a_guard_on_another_case_does_not_block(self, alice, guard):
        case = assigned_case(alice)
        guard.add("CASE-2026-999999")
        assert transition(case.case_number, "resolve", actor_for(alice), at(1)).status == "RESOLVED"

    def test_an_illegal_close_is_illegal_even_while_a_guard_objects(self, alice, guard):
        case = assigned_case(alice)
        guard.add(case.case_number)
        before = case_state(case.case_number)
        with pytest.raises(IllegalTransition, match="Close is not allowed from open"):
            transition(case.case_number, "close", actor_for(alice), at(1))
        assert_refused(case.case_number, before, "ILLEGAL_TRANSITION", "CASE_CLOSE")

    def test_unregistered_guard_no_longer_objects(self, alice):
        registry.register_close_guard("test_always", lambda case: "never")
        registry.unregister_close_guard("test_always")
        case = assigned_case(alice)
        assert registry.close_objections(case) == []


class TestReopenAndCancel:
    @pytest.mark.parametrize("reason", ["", "   "])
    def test_reopen_needs_a_reason(self, alice, reason):
        case = drive_to(assigned_case(alice), "RESOLVED", actor_for(alice))
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="a reason is required"):
            transition(case.case_number, "reopen", actor_for(alice), at(1), reason_text=reason)
        assert_refused(case.case_number, before, "VALIDATION_FAILED", "CASE_REOPEN")

    @pytest.mark.parametrize("reason", ["", "   "])
    def test_cancel_needs_a_reason(self, alice, reason):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="a reason is required"):
            transition(case.case_number, "cancel", actor_for(alice), at(1), reason_text=reason)
        assert_refused(case.case_number, before, "VALIDATION_FAILED", "CASE_CANCEL")

    def test_cancel_records_its_reason(self, alice):
        case = assigned_case(alice)
        transition(case.case_number, "cancel", actor_for(alice), at(1), reason_text="Opened on the wrong merchant")
        assert fetch(case.case_number).status == "CANCELLED"
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.cancel")
        assert event.reason_text == "Opened on the wrong merchant"

    def test_reopen_keeps_history_and_starts_a_new_clock(self, alice):
        # given a MEDIUM case (due Tuesday 09:00 Manila) breached by the sweep, then resolved
        actor = actor_for(alice)
        case = assigned_case(alice, severity=Severity.MEDIUM)
        assert cases_sla_sweep(now=at(2 * 24 * 60), actor=SWEEPER) == 1
        transition(case.case_number, "resolve", actor, at(2 * 24 * 60 + 5), resolution_code="FIXED",
                   resolution_summary="Re-sent the settlement file")  # fmt: skip
        # when it is reopened on Thursday 5 March 2026, 10:00 Manila
        reopened_at = manila(2026, 3, 5, 10, 0).astimezone(dt.UTC)
        transition(case.case_number, "reopen", actor, reopened_at, reason_text="Merchant says still unpaid")
        case = fetch(case.case_number)
        # then a new clock runs from the reopen (1 business day), the breach is cleared
        assert case.status == "REOPENED"
        assert case.sla_due_at == manila(2026, 3, 6, 10, 0)
        assert case.sla_warn_at == manila(2026, 3, 6, 8, 0)
        assert (case.sla_breached_at, case.resolved_at, case.closed_at) == (None, None, None)
        # and the earlier resolution stays on the record and in the history
        assert (case.resolution_code, case.resolution_summary) == ("FIXED", "Re-sent the settlement file")
        statuses = list(case.history.order_by("history_id").values_list("status", "resolution_code"))
        assert statuses == [
            ("OPEN", ""),  # opened
            ("OPEN", ""),  # taken
            ("OPEN", ""),  # SLA breach marked
            ("RESOLVED", "FIXED"),
            ("REOPENED", "FIXED"),
        ]
        resolved = case.history.get(status="RESOLVED")
        assert (resolved.resolved_at, resolved.sla_breached_at) == (at(2 * 24 * 60 + 5), at(2 * 24 * 60))
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.reopen")
        assert (event.reason_text, event.before["status"], event.after["status"]) == (
            "Merchant says still unpaid",
            "RESOLVED",
            "REOPENED",
        )

    def test_a_reopened_case_is_resolved_again_with_a_new_resolution(self, alice):
        actor = actor_for(alice)
        case = drive_to(assigned_case(alice), "REOPENED", actor)
        transition(case.case_number, "resolve", actor, at(9), resolution_code="WONT_FIX",
                   resolution_summary="Accepted loss")  # fmt: skip
        case = fetch(case.case_number)
        assert (case.status, case.resolution_code, case.resolved_at) == ("RESOLVED", "WONT_FIX", at(9))


class TestWhoMayTransition:
    def test_stale_expected_version_changes_nothing(self, alice):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(StaleTarget, match=f"version {case.version - 1}, now {case.version}"):
            transition(case.case_number, "start", actor_for(alice), at(1), expected_version=case.version - 1)
        assert_refused(case.case_number, before, "STALE_TARGET", "CASE_START")
        moved = transition(case.case_number, "start", actor_for(alice), at(2), expected_version=case.version)
        assert (moved.status, moved.version) == ("IN_PROGRESS", case.version + 1)

    def test_a_team_member_who_is_not_the_assignee_is_refused(self, alice, bob):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(PermissionMissing, match=r"only the case's assignee may start work; .* assigned to alice"):
            transition(case.case_number, "start", actor_for(bob), at(1))
        assert_refused(case.case_number, before, "PERMISSION_DENIED", "CASE_START")

    def test_nobody_works_an_unassigned_case(self, alice):
        case = open_case()
        before = case_state(case.case_number)
        with pytest.raises(PermissionMissing, match="assigned to nobody"):
            transition(case.case_number, "triage", actor_for(alice), at(1))
        assert_refused(case.case_number, before, "PERMISSION_DENIED", "CASE_TRIAGE")

    def test_an_outsider_is_told_the_case_does_not_exist(self, alice, fiona):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(NotFound) as refused:
            transition(case.case_number, "start", actor_for(fiona), at(1))
        assert refused.value.message == f"no case {case.case_number}"
        assert_refused(case.case_number, before, "NOT_FOUND", "CASE_START")

    def test_the_message_for_a_hidden_case_equals_the_one_for_a_missing_case(self, fiona):
        with pytest.raises(NotFound) as missing:
            transition("CASE-2026-999998", "start", actor_for(fiona), at(1))
        assert missing.value.message == "no case CASE-2026-999998"
        assert last_refusal("CASE-2026-999998").error_code == "NOT_FOUND"

    def test_a_system_actor_may_transition(self):
        case = open_case()
        moved = transition(case.case_number, "start", SYSTEM, at(1))
        assert moved.status == "IN_PROGRESS"
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.start")
        assert event.actor == "system:case_tests"


def due(severity, case_type=CaseType.PAYMENT_INVESTIGATION, start=T0):
    clock = sla_clock(severity=severity, case_type=case_type, start=start)
    return clock.due_at, clock.warn_at


class TestSlaClock:
    @pytest.mark.parametrize(
        ("severity", "case_type", "minutes", "warn_minutes"),
        [
            ("CRITICAL", CaseType.PAYMENT_INVESTIGATION, 60, 15),
            ("HIGH", CaseType.PAYMENT_INVESTIGATION, 240, 60),
            ("LOW", CaseType.PAYMENT_INVESTIGATION, 3 * 24 * 60, 240),
            ("CRITICAL", CaseType.INCIDENT, 30, 10),
            ("HIGH", CaseType.INCIDENT, 120, 30),
            ("LOW", CaseType.INCIDENT, 3 * 24 * 60, 240),  # no incident row: the default applies
        ],
    )
    def test_minute_policies(self, severity, case_type, minutes, warn_minutes):
        due_at, warn_at = due(severity, case_type)
        assert due_at == T0 + dt.timedelta(minutes=minutes)
        assert warn_at == due_at - dt.timedelta(minutes=warn_minutes)

    def test_low_counts_calendar_days_across_a_weekend(self):
        friday = manila(2026, 3, 6, 17, 0)
        assert due("LOW", start=friday)[0] == manila(2026, 3, 9, 17, 0)

    @pytest.mark.parametrize(
        ("start", "expected"),
        [
            (manila(2026, 3, 2, 9, 0), manila(2026, 3, 3, 9, 0)),  # Monday -> Tuesday
            (manila(2026, 3, 6, 17, 0), manila(2026, 3, 9, 17, 0)),  # Friday 17:00 -> Monday 17:00
            (manila(2026, 3, 5, 23, 30), manila(2026, 3, 6, 23, 30)),  # Thursday late -> Friday
            (manila(2026, 3, 7, 10, 0), manila(2026, 3, 10, 9, 0)),  # Saturday counts from Monday 09:00
            (manila(2026, 3, 8, 22, 0), manila(2026, 3, 10, 9, 0)),  # so does Sunday
        ],
    )
    def test_medium_is_one_business_day_in_manila(self, start, expected):
        due_at, warn_at = due("MEDIUM", start=start.astimezone(dt.UTC))
        assert due_at == expected
        assert warn_at == expected - dt.timedelta(minutes=120)
        assert due_at.tzinfo == dt.UTC

    def test_medium_incident_falls_back_to_the_default(self):
        assert due("MEDIUM", CaseType.INCIDENT)[0] == manila(2026, 3, 3, 9, 0)

    def test_an_opened_case_carries_its_clock(self):
        case = open_case(case_type=CaseType.INCIDENT, severity=Severity.CRITICAL)
        assert (case.owner_team, case.priority, case.sla_due_at, case.sla_warn_at) == ("sre", 1, at(30), at(20))


class TestSlaSweep:
    def test_marks_only_open_cases_past_due_once(self, alice):
        actor = actor_for(alice)
        crit = assigned_case(alice, severity=Severity.CRITICAL)  # due T0+60 min, P1
        high = assigned_case(alice, severity=Severity.HIGH)  # due T0+240 min, P2
        medium = assigned_case(alice, severity=Severity.MEDIUM)  # due Tuesday 09:00 Manila (T0+1 day), P3
        waiting = drive_to(assigned_case(alice, severity=Severity.MEDIUM), "WAITING_EXTERNAL", actor)
        low = assigned_case(alice, severity=Severity.LOW)  # due T0+3 days
        resolved = drive_to(assigned_case(alice, severity=Severity.MEDIUM), "RESOLVED", actor)
        cancelled = drive_to(assigned_case(alice, severity=Severity.CRITICAL), "CANCELLED", actor)
        untouched = {c.case_number: case_state(c.case_number) for c in (low, resolved, cancelled)}

        # when the sweep runs on Wednesday (T0 + 2 days)
        now = at(2 * 24 * 60)
        assert cases_sla_sweep(now=now, actor=SWEEPER) == 4

        # then each open case past due is marked, escalated one step and audited once
        for case, priority in ((crit, 1), (high, 1), (medium, 2), (waiting, 2)):
            swept = fetch(case.case_number)
            assert (swept.sla_breached_at, swept.escalation_level, swept.priority) == (now, 1, priority)
            assert swept.version == case.version + 1
            (event,) = AuditEvent.objects.filter(target_id=case.case_number, event_type="case.sla_breached")
            assert (event.actor, event.result, event.after["escalation_level"]) == ("system:case_tests", "SUCCEEDED", 1)
            assert event.after["priority"] == priority
        # and a case not yet due, a resolved and a cancelled case are untouched
        for number, state in untouched.items():
            assert case_state(number) == state

        # when the sweep runs again, then nothing more is marked
        events = AuditEvent.objects.filter(event_type="case.sla_breached").count()
        versions = list(OpsCase.objects.order_by("pk").values_list("version", flat=True))
        assert cases_sla_sweep(now=at(2 * 24 * 60 + 30), actor=SWEEPER) == 0
        assert AuditEvent.objects.filter(event_type="case.sla_breached").count() == events
        assert list(OpsCase.objects.order_by("pk").values_list("version", flat=True)) == versions

    def test_due_exactly_now_is_not_yet_breached(self):
        case = open_case(severity=Severity.CRITICAL)
        assert cases_sla_sweep(now=at(60), actor=SWEEPER) == 0
        assert fetch(case.case_number).sla_breached_at is None
        assert cases_sla_sweep(now=at(60) + dt.timedelta(microseconds=1), actor=SWEEPER) == 1

    def test_a_reopened_case_is_marked_again_after_its_new_clock(self, alice):
        actor = actor_for(alice)
        case = assigned_case(alice, severity=Severity.MEDIUM)
        assert cases_sla_sweep(now=at(2 * 24 * 60), actor=SWEEPER) == 1  # P3 -> P2, level 1
        transition(case.case_number, "resolve", actor, at(2 * 24 * 60 + 1))
        reopened_at = manila(2026, 3, 5, 10, 0).astimezone(dt.UTC)  # new due: Friday 10:00 Manila
        transition(case.case_number, "reopen", actor, reopened_at)
        assert cases_sla_sweep(now=manila(2026, 3, 6, 9, 59).astimezone(dt.UTC), actor=SWEEPER) == 0
        second = manila(2026, 3, 6, 10, 1).astimezone(dt.UTC)
        assert cases_sla_sweep(now=second, actor=SWEEPER) == 1
        swept = fetch(case.case_number)
        # reopening restarted priority from severity (P3); the new breach moves it one step (P2)
        assert (swept.sla_breached_at, swept.escalation_level, swept.priority) == (second, 2, 2)
        assert AuditEvent.objects.filter(target_id=case.case_number, event_type="case.sla_breached").count() == 2

    def test_batches_cover_every_due_case(self):
        numbers = [open_case(severity=Severity.CRITICAL).case_number for _ in range(5)]
        assert cases_sla_sweep(now=at(61), actor=SWEEPER, batch_size=2) == 5
        assert OpsCase.objects.filter(case_number__in=numbers, sla_breached_at=at(61)).count() == 5

    def test_the_command_prints_how_many_it_marked(self):
        # given a case opened long ago (the command reads the wall clock)
        old = open_case(severity=Severity.CRITICAL, now=dt.datetime(2020, 1, 6, 1, 0, tzinfo=dt.UTC))
        out = io.StringIO()
        call_command("cases_sla_sweep", stdout=out)
        assert out.getvalue() == "SLA sweep: 1 case(s) newly marked as breached and escalated\n"
        assert fetch(old.case_number).escalation_level == 1
        event = AuditEvent.objects.get(target_id=old.case_number, event_type="case.sla_breached")
        assert event.actor == "system:sla_sweeper"
        out = io.StringIO()
        call_command("cases_sla_sweep", stdout=out)
        assert out.getvalue() == "SLA sweep: 0 case(s) newly marked as breached and escalated\n"

    def test_the_task_reports_how_many_it_marked(self):
        from cases.tasks import cases_sla_sweep as task

        open_case(severity=Severity.HIGH, now=dt.datetime(2020, 1, 6, 1, 0, tzinfo=dt.UTC))
        assert task() == {"marked": 1}
        assert task() == {"marked": 0}


class TestCaseNumbers:
    def test_numbers_follow_the_format_and_are_unique(self):
        numbers = [open_case(now=at(i)).case_number for i in range(6)]
        assert all(re.fullmatch(r"CASE-2026-\d{6}", n) for n in numbers), numbers
        assert len(set(numbers)) == 6
        sequence = [int(n[-6:]) for n in numbers]
        assert sequence == sorted(sequence)

    def test_the_year_is_the_business_year(self):
        # 31 December 2026 17:00 UTC is already 1 January 2027 in Manila
        case = open_case(now=dt.datetime(2026, 12, 31, 17, 0, tzinfo=dt.UTC))
        assert re.fullmatch(r"CASE-2027-\d{6}", case.case_number)

    def test_an_opened_case_is_unassigned_in_its_team_queue_and_audited(self):
        case = open_case(case_type=CaseType.RECONCILIATION_BREAK, severity=Severity.HIGH, merchant_ref=" m_9 ")
        case = fetch(case.case_number)
        assert (case.status, case.owner_team, case.owner_user, case.priority, case.severity_rank) == (
            "OPEN",
            "finance_ops",
            None,
            2,
            3,
        )
        assert (case.merchant_ref, case.version, case.escalation_level, case.created_by) == (
            "m_9",
            1,
            0,
            "system:case_tests",
        )
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.opened")
        assert (event.action_type, event.after["owner_team"]) == ("CASE_OPEN", "finance_ops")


class TestOpenRefusals:
    def _counts(self):
        return OpsCase.objects.count(), OpsCase.history.count()

    @pytest.mark.parametrize("role", ["auditor", "finance_manager"])
    def test_readers_cannot_open_cases(self, role):
        before = self._counts()
        with pytest.raises(PermissionMissing, match=r"cases\.add_opscase"):
            open_case(actor=actor_for(team_user(role)))
        assert self._counts() == before
        assert last_refusal("new case").action_type == "CASE_OPEN"

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("severity", "URGENT", "unknown severity 'URGENT'"),
            ("case_type", "GOSSIP", "unknown case type 'GOSSIP'"),
            ("owner_team", "marketing", "unknown team 'marketing'"),
            ("title", "", "title is required"),
            ("title", "Card 4111 1111 1111 1111 declined", "looks like a full card number"),
        ],
    )
    def test_bad_input_opens_nothing(self, alice, field, value, message):
        before, refused = self._counts(), refusals("new case").count()
        with pytest.raises(ValidationFailed, match=message):
            open_case(actor=actor_for(alice), **{field: value})
        assert self._counts() == before
        assert refusals("new case").count() == refused + 1
        assert "4111 1111 1111 1111" not in last_refusal("new case").error_message

    def test_a_team_member_opens_a_case(self, alice):
        case = open_case(actor=actor_for(alice))
        assert case.created_by == "alice"
        # opening does not assign: alice takes it like anyone in her team
        taken = case_take(case_number=case.case_number, actor=actor_for(alice), now=at(1))
        assert taken.owner_user_id == alice.pk


def test_transitioning_without_an_actor_user_row_is_refused():
    from backoffice.actors import ANONYMOUS

    case = open_case()
    before = case_state(case.case_number)
    with pytest.raises(PermissionMissing, match="signed-in user"):
        case_transition(case_number=case.case_number, transition="start", actor=ANONYMOUS, now=at(1))
    assert case_state(case.case_number) == before
