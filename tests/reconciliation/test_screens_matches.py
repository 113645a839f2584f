"""The match history and one match's page: who may read them, filters, keyset pages, a fixed number of
queries, the items of a match, and "unmatch": proposed for approval (UNDO_RECONCILIATION_MATCH), with
nothing changed until a finance manager other than the maker approves it.

Data is made only through the services: statement imports, expected movements, runs, and requests
proposed and decided through the screens.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from reconciliation.models import BreakStatus, ItemSide, MatchState, ReconciliationBreak, ReconciliationMatch
from reconciliation.selectors import matches as match_selectors
from reconciliation.selectors.items import item_states
from tests.factories import reconciliation as recon
from tests.factories.users import user_with_role
from tests.reconciliation.test_screens_breaks import DAY, hidden
from tests.reconciliation.test_screens_files import READERS, bank_source, csv_file, html, message_texts, signed_in

pytestmark = pytest.mark.django_db

LIST = reverse("reconciliation:match_list")


def match_url(match) -> str:
    return reverse("reconciliation:match_detail", args=[match.public_id])


def unmatch_url(match) -> str:
    return reverse("reconciliation:match_unmatch", args=[match.public_id])


def shown(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return [m.public_id for m in response.context["page"].matches]


@pytest.fixture
def matched():
    """A bank account whose statement shows two payouts we sent, matched by the exact-reference rule,
    and a line nobody recognises (a break)."""
    payouts = [recon.payout_sent(amount) for amount in (250_000, 125_000)]
    src = bank_source("bank-ops")
    recon.refresh(src)
    recon.imported(src, csv_file([
        *((DAY, f"-{p.amount_minor // 100}.00", "IDR", p.provider_payout_reference or p.public_id) for p in payouts),
        (DAY, "-99.00", "IDR", "NOREF-1"),
    ]))  # fmt: skip
    recon.run(src)
    matches = list(ReconciliationMatch.objects.filter(source=src).order_by("id"))
    assert len(matches) == 2
    return src, matches


@pytest.mark.parametrize("role", READERS)
def test_every_reader_sees_the_history_and_a_match_with_its_items(client_as, matched, role):
    first, second = matched[1]
    client = client_as(role)
    assert sorted(shown(client.get(LIST))) == sorted([first.public_id, second.public_id])
    response = client.get(match_url(first))
    assert response.status_code == 200
    detail = response.context["detail"]
    assert [i.side for i in detail.external] == [ItemSide.EXTERNAL] and len(detail.internal) == 1
    page = html(response)
    assert "rule <code>exact-reference</code> version 1" in page and ">ACTIVE<" in page
    assert detail.internal[0].internal_id in page and f"line {detail.external[0].line_no}" in page


def test_a_role_without_the_view_permission_is_refused_with_the_reason(client_as, matched):
    _, (first, _) = matched
    client = client_as("support_ops")
    for url in (LIST, match_url(first)):
        response = client.get(url)
        assert response.status_code == 403 and "reconciliation.view_reconciliationmatch" in html(response)


def test_filters_by_source_state_result_and_rule(client_as, matched):
    src, (first, second) = matched
    other = bank_source("bank-other")
    client = client_as("finance_ops")
    both = sorted([first.public_id, second.public_id])
    assert sorted(shown(client.get(LIST, {"source": src.code}))) == both
    assert shown(client.get(LIST, {"source": other.code})) == []
    assert sorted(shown(client.get(LIST, {"state": "ACTIVE", "rule": "exact-reference"}))) == both
    assert shown(client.get(LIST, {"state": "UNMATCHED"})) == []
    assert shown(client.get(LIST, {"rule": "decision"})) == []
    assert sorted(shown(client.get(LIST, {"result": "MATCHED"}))) == both
    response = client.get(LIST, {"state": "BOGUS"})
    assert response.status_code == 400 and response.context["page"] is None


def test_keyset_pages_and_a_fixed_query_count(client_as, matched, monkeypatch):
    monkeypatch.setattr(match_selectors, "PAGE_SIZE", 1)
    client = client_as("auditor")
    client.get(LIST)
    seen, cursor, counts = [], "", []
    while True:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST, {"cursor": cursor} if cursor else {})
        counts.append(len(queries))
        seen += shown(response)
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
    newest_first = list(ReconciliationMatch.objects.order_by("-created_at", "-id").values_list("public_id", flat=True))
    assert seen == newest_first and len(set(counts)) == 1
    monkeypatch.setattr(match_selectors, "PAGE_SIZE", 50)
    with CaptureQueriesContext(connection) as few:
        client.get(LIST)
    more = [recon.payout_sent(10_000 + n) for n in range(6)]
    src = bank_source("bank-more")
    recon.refresh(src)
    recon.imported(src, csv_file([(DAY, f"-{p.amount_minor / 100:.2f}", "IDR", p.provider_payout_reference) for p in
                                  more]))  # fmt: skip
    recon.run(src)
    with CaptureQueriesContext(connection) as many:
        assert len(shown(client.get(LIST))) == 8
    assert len(many) == len(few)


def test_unmatch_is_proposed_for_approval_and_changes_nothing_until_another_person_approves(matched):
    first = matched[1][0]
    fran, morgan = user_with_role("finance_ops", username="fran"), user_with_role("finance_manager", username="morgan")
    maker = signed_in(fran)
    items = [i.pk for i in maker.get(match_url(first)).context["detail"].external]
    line = items[0]
    before = item_states(items)
    page = html(maker.get(match_url(first)))
    fields = {**hidden(page, "unmatch-form"), "reason_code": "DATA_CORRECTION",
              "reason_text": "The bank returned this payout; the line is the return"}  # fmt: skip

    response = maker.post(unmatch_url(first), fields)
    assert response.status_code == 302 and response["Location"] == match_url(first)
    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.status, ar.target_type, ar.target_id, ar.payload) == (
        "UNDO_RECONCILIATION_MATCH", RequestStatus.REQUESTED, "reconciliation_match", first.public_id,
        {"match": first.public_id})  # fmt: skip
    assert message_texts(response)[0].startswith(f"{ar.public_id} proposed: undo {first.public_id}.")
    assert ReconciliationMatch.objects.get(pk=first.pk).state == MatchState.ACTIVE
    assert item_states(items) == before
    page = html(maker.get(match_url(first)))
    assert 'data-testid="pending-request"' in page and 'data-testid="unmatch-form"' not in page
    row = re.search(rf'<tr data-match="{first.public_id}">.*?</tr>', html(maker.get(LIST)), re.S).group(0)
    assert "undo pending" in row

    # The maker cannot approve it; the finance manager does, in the approvals screens.
    refused = maker.post(reverse("approvals:approve", args=[ar.public_id]), {"idempotency_key": "k-self"})
    assert refused.status_code == 403 and ReconciliationMatch.objects.get(pk=first.pk).state == MatchState.ACTIVE
    checker = signed_in(morgan)
    detail = reverse("approvals:request_detail", args=[ar.public_id])
    checker.post(reverse("approvals:approve", args=[ar.public_id]), hidden(html(checker.get(detail)), "approve-form"))
    undone = ReconciliationMatch.objects.get(pk=first.pk)
    assert (undone.state, undone.unmatched_by) == (MatchState.UNMATCHED, "morgan")
    assert item_states([line])[line].match_id is None
    assert ReconciliationBreak.objects.filter(item_id=line, status=BreakStatus.OPEN).count() == 1
    page = html(maker.get(match_url(first)))
    assert ">UNMATCHED<" in page and "by morgan" in page and 'data-testid="unmatch-form"' not in page


def test_an_unmatch_without_a_reason_is_refused_and_nothing_is_proposed(client_as, matched):
    _, (first, _) = matched
    client = client_as("finance_ops")
    fields = hidden(html(client.get(match_url(first))), "unmatch-form")
    response = client.post(unmatch_url(first), {**fields, "reason_code": "DATA_CORRECTION", "reason_text": " "})
    assert response.status_code == 400 and "This field is required." in html(response)
    assert not ActionRequest.objects.exists()


def test_the_auditor_reads_a_match_but_cannot_propose_to_undo_it(client_as, matched):
    _, (first, _) = matched
    client = client_as("auditor")
    page = html(client.get(match_url(first)))
    assert 'data-testid="unmatch-form"' not in page and 'data-testid="read-only"' in page
    response = client.post(unmatch_url(first), {"reason_code": "DATA_CORRECTION", "reason_text": "x"})
    assert response.status_code == 403 and "reconciliation.propose_recon_decision" in html(response)
    assert not ActionRequest.objects.exists()
