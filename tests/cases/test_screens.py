"""The case screens: worklist (tabs, filters, sort, keyset pages, fixed query count), opening a case,
the workbench (who sees which forms, refusals, stale pages, double submits), evidence downloads and
the read-only admin.

Data is set up only through cases.services, as production writes it; screens are driven through
the test client, as a browser would (CSRF is checked by the views' middleware in production and is
covered by the browser test).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from backoffice.clock import business_date
from cases import registry
from cases.models import CaseEvidence, CaseNote, CaseStatus, CaseType, OpsCase, Severity
from cases.selectors import PAGE_SIZE
from cases.services import (
    case_open,
    case_take,
    case_transition,
    evidence_add,
    exception_report,
    finding_add,
    link_add,
    note_add,
)
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

SYSTEM = system_actor("screen_tests")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def _evidence_root(settings, tmp_path):
    settings.CASE_EVIDENCE_ROOT = tmp_path / "evidence"


# --- helpers -------------------------------------------------------------------------------------


def open_case(*, minutes_ago: float = 0, severity: str = Severity.LOW, title: str = "Capture stuck in pending",
              case_type: str = CaseType.PAYMENT_INVESTIGATION, owner_team: str = "", **kwargs) -> OpsCase:  # fmt: skip
    """A case in payment ops' queue (by type), opened by a system actor `minutes_ago`."""
    return case_open(
        case_type=case_type, severity=severity, title=title, owner_team=owner_team, actor=SYSTEM,
        now=timezone.now() - dt.timedelta(minutes=minutes_ago), **kwargs,
    )  # fmt: skip


def person(role: str, username: str):
    return user_with_role(role, username=username)


def actor(user) -> Actor:
    return Actor.from_user(user)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fetch(case_number: str) -> OpsCase:
    return OpsCase.objects.select_related("owner_user").get(case_number=case_number)


def take(case: OpsCase, user) -> OpsCase:
    return case_take(case_number=case.case_number, actor=actor(user), now=timezone.now())


def workbench_url(case_number: str) -> str:
    return reverse("cases:workbench", args=[case_number])


def worklist(client: Client, **params):
    return client.get(reverse("cases:worklist"), params)


