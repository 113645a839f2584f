"""The approval screens: the checker inbox (only what this user may decide, bulk decisions), the
maker's requests, every request with filters, keyset pages, a fixed query count and the CSV export,
a request's page (who sees which decision form, refusals that change nothing) and the ledger
adjustment form (exact preview, two steps, a double submit is one request).

Data is set up only through the services, as production writes it: a case opened by a finance ops
user with cases.services.case_open, requests proposed with approvals.services.request_submit.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals import selectors
from approvals.models import ActionRequest, RequestStatus
from approvals.services import request_approve, request_reject, request_submit
from audit.models import AuditEvent, AuditResult
from backoffice.actors import Actor, system_actor
from backoffice.clock import business_date
from cases.services import case_open
from ledger.models import LedgerJournal
from ledger.services import Source, journal_post_rule
from tests.factories.users import UserFactory, user_with_role

pytestmark = pytest.mark.django_db

ADJUSTMENT = "CREATE_LEDGER_ADJUSTMENT"
_keys = itertools.count(1)


# --- helpers -------------------------------------------------------------------------------------


def actor(user) -> Actor:
    return Actor.from_user(user)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def open_case(user, title: str = "Fee charged twice on the 18 Nov settlement"):
    return case_open(case_type="RECONCILIATION_BREAK", severity="MEDIUM", title=title, actor=actor(user),
                     now=timezone.now())  # fmt: skip


def propose(maker, case, *, merchant: str = "m_1", amount: int = 250_000, currency: str = "IDR",
            kind: str = "FEE_REFUND", reason: str = "FEE_CORRECTION", text: str = "Fee charged twice on the 18th",
            ticket: str = "", minutes_ago: float = 0, key: str = "") -> ActionRequest:  # fmt: skip
    return request_submit(
        action_type=ADJUSTMENT, actor=actor(maker), now=timezone.now() - dt.timedelta(minutes=minutes_ago),
        payload={"merchant_ref": merchant, "currency": currency, "amount_minor": amount, "adjustment_type": kind},
        reason_code=reason, reason_text=text, case_ref=case.case_number, ticket_id=ticket,
        idempotency_key=key or f"test-{next(_keys)}",
    )  # fmt: skip


def capture(merchant: str = "m_1", gross: int = 100_000, fee: int = 2_500) -> LedgerJournal:
    """A captured payment: the merchant's payable is credited gross - fee."""
    now = timezone.now()
    return journal_post_rule(
        rule_code="CAPTURE_SUCCEEDED", currency="IDR", amounts={"GROSS": gross, "FEE": fee}, merchant_ref=merchant,
        source=Source("payment_attempt", f"pa_{next(_keys)}"), accounting_date=business_date(now),
        idempotency_key=f"capture-{next(_keys)}", actor=system_actor("test"), now=now,
    )  # fmt: skip


def fetch(ar: ActionRequest) -> ActionRequest:
    return ActionRequest.objects.get(pk=ar.pk)


def detail_url(ar: ActionRequest) -> str:
    return reverse("approvals:request_detail", args=[ar.public_id])


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def html(response) -> str:
    return response.content.decode()


def hidden(page: str, testid: str) -> dict[str, str]:
    """The hidden inputs of the form marked data-testid=`testid`."""
    form = re.search(rf'<form[^>]*data-testid="{testid}".*?</form>', page, re.S)
    assert form, f"no {testid} on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


def has_form(page: str, testid: str) -> bool:
    return f'data-testid="{testid}"' in page


def public_ids(response, key: str = "page") -> list[str]:
    assert response.status_code == 200, response.status_code
    return [r.public_id for r in response.context[key].requests]


def money_html(amount: str, currency: str) -> str:
    return f'<span class="amount">{amount}</span> <span class="ccy">{currency}</span>'


def audit_events(event_type: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type, **filters).order_by("seq"))


# --- people and a case ---------------------------------------------------------------------------


@pytest.fixture
def fran():
    """Finance ops: the maker."""
    return user_with_role("finance_ops", username="fran")


@pytest.fixture
def olly():
    """Another finance ops user: may read requests, may not decide them."""
    return user_with_role("finance_ops", username="olly")


@pytest.fixture
def morgan():
    """Finance manager: the checker."""
    return user_with_role("finance_manager", username="morgan")


@pytest.fixture
def dual():
    """Holds both roles: may propose and decide, but never their own request."""
    return UserFactory(username="dual", roles=["finance_ops", "finance_manager"])


