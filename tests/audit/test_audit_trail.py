"""The audit trail: append-only at the database, hash-chained, verifiable, masked, contextual."""

import datetime as dt
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit.context import audit_context
from audit.models import GENESIS_HASH, AuditEvent, AuditResult
from audit.services import audit_record
from audit.verification import chain_verify
from backoffice.actors import system_actor

NOW = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def record(n: int = 1, **kwargs):
    events = []
    for i in range(n):
        events.append(audit_record(event_type="test.event", target_type="thing", target_id=str(i), now=NOW, **kwargs))
    return events


@pytest.mark.django_db
class TestAppendOnly:
    def test_raw_sql_update_is_refused(self):
        (event,) = record()
        with (
            pytest.raises(DatabaseError, match="append-only: UPDATE refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE audit_auditevent SET result = 'FAILED' WHERE seq = %s", [event.seq])
        event.refresh_from_db()
        assert event.result == AuditResult.SUCCEEDED

    def test_raw_sql_delete_is_refused(self):
        record(3)
        with (
            pytest.raises(DatabaseError, match="append-only: DELETE refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM audit_auditevent")
        assert AuditEvent.objects.filter(event_type="test.event").count() == 3

    def test_orm_update_and_delete_are_refused_too(self):
        (event,) = record()
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.filter(seq=event.seq).update(reason_text="rewritten")
        with pytest.raises(DatabaseError), transaction.atomic():
            event.delete()
        assert AuditEvent.objects.get(seq=event.seq).reason_text == ""


@pytest.mark.django_db
class TestChain:
    def test_events_link_to_their_predecessor(self):
        before = AuditEvent.objects.order_by("-seq").first()
        first, second = record(2)
        assert first.prev_hash == (before.hash if before else GENESIS_HASH)
        assert second.prev_hash == first.hash
        assert second.seq > first.seq
        assert chain_verify().intact

    def test_verify_command_passes_on_intact_chain(self, capsys):
        record(5)
        call_command("audit_verify")
        assert "audit chain intact" in capsys.readouterr().out

    def _tamper(self, sql: str, params: list) -> None:
        # Only a test may switch the trigger off, to play the attacker who has the table owner's rights.
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_immutable")
            cursor.execute(sql, params)
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_immutable")

    def test_altered_row_is_named(self):
        events = record(4)
        victim = events[2]
        self._tamper("UPDATE audit_auditevent SET reason_text = 'nothing to see' WHERE seq = %s", [victim.seq])
        report = chain_verify()
        assert not report.intact
        assert report.broken_seq == victim.seq
        assert "content does not match its hash" in report.problem
        with pytest.raises(CommandError, match=f"BROKEN at event seq={victim.seq} id={victim.event_id}"):
            call_command("audit_verify")

    def test_altered_row_with_recomputed_hash_is_caught_by_the_next_link(self):
        from audit.chain import event_hash

        events = record(3)
        victim = events[1]
        row = AuditEvent.objects.filter(seq=victim.seq).values().get()
        row["result"] = "FAILED"
        forged = event_hash(row)
        self._tamper("UPDATE audit_auditevent SET result = 'FAILED', hash = %s WHERE seq = %s", [forged, victim.seq])
        report = chain_verify()
        assert report.broken_seq == events[2].seq
        assert "prev_hash does not match" in report.problem

    def test_deleted_row_is_detected(self):
        events = record(3)
        self._tamper("DELETE FROM audit_auditevent WHERE seq = %s", [events[1].seq])
        report = chain_verify()
        assert report.broken_seq == events[2].seq


@pytest.mark.django_db
class TestRecording:
    def test_context_supplies_actor_and_correlation(self):
        actor = system_actor("end_of_day")
        with audit_context(actor=actor, correlation_id="corr-12345678"):
            (event,) = record()
        assert event.actor == "system:end_of_day"
        assert event.actor_roles == ["system"]
        assert event.correlation_id == "corr-12345678"

    def test_snapshots_and_texts_are_masked(self):
        (event,) = record(
            before={"email": "maria@example.com", "card_number": "4111111111111111"},
            after={"note": "card 4111 1111 1111 1111"},
            reason_text="customer read out 4111111111111111 on the phone",
        )
        event.refresh_from_db()
        assert event.before == {"email": "m***@example.com", "card_number": "[REDACTED]"}
        assert event.after == {"note": "card ****1111"}
        assert "4111111111111111" not in event.reason_text
        assert chain_verify().intact

    def test_event_rolls_back_with_the_callers_transaction(self):
        count = AuditEvent.objects.count()
        with pytest.raises(RuntimeError), transaction.atomic():
            record()
            raise RuntimeError("the command failed after auditing")
        assert AuditEvent.objects.count() == count
        assert chain_verify().intact

    def test_unknown_result_refused(self):
        with pytest.raises(ValueError):
            audit_record(event_type="x", result="MAYBE")


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_produce_one_intact_chain():
    writers, per_writer = 8, 25
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    audit_record(event_type="test.concurrent", target_type="worker", target_id=f"{worker}-{i}", now=NOW)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = list(AuditEvent.objects.filter(event_type="test.concurrent").order_by("seq"))
    assert len(events) == writers * per_writer
    assert len({e.prev_hash for e in AuditEvent.objects.all()}) == AuditEvent.objects.count()  # no fork
    report = chain_verify()
    assert report.intact, report.problem
