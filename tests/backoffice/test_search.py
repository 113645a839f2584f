"""Global search: what the box recognises, what it finds, what each role may see of it.

Data is made through the services (payments, refunds, payouts, cases, requests, statements,
webhooks); the page is read through the test client and its HTML is what the masking tests assert on.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backoffice.money import Money
from backoffice.search import classify, contains_pattern, decode_cursor, encode_cursor, search
from cases.models import OpsCase
from payments.models import ProviderEventRaw
from payments.webhooks.ingest import webhook_receive
from tests.factories import approvals as approval_factories
from tests.factories import cases as case_factories
from tests.factories import payments
from tests.factories import reconciliation as recon
from tests.factories.users import user_with_role
from tests.reconciliation.test_screens_files import bank_source, csv_file

pytestmark = pytest.mark.django_db

SEARCH = reverse("search")
EMAIL = "Siti.Rahayu@example.co.id"
PHONE = "+628123456789"
BODY = "01JD5ZZZZZZZZZZZZZZZZZZZZZ"


def signed_in(role: str, username: str | None = None) -> Client:
    client = Client()
    client.force_login(user_with_role(role, username=username))
    return client


def get(client: Client, q: str = "", **params):
    query = {"q": q, **params}
    return client.get(SEARCH, {k: v for k, v in query.items() if v != ""})


def page(response) -> str:
    return response.content.decode()


def results_html(response) -> str:
    """The result tables only: what the page found, not what the user typed into it."""
    return "".join(re.findall(r'<section class="search-group".*?</section>', page(response), flags=re.S))


def found_ids(response, group: str | None = None) -> list[str]:
    result = response.context["result"]
    assert result is not None, "nothing was searched"
    return [row.public_id for g in result.groups if group is None or g.key == group for row in g.rows]


# --- data -------------------------------------------------------------------------------------------------


@pytest.fixture
def world():
    """One of everything the box finds."""
    attempt = recon.capture(amount_minor=1_500_000, provider_reference="PSPREF-7788-ABCD-9911")
    intent = attempt.payment_intent
    refund = recon.refund_succeeded(attempt, 500_000)
    payout = recon.payout_sent(250_000)
    case = case_factories.open_case(owner_team="payment_ops", title="Capture stuck in pending")
    maker = approval_factories.maker("maker_for_search")
    request = approval_factories.propose(
        maker, case=approval_factories.open_case(maker), merchant=intent.merchant.public_id
    )
    src = bank_source("bank-search")
    recon.imported(src, csv_file([(dt.date(2026, 3, 2), "75.00", "IDR", "VA-88001234")]))
    recon.run(src)
    rb = src.breaks.get()
    event = webhook_receive(provider_code="sim", headers={}, body=b'{"id": "evt_sim_77"}', received_at=payments.T0,
                            actor=payments.system())  # fmt: skip
    return {
        "payment_intent": intent.public_id, "payment_attempt": attempt.public_id, "refund": refund.public_id,
        "payout": payout.public_id, "ledger_journal": attempt.capture_journal_ref, "case": case.case_number,
        "action_request": request.public_id, "reconciliation_break": rb.public_id, "provider_event": event.public_id,
        "merchant": intent.merchant.public_id, "attempt": attempt, "refund_obj": refund, "payout_obj": payout,
    }  # fmt: skip


# --- what the box recognises --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kinds"),
    [
        (f"pi_{BODY}", ["payment_intent"]),
        (f"PA_{BODY.lower()}", ["payment_attempt"]),
        (f"rf_{BODY}", ["refund"]),
        (f"po_{BODY}", ["payout"]),
        (f"lj_{BODY}", ["ledger_journal"]),
        (f"act_{BODY}", ["action_request"]),
        (f"evt_{BODY}", ["provider_event"]),
        (f"rb_{BODY}", ["reconciliation_break"]),
        (f"m_{BODY}", ["merchant"]),
        (f"cus_{BODY}", ["customer"]),
        ("case-2026-000123", ["case"]),
        ("150000 IDR", ["payment_intent", "refund", "payout"]),
        ("USD 1,500.00", ["payment_intent", "refund", "payout"]),
        (EMAIL, ["customer", "payment_intent"]),
        (PHONE, ["customer", "payment_intent"]),
        # A national number may also be a virtual-account or bank reference.
        ("0812-345-6789", ["customer", "payment_intent", "payment_attempt", "refund", "payout", "provider_event",
                           "payment_intent", "merchant", "statement_line"]),
        ("ORD-1001", ["payment_attempt", "refund", "payout", "provider_event", "payment_intent", "merchant",
                      "statement_line"]),
        # A Stripe-style pi_ that is not one of ours is a reference.
        ("pi_3MtwBwLkdIwHu7ix28a3tqPa", ["payment_attempt", "refund", "payout", "provider_event", "payment_intent",
                                         "merchant", "statement_line"]),
    ],
)  # fmt: skip
def test_the_box_recognises_what_was_typed(query, kinds):
    found = classify(query)
    assert not found.error
    assert [spec.kind for spec in found.lookups] == kinds


def test_an_identifier_is_normalised_and_an_amount_read_with_its_currency_exponent():
    assert classify(f"  PI_{BODY.lower()} ").lookups[0].value == f"pi_{BODY}"
    assert classify("1,500.00 USD").lookups[0].value == Money(150_000, "USD")
    assert classify("150000 JPY").lookups[0].value == Money(150_000, "JPY")
    assert classify("1.234 USD").error  # more decimals than the currency has
    assert classify("150000 XYZ").lookups[0].how == "contains"  # not a currency: a reference


def test_percent_and_underscore_are_literal_in_a_contains_pattern():
    assert contains_pattern("A%B_C\\D") == "%A\\%B\\_C\\\\D%"


def test_a_cursor_round_trips_and_a_forged_one_is_refused():
    assert decode_cursor(encode_cursor({"payment_intent.amount": 42})) == {"payment_intent.amount": 42}
    for bad in ("not-base64!", encode_cursor({"x": "1"}), "W10", encode_cursor({"x": -1})):
        with pytest.raises(ValueError):
            decode_cursor(bad)


# --- each kind found ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["payment_intent", "payment_attempt", "refund", "payout", "ledger_journal", "case", "action_request",
     "reconciliation_break", "provider_event", "merchant"],
)  # fmt: skip
def test_each_kind_is_found_by_its_identifier(world, kind):
    client = signed_in("auditor")  # reads every kind
    response = get(client, world[kind])
    assert response.status_code == 200
    assert found_ids(response) == [world[kind]]
    result = response.context["result"]
    assert [g.kind for g in result.groups] == [kind] and not result.not_searched


def test_results_link_to_the_pages_that_exist(world):
    client = signed_in("auditor")
    links = {
        "ledger_journal": reverse("ledger:journal_detail", args=[world["ledger_journal"]]),
        "case": reverse("cases:workbench", args=[world["case"]]),
        "action_request": reverse("approvals:request_detail", args=[world["action_request"]]),
        "reconciliation_break": reverse("reconciliation:break_detail", args=[world["reconciliation_break"]]),
    }
    for kind, url in links.items():
        row = get(client, world[kind]).context["result"].groups[0].rows[0]
        assert row.url == url
        assert f'href="{url}"' in page(get(client, world[kind]))


def test_a_bank_reference_finds_its_statement_line_and_break(world):
    response = get(signed_in("finance_ops"), "VA-88001234")
    assert found_ids(response, "statement_line.reference") == [world["reconciliation_break"]]


def test_a_team_member_finds_only_the_cases_they_may_see(world):
    other = case_factories.open_case(owner_team="risk_ops", title="Risk review")
    payment_ops = signed_in("payment_ops")
    assert found_ids(get(payment_ops, world["case"])) == [world["case"]]
    response = get(payment_ops, other.case_number)
    assert found_ids(response) == [] and "Nothing matched" in page(response)
    assert OpsCase.objects.filter(case_number=other.case_number).exists()


def test_the_unknown_identifier_explains_what_was_searched():
    response = get(signed_in("payment_ops"), f"pi_{BODY}")
    text = page(response)
    assert response.status_code == 200
    assert "Nothing matched" in text and "a payment intent id" in text


# --- references -------------------------------------------------------------------------------------------


def test_a_merchant_reference_shared_by_two_merchants_shows_both():
    first = payments.intent(business_id="INV-2026-0042")
    second = payments.intent(business_id="INV-2026-0042")
    response = get(signed_in("support_ops"), "INV-2026-0042")
    assert sorted(found_ids(response, "payment_intent.merchant_reference")) == sorted(
        [first.public_id, second.public_id]
    )
    text = page(response)
    assert first.merchant.public_id in text and second.merchant.public_id in text


def test_a_reference_matched_whole_shows_its_whole_matches_and_a_part_shows_every_reference_holding_it():
    merchant = payments.merchant()
    whole = payments.intent(merchant=merchant, business_id="REF-77")
    longer = payments.intent(merchant=merchant, business_id="REF-770")
    client = signed_in("support_ops")
    assert found_ids(get(client, "REF-77"), "payment_intent.merchant_reference") == [whole.public_id]
    assert found_ids(get(client, "ref-7"), "payment_intent.merchant_reference") == [longer.public_id, whole.public_id]


def test_a_merchant_is_found_by_part_of_its_name():
    wanted = payments.merchant(name="Warung Kopi Senja")
    payments.merchant(name="Toko Buku Pagi")
    response = get(signed_in("support_ops"), "kopi sen")
    assert found_ids(response, "merchant.name") == [wanted.public_id]


def test_the_provider_reference_is_masked_for_support_and_whole_for_payment_ops(world):
    reference = world["attempt"].provider_reference
    support = results_html(get(signed_in("support_ops"), reference))
    assert world["payment_attempt"] in support
    assert reference not in support and "…9911" in support
    ops = results_html(get(signed_in("payment_ops"), reference))
    assert world["payment_attempt"] in ops and reference in ops


def test_support_matches_a_provider_reference_whole_never_a_part_of_it(world):
    support = get(signed_in("support_ops"), "7788-ABCD")
    assert found_ids(support, "payment_attempt.provider_reference") == []
    assert "matched whole for your role" in page(support)
    ops = get(signed_in("payment_ops"), "7788-abcd")  # case-insensitive, anywhere in the reference
    assert found_ids(ops, "payment_attempt.provider_reference") == [world["payment_attempt"]]


def test_refund_and_payout_provider_references_are_found_and_masked(world):
    refund, payout = world["refund_obj"], world["payout_obj"]
    ops = signed_in("payment_ops")
    assert found_ids(get(ops, refund.provider_refund_reference), "refund.provider_reference") == [refund.public_id]
    if payout.provider_payout_reference:
        response = get(signed_in("support_ops"), payout.provider_payout_reference)
        assert found_ids(response, "payout.provider_reference") == [payout.public_id]
        assert payout.provider_payout_reference not in results_html(response)


# --- customers: keyed hash, masked ---------------------------------------------------------------------------


@pytest.fixture
def customer_payment():
    merchant = payments.merchant(name="Toko Pelanggan")
    customer = payments.customer(merchant, email=EMAIL, phone=PHONE)
    intent = payments.intent(merchant=merchant, customer=customer)
    payments.intent(merchant=merchant)  # someone else's payment
    return customer, intent


@pytest.mark.parametrize("typed", [EMAIL, "  siti.rahayu@EXAMPLE.co.id ", PHONE, "+62 812-345-6789", "0812 3456 789"])
def test_a_customer_is_found_by_email_or_phone_and_shown_masked(customer_payment, typed):
    customer, intent = customer_payment
    response = get(signed_in("support_ops"), typed)
    assert response.status_code == 200
    assert found_ids(response, "customer.email" if "@" in typed else "customer.phone") == [customer.public_id]
    assert found_ids(response, "payment_intent.customer") == [intent.public_id]
    text = page(response)
    assert EMAIL not in text and EMAIL.lower() not in text and "6789" not in text.replace("*****6789", "")
    assert customer.email_masked in text and customer.phone_masked in text
    assert "8123456789" not in text


@pytest.mark.parametrize("typed", [EMAIL, PHONE, "0812 3456 789"])
def test_typed_contact_details_are_shown_back_masked_and_not_kept_in_the_box(customer_payment, typed):
    response = get(signed_in("support_ops"), typed)
    text = page(response)
    assert typed not in text and typed.lower() not in text.lower()
    assert 'name="q" value=""' in text
    shown = response.context["result"].query
    assert "***" in shown and shown[-3:] == typed[-3:]


def test_a_role_without_personal_data_does_not_search_customers(customer_payment):
    response = get(signed_in("sre"), EMAIL)
    assert response.status_code == 200
    assert found_ids(response) == []
    assert "Not searched: customers (needs payments.view_customer)" in page(response)


# --- permissions per kind --------------------------------------------------------------------------------


def test_a_kind_without_its_view_permission_is_not_searched_and_the_page_says_so(world):
    response = get(signed_in("support_ops"), world["ledger_journal"])
    assert found_ids(response) == []
    assert "Not searched: journals (needs ledger.view_ledgerjournal)" in page(response)
    breaks = get(signed_in("support_ops"), world["reconciliation_break"])
    assert "reconciliation breaks (needs reconciliation.view_reconciliationbreak)" in page(breaks)
    events = get(signed_in("support_ops"), world["provider_event"])
    assert found_ids(events) == [] and "provider events (needs payments.view_providereventraw)" in page(events)


def test_anonymous_is_sent_to_the_login_page():
    response = Client().get(SEARCH, {"q": "pi_x"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_search_only_reads(world):
    client = signed_in("payment_ops")
    assert client.post(SEARCH, {"q": world["payment_intent"]}).status_code == 405


# --- amounts and dates --------------------------------------------------------------------------------------


def test_an_amount_with_its_currency_within_a_date_range():
    merchant = payments.merchant()
    march = payments.intent(merchant=merchant, amount_minor=15_000_000, currency="IDR", now=payments.T0)
    april = payments.intent(merchant=merchant, amount_minor=15_000_000, currency="IDR",
                            now=payments.T0 + dt.timedelta(days=31))  # fmt: skip
    payments.intent(merchant=merchant, amount_minor=15_000_000, currency="PHP")
    payments.intent(merchant=merchant, amount_minor=15_000_001, currency="IDR")
    client = signed_in("support_ops")
    everything = get(client, "150,000.00 IDR")
    assert found_ids(everything, "payment_intent.amount") == [april.public_id, march.public_id]
    in_march = get(client, "IDR 150000", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert found_ids(in_march, "payment_intent.amount") == [march.public_id]
    text = page(in_march)
    assert '<span class="amount">150,000.00</span> <span class="ccy">IDR</span>' in text
    assert "+08:00" in text  # the time carries its offset


def test_a_reversed_date_range_searches_nothing():
    response = get(signed_in("support_ops"), "150000 IDR", **{"from": "2026-03-31", "to": "2026-03-01"})
    assert response.status_code == 400 and "ends before it starts" in page(response)


# --- pages ----------------------------------------------------------------------------------------------------


def test_keyset_pages_continue_without_overlap():
    merchant = payments.merchant()
    made = [payments.intent(merchant=merchant, business_id=f"PAGE-{n:03d}").public_id for n in range(27)]
    client = signed_in("support_ops")
    first = get(client, "PAGE-")
    one = found_ids(first, "payment_intent.merchant_reference")
    assert len(one) == 20
    nxt = re.search(r'href="\?([^"]+)" data-testid="next-page"', page(first))
    assert nxt, "no next page link"
    second = client.get(f"{SEARCH}?{nxt.group(1).replace('&amp;', '&')}")
    two = found_ids(second, "payment_intent.merchant_reference")
    assert len(two) == 7 and not set(one) & set(two)
    assert one + two == list(reversed(made))
    assert second.context["result"].next_after == "" and "End of results" in page(second)
    # The other lookups were exhausted on the first page and are not run again.
    assert [g.key for g in second.context["result"].groups] == ["payment_intent.merchant_reference"]


def test_the_query_count_does_not_grow_with_the_rows():
    merchant = payments.merchant()
    for n in range(3):
        payments.intent(merchant=merchant, business_id=f"CNT-{n}")
    client = signed_in("support_ops")
    get(client, "CNT-")  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as few:
        response = get(client, "CNT-")
    assert len(found_ids(response)) == 3
    for n in range(3, 30):
        payments.intent(merchant=merchant, business_id=f"CNT-{n}")
    with CaptureQueriesContext(connection) as many:
        response = get(client, "CNT-")
    assert len(found_ids(response)) == 20 and response.context["result"].next_after
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_a_forged_page_link_is_refused():
    client = signed_in("support_ops")
    response = get(client, "ORD-1", after="bm90IGEgY3Vyc29y")
    assert response.status_code == 400 and "start again from the first page" in page(response)
    other_key = encode_cursor({"case.number": 5})
    assert get(client, "ORD-1", after=other_key).status_code == 400


# --- bad input ---------------------------------------------------------------------------------------------


def test_an_empty_search_shows_what_can_be_searched():
    response = get(signed_in("support_ops"), "   ")
    assert response.status_code == 200 and response.context["result"] is None
    assert 'data-testid="search-help"' in page(response)


def test_a_long_query_is_refused_with_its_reason():
    response = get(signed_in("support_ops"), "x" * 500)
    assert response.status_code == 400
    assert "at most 200 characters; this one has 500" in page(response)


@pytest.mark.parametrize("typed", ["'; DROP TABLE payments_paymentintent; --", '" OR 1=1 --', "<script>x</script>"])
def test_sql_and_markup_are_searched_as_text(typed):
    response = get(signed_in("payment_ops"), typed)
    assert response.status_code == 200 and found_ids(response) == []
    assert "<script>x</script>" not in page(response)
    assert payments.intent().pk  # the table is still there


def test_control_characters_and_bad_dates_are_refused():
    client = signed_in("support_ops")
    assert get(client, "ORD\x00-1").status_code == 400
    assert get(client, "150000 IDR", **{"from": "yesterday"}).status_code == 400


def test_percent_and_underscore_match_only_themselves():
    merchant = payments.merchant()
    percent = payments.intent(merchant=merchant, business_id="A%B-77")
    payments.intent(merchant=merchant, business_id="AXB-77")
    underscore = payments.intent(merchant=merchant, business_id="C_D-77")
    payments.intent(merchant=merchant, business_id="CXD-77")
    client = signed_in("support_ops")
    assert found_ids(get(client, "A%B"), "payment_intent.merchant_reference") == [percent.public_id]
    assert found_ids(get(client, "C_D"), "payment_intent.merchant_reference") == [underscore.public_id]
    assert found_ids(get(client, "%"), "payment_intent.merchant_reference") == []


def test_the_selector_returns_prepared_rows_without_lazy_objects(world):
    user = user_with_role("payment_ops", username="ops_rows")
    result = search(user=user, query=world["payment_attempt"])
    row = result.groups[0].rows[0]
    assert row.kind == "payment_attempt" and row.amount_minor == 1_500_000 and row.currency == "IDR"
    assert row.status == "SUCCEEDED" and "VISA •••• 4242" in row.title
    assert row.merchant.startswith(world["merchant"])
    assert ProviderEventRaw.objects.filter(public_id=world["provider_event"]).exists()