@pytest.fixture
def avery():
    return user_with_role("auditor", username="avery")


@pytest.fixture
def outsider():
    """Has the decide permission through an ad-hoc group but holds no back-office role."""
    group = Group.objects.create(name="adhoc_checkers")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="ledger", codename="decide_adjustment"),
        *Permission.objects.filter(content_type__app_label="approvals", codename="view_actionrequest"),
    )
    user = UserFactory(username="outsider")
    user.groups.add(group)
    return user


@pytest.fixture
def case(fran):
    return open_case(fran)


# --- the inbox -----------------------------------------------------------------------------------


class TestInbox:
    def test_lists_only_what_this_user_may_decide_oldest_first(self, fran, dual, morgan, olly, avery, outsider, case):
        newer = propose(fran, case, merchant="m_1", minutes_ago=5)
        older = propose(fran, case, merchant="m_2", minutes_ago=30)
        by_dual = propose(dual, case, merchant="m_3", minutes_ago=10)
        decided = propose(fran, case, merchant="m_4", minutes_ago=40)
        request_reject(public_id=decided.public_id, actor=actor(morgan), now=timezone.now(), reason_text="no")
        url = reverse("approvals:inbox")

        assert public_ids(signed_in(morgan).get(url)) == [older.public_id, by_dual.public_id, newer.public_id]
        # Not their own request, even with the checker role.
        assert public_ids(signed_in(dual).get(url)) == [older.public_id, newer.public_id]
        # No decide permission, or the permission without an approver role: nothing to decide.
        for user in (fran, olly, avery, outsider):
            assert public_ids(signed_in(user).get(url)) == [], user.username

    def test_a_maker_sees_an_empty_inbox_with_an_explanation_and_no_decision_form(self, fran, case):
        propose(fran, case)
        response = signed_in(fran).get(reverse("approvals:inbox"))
        page = html(response)
        assert "None of your roles decides change requests" in page
        assert not has_form(page, "bulk-form")

    def test_query_count_does_not_grow_with_rows(self, fran, morgan, case):
        client = signed_in(morgan)
        url = reverse("approvals:inbox")
        propose(fran, case, merchant="m_0")
        client.get(url)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as few:
            assert len(public_ids(client.get(url))) == 1
        for n in range(1, 9):
            propose(fran, case, merchant=f"m_{n}")
        with CaptureQueriesContext(connection) as many:
            assert len(public_ids(client.get(url))) == 9
        assert len(many) == len(few)

    def test_pages_oldest_first_with_a_keyset_cursor(self, fran, morgan, case, monkeypatch):
        monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
        made = [propose(fran, case, merchant=f"m_{n}", minutes_ago=50 - n) for n in range(5)]
        client = signed_in(morgan)
        url = reverse("approvals:inbox")
        first = client.get(url)
        assert public_ids(first) == [made[0].public_id, made[1].public_id]
        second = client.get(url, {"cursor": first.context["page"].next_cursor})
        assert public_ids(second) == [made[2].public_id, made[3].public_id]
        third = client.get(url, {"cursor": second.context["page"].next_cursor})
        assert public_ids(third) == [made[4].public_id] and third.context["page"].next_cursor == ""
        bad = client.get(url, {"cursor": "not-a-cursor"})
        assert bad.context["page"] is None and "start from the first page" in html(bad)

    def test_approve_selected_decides_each_and_refuses_self_approval_by_name(self, fran, dual, case):
        theirs = propose(fran, case, merchant="m_1")
        own = propose(dual, case, merchant="m_2")
        client = signed_in(dual)
        page = html(client.get(reverse("approvals:inbox")))
        key = hidden(page, "bulk-form")["idempotency_key"]
        response = client.post(
            reverse("approvals:bulk_decide", args=["approve"]),
            {"idempotency_key": key, "selected": [theirs.public_id, own.public_id], "reason": "checked the report"},
        )
        assert response.status_code == 302
        texts = message_texts(response)
        assert texts[0] == "Approved 1 of 2; refused 1."
        assert texts[1].startswith(f"{theirs.public_id}: approved and executed: lj_")
        assert texts[2] == f"{own.public_id}: refused: you proposed {own.public_id}; another person must decide it"
        assert fetch(theirs).status == RequestStatus.SUCCEEDED and fetch(theirs).decision_reason == "checked the report"
        assert fetch(own).status == RequestStatus.REQUESTED and fetch(own).checker == ""
        refused = audit_events("approvals.approve_refused", target_id=own.public_id)
        assert [(e.actor, e.error_code, e.result) for e in refused] == [("dual", "SELF_APPROVAL", AuditResult.REFUSED)]

        # The same form sent again changes nothing and is not run again.
        client.get(reverse("approvals:inbox"))  # the page the redirect leads to shows (and uses up) the messages
        again = client.post(
            reverse("approvals:bulk_decide", args=["approve"]),
            {"idempotency_key": key, "selected": [theirs.public_id, own.public_id]},
        )
        assert "already sent" in message_texts(again)[0]
        assert len(audit_events("approvals.approve_refused", target_id=own.public_id)) == 1

    def test_reject_selected_needs_a_reason(self, fran, morgan, case):
        ar = propose(fran, case)
        client = signed_in(morgan)
        url = reverse("approvals:bulk_decide", args=["reject"])
        response = client.post(url, {"idempotency_key": "k-1", "selected": [ar.public_id], "reason": "  "})
        assert "Nothing was decided" in message_texts(response)[0] and "needs a reason" in message_texts(response)[0]
        assert fetch(ar).status == RequestStatus.REQUESTED
        assert audit_events("approvals.request_rejected") == []

        client.get(reverse("approvals:inbox"))
        response = client.post(url, {"idempotency_key": "k-2", "selected": [ar.public_id], "reason": "Not a duplicate"})
        assert message_texts(response)[0] == "Rejected 1 of 1; refused 0."
        assert fetch(ar).status == RequestStatus.REJECTED and fetch(ar).decision_reason == "Not a duplicate"

    def test_bulk_decisions_are_post_only_and_refuse_unknown_decisions(self, morgan):
        client = signed_in(morgan)
        assert client.get(reverse("approvals:bulk_decide", args=["approve"])).status_code == 405
        assert client.post(reverse("approvals:bulk_decide", args=["execute"]), {}).status_code == 404


