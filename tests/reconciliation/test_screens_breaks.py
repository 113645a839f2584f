"""The break queue and one break's page: who may read them, filters (source, age bucket, amount band,
type, owner team, status), counts per age bucket, sorting, keyset pages, a fixed number of queries,
the CSV export (formula-neutralised, audited), candidates with their scores, and decisions proposed
for approval: a preview that writes nothing, one pending request and nothing else until a finance
manager other than the maker approves it in the approvals screens.

Data is made only through the services: sources, statement files received and imported, expected
internal movements refreshed from payments and the ledger, runs, and requests proposed and decided
through the approvals screens.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent, AuditResult
from ledger.models import LedgerJournal
from reconciliation.models import (
    BreakStatus,
    ItemSide,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationManualDecision,
    ReconciliationMatch,
)
from reconciliation.selectors import breaks as break_selectors
from reconciliation.selectors.items import item_states
from tests.factories import reconciliation as recon
from tests.factories.users import user_with_role
from tests.reconciliation.test_screens_files import (
    READERS,
    bank_source,
    csv_file,
    html,
    message_texts,
    signed_in,
    today,
)

pytestmark = pytest.mark.django_db

QUEUE = reverse("reconciliation:break_queue")
EXPORT = reverse("reconciliation:break_export")
DAY = dt.date(2026, 3, 2)  # the accounting date of what the payment factories record


def break_url(rb) -> str:
    return reverse("reconciliation:break_detail", args=[rb.public_id])


def propose_url(rb) -> str:
    return reverse("reconciliation:break_propose", args=[rb.public_id])


def open_break(src, reference: str) -> ReconciliationBreak:
    return ReconciliationBreak.objects.get(source=src, item__reference=reference, status=BreakStatus.OPEN)


def references(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return [row.rb.item.reference for row in response.context["page"].rows]


def hidden(page: str, testid: str) -> dict[str, str]:
    """The hidden inputs of the form marked data-testid=`testid`."""
    form = re.search(rf'<form[^>]*data-testid="{testid}".*?</form>', page, re.S)
    assert form, f"no {testid} on the page"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(0)))


# --- data -------------------------------------------------------------------------------------------------


@pytest.fixture
def queue():
    """Five unexplained lines: four IDR lines of a finance-ops bank account, one of each age bucket and
    amount band, and a JPY line of a payment-ops account. Every line is a break (no internal movement)."""
    t = today()
    idr = bank_source("bank-idr")
    recon.imported(idr, csv_file([
        (t, "50.00", "IDR", "Q-1"), (t - dt.timedelta(days=5), "500.00", "IDR", "Q-2"),
        (t - dt.timedelta(days=20), "-5000.00", "IDR", "Q-3"), (t - dt.timedelta(days=60), "50000.00", "IDR", "Q-4"),
    ]))  # fmt: skip
    recon.run(idr)
    jpy = bank_source("bank-jpy", currency="JPY", owner_team="payment_ops")
    recon.imported(jpy, csv_file([(t - dt.timedelta(days=1), "500", "JPY", "J-1")]))
    recon.run(jpy)
    return idr, jpy


@pytest.fixture
def payout_day():
    """A bank account whose statement shows a payout we sent (same reference and amount) and a debit
    nobody recognises; the statement was matched before our payout and a settlement were recorded as
    expected movements, so both lines are breaks and both movements are open candidates."""
    payout = recon.payout_sent(250_000)
    recon.settlement("B-77", net=260_000)
    src = bank_source("bank-ops")
    recon.imported(src, csv_file([
        (DAY, "-2500.00", "IDR", payout.provider_payout_reference or payout.public_id, "Payout to PT Toko Test"),
        (DAY, "-2400.00", "IDR", "NOREF-1", "Transfer"),
    ]))  # fmt: skip
    recon.run(src)
    recon.refresh(src)
    internal = {i.kind: i for i in ReconciliationItem.objects.filter(source=src, side=ItemSide.INTERNAL)}
    return src, internal["PAYOUT"], internal["SETTLEMENT"]


@pytest.fixture
def fran():
    return user_with_role("finance_ops", username="fran")


@pytest.fixture
def morgan():
    return user_with_role("finance_manager", username="morgan")


# --- who may read -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_every_reader_sees_the_queue_a_break_and_may_export(client_as, queue, role):
    idr, _ = queue
    client = client_as(role)
    response = client.get(QUEUE)
    assert response.status_code == 200 and len(response.context["page"].rows) == 5
    assert 'data-testid="export"' in html(response) and "Break queue" in html(response)
    assert client.get(break_url(open_break(idr, "Q-1"))).status_code == 200
    assert client.get(EXPORT).status_code == 200


def test_a_role_without_the_view_permission_is_refused_with_the_reason(client_as, queue):
    idr, _ = queue
    client = client_as("support_ops")
    needs = {QUEUE: "view_reconciliationbreak", EXPORT: "export_reconciliationbreak",
             break_url(open_break(idr, "Q-1")): "view_reconciliationbreak"}  # fmt: skip
    for url, permission in needs.items():
        response = client.get(url)
        assert response.status_code == 403, url
        assert f"reconciliation.{permission}" in html(response)
    assert not AuditEvent.objects.filter(event_type="reconciliation.breaks_exported").exists()


# --- filters, counts, sort, pages -------------------------------------------------------------------------


def test_filters_by_source_age_amount_band_type_owner_team_and_status(client_as, queue):
    client = client_as("finance_ops")

    def shown(**params):
        return sorted(references(client.get(QUEUE, params)))

    assert shown() == ["J-1", "Q-1", "Q-2", "Q-3", "Q-4"]
    assert shown(source="bank-jpy") == ["J-1"]
    assert shown(age="0-1") == ["J-1", "Q-1"]
    assert shown(age="2-7") == ["Q-2"]
    assert shown(age="8-30") == ["Q-3"]
    assert shown(age=">30") == ["Q-4"]
    # Bands in major units of each currency: 500.00 IDR and 500 JPY are both "100 to 1,000".
    assert shown(band="100-1k") == ["J-1", "Q-2"]
    assert shown(band="lt100") == ["Q-1"]
    assert shown(band="1k-10k") == ["Q-3"]  # by size: a debit of 5,000.00
    assert shown(band="gt10k") == ["Q-4"]
    assert shown(owner_team="payment_ops") == ["J-1"]
    assert shown(break_type="UNMATCHED_EXTERNAL", source="bank-idr", band="gt10k") == ["Q-4"]
    assert shown(break_type="UNMATCHED_INTERNAL") == []
    assert shown(status="CLOSED") == []
    assert shown(status="ANY") == ["J-1", "Q-1", "Q-2", "Q-3", "Q-4"]


def test_an_invalid_filter_shows_nothing_rather_than_everything(client_as, queue):
    client = client_as("finance_ops")
    for params in ({"age": "90-120"}, {"band": "huge"}, {"file": "not-a-file"}, {"cursor": "%%%"},
                   {"cursor": "W10"}):  # fmt: skip
        response = client.get(QUEUE, params)
        assert response.status_code == 400 and response.context["page"] is None, params
        assert "No breaks are shown until the filter is valid" in html(response) or "cursor" in html(response)


def test_counts_per_age_bucket_follow_the_other_filters_not_the_age_filter(client_as, queue):
    client = client_as("finance_manager")
    counts = client.get(QUEUE).context["page"].bucket_counts
    assert counts == [("0-1", 2), ("2-7", 1), ("8-30", 1), (">30", 1)]
    page = client.get(QUEUE, {"age": "2-7", "source": "bank-idr"}).context["page"]
    assert page.bucket_counts == [("0-1", 1), ("2-7", 1), ("8-30", 1), (">30", 1)] and page.total == 1
    text = html(client.get(QUEUE))
    assert re.search(r'data-bucket="&gt;30">&gt;30 days <span class="badge badge-bad" data-testid="bucket-count">1<',
                     text)  # fmt: skip


def test_sorts_by_age_amount_and_type(client_as, queue):
    client = client_as("finance_ops")
    assert references(client.get(QUEUE)) == ["Q-4", "Q-3", "Q-2", "J-1", "Q-1"]  # oldest first
    assert references(client.get(QUEUE, {"sort": "newest"})) == ["Q-1", "J-1", "Q-2", "Q-3", "Q-4"]
    # Largest first in major units; 500.00 IDR and 500 JPY are equal, the later break first.
    assert references(client.get(QUEUE, {"sort": "amount"})) == ["Q-4", "Q-3", "J-1", "Q-2", "Q-1"]
    assert references(client.get(QUEUE, {"sort": "type"})) == ["Q-4", "Q-3", "Q-2", "J-1", "Q-1"]
    page = html(client.get(QUEUE, {"sort": "amount", "source": "bank-idr"}))
    assert 'href="?source=bank-idr&amp;sort=age"' in page  # the column headers keep the filters


@pytest.mark.parametrize("sort", ["age", "newest", "amount", "type"])
def test_keyset_pages_walk_every_break_once_in_order(client_as, queue, monkeypatch, sort):
    monkeypatch.setattr(break_selectors, "PAGE_SIZE", 2)
    client = client_as("auditor")
    expected = references(client.get(QUEUE, {"sort": sort, "status": "ANY"}))
    assert len(expected) == 2
    seen, cursor, counts = [], "", []
    while True:
        params = {"sort": sort, "status": "ANY", **({"cursor": cursor} if cursor else {})}
        with CaptureQueriesContext(connection) as queries:
            response = client.get(QUEUE, params)
        counts.append(len(queries))
        seen += references(response)
        cursor = response.context["page"].next_cursor
        if not cursor:
            break
        assert f"cursor={cursor}" in html(response)
    monkeypatch.setattr(break_selectors, "PAGE_SIZE", 50)
    assert seen == references(client.get(QUEUE, {"sort": sort, "status": "ANY"}))
    assert len(seen) == 5 and len(set(counts)) == 1


def test_the_query_count_does_not_grow_with_the_rows(client_as):
    src = bank_source()
    recon.imported(src, csv_file([(DAY, "10.00", "IDR", "ONE")]), "one.csv")
    recon.run(src)
    client = client_as("finance_ops")
    client.get(QUEUE)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(QUEUE).context["page"].rows) == 1
    recon.imported(src, csv_file([(DAY - dt.timedelta(days=n), f"{n}.00", "IDR", f"MANY-{n}") for n in range(1, 40)]),
                   "many.csv")  # fmt: skip
    recon.run(src)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(QUEUE).context["page"].rows) == 40
    assert len(many) == len(few)


# --- the CSV export ---------------------------------------------------------------------------------------


def test_the_export_neutralises_formulas_from_the_statement_and_is_audited(client_as):
    src = bank_source()
    other = bank_source("bank-other")
    recon.imported(src, csv_file([
        (DAY, "-25.50", "IDR", "@SUM(A1)", '=HYPERLINK("http://evil.example","refund")', "+CMD|calc"),
        (DAY, "12.00", "IDR", "SAFE-1", "plain text"),
    ]))  # fmt: skip
    recon.imported(other, csv_file([(DAY, "1.00", "IDR", "ELSEWHERE")]))
    recon.run(src)
    recon.run(other)
    response = client_as("auditor").get(EXPORT, {"source": src.code, "sort": "amount"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="reconciliation-breaks-')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    header, body = rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert header[:3] == ["break", "status", "break_type"]
    assert [row["reference"] for row in body] == ["'@SUM(A1)", "SAFE-1"]  # the filter held; largest first
    hostile = body[0]
    assert hostile["description"] == '\'=HYPERLINK("http://evil.example","refund")'
    assert hostile["counterparty"] == "'+CMD|calc"
    assert (hostile["amount_minor"], hostile["amount"], hostile["currency"]) == ("-2550", "-25.50", "IDR")
    assert (hostile["age_bucket"], hostile["file"][:3], hostile["line_no"]) == (">30", "sf_", "2")
    assert body[1]["description"] == "plain text"
    (event,) = AuditEvent.objects.filter(event_type="reconciliation.breaks_exported")
    assert (event.actor, event.action_type, event.after["source"], event.after["sort"]) == (
        "auditor_user", "RECON_BREAKS_EXPORT", src.code, "amount")  # fmt: skip


def test_an_invalid_filter_exports_nothing(client_as, queue):
    response = client_as("auditor").get(EXPORT, {"band": "huge"})
    assert response.status_code == 400
    assert not AuditEvent.objects.filter(event_type="reconciliation.breaks_exported").exists()


# --- one break: both sides and candidates -----------------------------------------------------------------


def test_the_break_page_shows_both_sides_and_candidates_scored_reference_first(client_as, payout_day):
    src, payout, settlement = payout_day
    rb = open_break(src, payout.reference)
    response = client_as("finance_ops").get(break_url(rb))
    page = html(response)
    candidates = response.context["candidates"]
    assert [(c.item.pk, c.score, c.reference_points, c.amount_points, c.date_points) for c in candidates] == [
        (payout.pk, 100, 60, 30, 10), (settlement.pk, 10, 0, 0, 10)]  # fmt: skip
    assert candidates[0].delta_minor == 0 and candidates[1].delta_minor == -250_000 - 260_000
    external = re.search(r'data-testid="side-external">.*?</div>\s*<div class="panel" data-testid="side-internal">',
                         page, re.S).group(0)  # fmt: skip
    assert f"line {rb.item.line_no}" in external and payout.reference in external and "PT Toko Contoh" in external
    internal = page.split('data-testid="side-internal">')[1].split("</div>\n</div>")[0]
    assert payout.internal_id in internal and "best candidate" in internal
    assert f'name="items" value="{payout.pk}" form="decision-form"' in page
    assert re.search(r'data-testid="item-state"><span class="badge[^>]*>UNMATCHED EXTERNAL<', page)


def test_the_auditor_and_the_finance_manager_read_a_break_but_cannot_propose(client_as, payout_day):
    src, payout, _ = payout_day
    rb = open_break(src, payout.reference)
    for role in ("auditor", "finance_manager"):
        client = client_as(role)
        page = html(client.get(break_url(rb)))
        assert 'data-testid="decision-form"' not in page and 'name="items"' not in page
        assert 'data-testid="read-only"' in page
        response = client.post(propose_url(rb), {"decision_type": "ACCEPT_EXACT_MATCH", "items": [payout.pk]})
        assert response.status_code == 403 and "reconciliation.propose_recon_decision" in html(response)
    assert not ActionRequest.objects.exists()


# --- proposing a decision ---------------------------------------------------------------------------------


def decision(page: str, **fields) -> dict:
    data = {"idempotency_key": hidden(page, "decision-form")["idempotency_key"], "reason_code": "BANK_CONFIRMED",
            "reason_text": "The bank confirmed the payout on the statement", "step": "preview"}  # fmt: skip
    data.update(fields)
    return data


def test_a_proposal_is_previewed_then_submitted_as_one_pending_request_and_nothing_else_changes(fran, payout_day):
    src, payout, _ = payout_day
    rb = open_break(src, payout.reference)
    client = signed_in(fran)
    data = decision(html(client.get(break_url(rb))), decision_type="ACCEPT_EXACT_MATCH", items=[str(payout.pk)])
    states = item_states([rb.item_id, payout.pk])

    preview = client.post(propose_url(rb), data)
    assert preview.status_code == 200 and not ActionRequest.objects.exists()  # the preview proposed nothing
    page = html(preview)
    assert "Accept exact match for " + rb.public_id in page
    assert re.search(r'data-testid="approval-needed"><span class="badge badge-warn">needs approval</span> by '
                     r"<strong>Finance manager</strong>", page)  # fmt: skip
    submit = hidden(page, "submit-form")
    assert (submit["step"], submit["items"], submit["decision_type"]) == ("submit", str(payout.pk),
                                                                          "ACCEPT_EXACT_MATCH")  # fmt: skip

    response = client.post(propose_url(rb), submit)
    assert response.status_code == 302 and response["Location"] == break_url(rb)
    ar = ActionRequest.objects.get()
    assert (ar.action_type, ar.status, ar.target_type, ar.target_id, ar.maker) == (
        "MANUAL_RECONCILIATION_MATCH",
        RequestStatus.REQUESTED,
        "reconciliation_break",
        rb.public_id,
        "fran",
    )
    assert ar.payload == {"break": rb.public_id, "decision_type": "ACCEPT_EXACT_MATCH", "items": [payout.pk]}
    assert message_texts(response) == [
        f"{ar.public_id} proposed. It waits for finance_manager; nothing changes until someone other than you "
        "approves it."]  # fmt: skip
    # Nothing else changed: the break, the items, no match, no decision.
    fresh = ReconciliationBreak.objects.get(pk=rb.pk)
    assert (fresh.status, fresh.version) == (BreakStatus.OPEN, rb.version)
    assert item_states([rb.item_id, payout.pk]) == states
    assert not ReconciliationMatch.objects.filter(source=src).exists()
    assert not ReconciliationManualDecision.objects.exists()

    # The break shows the waiting request and offers no second decision.
    page = html(client.get(break_url(rb)))
    banner = re.search(r'data-testid="pending-request">.*?</div>', page, re.S).group(0)
    assert reverse("approvals:request_detail", args=[ar.public_id]) in banner and "fran" in banner
    assert 'data-testid="decision-form"' not in page and 'data-testid="decision-blocked"' in page
    queue_row = re.search(rf'<tr data-break="{rb.public_id}">.*?</tr>', html(client.get(QUEUE)), re.S).group(0)
    assert ar.public_id in queue_row and "pending" in queue_row

    # The same form sent again is the same request.
    again = client.post(propose_url(rb), submit)
    assert message_texts(again) == [f"This form already proposed {ar.public_id}; nothing more was proposed."]
    assert ActionRequest.objects.count() == 1


def test_the_maker_cannot_approve_their_own_request_and_another_person_closes_the_break(fran, morgan, payout_day):
    src, payout, _ = payout_day
    rb = open_break(src, payout.reference)
    maker = signed_in(fran)
    data = decision(html(maker.get(break_url(rb))), decision_type="ACCEPT_EXACT_MATCH", items=[str(payout.pk)])
    maker.post(propose_url(rb), {**data, "step": "submit"})
    ar = ActionRequest.objects.get()
    detail = reverse("approvals:request_detail", args=[ar.public_id])

    # The maker's own request: the approvals screen offers no approval, and a forged one is refused.
    assert 'data-testid="approve-form"' not in html(maker.get(detail))
    refused = maker.post(reverse("approvals:approve", args=[ar.public_id]), {"idempotency_key": "k-self"})
    assert refused.status_code == 403
    assert message_texts(refused) == [f"Refused: you proposed {ar.public_id}; another person must decide it"]
    assert ActionRequest.objects.get(pk=ar.pk).status == RequestStatus.REQUESTED
    assert ReconciliationBreak.objects.get(pk=rb.pk).status == BreakStatus.OPEN
    assert AuditEvent.objects.filter(event_type="approvals.approve_refused", target_id=ar.public_id,
                                     result=AuditResult.REFUSED, error_code="SELF_APPROVAL").count() == 1  # fmt: skip

    # The finance manager approves it in the approvals screens: the break closes, the items are matched.
    checker = signed_in(morgan)
    fields = hidden(html(checker.get(detail)), "approve-form")
    approved = checker.post(reverse("approvals:approve", args=[ar.public_id]), {**fields, "note": "Bank statement"})
    assert approved.status_code == 302
    assert ActionRequest.objects.get(pk=ar.pk).status == RequestStatus.SUCCEEDED
    closed = ReconciliationBreak.objects.get(pk=rb.pk)
    assert closed.status == BreakStatus.CLOSED
    states = item_states([rb.item_id, payout.pk])
    assert {s.status for s in states.values()} == {MatchStatus.MANUAL_MATCHED}
    page = html(maker.get(break_url(rb)))
    assert 'data-testid="pending-request"' not in page and 'data-testid="closed-note"' in page
    decision_row = ReconciliationManualDecision.objects.get()
    assert (decision_row.decided_by, decision_row.approved_by) == ("fran", "morgan")
    history = re.search(r'data-testid="break-decisions">.*?</table>', page, re.S).group(0)
    assert decision_row.public_id in history and "fran / morgan" in history
    assert ar.public_id in re.search(r'data-testid="break-requests">.*?</table>', page, re.S).group(0)


def test_a_refused_proposal_says_why_and_creates_nothing(fran, payout_day):
    src, payout, settlement = payout_day
    rb = open_break(src, payout.reference)
    client = signed_in(fran)
    page = html(client.get(break_url(rb)))
    # The amounts differ: an exact match is refused by the action's own validation.
    for step in ("preview", "submit"):
        response = client.post(propose_url(rb), decision(page, decision_type="ACCEPT_EXACT_MATCH",
                                                         items=[str(settlement.pk)], step=step))  # fmt: skip
        assert response.status_code == 400, step
        refusal = re.search(r'data-testid="form-refusal">(.*?)</div>', html(response), re.S).group(1)
        assert "the amounts differ: accept it as a tolerance match instead" in refusal
        assert f'value="{settlement.pk}" form="decision-form" id="candidate-{settlement.pk}" checked' in html(response)
    # A match needs chosen items; a correction its rule, amount and merchant.
    response = client.post(propose_url(rb), decision(page, decision_type="MANUAL_ONE_TO_MANY"))
    assert response.status_code == 400 and "Choose the items on the other side" in html(response)
    response = client.post(propose_url(rb), decision(page, decision_type="CORRECTION_PROPOSAL", amount="12,5"))
    assert response.status_code == 400
    assert "A correction names the posting rule" in html(response) and "Type a positive amount" in html(response)
    assert not ActionRequest.objects.exists()
    refused = AuditEvent.objects.filter(event_type="approvals.submit_refused", result=AuditResult.REFUSED)
    assert [e.error_code for e in refused] == ["VALIDATION_FAILED"]  # the submit the engine refused, recorded


def test_a_correction_previews_its_journal_lines(fran, payout_day):
    src = payout_day[0]
    rb = open_break(src, "NOREF-1")
    client = signed_in(fran)
    page = html(client.get(break_url(rb)))
    fields = decision(page, decision_type="CORRECTION_PROPOSAL", rule_code="MERCHANT_DEBIT", amount="2,400.00",
                      merchant_ref="m_recon", reason_code="DATA_CORRECTION")  # fmt: skip
    response = client.post(propose_url(rb), fields)
    assert response.status_code == 200
    lines = re.search(r'data-testid="preview-lines">.*?</table>', html(response), re.S).group(0)
    assert lines.count("<tr>") >= 2 and '<span class="amount">2,400.00</span>' in lines and "balanced" in lines
    assert "needs approval" in html(response) and not ActionRequest.objects.exists()
    assert not LedgerJournal.objects.filter(source_type="reconciliation_break").exists()