def numbers(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return [row.case.case_number for row in response.context["rows"]]


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def page_html(response) -> str:
    return response.content.decode()


def form_fields(html: str, testid: str) -> dict[str, str]:
    """The hidden inputs of the form marked data-testid=`testid` (case version, idempotency key)."""
    form = re.search(rf'<form[^>]*data-testid="{testid}".*?</form>', html, re.S)
    assert form, f"no {testid} on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


def hidden_fields_of_transition(html: str, name: str) -> dict[str, str]:
    form = re.search(rf'<form[^>]*action="[^"]*/transition/{name}/".*?</form>', html, re.S)
    assert form, f"no {name} form on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


def main_area(response) -> str:
    html = page_html(response)
    return html[html.index('<main id="main"') : html.index("</main>")]


def post_forms(html: str) -> list[str]:
    """Actions of the POST forms in the page's main area (the sign-out form is in the top bar)."""
    main = html[html.index('<main id="main"') :]
    return re.findall(r'<form method="post" action="([^"]+)"', main)


def events(case_number: str, **filters):
    return AuditEvent.objects.filter(target_id=case_number, **filters).order_by("seq")


def unchanged(case_number: str) -> dict:
    case = fetch(case_number)
    return {
        "status": case.status,
        "version": case.version,
        "owner_user_id": case.owner_user_id,
        "owner_team": case.owner_team,
        "notes": CaseNote.objects.filter(case=case).count(),
        "evidence": CaseEvidence.objects.filter(case=case).count(),
        "succeeded": events(case_number, result=AuditResult.SUCCEEDED).count(),
    }


@pytest.fixture
def pat(db):
    return person("payment_ops", "pat")


@pytest.fixture
def quinn(db):
    return person("payment_ops", "quinn")


@pytest.fixture
def sam(db):
    return person("support_ops", "sam")


@pytest.fixture
def avery(db):
    return person("auditor", "avery")


# --- worklist ------------------------------------------------------------------------------------


class TestWorklistTabs:
    @pytest.fixture
    def cases(self, pat, quinn):
        unassigned = open_case(title="unassigned")
        mine = take(open_case(title="mine"), pat)
        colleague = take(open_case(title="colleague's"), quinn)
        other_team = open_case(title="sre's", case_type=CaseType.INCIDENT)
        breached = open_case(title="breached", minutes_ago=4 * 24 * 60)  # LOW: 3 days
        due_soon = open_case(title="due soon", severity=Severity.CRITICAL, minutes_ago=50)  # 60 min, warn at 45
        done = take(open_case(title="resolved"), pat)
        case_transition(
            case_number=done.case_number, transition="resolve", resolution_code="FIXED",
            resolution_summary="Provider confirmed.", actor=actor(pat), now=timezone.now(),
        )  # fmt: skip
        return {c.title: c.case_number for c in (unassigned, mine, colleague, other_team, breached, due_soon, done)}

    def test_each_tab_lists_its_cases(self, pat, cases):
        client = signed_in(pat)
        n = cases
        assert numbers(worklist(client)) == numbers(worklist(client, view="team"))  # the team queue by default
        assert set(numbers(worklist(client, view="mine"))) == {n["mine"]}
        assert set(numbers(worklist(client, view="team"))) == {
            n["unassigned"], n["mine"], n["colleague's"], n["breached"], n["due soon"]
        }  # fmt: skip
        assert set(numbers(worklist(client, view="unassigned"))) == {n["unassigned"], n["breached"], n["due soon"]}
        assert numbers(worklist(client, view="breached")) == [n["breached"]]
        assert numbers(worklist(client, view="due_soon")) == [n["due soon"]]
        # "all" includes finished cases, never another team's
        assert set(numbers(worklist(client, view="all"))) == set(n.values()) - {n["sre's"]}

    def test_rows_show_sla_markers_owner_and_link(self, pat, cases):
        html = page_html(worklist(signed_in(pat), view="team"))

        def row(title: str) -> str:
            found = re.search(rf'<tr data-case="{cases[title]}">.*?</tr>', html, re.S)
            assert found, title
            return found.group(0)

        assert 'data-sla="breached"' in row("breached") and "data-sla" not in row("unassigned")
        assert 'data-sla="due-soon"' in row("due soon")
        assert f'href="{workbench_url(cases["mine"])}"' in row("mine")
        assert "<strong>pat</strong>" in row("mine") and "unassigned" in row("unassigned")
        assert "Critical" in row("due soon") and ">P1<" in row("due soon")

    def test_a_reader_without_a_team_sees_every_case_by_default(self, avery, cases):
        response = worklist(signed_in(avery))
        assert response.context["tab"] == "all"
        assert set(numbers(response)) == set(cases.values())
        assert 'data-testid="new-case"' not in page_html(response)  # reads, never opens

    def test_teams_may_open_a_case(self, pat, cases):
        assert 'data-testid="new-case"' in page_html(worklist(signed_in(pat)))

    def test_an_unknown_tab_is_a_clear_error(self, pat, cases):
        response = worklist(signed_in(pat), view="everything")
        assert response.status_code == 400
        assert response.context["rows"] == []
        assert "Select a valid choice" in page_html(response)


class TestWorklistFilters:
    def test_filters_narrow_the_list(self, pat):
        low = open_case(title="low")
        high = open_case(title="high", severity=Severity.HIGH)
        dispute = open_case(title="dispute", case_type=CaseType.DISPUTE)
        routed = open_case(title="routed", owner_team="payment_ops", case_type=CaseType.SUPPORT)
        old = open_case(title="old", minutes_ago=30 * 60)
        reported, _ = exception_report(
            source_system="PSP_SIM", business_key="pa_1", exception_type="INTEGRATION", error_code="TIMEOUT",
            detail="timed out", severity=Severity.LOW, now=timezone.now(), actor=SYSTEM,
        )  # fmt: skip
        client = signed_in(pat)
        assert numbers(worklist(client, severity="HIGH")) == [high.case_number]
        assert numbers(worklist(client, case_type="DISPUTE")) == [dispute.case_number]
        assert numbers(worklist(client, case_type="SUPPORT", owner_team="payment_ops")) == [routed.case_number]
        assert numbers(worklist(client, source_system="psp_sim")) == [reported.case_number]
        assert numbers(worklist(client, min_age_hours=24)) == [old.case_number]
        day = business_date(old.created_at)
        expected = {
            c.case_number for c in (low, high, dispute, routed, old, reported) if business_date(c.created_at) == day
        }
        assert old.case_number in expected
        assert set(numbers(worklist(client, business_date=day.isoformat()))) == expected
        assert numbers(worklist(client, business_date="2001-01-01")) == []

    def test_a_status_filter_shows_finished_cases(self, pat):
        case = take(open_case(), pat)
        case_transition(
            case_number=case.case_number, transition="cancel", reason_text="opened twice", actor=actor(pat),
            now=timezone.now(),
        )  # fmt: skip
        client = signed_in(pat)
        assert numbers(worklist(client, view="team")) == []
        assert numbers(worklist(client, view="team", status="CANCELLED")) == [case.case_number]

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"severity": "URGENT"}, "Severity: Select a valid choice"),
            ({"min_age_hours": "-1"}, "Older than (h): Ensure this value is greater than or equal to 0"),
            ({"min_age_hours": "soon"}, "Older than (h): Enter a whole number"),
            ({"business_date": "31/02/2026"}, "Opened on (business day): Enter a valid date"),
            ({"business_date": "9999-12-31"}, "Opened on (business day): Choose a day between"),
            ({"business_date": "0001-01-01"}, "Opened on (business day): Choose a day between"),
            ({"sort": "random"}, "Sort: Select a valid choice"),
            ({"cursor": "not a cursor!"}, "The page cursor is not valid"),
        ],
    )
    def test_bad_input_is_a_clear_400_with_no_rows(self, pat, params, message):
        open_case()
        response = worklist(signed_in(pat), **params)
        assert response.status_code == 400
        assert response.context["rows"] == []
        assert message in page_html(response)

    @pytest.mark.parametrize(
        "payload",
        [
            ["not-a-time", 1],
            ["2026-01-01T00:00:00+00:00", "one"],
            ["2026-01-01T00:00:00+00:00", {"id": 1}],
            [None, None],
            [1, 2, 3],
            {"sla_due_at": 1},
        ],
    )
    def test_a_tampered_cursor_is_a_400_not_a_500(self, pat, payload):
        open_case()
        cursor = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
        response = worklist(signed_in(pat), cursor=cursor)
        assert response.status_code == 400
        assert "start from the first page" in page_html(response)

    def test_undecodable_cursor_is_a_400(self, pat):
        response = worklist(signed_in(pat), cursor="AAAA-_")
        assert response.status_code == 400