# --- my requests ---------------------------------------------------------------------------------


class TestMyRequests:
    def test_lists_the_makers_own_requests_in_any_status_newest_first(self, fran, olly, morgan, case):
        first = propose(fran, case, merchant="m_1", minutes_ago=20)
        second = propose(fran, case, merchant="m_2", minutes_ago=10)
        request_approve(public_id=first.public_id, actor=actor(morgan), now=timezone.now())
        propose(olly, case, merchant="m_3")
        response = signed_in(fran).get(reverse("approvals:mine"))
        assert public_ids(response) == [second.public_id, first.public_id]
        page = html(response)
        assert "SUCCEEDED" in page and "REQUESTED" in page and "morgan" in page
        assert public_ids(signed_in(morgan).get(reverse("approvals:mine"))) == []


# --- a request's page ----------------------------------------------------------------------------


class TestDetail:
    def test_shows_what_for_whom_who_when_why_and_the_exact_effect(self, fran, morgan, case):
        capture("m_1", gross=100_000, fee=2_500)  # payable 975.00 IDR
        ar = propose(fran, case, ticket="ZD-4411")
        response = signed_in(morgan).get(detail_url(ar))
        assert response.status_code == 200
        page = html(response)
        assert "Ledger of merchant m_1 in IDR" in page and "CREATE_LEDGER_ADJUSTMENT" in page
        assert "<strong>fran</strong>" in page and "FEE_CORRECTION" in page and "Fee charged twice on the 18th" in page
        assert f'href="{reverse("cases:workbench", args=[case.case_number])}"' in page and "ZD-4411" in page
        lines = re.search(r'data-testid="preview-lines".*?</table>', page, re.S).group(0)
        rows = re.findall(r"<tr>\s*<td[^>]*>(?:<a [^>]*>)?<code>([^<]+)</code>.*?</tr>", lines, re.S)
        assert rows == ["4000-IDR", "2100-IDR-m_1"]
        debit_row, credit_row = re.findall(r"<tr>\s*<td.*?</tr>", lines.split("<tfoot>")[0], re.S)
        assert money_html("2,500.00", "IDR") in debit_row.split('class="num"')[1]  # debit column
        assert money_html("2,500.00", "IDR") in credit_row.split('class="num"')[2]  # credit column
        assert "balanced" in lines
        balances = re.search(r'data-testid="preview-balances".*?</table>', page, re.S).group(0)
        assert money_html("975.00", "IDR") in balances and money_html("3,475.00", "IDR") in balances
        events = re.search(r'data-testid="request-events".*?</table>', page, re.S).group(0)
        assert "approvals.request_submitted" in events

    def test_a_reversal_shows_its_lines_and_a_failed_request_its_error(self, fran, morgan, case):
        journal = capture("m_1", gross=100_000, fee=2_500)
        reversal = request_submit(
            action_type="REVERSE_LEDGER_JOURNAL", payload={"journal": journal.public_id}, reason_code="DUPLICATE",
            reason_text="Posted twice", actor=actor(fran), now=timezone.now(), idempotency_key="rev-1",
            case_ref=case.case_number,
        )  # fmt: skip
        page = html(signed_in(morgan).get(detail_url(reversal)))
        lines = re.search(r'data-testid="preview-lines".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
        assert lines.count("<tr>") == 3 and "1100-IDR" in lines and "2100-IDR-m_1" in lines and "4000-IDR" in lines
        assert 'data-testid="preview-balances"' not in page and "Not reversible" in page

        failing = propose(fran, case, merchant="m_2", kind="MERCHANT_DEBIT", reason="OPERATIONAL_LOSS", amount=500)
        failed = request_approve(public_id=failing.public_id, actor=actor(morgan), now=timezone.now())
        assert failed.status == RequestStatus.FAILED
        page = html(signed_in(fran).get(detail_url(failing)))
        error = re.search(r'data-testid="request-error">(.*?)</dd>', page, re.S).group(1)
        assert failed.error_code in error and failed.error_message.split(";")[0] in error
        assert "was approved by morgan but failed when executed" in page

    def test_a_preview_that_is_not_a_ledger_preview_is_shown_as_json(self):
        from approvals.views.detail import preview_view

        shown = preview_view(ActionRequest(preview={"kind": "merchant", "summary": "Freeze payouts", "flag": True}))
        assert not shown["is_ledger"] and '"flag": true' in shown["json"] and shown["summary"] == "Freeze payouts"
        broken = preview_view(ActionRequest(preview={"kind": "ledger", "lines": [{"amount_minor": "x"}]}))
        assert not broken["is_ledger"] and '"amount_minor": "x"' in broken["json"]

    def test_decision_forms_only_for_someone_who_may_decide_now(self, fran, olly, morgan, avery, outsider, case):
        ar = propose(fran, case)
        page = html(signed_in(morgan).get(detail_url(ar)))
        assert has_form(page, "approve-form") and has_form(page, "reject-form")
        assert not has_form(page, "withdraw-form")

        expectations = {
            fran: "You proposed this request; another person must decide it",
            olly: "needs the permission ledger.decide_adjustment, which these roles hold: finance_manager",
            avery: "needs the permission ledger.decide_adjustment",
            outsider: "It may be decided by finance_manager; you hold no role",
        }
        for user, reason in expectations.items():
            page = html(signed_in(user).get(detail_url(ar)))
            assert not has_form(page, "approve-form") and not has_form(page, "reject-form"), user.username
            assert reason in page, user.username
        assert has_form(html(signed_in(fran).get(detail_url(ar))), "withdraw-form")
        assert not has_form(html(signed_in(olly).get(detail_url(ar))), "withdraw-form")

        request_approve(public_id=ar.public_id, actor=actor(morgan), now=timezone.now())
        page = html(signed_in(morgan).get(detail_url(ar)))
        assert not has_form(page, "approve-form") and "there is nothing left to decide" in page
        assert not has_form(html(signed_in(fran).get(detail_url(ar))), "withdraw-form")

    def test_approval_executes_and_links_the_journal_once(self, fran, morgan, case):
        ar = propose(fran, case)
        client = signed_in(morgan)
        fields = hidden(html(client.get(detail_url(ar))), "approve-form")
        response = client.post(reverse("approvals:approve", args=[ar.public_id]), {**fields, "note": "Matches report"})
        assert response.status_code == 302 and response["Location"] == detail_url(ar)
        done = fetch(ar)
        journal = done.result["ledger_journal"]
        assert done.status == RequestStatus.SUCCEEDED and done.checker == "morgan"
        assert message_texts(response) == [f"{ar.public_id} approved and executed: {journal}."]
        page = html(client.get(detail_url(ar)))
        assert f'href="{reverse("ledger:journal_detail", args=[journal])}"' in page
        assert "Matches report" in page

        again = client.post(reverse("approvals:approve", args=[ar.public_id]), {**fields, "note": "Matches report"})
        assert message_texts(again) == ["That form was already sent and carried out; nothing more was changed."]
        assert LedgerJournal.objects.filter(approval_ref=ar.public_id).count() == 1

    def test_self_approval_through_the_screen_is_refused_with_the_reason_and_changes_nothing(self, dual, case):
        ar = propose(dual, case)
        client = signed_in(dual)
        journals = LedgerJournal.objects.count()
        response = client.post(reverse("approvals:approve", args=[ar.public_id]), {"idempotency_key": "k-self"})
        assert response.status_code == 403
        assert message_texts(response) == [f"Refused: you proposed {ar.public_id}; another person must decide it"]
        after = fetch(ar)
        assert (after.status, after.checker, after.decided_at, after.version) == (RequestStatus.REQUESTED, "", None, 1)
        assert LedgerJournal.objects.count() == journals
        refused = audit_events("approvals.approve_refused", target_id=ar.public_id)
        assert [(e.actor, e.result, e.error_code, e.approval_ref) for e in refused] == [
            ("dual", AuditResult.REFUSED, "SELF_APPROVAL", ar.public_id)
        ]
        assert audit_events("approvals.request_approved") == []
        # The page shown with the refusal offers no decision to the maker.
        assert not has_form(html(response), "approve-form")

    def test_a_maker_without_the_checker_role_is_refused_too(self, fran, olly, case):
        ar = propose(fran, case)
        for user in (fran, olly):
            response = signed_in(user).post(reverse("approvals:approve", args=[ar.public_id]), {"idempotency_key": "k"})
            assert response.status_code == 403, user.username
        assert fetch(ar).status == RequestStatus.REQUESTED
        codes = [e.error_code for e in audit_events("approvals.approve_refused", target_id=ar.public_id)]
        assert codes == ["SELF_APPROVAL", "PERMISSION_DENIED"]

    def test_reject_needs_a_reason(self, fran, morgan, case):
        ar = propose(fran, case)
        client = signed_in(morgan)
        fields = hidden(html(client.get(detail_url(ar))), "reject-form")
        response = client.post(reverse("approvals:reject", args=[ar.public_id]), {**fields, "reason": "   "})
        assert response.status_code == 400
        assert message_texts(response) == [
            "Refused: Why it is rejected: A rejection needs a reason: the maker reads it."
        ]
        assert fetch(ar).status == RequestStatus.REQUESTED
        assert audit_events("approvals.request_rejected") == []

        response = client.post(reverse("approvals:reject", args=[ar.public_id]), {**fields, "reason": "Fee was right"})
        assert response.status_code == 302
        rejected = fetch(ar)
        assert (rejected.status, rejected.checker, rejected.decision_reason) == ("REJECTED", "morgan", "Fee was right")
        assert LedgerJournal.objects.filter(approval_ref=ar.public_id).count() == 0

    def test_the_maker_withdraws_a_pending_request_and_nobody_else_can(self, fran, morgan, case):
        ar = propose(fran, case)
        refused = signed_in(morgan).post(reverse("approvals:withdraw", args=[ar.public_id]), {"idempotency_key": "k"})
        assert refused.status_code == 403 and "only the maker (fran)" in message_texts(refused)[0]
        assert fetch(ar).status == RequestStatus.REQUESTED

        client = signed_in(fran)
        fields = hidden(html(client.get(detail_url(ar))), "withdraw-form")
        response = client.post(reverse("approvals:withdraw", args=[ar.public_id]), {**fields, "reason": "wrong amount"})
        assert response.status_code == 302
        assert (fetch(ar).status, fetch(ar).decision_reason) == (RequestStatus.CANCELLED, "wrong amount")

    def test_decisions_are_post_only_and_unknown_requests_are_404(self, fran, morgan, case):
        ar = propose(fran, case)
        client = signed_in(morgan)
        assert client.get(reverse("approvals:approve", args=[ar.public_id])).status_code == 405
        missing = "act_" + "0" * 26
        assert client.get(reverse("approvals:request_detail", args=[missing])).status_code == 404
        assert client.post(reverse("approvals:approve", args=[missing]), {"idempotency_key": "k"}).status_code == 404
        assert client.get("/approvals/requests/act_nope/").status_code == 404
        assert fetch(ar).status == RequestStatus.REQUESTED

    def test_screens_need_the_view_permission(self, fran, case):
        ar = propose(fran, case)
        sre = signed_in(user_with_role("sre"))  # technical metadata only: no change requests
        for url in (reverse("approvals:inbox"), reverse("approvals:mine"), reverse("approvals:request_list"),
                    detail_url(ar)):  # fmt: skip
            response = sre.get(url)
            assert response.status_code == 403, url
            assert "approvals.view_actionrequest" in html(response)
        assert Client().get(detail_url(ar)).status_code == 302  # anonymous: to the login page


# --- all requests --------------------------------------------------------------------------------


class TestAllRequests:
    @pytest.fixture
    def made(self, fran, olly, morgan, case):
        a = propose(fran, case, merchant="m_a", minutes_ago=30)
        b = propose(olly, case, merchant="m_b", kind="MERCHANT_CREDIT", reason="GOODWILL", minutes_ago=20)
        c = propose(fran, case, merchant="m_c", currency="USD", amount=1_200, minutes_ago=10)
        request_approve(public_id=a.public_id, actor=actor(morgan), now=timezone.now())
        request_reject(public_id=b.public_id, actor=actor(morgan), now=timezone.now(), reason_text="no")
        return {"a": fetch(a), "b": fetch(b), "c": fetch(c)}

    def test_filters(self, made, avery):
        client = signed_in(avery)
        url = reverse("approvals:request_list")
        a, b, c = (made[k].public_id for k in "abc")

        def ids(**params):
            return public_ids(client.get(url, params))

        assert ids() == [c, b, a]
        assert ids(ref="m_b") == [b]
        assert ids(maker="fran") == [c, a]
        assert ids(checker="morgan") == [b, a]
        assert ids(status="SUCCEEDED") == [a]
        assert ids(status="REQUESTED", maker="fran") == [c]
        assert ids(action_type=ADJUSTMENT) == [c, b, a]
        assert ids(target_type="merchant_ledger", target_id="m_c:USD") == [c]
        today = business_date(timezone.now())
        assert ids(date_from=today.isoformat(), date_to=today.isoformat()) == [c, b, a]
        assert ids(date_to=(today - dt.timedelta(days=1)).isoformat()) == []

    def test_an_invalid_filter_shows_nothing_rather_than_everything(self, made, avery):
        client = signed_in(avery)
        url = reverse("approvals:request_list")
        invalid = [{"status": "BOGUS"}, {"date_from": "2026-02-30"}, {"cursor": "1.2.3"},
                   {"date_from": "2026-11-02", "date_to": "2026-11-01"}]  # fmt: skip
        for params in invalid:
            response = client.get(url, params)
            assert response.status_code == 400 and response.context["page"] is None, params
            assert "No requests are shown until the filter is valid" in html(response)

    def test_keyset_pages_and_a_fixed_query_count(self, fran, avery, case, monkeypatch):
        monkeypatch.setattr(selectors, "PAGE_SIZE", 3)
        made = [propose(fran, case, merchant=f"m_{n}", minutes_ago=60 - n) for n in range(7)]
        newest_first = [ar.public_id for ar in reversed(made)]
        client = signed_in(avery)
        url = reverse("approvals:request_list")
        seen, cursor, counts = [], "", []
        while True:
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, {"maker": "fran", **({"cursor": cursor} if cursor else {})})
            counts.append(len(queries))
            seen += public_ids(response)
            cursor = response.context["page"].next_cursor
            if not cursor:
                break
            assert f"cursor={cursor}" in html(response) and "maker=fran" in html(response)
        assert seen == newest_first
        assert [len(p) for p in (seen[:3], seen[3:6], seen[6:])] == [3, 3, 1]
        assert len(set(counts[1:])) == 1  # after the first request warmed the caches: the same count

    def test_query_count_does_not_grow_with_rows(self, fran, avery, case):
        client = signed_in(avery)
        url = reverse("approvals:request_list")
        propose(fran, case, merchant="m_0")
        client.get(url)
        with CaptureQueriesContext(connection) as few:
            assert len(public_ids(client.get(url))) == 1
        for n in range(1, 12):
            propose(fran, case, merchant=f"m_{n}")
        with CaptureQueriesContext(connection) as many:
            assert len(public_ids(client.get(url))) == 12
        assert len(many) == len(few)


