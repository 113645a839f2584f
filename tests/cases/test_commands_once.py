"""A command sent twice is carried out once (idempotency keys), a stale page is refused on every
addition, a closed case takes nothing more, restricted notes stay with the team, the opener keeps
reading a case sent to another team, and the team can reopen a case nobody is assigned to."""

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from backoffice.errors import IdempotencyConflict, IllegalTransition, StaleTarget
from cases import permissions
from cases.models import CaseFinding, CaseNote, OpsCase
from cases.selectors import case_workbench
from cases.services import case_open, case_take, case_transition, finding_add, note_add
from tests.factories.cases import SYSTEM, actor_for, at, open_case, team_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return team_user("payment_ops", "alice_once")


def taken_case(user):
    case = open_case()
    case_take(case_number=case.case_number, actor=actor_for(user), now=at(1))
    return OpsCase.objects.get(pk=case.pk)


class TestIdempotentCommands:
    def test_opening_twice_with_one_key_is_one_case(self, alice):
        first = case_open(case_type="SUPPORT", severity="LOW", title="Refund question", actor=actor_for(alice),
                          now=at(), idempotency_key="form-1")  # fmt: skip
        again = case_open(case_type="SUPPORT", severity="LOW", title="Refund question", actor=actor_for(alice),
                          now=at(1), idempotency_key="form-1")  # fmt: skip
        assert again.pk == first.pk and OpsCase.objects.count() == 1
        assert AuditEvent.objects.filter(event_type="case.opened").count() == 1

    def test_a_note_or_finding_sent_twice_is_added_once(self, alice):
        case = taken_case(alice)
        for _ in range(2):
            note_add(case_number=case.case_number, note_type="COMMENT", body="called the bank", actor=actor_for(alice),
                     now=at(2), idempotency_key="note-1")  # fmt: skip
            finding_add(case_number=case.case_number, finding_type="ROOT_CAUSE", source="operator",
                        conclusion="timeout at the provider", actor=actor_for(alice), now=at(2),
                        idempotency_key="finding-1")  # fmt: skip
        assert CaseNote.objects.filter(case=case).count() == 1
        assert CaseFinding.objects.filter(case=case).count() == 1
        assert AuditEvent.objects.filter(event_type="case.note_added").count() == 1

    def test_a_key_reused_on_another_case_is_refused_and_audited(self, alice):
        first, second = taken_case(alice), taken_case(alice)
        note_add(case_number=first.case_number, note_type="COMMENT", body="one", actor=actor_for(alice), now=at(2),
                 idempotency_key="note-x")  # fmt: skip
        with pytest.raises(IdempotencyConflict):
            note_add(case_number=second.case_number, note_type="COMMENT", body="two", actor=actor_for(alice),
                     now=at(2), idempotency_key="note-x")  # fmt: skip
        assert not CaseNote.objects.filter(case=second).exists()
        assert AuditEvent.objects.filter(event_type="case.command_refused", error_code="IDEMPOTENCY_CONFLICT").exists()


class TestStalePagesAndClosedCases:
    @pytest.mark.parametrize("command", ["note", "finding"])
    def test_an_addition_from_a_stale_page_is_refused(self, alice, command):
        case = taken_case(alice)
        stale = case.version - 1
        with pytest.raises(StaleTarget):
            if command == "note":
                note_add(case_number=case.case_number, note_type="COMMENT", body="late", actor=actor_for(alice),
                         now=at(2), expected_version=stale)  # fmt: skip
            else:
                finding_add(case_number=case.case_number, finding_type="ROOT_CAUSE", source="operator",
                            conclusion="late", actor=actor_for(alice), now=at(2), expected_version=stale)  # fmt: skip
        assert not CaseNote.objects.exists() and not CaseFinding.objects.exists()

    def test_a_closed_case_takes_no_more_notes_until_reopened(self, alice):
        case = taken_case(alice)
        for name, extra in (("resolve", {"resolution_code": "FIXED", "resolution_summary": "done"}), ("close", {})):
            case_transition(case_number=case.case_number, transition=name, actor=actor_for(alice), now=at(3), **extra)
        with pytest.raises(IllegalTransition, match="reopen it to add a note"):
            note_add(case_number=case.case_number, note_type="COMMENT", body="after", actor=actor_for(alice), now=at(4))
        assert not CaseNote.objects.exists()


class TestVisibility:
    def test_restricted_notes_are_hidden_from_a_reader_outside_the_team(self, alice):
        case = taken_case(alice)
        note_add(case_number=case.case_number, note_type="COMMENT", body="merchant's director is under review",
                 redaction_level="RESTRICTED", actor=actor_for(alice), now=at(2))  # fmt: skip
        checker = team_user("finance_manager")
        assert permissions.can_view(checker, case)
        shown = [t.body for t in case_workbench(user=checker, case=case).timeline if t.kind == "note"]
        assert shown == ["Restricted note (35 characters): readable by the case's team, its assignee and auditors."]
        for reader in (alice, team_user("payment_ops"), team_user("auditor")):
            bodies = [t.body for t in case_workbench(user=reader, case=case).timeline if t.kind == "note"]
            assert bodies == ["merchant's director is under review"]

    def test_the_opener_keeps_reading_a_case_sent_to_another_team_but_cannot_work_it(self):
        opener = team_user("support_ops")
        case = case_open(case_type="INCIDENT", severity="HIGH", title="Checkout errors", actor=actor_for(opener),
                         now=at())  # fmt: skip
        assert case.owner_team == "sre"
        assert permissions.can_view(opener, case) and not permissions.can_work(opener, case)

    def test_a_team_member_reopens_a_case_a_system_actor_resolved(self):
        case = open_case()
        case_transition(case_number=case.case_number, transition="resolve", resolution_code="EXTERNAL_RESOLVED",
                        resolution_summary="provider fixed it", actor=SYSTEM, now=at(1))  # fmt: skip
        member, outsider = team_user("payment_ops"), team_user("finance_ops")
        reopened = case_transition(case_number=case.case_number, transition="reopen", reason_text="it came back",
                                   actor=actor_for(member), now=at(2))  # fmt: skip
        assert reopened.status == "REOPENED"
        assert not permissions.can_view(outsider, reopened)


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_double_submit_arriving_at_once_opens_one_case():
    opener = team_user("support_ops", "double_clicker")
    barrier, results, errors = threading.Barrier(2), [], []

    def submit():
        try:
            barrier.wait()
            results.append(case_open(case_type="SUPPORT", severity="LOW", title="Twice", actor=actor_for(opener),
                                     now=at(), idempotency_key="double-click"))  # fmt: skip
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert OpsCase.objects.count() == 1 and {c.pk for c in results} == {OpsCase.objects.get().pk}