class TestWorklistPages:
    def test_pages_walk_every_case_once_in_sla_order(self, pat):
        total = PAGE_SIZE + 7
        for i in range(total):
            open_case(title=f"case {i}", minutes_ago=i)
        client = signed_in(pat)
        first = worklist(client, view="team")
        assert len(first.context["rows"]) == PAGE_SIZE
        next_link = re.search(r'data-hotkey-next href="\?([^"]+)"', page_html(first)).group(1).replace("&amp;", "&")
        assert "cursor=" in next_link and "view=team" in next_link
        second = client.get(f"{reverse('cases:worklist')}?{next_link}")
        seen = numbers(first) + numbers(second)
        assert len(seen) == len(set(seen)) == total
        due = dict(OpsCase.objects.values_list("case_number", "sla_due_at"))
        assert [due[n] for n in seen] == sorted(due[n] for n in seen)
        assert "End of list" in page_html(second) and "First page" in page_html(second)

    def test_sort_by_severity(self, pat):
        low, critical, medium = (open_case(severity=s) for s in (Severity.LOW, Severity.CRITICAL, Severity.MEDIUM))
        response = worklist(signed_in(pat), sort="severity")
        assert numbers(response) == [critical.case_number, medium.case_number, low.case_number]

    def test_query_count_does_not_grow_with_cases(self, pat):
        client = signed_in(pat)
        url = reverse("cases:worklist")
        client.get(url)  # warm the session
        for i in range(3):
            take(open_case(title=f"few {i}"), pat) if i % 2 else open_case(title=f"few {i}")
        with CaptureQueriesContext(connection) as few:
            assert len(client.get(url).context["rows"]) == 3
        for i in range(27):
            take(open_case(title=f"many {i}"), pat) if i % 2 else open_case(title=f"many {i}")
        with CaptureQueriesContext(connection) as many:
            assert len(client.get(url).context["rows"]) == 30
        assert len(many) == len(few)


# --- opening a case ------------------------------------------------------------------------------


def open_form(client: Client) -> dict:
    html = page_html(client.get(reverse("cases:create")))
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)
    return {
        "case_type": "PAYMENT_INVESTIGATION", "severity": "HIGH", "title": "Capture pa_123 missing in ledger",
        "description": "Provider shows captured; no journal.", "owner_team": "", "merchant_ref": "m_1",
        "customer_ref": "cus_9", "idempotency_key": key,
    }  # fmt: skip


