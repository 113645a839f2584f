"""Notes, evidence, findings, links and occurrences are append-only whoever writes: PostgreSQL
refuses UPDATE and DELETE. Notes never hold a full card number."""

import pytest
from django.db import DatabaseError, connection, transaction

from backoffice.errors import ValidationFailed
from cases.models import CaseEvidence, CaseFinding, CaseLink, CaseNote, ExceptionOccurrence
from cases.services import evidence_add, exception_report, finding_add, link_add, note_add
from tests.factories.cases import SYSTEM, Upload, actor_for, assigned_case, at, case_state, last_refusal, team_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def records(settings, tmp_path, monkeypatch):
    """One row in each append-only table, all on one case (made through the services)."""
    from cases import registry
    from cases.registry import LinkableType, LinkedObjectView

    settings.CASE_EVIDENCE_ROOT = tmp_path
    monkeypatch.setitem(
        registry._TYPES,
        "test_payment",
        LinkableType("test_payment", "Payment", lambda ids: {i: LinkedObjectView(label=i) for i in ids}),
    )
    alice = team_user("payment_ops", "alice")
    actor = actor_for(alice)
    case = assigned_case(alice)
    number = case.case_number
    note = note_add(case_number=number, note_type="COMMENT", body="Called the provider", actor=actor, now=at(1))
    evidence = evidence_add(
        case_number=number, upload=Upload("statement.txt", b"bank statement line 1\n"), evidence_type="BANK_DOCUMENT",
        classification="INTERNAL", retention_class="FINANCIAL_10Y", actor=actor, now=at(2),
    )  # fmt: skip
    finding = finding_add(case_number=number, finding_type="ROOT_CAUSE", source="provider_api",
                          conclusion="Provider timeout", actor=actor, now=at(3))  # fmt: skip
    link = link_add(case_number=number, object_type="test_payment", object_id="pi_1", relation_type="AFFECTS",
                    actor=actor, now=at(4))  # fmt: skip
    reported, _ = exception_report(
        source_system="gateway", business_key="pi_1", exception_type="capture_failed", error_code="E1",
        detail="timeout", severity="LOW", now=at(5), actor=SYSTEM,
    )  # fmt: skip
    occurrence = ExceptionOccurrence.objects.get(case=reported)
    return {
        "cases_casenote": (CaseNote, note.pk, "body = 'rewritten'"),
        "cases_caseevidence": (CaseEvidence, evidence.pk, "sha256 = repeat('0', 64)"),
        "cases_casefinding": (CaseFinding, finding.pk, "conclusion = 'no issue after all'"),
        "cases_caselink": (CaseLink, link.pk, "object_id = 'pi_2'"),
        "cases_exceptionoccurrence": (ExceptionOccurrence, occurrence.pk, "error_code = 'E2'"),
    }


TIME_FIELD = {
    "cases_casenote": "created_at",
    "cases_caseevidence": "uploaded_at",
    "cases_casefinding": "created_at",
    "cases_caselink": "created_at",
    "cases_exceptionoccurrence": "recorded_at",
}
TABLES = ["cases_casenote", "cases_caseevidence", "cases_casefinding", "cases_caselink", "cases_exceptionoccurrence"]


def snapshot(model, pk):
    return model.objects.filter(pk=pk).values().first()


@pytest.mark.parametrize("table", TABLES)
def test_update_is_refused_by_the_database(records, table):
    model, pk, assignment = records[table]
    before = snapshot(model, pk)
    refused = pytest.raises(DatabaseError, match=f"append-only: UPDATE refused on {table}")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignment} WHERE id = %s", [pk])
    assert snapshot(model, pk) == before


@pytest.mark.parametrize("table", TABLES)
def test_delete_is_refused_by_the_database(records, table):
    model, pk, _ = records[table]
    before = snapshot(model, pk)
    refused = pytest.raises(DatabaseError, match=f"append-only: DELETE refused on {table}")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])
    assert snapshot(model, pk) == before


@pytest.mark.parametrize("table", TABLES)
def test_orm_bulk_update_and_delete_are_refused_too(records, table):
    model, pk, _ = records[table]
    before = snapshot(model, pk)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        model.objects.filter(pk=pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        model.objects.filter(pk=pk).update(**{TIME_FIELD[table]: at(99)})
    assert snapshot(model, pk) == before


def test_the_refusal_is_an_insufficient_privilege_error(records):
    from django.db.utils import ProgrammingError

    _, pk, _ = records["cases_casenote"]
    with pytest.raises(ProgrammingError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM cases_casenote WHERE id = %s", [pk])
    assert refused.value.__cause__.sqlstate == "42501"


@pytest.mark.parametrize("table", TABLES)
def test_each_table_carries_its_append_only_trigger(table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, tgtype FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [table]
        )
        rows = cursor.fetchall()
    # tgtype 27 = ROW (1) | BEFORE (2) | DELETE (8) | UPDATE (16)
    assert rows == [(f"{table}_append_only", 27)]


class TestCardNumbersInNotes:
    @pytest.fixture
    def alice(self, db):
        return team_user("payment_ops", "alice")

    @pytest.mark.parametrize(
        "body",
        [
            "Customer read out 4111 1111 1111 1111 on the phone",
            "pan=4111111111111111",
            "card 4111-1111-1111-1111 declined",
            "Amex 378282246310005 on file",
        ],
    )
    def test_a_note_with_a_card_number_is_refused(self, alice, body):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed) as refused:
            note_add(case_number=case.case_number, note_type="CUSTOMER_CONTACT", body=body,
                     actor=actor_for(alice), now=at(1))  # fmt: skip
        assert refused.value.message == (
            "the note contains what looks like a full card number; never paste a card number into a case "
            "(use the last four digits)"
        )
        assert case_state(case.case_number) == before
        assert CaseNote.objects.count() == 0
        refusal = last_refusal(case.case_number)
        assert (refusal.action_type, refusal.error_code) == ("CASE_NOTE", "VALIDATION_FAILED")
        assert "1111" not in refusal.error_message and "0005" not in refusal.error_message

    @pytest.mark.parametrize(
        "body", ["Reference 4111 1111 1111 1112 from the bank", "card ending 1111", "ARN 1234567890123"]
    )
    def test_numbers_that_are_not_card_numbers_are_allowed(self, alice, body):
        case = assigned_case(alice)
        note = note_add(case_number=case.case_number, note_type="COMMENT", body=body, actor=actor_for(alice),
                        now=at(1))  # fmt: skip
        assert CaseNote.objects.get(pk=note.pk).body == body

    def test_a_finding_with_a_card_number_is_refused(self, alice):
        case = assigned_case(alice)
        before = case_state(case.case_number)
        with pytest.raises(ValidationFailed, match="conclusion contains what looks like a full card number"):
            finding_add(case_number=case.case_number, finding_type="ROOT_CAUSE", source="operator",
                        conclusion="Card 4111111111111111 was blocked", actor=actor_for(alice), now=at(1))  # fmt: skip
        assert case_state(case.case_number) == before
        assert last_refusal(case.case_number).action_type == "CASE_FINDING"
