"""The audit screen: filters, keyset pagination with a fixed query count, safe CSV export."""

import csv
import datetime as dt
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.context import audit_context
from audit.models import AuditEvent, AuditResult
from audit.selectors import PAGE_SIZE
from audit.services import audit_record
from backoffice.actors import system_actor

DAY = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)  # 10:00 in Manila


def seed(n: int, **kwargs) -> list[AuditEvent]:
    with audit_context(actor=system_actor("seeder")):
        return [audit_record(event_type=kwargs.get("event_type", "test.seeded"), target_type="thing",
                             target_id=str(i), now=kwargs.get("now", DAY),
                             result=kwargs.get("result", AuditResult.SUCCEEDED),
                             reason_text=kwargs.get("reason_text", "")) for i in range(n)]  # fmt: skip


@pytest.mark.django_db
class TestListing:
    def test_filters_by_event_type_result_actor_target_and_dates(self, client_as):
        client = client_as("auditor")
        seed(3)
        seed(2, event_type="test.other", result=AuditResult.REFUSED)
        seed(1, event_type="test.old", now=DAY - dt.timedelta(days=3))
        url = reverse("audit:event_list")

        def shown(**params):
            response = client.get(url, params)
            assert response.status_code == 200
            return [e.event_type for e in response.context["page"].events]

        assert shown(event_type="test.other") == ["test.other"] * 2
        assert shown(result="REFUSED", actor="system:seeder") == ["test.other"] * 2
        assert shown(target_type="thing", target_id="2", actor="system:seeder") == ["test.seeded"]
        assert shown(actor="system:seeder", date_from="2026-11-20", date_to="2026-11-20").count("test.old") == 0
        assert shown(actor="system:seeder", date_to="2026-11-17") == ["test.old"]

    def test_invalid_filter_shows_why_and_no_rows(self, client_as):
        seed(2)
        response = client_as("auditor").get(
            reverse("audit:event_list"), {"date_from": "2026-11-21", "date_to": "2026-11-01"}
        )
        assert response.status_code == 200
        assert response.context["page"] is None
        assert "The &#x27;From&#x27; date is after the &#x27;To&#x27; date." in response.content.decode()

    def test_keyset_pagination_walks_every_event_once(self, client_as):
        client = client_as("auditor")
        seed(PAGE_SIZE * 2 + 7)
        seen, before, pages = [], None, 0
        while True:
            params = {"actor": "system:seeder"}
            if before:
                params["before"] = before
            page = client.get(reverse("audit:event_list"), params).context["page"]
            seen.extend(e.seq for e in page.events)
            pages += 1
            before = page.next_before
            if before is None:
                break
        assert pages == 3
        assert len(seen) == len(set(seen)) == PAGE_SIZE * 2 + 7
        assert seen == sorted(seen, reverse=True)

    def test_query_count_does_not_grow_with_rows(self, client_as):
        client = client_as("auditor")
        url = reverse("audit:event_list")
        client.get(url)  # warm the session and permission caches
        seed(3)
        with CaptureQueriesContext(connection) as few:
            client.get(url)
        seed(PAGE_SIZE * 2)
        with CaptureQueriesContext(connection) as many:
            client.get(url)
        assert len(many) == len(few)

    def test_detail_shows_masked_snapshots(self, client_as):
        event = audit_record(event_type="test.detail", before={"email": "maria@example.com"}, after={"status": "OK"})
        html = client_as("auditor").get(reverse("audit:event_detail", args=[event.event_id])).content.decode()
        assert "m***@example.com" in html and "maria@example.com" not in html
        assert event.hash in html
        assert client_as("auditor").get(reverse("audit:event_detail", args=["ae_nope"])).status_code == 404


@pytest.mark.django_db
class TestExport:
    def test_csv_neutralises_formulas_keeps_numbers_and_is_audited(self, client_as):
        seed(1, reason_text='=HYPERLINK("http://evil")')
        seed(1, reason_text="-1250")
        client = client_as("auditor")
        response = client.get(reverse("audit:event_export"), {"actor": "system:seeder"})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert response["Content-Disposition"].startswith("attachment;")
        body = b"".join(response.streaming_content).decode()
        rows = list(csv.DictReader(io.StringIO(body)))
        reasons = {row["reason_text"] for row in rows}
        assert '\'=HYPERLINK("http://evil")' in reasons
        assert "-1250" in reasons
        assert all(row["seq"].isdigit() for row in rows)
        exported = AuditEvent.objects.filter(event_type="audit.exported").latest("seq")
        assert exported.actor == "auditor_user"
        assert exported.after["actor"] == "system:seeder"

    def test_sre_may_read_but_not_export(self, client_as):
        client = client_as("sre")
        assert client.get(reverse("audit:event_list")).status_code == 200
        before = AuditEvent.objects.filter(event_type="audit.exported").count()
        response = client.get(reverse("audit:event_export"))
        assert response.status_code == 403
        assert "audit.export_auditevent" in response.content.decode()
        assert AuditEvent.objects.filter(event_type="audit.exported").count() == before
        assert AuditEvent.objects.filter(event_type="access.denied", actor="sre_user").exists()

    def test_invalid_filter_exports_nothing(self, client_as):
        response = client_as("auditor").get(reverse("audit:event_export"), {"date_from": "not-a-date"})
        assert response.status_code == 400
        assert not AuditEvent.objects.filter(event_type="audit.exported").exists()