class TestOpenCase:
    def test_opens_in_the_team_queue_and_shows_the_workbench(self, pat):
        client = signed_in(pat)
        response = client.post(reverse("cases:create"), open_form(client))
        case = OpsCase.objects.get()
        assert response.status_code == 302 and response["Location"] == workbench_url(case.case_number)
        assert (case.case_type, case.severity, case.owner_team, case.owner_user_id, case.status) == (
            "PAYMENT_INVESTIGATION", "HIGH", "payment_ops", None, "OPEN"
        )  # fmt: skip
        assert (case.merchant_ref, case.customer_ref, case.created_by) == ("m_1", "cus_9", "pat")
        assert list(events(case.case_number).values_list("event_type", flat=True)) == ["case.opened"]
        page = client.get(response["Location"])
        assert f"{case.case_number} opened in the Payment operations queue" in page_html(page)

    def test_a_double_submit_opens_one_case(self, pat):
        client = signed_in(pat)
        data = open_form(client)
        first = client.post(reverse("cases:create"), data)
        second = client.post(reverse("cases:create"), data)
        case = OpsCase.objects.get()
        assert first["Location"] == second["Location"] == workbench_url(case.case_number)
        assert f"This form already opened {case.case_number}" in " ".join(message_texts(second))
        # a fresh form (new key) opens a new case
        client.post(reverse("cases:create"), open_form(client))
        assert OpsCase.objects.count() == 2

    def test_bad_input_is_shown_on_the_form(self, pat):
        client = signed_in(pat)
        data = {**open_form(client), "severity": "", "customer_ref": "4111 1111 1111 1111"}
        response = client.post(reverse("cases:create"), data)
        assert response.status_code == 400
        html = page_html(response)
        assert "This field is required" in html and "card numbers are never stored" in html
        assert not OpsCase.objects.exists()

    def test_a_case_for_another_team_goes_to_their_queue(self, pat):
        client = signed_in(pat)
        response = client.post(reverse("cases:create"), {**open_form(client), "case_type": "INCIDENT"})
        case = OpsCase.objects.get()
        assert case.owner_team == "sre"
        # whoever opened a case keeps reading it, whichever queue it went to, but does not work it
        assert response["Location"] == workbench_url(case.case_number)
        page = client.get(workbench_url(case.case_number))
        assert page.status_code == 200 and not page.context["wb"].can_work

    def test_a_reader_may_not_open_cases(self, avery):
        assert signed_in(avery).get(reverse("cases:create")).status_code == 403
        assert signed_in(avery).post(reverse("cases:create"), {}).status_code == 403


# --- workbench -----------------------------------------------------------------------------------