class TestExport:
    def test_csv_neutralises_formulas_and_the_export_is_audited(self, fran, avery, case):
        ar = propose(fran, case, text='=HYPERLINK("http://evil.example","refund")', ticket="@SUM(A1)")
        other = propose(fran, case, merchant="m_2")
        client = signed_in(avery)
        response = client.get(reverse("approvals:request_export"), {"ref": "m_1"})
        assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith('attachment; filename="action-requests-')
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        header, body = rows[0], rows[1:]
        assert len(body) == 1 and other.public_id not in str(body)
        row = dict(zip(header, body[0], strict=True))
        assert row["public_id"] == ar.public_id
        assert row["reason_text"] == '\'=HYPERLINK("http://evil.example","refund")'
        assert row["ticket_id"] == "'@SUM(A1)"
        assert (row["amount_minor"], row["amount"], row["currency"]) == ("250000", "2500.00", "IDR")
        assert row["maker"] == "fran" and row["status"] == "REQUESTED"
        (event,) = audit_events("approvals.exported")
        assert (event.actor, event.action_type, event.after["ref"]) == ("avery", "APPROVALS_EXPORT", "m_1")

    def test_export_needs_the_export_permission(self, fran, case):
        propose(fran, case)
        response = signed_in(fran).get(reverse("approvals:request_export"))
        assert response.status_code == 403
        assert "approvals.export_actionrequest" in html(response)
        assert audit_events("approvals.exported") == []
        list_page = html(signed_in(fran).get(reverse("approvals:request_list")))
        assert 'data-testid="export"' not in list_page

    def test_an_invalid_filter_exports_nothing(self, avery):
        response = signed_in(avery).get(reverse("approvals:request_export"), {"status": "BOGUS"})
        assert response.status_code == 400 and audit_events("approvals.exported") == []


