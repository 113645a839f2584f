"""The audit trail: append-only at the database, hash-chained, verifiable, masked, contextual."""

import datetime as dt
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from audit.context import audit_context
from audit.models import CHAIN_LANES, GENESIS_HASH, AuditEvent, AuditResult
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
        first, second = record(2)
        before = AuditEvent.objects.filter(lane=first.lane, seq__lt=first.seq).order_by("-seq").first()
        assert first.prev_hash == (before.hash if before else GENESIS_HASH)
        assert second.lane == first.lane  # no other writer: the connection keeps its lane
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
    # No fork: within a lane no two events link to the same predecessor.
    links = list(AuditEvent.objects.values_list("lane", "prev_hash"))
    assert len(set(links)) == len(links)
    # The writers did not queue on one head: eight writers released together spread over lanes.
    assert len({e.lane for e in events}) > 1
    report = chain_verify()
    assert report.intact, report.problem
    assert report.events_checked == AuditEvent.objects.count()


LANE_LOCK_CLASS = 0x61756469  # the chain lanes' advisory lock space (audit migration 0009)


class _LaneHolder:
    """Another session holding chain lanes, as busy writers would between their insert and commit."""

    def __init__(self, lanes):
        import psycopg

        self.conn = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        for lane in lanes:
            self.conn.execute("SELECT pg_advisory_lock(%s, %s)", [LANE_LOCK_CLASS, lane])

    def release(self):
        self.conn.execute("SELECT pg_advisory_unlock_all()")
        self.conn.close()


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
class TestLanes:
    def test_a_transactions_events_link_into_one_lane(self):
        holder = _LaneHolder(range(CHAIN_LANES - 2))  # two lanes free: the transaction could straddle them
        try:
            with transaction.atomic():
                events = record(4)
        finally:
            holder.release()
        assert {e.lane for e in events} == {events[0].lane}
        assert events[0].lane >= CHAIN_LANES - 2
        assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
        assert chain_verify().intact

    def test_a_taken_lane_is_skipped_without_waiting(self):
        holder = _LaneHolder(range(CHAIN_LANES - 1))
        try:
            started = time.monotonic()
            (event,) = record()
            waited = time.monotonic() - started
        finally:
            holder.release()
        assert event.lane == CHAIN_LANES - 1
        assert waited < 2  # it did not queue behind the held lanes (they are never released before the end)
        assert event.prev_hash == GENESIS_HASH or AuditEvent.objects.filter(hash=event.prev_hash).exists()
        assert chain_verify().intact

    def test_with_every_lane_taken_a_writer_waits_instead_of_forking(self):
        holder = _LaneHolder(range(CHAIN_LANES))
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                record()
                done.set()
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            assert not done.wait(0.5), "the writer appended while every lane was held"
        finally:
            holder.release()
        writer.join(10)
        assert errors == [] and done.is_set()
        assert chain_verify().intact

    def test_a_deletion_inside_another_lane_is_named(self):
        holder = _LaneHolder(range(CHAIN_LANES - 1))
        try:
            events = record(3)
        finally:
            holder.release()
        assert {e.lane for e in events} == {CHAIN_LANES - 1}
        record(2)  # events in the writer's usual lane, around the tampering
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_immutable")
            cursor.execute("DELETE FROM audit_auditevent WHERE seq = %s", [events[1].seq])
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_immutable")
        report = chain_verify()
        assert report.broken_seq == events[2].seq
        assert f"lane {CHAIN_LANES - 1}" in report.problem