class TestWorkbenchAccess:
    def test_an_outsider_and_an_unknown_number_get_the_same_404_and_are_audited(self, sam):
        case = open_case()
        client = signed_in(sam)
        hidden = client.get(workbench_url(case.case_number))
        missing = client.get(workbench_url("CASE-2026-999999"))
        assert hidden.status_code == missing.status_code == 404
        assert main_area(hidden) == main_area(missing) and "Not found" in main_area(hidden)
        refused = AuditEvent.objects.filter(event_type="case.view_refused").order_by("seq")
        assert [(e.target_id, e.actor, e.result, e.error_code) for e in refused] == [
            (case.case_number, "sam", "REFUSED", "NOT_FOUND"),
            ("CASE-2026-999999", "sam", "REFUSED", "NOT_FOUND"),
        ]

    @pytest.mark.parametrize("number", ["X" * 300, "CASE-2026-1", "case-2026-000001", "CASE-2026-000001%00"])
    def test_a_malformed_case_number_is_a_plain_404(self, pat, number):
        client = signed_in(pat)
        assert client.get(f"/cases/{number}/").status_code == 404
        assert client.post(f"/cases/{number}/notes/", {}).status_code == 404
        assert client.get(f"/cases/{number}/evidence/1/").status_code == 404

    def test_the_assignee_sees_every_work_form(self, pat):
        case = take(open_case(), pat)
        html = page_html(signed_in(pat).get(workbench_url(case.case_number)))
        base = workbench_url(case.case_number)
        assert set(post_forms(html)) == {
            f"{base}assign/", f"{base}notes/", f"{base}findings/", f"{base}evidence/", f"{base}links/",
            *(f"{base}transition/{name}/" for name in ("triage", "start", "resolve", "cancel")),
        }  # fmt: skip
        assert 'enctype="multipart/form-data"' in html
        assert 'data-testid="take-form"' not in html

    def test_a_team_member_sees_take_and_assign_but_no_work_forms(self, quinn):
        case = open_case()
        html = page_html(signed_in(quinn).get(workbench_url(case.case_number)))
        base = workbench_url(case.case_number)
        assert set(post_forms(html)) == {f"{base}take/", f"{base}assign/"}
        assert 'data-testid="note-form"' not in html

    def test_a_team_member_sees_nothing_to_do_on_a_colleagues_case(self, pat, quinn):
        case = take(open_case(), pat)
        html = page_html(signed_in(quinn).get(workbench_url(case.case_number)))
        assert post_forms(html) == []
        assert "only its assignee works it" in html

    def test_an_auditor_reads_with_no_forms(self, pat, avery):
        case = take(open_case(), pat)
        response = signed_in(avery).get(workbench_url(case.case_number))
        assert response.status_code == 200
        assert post_forms(page_html(response)) == []

    def test_shows_sla_clock_links_evidence_findings_and_timeline(self, pat):
        case = take(open_case(severity=Severity.CRITICAL, minutes_ago=90), pat)  # 60 min SLA: overdue 30 min
        other = open_case(title="earlier occurrence")
        now = timezone.now()
        link_add(case_number=case.case_number, object_type="ops_case", object_id=other.case_number,
                 relation_type="RELATES_TO", actor=actor(pat), now=now)  # fmt: skip
        evidence = evidence_add(
            case_number=case.case_number, upload=SimpleUploadedFile("advice.pdf", PDF), evidence_type="BANK_DOCUMENT",
            classification="CONFIDENTIAL", retention_class="FINANCIAL_10Y", actor=actor(pat), now=now,
        )  # fmt: skip
        finding_add(
            case_number=case.case_number, finding_type="ROOT_CAUSE", source="bank_statement",
            conclusion="Bank returned the funds.", evidence_id=evidence.pk, actor=actor(pat), now=now,
        )  # fmt: skip
        note_add(case_number=case.case_number, note_type="COMMENT", body="Called the bank.", actor=actor(pat),
                 now=now + dt.timedelta(seconds=1))  # fmt: skip
        response = signed_in(pat).get(workbench_url(case.case_number))
        html = page_html(response)
        clock = re.search(r'data-testid="sla-clock">(.*?)</dd>', html, re.S).group(1)
        assert "overdue by 3" in clock  # 30 or 31 minutes
        assert 'data-sla="breached"' in html
        assert f'href="{workbench_url(other.case_number)}">{other.case_number}</a>' in html
        download = reverse("cases:evidence_download", args=[case.case_number, evidence.pk])
        assert f'href="{download}"' in html
        assert "Bank returned the funds." in html and "BANK_STATEMENT" in html
        timeline = response.context["wb"].timeline
        assert timeline[0].kind == "note" and timeline[0].body == "Called the bank."
        assert [item.at for item in timeline] == sorted((item.at for item in timeline), reverse=True)
        assert {"case.opened", "case.assigned"} <= {item.title for item in timeline if item.kind == "event"}

    def test_a_link_whose_object_is_gone_shows_not_found(self, pat):
        known = {"obj_1"}
        registry.register_linkable_type(
            "test_thing", title="Test thing",
            describe=lambda ids: {i: registry.LinkedObjectView(label=i) for i in ids if i in known},
        )  # fmt: skip
        try:
            case = take(open_case(), pat)
            link_add(case_number=case.case_number, object_type="test_thing", object_id="obj_1",
                     relation_type="AFFECTS", actor=actor(pat), now=timezone.now())  # fmt: skip
            known.clear()
            html = page_html(signed_in(pat).get(workbench_url(case.case_number)))
            links = re.search(r'data-testid="links-table".*?</table>', html, re.S).group(0)
            assert "<code>obj_1</code>" in links and "not found" in links
        finally:
            registry._TYPES.pop("test_thing", None)

    def test_query_count_does_not_grow_with_the_timeline(self, pat):
        case = take(open_case(), pat)
        client = signed_in(pat)
        url = workbench_url(case.case_number)
        client.get(url)
        with CaptureQueriesContext(connection) as few:
            client.get(url)
        for i in range(15):
            note_add(case_number=case.case_number, note_type="COMMENT", body=f"note {i}", actor=actor(pat),
                     now=timezone.now())  # fmt: skip
        with CaptureQueriesContext(connection) as many:
            client.get(url)
        assert len(many) == len(few)


def load(client: Client, case_number: str) -> str:
    response = client.get(workbench_url(case_number))
    assert response.status_code == 200
    return page_html(response)


class TestUploadCap:
    def test_an_upload_past_the_request_cap_is_refused_before_it_is_stored(self, pat, settings):
        settings.UPLOAD_MAX_BYTES = 4096
        case = open_case()
        n = case.case_number
        client = signed_in(pat)
        client.post(f"{workbench_url(n)}take/", form_fields(load(client, n), "take-form"))
        upload = SimpleUploadedFile("big.pdf", PDF + b"0" * 10_000, content_type="application/pdf")
        evidence = {
            **form_fields(load(client, n), "evidence-form"), "upload": upload, "evidence_type": "CORRESPONDENCE",
            "classification": "INTERNAL", "retention_class": "OPERATIONAL_2Y", "description": "too big",
        }  # fmt: skip
        response = client.post(f"{workbench_url(n)}evidence/", evidence)
        assert response.status_code == 413
        assert "larger than the 4096 bytes this service accepts" in page_html(response)
        assert not CaseEvidence.objects.filter(case=case).exists()