# --- proposing a ledger adjustment ---------------------------------------------------------------


def adjustment_data(case, **changes) -> dict:
    data = {
        "merchant_ref": "m_1", "currency": "IDR", "amount": "2,500.00", "adjustment_type": "FEE_REFUND",
        "reason_code": "FEE_CORRECTION", "reason_text": "Fee charged twice on the 18th", "case_ref": case.case_number,
        "ticket_id": "ZD-1", "idempotency_key": "idem_test_1",
    }  # fmt: skip
    data.update(changes)
    return data


class TestAdjustmentForm:
    url = ""

    @pytest.fixture(autouse=True)
    def _url(self):
        self.url = reverse("approvals:adjustment_new")

    def test_the_form_offers_the_ledgers_types_and_the_policys_reasons_with_a_key(self, fran):
        response = signed_in(fran).get(self.url, {"merchant_ref": "m_1", "currency": "IDR"})
        assert response.status_code == 200
        form = response.context["form"]
        assert [c for c, _ in form.fields["adjustment_type"].choices][1:] == [
            "FEE_REFUND", "MERCHANT_CREDIT", "MERCHANT_DEBIT", "RESERVE_HOLD_CORRECTION", "RESERVE_RELEASE_CORRECTION",
        ]  # fmt: skip
        assert "FEE_CORRECTION" in dict(form.fields["reason_code"].choices)
        assert form.initial["merchant_ref"] == "m_1" and form.initial["idempotency_key"].startswith("idem_")

    def test_preview_shows_the_exact_lines_and_balances_and_writes_nothing(self, fran, case):
        capture("m_1", gross=100_000, fee=2_500)  # payable 975.00 IDR
        client = signed_in(fran)
        audit_before = AuditEvent.objects.count()
        response = client.post(self.url, {**adjustment_data(case), "step": "preview"})
        assert response.status_code == 200 and response.context["step"] == "preview"
        preview = response.context["preview"]
        assert [(ln["debit"], ln["account"], ln["amount_minor"], ln["currency"]) for ln in preview["lines"]] == [
            (True, "4000-IDR", 250_000, "IDR"),
            (False, "2100-IDR-m_1", 250_000, "IDR"),
        ]
        assert [(b["account"], b["before"], b["change"], b["after"]) for b in preview["balances"]] == [
            ("2100-IDR-m_1", 97_500, 250_000, 347_500)
        ]
        approval = response.context["approval"]
        assert approval["needed"] and approval["roles"] == ["Finance manager"] and approval["case_required"]
        page = html(response)
        assert "FEE_REFUND of 2,500.00 IDR for m_1" in page
        assert "needs approval" in page and "Finance manager" in page
        assert money_html("3,475.00", "IDR") in page
        # Nothing proposed, nothing audited; the submit form carries the same key.
        assert ActionRequest.objects.count() == 0 and AuditEvent.objects.count() == audit_before
        assert hidden(page, "submit-form")["idempotency_key"] == "idem_test_1"
        assert hidden(page, "submit-form")["step"] == "submit"

    @pytest.mark.parametrize(
        ("currency", "typed", "minor"),
        [("IDR", "2,500.00", 250_000), ("IDR", "2500.5", 250_050), ("JPY", "1,000", 1_000), ("KWD", "1.234", 1_234),
         ("USD", "0.01", 1)],
    )  # fmt: skip
    def test_amounts_in_major_units_become_exact_minor_units(self, fran, case, currency, typed, minor):
        response = signed_in(fran).post(self.url, {**adjustment_data(case, currency=currency, amount=typed),
                                                   "step": "preview"})  # fmt: skip
        assert response.status_code == 200, response.context["form"].errors
        assert response.context["form"].cleaned_data["amount_minor"] == minor

    @pytest.mark.parametrize(
        ("currency", "typed", "error"),
        [("IDR", "2500.001", "IDR has 2 decimal places"), ("JPY", "10.5", "JPY has 0 decimal places"),
         ("IDR", "abc", "Type a positive amount"), ("IDR", "-5", "Type a positive amount"),
         ("IDR", "0.00", "more than zero"), ("IDR", "1,00.00", "Type a positive amount"),
         ("IDR", "1e3", "Type a positive amount"), ("IDR", "99999999999999999999", "too large"),
         ("XXX", "1.00", "not an ISO 4217 currency")],
    )  # fmt: skip
    def test_amounts_that_are_not_exact_are_refused(self, fran, case, currency, typed, error):
        response = signed_in(fran).post(self.url, {**adjustment_data(case, currency=currency, amount=typed),
                                                   "step": "preview"})  # fmt: skip
        assert response.status_code == 400
        assert error in str(response.context["form"].errors)
        assert ActionRequest.objects.count() == 0

    def test_submit_proposes_once_however_often_the_form_is_sent(self, fran, case):
        client = signed_in(fran)
        data = {**adjustment_data(case), "step": "submit"}
        first = client.post(self.url, data)
        ar = ActionRequest.objects.get()
        assert first.status_code == 302 and first["Location"] == detail_url(ar)
        assert ar.status == RequestStatus.REQUESTED and ar.amount_minor == 250_000 and ar.maker == "fran"
        assert (ar.reason_code, ar.case_ref, ar.ticket_id) == ("FEE_CORRECTION", case.case_number, "ZD-1")
        assert message_texts(first) == [
            f"{ar.public_id} proposed. It waits for finance_manager; nothing is posted until it is approved."
        ]
        client.get(detail_url(ar))  # shows (and uses up) the messages
        second = client.post(self.url, data)
        assert second["Location"] == detail_url(ar)
        assert message_texts(second) == [f"This form already proposed {ar.public_id}; nothing more was proposed."]
        # Another browser session with the same form: the service answers from the key.
        client.get(detail_url(ar))
        third = signed_in(fran).post(self.url, data)
        assert third["Location"] == detail_url(ar) and "already proposed" in message_texts(third)[0]
        assert ActionRequest.objects.count() == 1
        assert len(audit_events("approvals.request_submitted")) == 1

    def test_a_refused_proposal_keeps_the_input_and_says_why(self, fran, case):
        response = signed_in(fran).post(self.url, {**adjustment_data(case, case_ref=""), "step": "submit"})
        assert response.status_code == 403
        assert "a ledger adjustment needs a case: give the number of an open case" in html(response)
        assert response.context["form"]["merchant_ref"].value() == "m_1"
        assert ActionRequest.objects.count() == 0
        (event,) = audit_events("approvals.submit_refused")
        assert (event.actor, event.error_code) == ("fran", "POLICY_DENIED")

    def test_a_second_change_to_the_same_ledger_is_flagged_in_the_preview(self, fran, case):
        waiting = propose(fran, case)
        response = signed_in(fran).post(self.url, {**adjustment_data(case, idempotency_key="other"), "step": "preview"})
        assert response.status_code == 200
        assert waiting.public_id in html(response) and 'data-testid="waiting-request"' in html(response)

    def test_only_makers_may_open_the_form(self, morgan, avery):
        for user in (morgan, avery):
            response = signed_in(user).get(self.url)
            assert response.status_code == 403 and "ledger.propose_adjustment" in html(response)


class TestNavigation:
    def test_the_approvals_section_per_role(self, fran, morgan):
        fran_nav = html(signed_in(fran).get(reverse("approvals:inbox")))
        assert 'data-hotkey="i"' in fran_nav and "Propose adjustment" in fran_nav and "My requests" in fran_nav
        manager_nav = html(signed_in(morgan).get(reverse("approvals:inbox")))
        assert "Checker inbox" in manager_nav and "Propose adjustment" not in manager_nav
        assert signed_in(morgan).get("/approvals/")["Location"] == reverse("approvals:inbox")
