"""Exception intake: one open case per root cause, repeats as occurrences, severity that only rises,
recurrences as new linked cases, and refused reports that create nothing."""

import datetime as dt

import pytest

from audit.models import AuditEvent, AuditResult
from backoffice.errors import ValidationFailed
from cases.models import CaseLink, CaseType, ExceptionOccurrence, OpsCase, Severity
from cases.services import exception_fingerprint, exception_report, normalize_detail
from tests.factories.cases import SYSTEM, T0, at, fetch, last_refusal, transition

pytestmark = pytest.mark.django_db

REPORTER = SYSTEM


def report(minutes: float = 0, **overrides):
    fields = {
        "source_system": "gateway",
        "business_key": "pi_123",
        "exception_type": "capture_failed",
        "error_code": "PROVIDER_TIMEOUT",
        "detail": "Provider timed out after 3000 ms (attempt 1)",
        "severity": Severity.LOW,
        "now": at(minutes),
        "actor": REPORTER,
    }
    fields.update(overrides)
    return exception_report(**fields)


def counts():
    return OpsCase.objects.count(), ExceptionOccurrence.objects.count(), CaseLink.objects.count()


class TestFingerprint:
    def test_numbers_uuids_and_timestamps_are_normalised_away(self):
        first = (
            "Capture 88412 failed for attempt 3f2b9c1e-8d4a-4c7e-9b1a-2f6e0c5d7a91 at 2026-03-02T09:00:01.123Z "
            "(trace 9f86d081884c7d659a2feaa0c55ad015)"
        )
        second = (
            "capture 91 failed  for attempt 0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D at 2026-03-03 17:45:59+08:00 "
            "(trace 2c26b46b68ffc68ff99b453c1d304134)"
        )
        assert normalize_detail(first) == normalize_detail(second)
        assert normalize_detail(first) == "capture <n> failed for attempt <uuid> at <time> (trace <hex>)"

    def test_same_root_cause_is_one_case(self):
        case, opened = report(detail="Timed out after 3000 ms, txn 3f2b9c1e-8d4a-4c7e-9b1a-2f6e0c5d7a91")
        again, opened_again = report(1, detail="Timed out after 29 ms, txn 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
        assert (opened, opened_again, again.pk) == (True, False, case.pk)
        assert fetch(case.case_number).occurrence_count == 2

    def test_the_fingerprint_ignores_case_and_padding_of_codes_but_not_the_business_key(self):
        base = {"source_system": "gateway", "exception_type": "capture_failed", "error_code": "E1",
                "normalized_detail": "x"}  # fmt: skip
        fp = exception_fingerprint(business_key="pi_1", **base)
        assert fp == exception_fingerprint(business_key=" pi_1 ", **{**base, "error_code": " e1 "})
        assert fp != exception_fingerprint(business_key="PI_1", **base)
        assert len(fp) == 64

    @pytest.mark.parametrize(
        "change",
        [
            {"error_code": "PROVIDER_DECLINED"},
            {"business_key": "pi_124"},
            {"exception_type": "refund_failed"},
            {"source_system": "settlement"},
            {"detail": "Provider refused the request (attempt 1)"},
        ],
    )
    def test_a_different_problem_is_a_different_case(self, change):
        first, _ = report()
        other, opened = report(1, **change)
        assert opened is True
        assert other.pk != first.pk and other.fingerprint != first.fingerprint
        assert (fetch(first.case_number).occurrence_count, fetch(other.case_number).occurrence_count) == (1, 1)
        assert ExceptionOccurrence.objects.filter(case=first).count() == 1


class TestOccurrences:
    def test_a_new_report_opens_a_case_with_one_occurrence(self):
        case, opened = report(detail="Timeout 3000 ms", trace_id="tr-1", raw_evidence_ref="s3://logs/1",
                              merchant_ref="m_7")  # fmt: skip
        case = fetch(case.case_number)
        assert opened is True
        assert (case.status, case.owner_team, case.owner_user, case.severity, case.priority) == (
            "OPEN", "payment_ops", None, "LOW", 4,
        )  # fmt: skip
        assert (case.source_system, case.business_key, case.merchant_ref) == ("gateway", "pi_123", "m_7")
        assert (case.occurrence_count, case.last_occurred_at) == (1, T0)
        assert case.title == "gateway capture_failed PROVIDER_TIMEOUT on pi_123"
        occurrence = ExceptionOccurrence.objects.get(case=case)
        assert (occurrence.normalized_message, occurrence.trace_id, occurrence.raw_evidence_ref) == (
            "timeout <n> ms", "tr-1", "s3://logs/1",
        )  # fmt: skip
        opened_event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.opened")
        assert (opened_event.action_type, opened_event.after["recurrence_of"]) == ("EXCEPTION_REPORT", None)
        assert not AuditEvent.objects.filter(target_id=case.case_number, event_type="case.occurrence_recorded")

    def test_repeats_add_occurrences_and_are_audited(self):
        case, _ = report(0)
        report(10, occurred_at=at(9), trace_id="tr-2")
        report(20, occurred_at=at(5), trace_id="tr-3")  # arrives late: an older sighting
        case = fetch(case.case_number)
        assert case.occurrence_count == 3
        assert case.last_occurred_at == at(9)  # the latest sighting, not the latest report
        rows = list(ExceptionOccurrence.objects.filter(case=case).values_list("occurred_at", "recorded_at", "trace_id"))
        assert rows == [(at(0), at(0), ""), (at(9), at(10), "tr-2"), (at(5), at(20), "tr-3")]
        events = AuditEvent.objects.filter(target_id=case.case_number, event_type="case.occurrence_recorded")
        assert [(e.after["occurrence_count"], e.after["trace_id"], e.result) for e in events.order_by("seq")] == [
            (2, "tr-2", AuditResult.SUCCEEDED),
            (3, "tr-3", AuditResult.SUCCEEDED),
        ]

    def test_card_numbers_never_reach_the_stored_message(self):
        case, _ = report(detail="Card 4111 1111 1111 1111 declined; retry with 5500-0055-5555-5559")
        occurrence = ExceptionOccurrence.objects.get(case=case)
        assert occurrence.normalized_message == "card ****<n> declined; retry with ****<n>"
        assert fetch(case.case_number).description == "card ****<n> declined; retry with ****<n>"

    def test_a_masked_card_does_not_split_the_root_cause(self):
        case, _ = report(detail="Card 4111 1111 1111 1111 declined")
        again, opened = report(1, detail="Card 5500 0055 5555 5559 declined")
        assert (again.pk, opened) == (case.pk, False)


class TestSeverity:
    def test_rises_to_the_reported_severity_and_tightens_the_sla(self):
        case, _ = report(0, severity=Severity.LOW)
        assert case.sla_due_at == T0 + dt.timedelta(days=3)
        report(30, severity=Severity.HIGH)
        case = fetch(case.case_number)
        assert (case.severity, case.severity_rank, case.priority) == ("HIGH", 3, 2)
        assert (case.sla_due_at, case.sla_warn_at) == (at(30 + 240), at(30 + 180))
        event = AuditEvent.objects.get(target_id=case.case_number, event_type="case.severity_escalated")
        assert (event.before["severity"], event.after["severity"]) == ("LOW", "HIGH")
        assert event.reason_text == "2 occurrences; latest reported as HIGH"

    def test_never_lowers(self):
        case, _ = report(0, severity=Severity.CRITICAL)
        for minute in range(1, 25):
            report(minute, severity=Severity.LOW)
        case = fetch(case.case_number)
        assert (case.severity, case.priority, case.sla_due_at, case.occurrence_count) == ("CRITICAL", 1, at(60), 25)
        assert not AuditEvent.objects.filter(target_id=case.case_number, event_type="case.severity_escalated")

    def test_repeats_raise_severity_at_five_and_twenty(self):
        case, _ = report(0, severity=Severity.LOW)
        for minute in range(1, 4):
            report(minute)
        assert fetch(case.case_number).severity == "LOW"  # 4 occurrences
        report(4)  # the fifth: at least MEDIUM, due one business day later (Tuesday 09:04 Manila)
        case = fetch(case.case_number)
        assert (case.severity, case.priority, case.sla_due_at) == ("MEDIUM", 3, at(4) + dt.timedelta(days=1))
        for minute in range(5, 19):
            report(minute)
        assert fetch(case.case_number).severity == "MEDIUM"  # 19 occurrences
        report(19)  # the twentieth: at least HIGH
        case = fetch(case.case_number)
        assert (case.severity, case.priority, case.sla_due_at, case.occurrence_count) == ("HIGH", 2, at(19 + 240), 20)
        escalations = AuditEvent.objects.filter(target_id=case.case_number, event_type="case.severity_escalated")
        assert [e.after["severity"] for e in escalations.order_by("seq")] == ["MEDIUM", "HIGH"]

    def test_a_looser_clock_is_never_applied(self):
        # given a HIGH incident, due at T0+120
        case, _ = report(0, severity=Severity.HIGH, case_type=CaseType.INCIDENT)
        assert case.sla_due_at == at(120)
        # when a CRITICAL report arrives much later, the new clock (now + 30) would be later: kept
        report(100, severity=Severity.CRITICAL, case_type=CaseType.INCIDENT)
        case = fetch(case.case_number)
        assert (case.severity, case.sla_due_at) == ("CRITICAL", at(120))


class TestRecurrence:
    def test_a_resolved_case_is_not_reopened_a_new_case_links_to_it(self):
        old, _ = report(0)
        transition(old.case_number, "resolve", SYSTEM, at(5))
        resolved_state = fetch(old.case_number)
        new, opened = report(10)
        assert opened is True and new.pk != old.pk
        assert new.fingerprint == old.fingerprint
        link = CaseLink.objects.get(case=new)
        assert (link.object_type, link.object_id, link.relation_type) == ("ops_case", old.case_number, "RECURRENCE_OF")
        old_now = fetch(old.case_number)
        assert (old_now.status, old_now.occurrence_count, old_now.version) == (
            "RESOLVED", 1, resolved_state.version,
        )  # fmt: skip
        opened_event = AuditEvent.objects.get(target_id=new.case_number, event_type="case.opened")
        assert opened_event.after["recurrence_of"] == old.case_number
        # and further reports join the new open case
        again, opened_again = report(11)
        assert (again.pk, opened_again, fetch(new.case_number).occurrence_count) == (new.pk, False, 2)

    def test_the_latest_done_case_is_the_one_linked(self):
        first, _ = report(0)
        transition(first.case_number, "cancel", SYSTEM, at(1))
        second, _ = report(2)
        transition(second.case_number, "resolve", SYSTEM, at(3))
        third, _ = report(4)
        assert list(CaseLink.objects.filter(case=third).values_list("object_id", flat=True)) == [second.case_number]


class TestRefusals:
    @pytest.mark.parametrize(
        ("overrides", "message", "target"),
        [
            ({"business_key": ""}, "needs business_key", "gateway:"),
            ({"business_key": "   "}, "needs business_key", "gateway:   "),
            ({"source_system": ""}, "needs source_system", ":pi_123"),
            ({"error_code": ""}, "needs error_code", "gateway:pi_123"),
            ({"exception_type": " "}, "needs exception_type", "gateway:pi_123"),
            ({"severity": "SEVERE"}, "unknown severity 'SEVERE'", "gateway:pi_123"),
            ({"severity": "low"}, "unknown severity 'low'", "gateway:pi_123"),
            ({"case_type": "GOSSIP"}, "case type 'GOSSIP'", "gateway:pi_123"),
        ],
    )
    def test_bad_input_creates_nothing_and_is_audited(self, overrides, message, target):
        before, events = counts(), AuditEvent.objects.filter(result=AuditResult.SUCCEEDED).count()
        with pytest.raises(ValidationFailed, match=message):
            report(**overrides)
        assert counts() == before
        assert AuditEvent.objects.filter(result=AuditResult.SUCCEEDED).count() == events
        refusal = last_refusal(target)
        assert (refusal.action_type, refusal.error_code, refusal.actor) == (
            "EXCEPTION_REPORT", "VALIDATION_FAILED", "system:case_tests",
        )  # fmt: skip

    def test_bad_input_on_an_open_root_cause_changes_nothing(self):
        case, _ = report(0)
        state = fetch(case.case_number)
        with pytest.raises(ValidationFailed):
            report(1, severity="EXTREME")
        again = fetch(case.case_number)
        assert (again.occurrence_count, again.version, again.severity) == (1, state.version, "LOW")