class TestWorkbenchCommands:
    def test_take_note_evidence_start_and_resolve(self, pat):
        case = open_case(severity=Severity.HIGH)
        n = case.case_number
        client = signed_in(pat)
        base = workbench_url(n)

        response = client.post(f"{base}take/", form_fields(load(client, n), "take-form"))
        assert response.status_code == 302 and response["Location"] == base
        assert fetch(n).owner_user == pat

        html = load(client, n)
        assert "needs a verification finding or evidence" in html  # the objection, next to the resolve form
        note = {**form_fields(html, "note-form"), "note_type": "PROVIDER_CONTACT", "body": "Provider confirms.",
                "redaction_level": "INTERNAL"}  # fmt: skip
        assert client.post(f"{base}notes/", note).status_code == 302
        upload = SimpleUploadedFile("provider reply.pdf", PDF, content_type="application/octet-stream")
        evidence = {
            **form_fields(load(client, n), "evidence-form"), "upload": upload, "evidence_type": "CORRESPONDENCE",
            "classification": "INTERNAL", "retention_class": "OPERATIONAL_2Y", "description": "reply",
        }  # fmt: skip
        response = client.post(f"{base}evidence/", evidence)
        assert response.status_code == 302, message_texts(response)
        html = load(client, n)
        assert "needs a verification finding" not in html
        assert client.post(f"{base}transition/start/", hidden_fields_of_transition(html, "start")).status_code == 302
        assert fetch(n).status == CaseStatus.IN_PROGRESS
        resolve = {**form_fields(load(client, n), "form-resolve"), "resolution_code": "EXTERNAL_RESOLVED",
                   "resolution_summary": "Provider captured; ledger matches."}  # fmt: skip
        response = client.post(f"{base}transition/resolve/", resolve)
        assert response.status_code == 302
        case = fetch(n)
        assert (case.status, case.resolution_code) == (CaseStatus.RESOLVED, "EXTERNAL_RESOLVED")
        page = client.get(base)
        assert f"Resolve: {n} is now resolved." in page_html(page)
        assert [e.event_type for e in events(n)] == [
            "case.opened", "case.assigned", "case.note_added", "case.evidence_added", "case.start", "case.resolve"
        ]  # fmt: skip
        # commands made through the screens carry the request's correlation id into the timeline
        resolved = events(n, event_type="case.resolve").get()
        assert resolved.correlation_id and resolved.correlation_id in page_html(page)
        assert [o for o in post_forms(page_html(page)) if "/transition/" in o] == [
            f"{base}transition/close/", f"{base}transition/reopen/"
        ]  # fmt: skip

    def test_a_refused_resolve_shows_the_reason_and_changes_nothing(self, pat):
        case = take(open_case(severity=Severity.HIGH), pat)
        n = case.case_number
        client = signed_in(pat)
        before = unchanged(n)
        data = {**form_fields(load(client, n), "form-resolve"), "resolution_code": "FIXED",
                "resolution_summary": "Looks fine now."}  # fmt: skip
        response = client.post(f"{workbench_url(n)}transition/resolve/", data)
        assert response.status_code == 409
        html = page_html(response)
        assert "Refused: cannot resolve yet: a high severity case needs a verification finding or evidence" in html
        assert "Looks fine now." in html  # the operator's input is kept
        assert unchanged(n) == before
        refusal = events(n, event_type="case.command_refused").get()
        assert (refusal.result, refusal.error_code, refusal.action_type, refusal.actor) == (
            "REFUSED", "POLICY_DENIED", "CASE_RESOLVE", "pat"
        )  # fmt: skip

    def test_a_stale_page_is_refused_with_a_reload_message(self, pat):
        case = take(open_case(), pat)
        n = case.case_number
        client = signed_in(pat)
        stale = hidden_fields_of_transition(load(client, n), "start")
        note_add(case_number=n, note_type="COMMENT", body="meanwhile", actor=actor(pat), now=timezone.now())
        before = unchanged(n)
        response = client.post(f"{workbench_url(n)}transition/start/", stale, follow=True)
        assert response.redirect_chain == [(workbench_url(n), 302)]
        assert "changed since you loaded it" in page_html(response) and "reload" in page_html(response)
        assert unchanged(n) == before
        assert events(n, event_type="case.command_refused").get().error_code == "STALE_TARGET"

    def test_a_double_submit_is_one_command(self, pat):
        case = open_case()
        n = case.case_number
        client = signed_in(pat)
        take_form = form_fields(load(client, n), "take-form")
        assert client.post(f"{workbench_url(n)}take/", take_form).status_code == 302
        html = load(client, n)
        note = {**form_fields(html, "note-form"), "note_type": "COMMENT", "body": "once", "redaction_level": "INTERNAL"}
        client.post(f"{workbench_url(n)}notes/", note)
        again = client.post(f"{workbench_url(n)}notes/", note)
        again_take = client.post(f"{workbench_url(n)}take/", take_form)
        assert "already sent and carried out" in " ".join(message_texts(again))
        assert "already sent and carried out" in " ".join(message_texts(again_take))
        assert CaseNote.objects.filter(case__case_number=n).count() == 1
        assert events(n, event_type="case.assigned").count() == 1
        assert not events(n, event_type="case.command_refused").exists()

    def test_a_team_member_who_is_not_the_assignee_is_refused(self, pat, quinn):
        case = take(open_case(), pat)
        n = case.case_number
        data = {**form_fields(load(signed_in(pat), n), "note-form"), "note_type": "COMMENT", "body": "mine now",
                "redaction_level": "INTERNAL"}  # fmt: skip
        before = unchanged(n)
        response = signed_in(quinn).post(f"{workbench_url(n)}notes/", data)
        assert response.status_code == 409
        assert "only the case&#x27;s assignee may add a note" in page_html(response)
        assert unchanged(n) == before
        assert events(n, event_type="case.command_refused").get().error_code == "PERMISSION_DENIED"

    def test_an_outsider_posting_gets_a_404(self, pat, sam):
        case = take(open_case(), pat)
        data = {**form_fields(load(signed_in(pat), case.case_number), "note-form"), "note_type": "COMMENT",
                "body": "peek", "redaction_level": "INTERNAL"}  # fmt: skip
        before = unchanged(case.case_number)
        assert signed_in(sam).post(f"{workbench_url(case.case_number)}notes/", data).status_code == 404
        assert unchanged(case.case_number) == before
        assert events(case.case_number, event_type="case.command_refused").get().error_code == "NOT_FOUND"

    def test_invalid_input_is_shown_with_the_form(self, pat):
        case = take(open_case(), pat)
        n = case.case_number
        client = signed_in(pat)
        data = {**form_fields(load(client, n), "note-form"), "note_type": "COMMENT", "body": "card 4111111111111111",
                "redaction_level": "INTERNAL"}  # fmt: skip
        before = unchanged(n)
        response = client.post(f"{workbench_url(n)}notes/", data)
        assert response.status_code == 400
        assert "Refused: Note: Remove the card number" in page_html(response)
        assert unchanged(n) == before

    def test_a_form_without_the_case_version_is_refused(self, pat):
        case = take(open_case(), pat)
        fields = hidden_fields_of_transition(load(signed_in(pat), case.case_number), "start")
        del fields["expected_version"]
        response = signed_in(pat).post(f"{workbench_url(case.case_number)}transition/start/", fields)
        assert response.status_code == 400 and "reload the page" in page_html(response)
        assert fetch(case.case_number).status == CaseStatus.OPEN

    def test_assign_to_a_colleague_back_to_the_queue_and_route(self, pat, quinn):
        case = take(open_case(), pat)
        n = case.case_number
        client = signed_in(pat)
        html = load(client, n)
        assert f'<option value="{quinn.pk}">quinn' in html
        client.post(f"{workbench_url(n)}assign/", {**form_fields(html, "assign-form"), "assignee": quinn.pk})
        assert fetch(n).owner_user == quinn
        quinn_client = signed_in(quinn)
        quinn_client.post(f"{workbench_url(n)}assign/", {**form_fields(load(quinn_client, n), "assign-form")})
        assert fetch(n).owner_user is None
        route = {**form_fields(load(quinn_client, n), "route-form"), "team": "finance_ops", "reason_text": "a break"}
        response = quinn_client.post(f"{workbench_url(n)}assign/", route)
        assert response.status_code == 302 and response["Location"] == reverse("cases:worklist")
        assert (fetch(n).owner_team, fetch(n).owner_user) == ("finance_ops", None)
        assert quinn_client.get(workbench_url(n)).status_code == 404  # no longer in quinn's team

    def test_unknown_transition_and_get_are_refused(self, pat):
        case = take(open_case(), pat)
        client = signed_in(pat)
        assert client.post(f"{workbench_url(case.case_number)}transition/wait_approval/", {}).status_code == 404
        assert client.get(f"{workbench_url(case.case_number)}take/").status_code == 405
        assert client.get(f"{workbench_url(case.case_number)}notes/").status_code == 405

    def test_link_and_finding_through_the_screen(self, pat):
        case = take(open_case(), pat)
        other = open_case()
        n = case.case_number
        client = signed_in(pat)
        html = load(client, n)
        link = {**form_fields(html, "link-form"), "object_type": "ops_case", "object_id": other.case_number,
                "relation_type": "DUPLICATE_OF"}  # fmt: skip
        assert client.post(f"{workbench_url(n)}links/", link).status_code == 302
        finding = {**form_fields(load(client, n), "finding-form"), "finding_type": "VERIFICATION",
                   "source": "ledger", "conclusion": "Journal posted once.", "evidence": ""}  # fmt: skip
        assert client.post(f"{workbench_url(n)}findings/", finding).status_code == 302
        bad_link = {**form_fields(load(client, n), "link-form"), "object_type": "ops_case",
                    "object_id": "CASE-1999-000001", "relation_type": "RELATES_TO"}  # fmt: skip
        response = client.post(f"{workbench_url(n)}links/", bad_link)
        assert response.status_code == 400 and "no case &#x27;CASE-1999-000001&#x27;" in page_html(response)
        assert [e.event_type for e in events(n, result="SUCCEEDED")][-2:] == ["case.linked", "case.finding_added"]


# --- evidence download ---------------------------------------------------------------------------


class TestEvidenceDownload:
    @pytest.fixture
    def evidence(self, pat):
        case = take(open_case(), pat)
        return evidence_add(
            case_number=case.case_number, upload=SimpleUploadedFile("../../etc/advice.pdf", PDF),
            evidence_type="BANK_DOCUMENT", classification="CONFIDENTIAL", retention_class="FINANCIAL_10Y",
            actor=actor(pat), now=timezone.now(),
        )  # fmt: skip

    def url(self, evidence) -> str:
        return reverse("cases:evidence_download", args=[evidence.case.case_number, evidence.pk])

    def test_an_attachment_under_a_server_chosen_name_that_is_never_rendered(self, pat, evidence):
        response = signed_in(pat).get(self.url(evidence))
        n = evidence.case.case_number
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == PDF
        assert response["Content-Disposition"] == f'attachment; filename="{n}-evidence-{evidence.pk}.pdf"'
        assert response["Content-Type"] == "application/pdf"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"].startswith("sandbox")
        downloaded = events(n, event_type="case.evidence_downloaded").get()
        assert (downloaded.actor, downloaded.after["evidence_id"]) == ("pat", evidence.pk)

    def test_a_global_reader_may_download(self, avery, evidence):
        assert signed_in(avery).get(self.url(evidence)).status_code == 200

    def test_an_outsider_gets_a_404_and_the_refusal_is_audited(self, sam, evidence):
        n = evidence.case.case_number
        response = signed_in(sam).get(self.url(evidence))
        assert response.status_code == 404
        assert not events(n, event_type="case.evidence_downloaded").exists()
        refusal = events(n, event_type="case.command_refused").get()
        assert (refusal.actor, refusal.action_type, refusal.error_code) == (
            "sam", "CASE_EVIDENCE_DOWNLOAD", "NOT_FOUND"
        )  # fmt: skip

    def test_an_out_of_range_evidence_id_is_a_404(self, pat, evidence):
        url = reverse("cases:evidence_download", args=[evidence.case.case_number, 1])
        assert signed_in(pat).get(url.replace("/1/", f"/{10**30}/")).status_code == 404

    def test_evidence_of_another_case_is_a_404(self, pat, evidence):
        other = take(open_case(), pat)
        url = reverse("cases:evidence_download", args=[other.case_number, evidence.pk])
        assert signed_in(pat).get(url).status_code == 404


# --- admin ---------------------------------------------------------------------------------------


class TestAdmin:
    def test_cases_are_view_only(self, admin_client, pat):
        case = take(open_case(), pat)
        note_add(case_number=case.case_number, note_type="COMMENT", body="seen in admin", actor=actor(pat),
                 now=timezone.now())  # fmt: skip
        listing = admin_client.get(reverse("admin:cases_opscase_changelist"))
        assert listing.status_code == 200 and case.case_number in page_html(listing)
        detail = admin_client.get(reverse("admin:cases_opscase_change", args=[case.pk]))
        html = page_html(detail)
        assert detail.status_code == 200 and "seen in admin" in html
        change_form = html[html.index('id="opscase_form"') :]
        assert 'name="status"' not in change_form
        assert 'name="title"' not in change_form
        assert 'name="_save"' not in change_form
        assert admin_client.get(reverse("admin:cases_opscase_add")).status_code == 403
        change_url = reverse("admin:cases_opscase_change", args=[case.pk])
        assert admin_client.post(change_url, {"title": "x"}).status_code == 403
        assert admin_client.get(reverse("admin:cases_opscase_delete", args=[case.pk])).status_code == 403
        assert fetch(case.case_number).title == case.title

    @pytest.mark.parametrize(
        "model", ["casenote", "caseevidence", "casefinding", "caselink", "exceptionoccurrence", "slapolicy"]
    )
    def test_records_and_policies_are_view_only(self, admin_client, model):
        assert admin_client.get(reverse(f"admin:cases_{model}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:cases_{model}_add")).status_code == 403
