"""The operations dashboard on the home page: each tile's figures for seeded data, tiles a role may
not read left out (and not queried), links to the filtered lists, the charts with their text tables,
masking of what a role may not see, and a number of queries that does not grow with the rows.

Data is made through the services (cases opened and cancelled, adjustments proposed and decided,
attempts sent into a provider timeout, a webhook that fails its mapping, payouts held, capabilities
restricted, statement lines nobody explains) and the sign-in and denial events through the screens.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import RequestStatus
from approvals.services import request_approve
from backoffice.actors import system_actor
from backoffice.dashboard import _url, dashboard_for, duration_text
from cases.models import CaseType, Severity
from payments.models import AttemptStatus, Capability, EventProcessing, PayoutStatus, RestrictionMode
from payments.providers.signing import SIGNATURE_HEADER, sign, webhook_secrets_for
from payments.services.merchants import beneficiary_add
from payments.services.payouts import payout_create, payout_hold
from payments.services.restrictions import restriction_impose
from payments.webhooks.ingest import webhook_receive
from payments.webhooks.process import webhook_process
from tests.factories import approvals as appr
from tests.factories import cases as case_factory
from tests.factories import payments
from tests.factories import reconciliation as recon
from tests.factories.ledger import credit_merchant
from tests.factories.users import TEST_PASSWORD, UserFactory, user_with_role
from tests.reconciliation.test_screens_files import bank_source, csv_file, today

pytestmark = pytest.mark.django_db

HOME = reverse("home")
OPS = system_actor("dashboard_tests")
EVERY_TILE = [
    "cases_open", "sla_breaches", "approvals_pending", "actions_failed", "manual_adjustments", "unknown_payments",
    "quarantined_webhooks", "payout_holds", "merchant_freezes", "recon_breaks", "failed_sign_ins", "policy_denials",
]  # fmt: skip


def tiles(board) -> dict:
    return {t.key: t for t in board.tiles}


def rows(tile, *, more: bool = False) -> dict[str, int]:
    return {r.label: r.count for r in (tile.more_rows if more else tile.rows)}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def path_of(url: str) -> str:
    return urlsplit(url).path


def local_today(now: dt.datetime) -> dt.date:
    return now.astimezone(zoneinfo.ZoneInfo(settings.BUSINESS_TIMEZONE)).date()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def tile_html(page: str, key: str) -> str:
    found = re.search(rf'<article[^>]*data-tile="{key}".*?</article>', page, re.S)
    assert found, f"no tile {key} on the page"
    return found.group(0)


# --- seeding through the services -------------------------------------------------------------------------


def seed_cases(now: dt.datetime) -> None:
    """Three open cases of two types and three severities (one past its SLA), one cancelled."""
    case_factory.open_case(case_type=CaseType.PAYMENT_INVESTIGATION, severity=Severity.HIGH,
                           now=now - dt.timedelta(hours=1))  # fmt: skip
    case_factory.open_case(case_type=CaseType.PAYMENT_INVESTIGATION, severity=Severity.LOW,
                           now=now - dt.timedelta(hours=30))  # fmt: skip
    case_factory.open_case(case_type=CaseType.DISPUTE, severity=Severity.MEDIUM, now=now - dt.timedelta(days=4))
    cancelled = case_factory.open_case(
        case_type=CaseType.SUPPORT, severity=Severity.LOW, now=now - dt.timedelta(hours=3)
    )
    case_factory.drive_to(cancelled, "CANCELLED", OPS, now=now - dt.timedelta(hours=2))


def seed_requests(now: dt.datetime, *, n: int = 1, tag: str = "") -> dict:
    """Per round: one adjustment executed (2,500.00 IDR by the maker), one failed at execution (a debit
    of a merchant without funds) and one pending for two hours."""
    maker, checker = appr.maker(), appr.checker()
    case = appr.open_case(maker, now=now - dt.timedelta(hours=3))
    for i in range(n):
        done = appr.propose(maker, case=case, merchant=f"m_done{tag}{i}", amount_minor=250_000,
                            now=now - dt.timedelta(hours=3))  # fmt: skip
        assert appr.approve(checker, done, now=now - dt.timedelta(hours=2, minutes=30)).status == "SUCCEEDED"
        failing = appr.propose(maker, case=case, merchant=f"m_broke{tag}{i}", kind="MERCHANT_DEBIT",
                               reason_code="OPERATIONAL_LOSS", amount_minor=500,
                               now=now - dt.timedelta(hours=3))  # fmt: skip
        failed = request_approve(public_id=failing.public_id, actor=appr.actor_for(checker),
                                 now=now - dt.timedelta(hours=2, minutes=40))  # fmt: skip
        assert failed.status == RequestStatus.FAILED
        appr.propose(maker, case=case, merchant=f"m_wait{tag}{i}", amount_minor=1_000, now=now - dt.timedelta(hours=2))
    return {"maker": maker, "checker": checker}


def seed_unknown(now: dt.datetime, *, n: int = 1) -> None:
    for _ in range(n):
        payments.attempt_in(AttemptStatus.UNKNOWN_OUTCOME, now=now - dt.timedelta(minutes=40), amount_minor=1_500_000)


def seed_quarantined(now: dt.datetime, *, n: int = 1) -> None:
    """Signed events of a type the mapper does not know: stored, then quarantined by processing."""
    for i in range(n):
        event_id = f"evt_dash_{i}_{int(now.timestamp())}"
        body = f'{{"id": "{event_id}", "type": "payment.teleported", "data": {{}}}}'.encode()
        header = sign(secret=webhook_secrets_for(provider_code="sim"), timestamp=int(now.timestamp()), body=body)
        event = webhook_receive(provider_code="sim", headers={SIGNATURE_HEADER: header}, body=body, received_at=now,
                                actor=OPS)  # fmt: skip
        outcome = webhook_process(event_id=event.public_id, actor=OPS, now=now)
        assert outcome.event.processing_status == EventProcessing.QUARANTINED


def seed_payout_hold(now: dt.datetime, *, n: int = 1) -> None:
    for i in range(n):
        m = payments.merchant(name=f"Toko Hold {i}")
        ben = beneficiary_add(merchant=m, bank_code="BCA", bank_name="Bank Central Asia", account_holder="PT Toko",
                              account_number="1234567890", currency="IDR", actor=OPS, now=now)  # fmt: skip
        credit_merchant(m.public_id, 1_000_000)
        payout = payout_create(merchant=m, beneficiary=ben, amount_minor=400_000, currency="IDR",
                               idempotency_key=f"po-dash-{m.public_id}", actor=OPS, now=now)  # fmt: skip
        held = payout_hold(payout_id=payout.public_id, reason="Beneficiary name mismatch", actor=OPS, now=now,
                           approval_ref="act_01DASHHOLD")  # fmt: skip
        assert held.status == PayoutStatus.HELD


def seed_freeze(now: dt.datetime, *, n: int = 1) -> None:
    for i in range(n):
        restriction_impose(merchant=payments.merchant(name=f"Toko Freeze {i}"), capability=Capability.CREATE_PAYOUT,
                           mode=RestrictionMode.BLOCK, reason_code="RISK_REVIEW", reason_text="Unusual payout pattern",
                           source="RISK", actor=OPS, now=now)  # fmt: skip


def seed_breaks(*, n: int = 1, code: str = "bank-dash") -> None:
    """Per round: an unexplained line of today (bucket 0-1) and one of ten days ago (bucket 8-30)."""
    t = today()
    src = bank_source(code)
    lines = []
    for i in range(n):
        lines += [(t, "50.00", "IDR", f"D-{code}-{i}"), (t - dt.timedelta(days=10), "-700.00", "IDR", f"E-{code}-{i}")]
    recon.imported(src, csv_file(lines))
    recon.run(src)


def seed_audit(*, n: int = 1) -> None:
    """A failed sign-in on the sign-in page and a screen refused to a role without its permission."""
    user_with_role("payment_ops", username="paula")
    for _ in range(n):
        Client().post(reverse("login"), {"username": "paula", "password": "not-" + TEST_PASSWORD})
    nosy = signed_in(user_with_role("support_ops", username="nosy"))
    for _ in range(n):
        assert nosy.get(reverse("audit:event_list")).status_code == 403


# --- figures ----------------------------------------------------------------------------------------------


def test_case_tiles_count_open_cases_by_type_severity_and_age_and_the_sla_breaches():
    now = timezone.now()
    seed_cases(now)

    board = dashboard_for(user=user_with_role("auditor"), now=now)

    opened, breached = tiles(board)["cases_open"], tiles(board)["sla_breaches"]
    assert opened.figure == 3 and opened.title == "Open cases"
    assert rows(opened) == {"Payment investigation": 2, "Dispute": 1}
    assert rows(opened, more=True) == {
        "High": 1, "Medium": 1, "Low": 1, "older than 1 day": 2, "older than 3 days": 1, "older than 7 days": 0,
    }  # fmt: skip
    assert opened.note == "oldest opened 4d ago"
    assert breached.figure == 1 and breached.tone == "bad" and rows(breached) == {"Medium": 1}
    # The worklist's own filters: the default tab of a user in no team is "all".
    assert query_of(opened.url) == {"view": "all"} and path_of(opened.url) == reverse("cases:worklist")
    by_type = {r.label: query_of(r.url) for r in opened.rows}
    assert by_type["Dispute"] == {"view": "all", "case_type": "DISPUTE"}
    ages = {r.label: query_of(r.url) for r in opened.more_rows}
    assert ages["older than 3 days"] == {"view": "all", "min_age_hours": "72"}
    assert ages["High"] == {"view": "all", "severity": "HIGH"}
    assert query_of(breached.url) == {"view": "breached"}


def test_a_team_member_counts_their_teams_queue_and_the_breaches_of_what_they_may_see():
    now = timezone.now()
    seed_cases(now)

    payment_ops = tiles(dashboard_for(user=user_with_role("payment_ops"), now=now))
    support = tiles(dashboard_for(user=user_with_role("support_ops"), now=now))

    assert payment_ops["cases_open"].figure == 3 and query_of(payment_ops["cases_open"].url) == {"view": "team"}
    assert payment_ops["sla_breaches"].figure == 1
    # The support team's only case was cancelled, and it may see no other team's cases.
    assert (support["cases_open"].figure, support["sla_breaches"].figure) == (0, 0)
    assert support["cases_open"].tone == "ok" and support["cases_open"].note == "nothing open"


def test_request_tiles_count_pending_with_their_wait_failed_actions_and_executed_adjustments():
    now = timezone.now()
    people = seed_requests(now)

    board = tiles(dashboard_for(user=user_with_role("auditor"), now=now))

    pending, failed, adjustments = board["approvals_pending"], board["actions_failed"], board["manual_adjustments"]
    assert pending.figure == 1 and rows(pending) == {"CREATE_LEDGER_ADJUSTMENT": 1}
    assert pending.note == "oldest waits 2h, median 2h"
    assert query_of(pending.url) == {"status": "REQUESTED"}
    assert ("Checker inbox", reverse("approvals:inbox")) in pending.links
    assert failed.figure == 1 and failed.tone == "bad" and rows(failed) == {"CREATE_LEDGER_ADJUSTMENT": 1}
    week_from = local_today(now) - dt.timedelta(days=6)
    assert query_of(failed.url) == {"status": "FAILED", "date_from": week_from.isoformat()}
    maker = people["maker"].username
    assert adjustments.figure == 1 and [str(m) for m in adjustments.amounts] == ["2,500.00 IDR"]
    assert [(r.label, r.count, [str(m) for m in r.amounts]) for r in adjustments.rows] == [(maker, 1, ["2,500.00 IDR"])]
    assert query_of(adjustments.rows[0].url) == {
        "action_type": "CREATE_LEDGER_ADJUSTMENT", "status": "SUCCEEDED", "date_from": week_from.isoformat(),
        "maker": maker,
    }  # fmt: skip
    chart = next(c for c in dashboard_for(user=user_with_role("auditor", "aud2"), now=now).charts
                 if c.key == "adjustments_per_day")  # fmt: skip
    assert chart.totals == (1,) and len(chart.days) == 14


def test_payment_tiles_count_unknown_attempts_quarantined_events_held_payouts_and_freezes():
    now = timezone.now()
    seed_unknown(now)
    seed_quarantined(now)
    seed_payout_hold(now)
    seed_freeze(now)

    board = tiles(dashboard_for(user=user_with_role("auditor"), now=now))

    unknown = board["unknown_payments"]
    assert (
        unknown.figure == 1 and rows(unknown) == {"sim": 1} and [str(m) for m in unknown.amounts] == ["15,000.00 IDR"]
    )
    assert unknown.note == "oldest sent 40m ago"
    quarantined = board["quarantined_webhooks"]
    assert quarantined.figure == 1 and quarantined.tone == "bad"
    assert list(rows(quarantined).values()) == [1] and next(iter(rows(quarantined))).startswith("sim · ")
    holds = board["payout_holds"]
    assert holds.figure == 1 and [str(m) for m in holds.amounts] == ["4,000.00 IDR"]
    freezes = board["merchant_freezes"]
    assert freezes.figure == 1 and rows(freezes) == {"CREATE_PAYOUT · BLOCK": 1} and freezes.note == "on 1 merchant"
    # The auditor may read why a merchant is restricted.
    assert rows(freezes, more=True) == {"RISK_REVIEW": 1}
    # Each breakdown row opens its queue filtered to it (once the queue exists).
    if freezes.url:
        assert query_of(freezes.rows[0].url) == {"capability": "CREATE_PAYOUT", "mode": "BLOCK"}
        assert query_of(holds.rows[0].url) == {"currency": "IDR"}
        assert query_of(unknown.rows[0].url) == {"provider": "sim"}
        assert query_of(quarantined.rows[0].url) == {"provider": "sim", "failure_code": "MAPPING_UNKNOWN_EVENT_TYPE"}


def test_the_payment_queue_links_appear_only_once_their_lists_exist():
    now = timezone.now()
    board = tiles(dashboard_for(user=user_with_role("payment_ops"), now=now))

    queues = {"unknown_payments": "payments:unknown_queue", "quarantined_webhooks": "payments:webhook_queue",
              "payout_holds": "payments:payout_hold_queue", "merchant_freezes": "payments:freeze_queue"}  # fmt: skip
    for key, name in queues.items():
        existing = _url(name)
        if existing:
            assert path_of(board[key].url) == path_of(existing)
        else:
            assert board[key].url == ""
    assert _url("payments:no_such_list") == ""


def test_every_link_of_every_tile_opens_its_filtered_list():
    now = timezone.now()
    seed_cases(now)
    seed_requests(now)
    seed_unknown(now)
    seed_quarantined(now)
    seed_freeze(now)
    seed_breaks()
    seed_audit()
    auditor = user_with_role("auditor", username="ada")
    board = dashboard_for(user=auditor, now=now)
    client = signed_in(auditor)

    urls = [t.url for t in board.tiles] + [r.url for t in board.tiles for r in (*t.rows, *t.more_rows) if r.url]
    urls += [url for t in board.tiles for _, url in t.links]

    assert len(urls) > 30
    for url in urls:
        if not url:  # a payment queue not installed yet
            continue
        assert client.get(url).status_code == 200, url
        # The inbox and the payment queues are filtered lists by themselves (pending; unknown, quarantined, ...).
        if url != reverse("approvals:inbox") and not url.startswith("/payments/queues/"):
            assert query_of(url), f"{url} is not filtered"


def test_restriction_reasons_are_left_out_for_a_role_that_may_not_read_them():
    now = timezone.now()
    seed_freeze(now)

    client = signed_in(user_with_role("support_ops"))
    page = page_of(client.get(HOME))

    freezes = tile_html(page, "merchant_freezes")
    assert "CREATE_PAYOUT · BLOCK" in freezes
    assert "RISK_REVIEW" not in page and "Unusual payout pattern" not in page


def test_break_tile_counts_open_breaks_in_the_queues_age_buckets_with_amounts():
    seed_breaks()

    board = tiles(dashboard_for(user=user_with_role("finance_ops"), now=timezone.now()))

    breaks = board["recon_breaks"]
    assert breaks.figure == 2
    assert rows(breaks) == {"0-1 days": 1, "2-7 days": 0, "8-30 days": 1, ">30 days": 0}
    amounts = {r.label: [str(m) for m in r.amounts] for r in breaks.rows}
    assert amounts["0-1 days"] == ["50.00 IDR"] and amounts["8-30 days"] == ["700.00 IDR"]
    assert [str(m) for m in breaks.amounts] == ["750.00 IDR"]
    queue = {r.label: query_of(r.url) for r in breaks.rows}
    assert queue["8-30 days"] == {"status": "OPEN", "age": "8-30"}
    assert path_of(breaks.url) == reverse("reconciliation:break_queue")


def test_audit_tiles_count_failed_sign_ins_and_permission_denials_of_the_last_day():
    seed_audit()

    board = tiles(dashboard_for(user=user_with_role("sre"), now=timezone.now()))

    sign_ins, denials = board["failed_sign_ins"], board["policy_denials"]
    assert sign_ins.figure == 1 and rows(sign_ins) == {"auth.login_failed · INVALID_CREDENTIALS": 1}
    assert query_of(sign_ins.url)["event_type"] == "auth.login_failed"
    assert denials.figure == 1 and rows(denials) == {"access.denied": 1}
    assert query_of(denials.url)["result"] == "REFUSED"
    assert path_of(denials.url) == reverse("audit:event_list")


def test_events_older_than_a_day_are_not_counted():
    seed_audit()

    board = tiles(dashboard_for(user=user_with_role("sre"), now=timezone.now() + dt.timedelta(hours=25)))

    assert (board["failed_sign_ins"].figure, board["policy_denials"].figure) == (0, 0)


# --- who sees which tile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("support_ops", ["cases_open", "sla_breaches", "approvals_pending", "actions_failed", "unknown_payments",
                         "payout_holds", "merchant_freezes"]),
        ("finance_ops", ["cases_open", "sla_breaches", "approvals_pending", "actions_failed", "manual_adjustments",
                         "unknown_payments", "payout_holds", "merchant_freezes", "recon_breaks"]),
        ("sre", ["cases_open", "sla_breaches", "unknown_payments", "quarantined_webhooks", "payout_holds",
                 "merchant_freezes", "failed_sign_ins", "policy_denials"]),
        ("auditor", EVERY_TILE),
    ],
)  # fmt: skip
def test_a_role_sees_only_the_tiles_it_may_read(role, expected):
    board = dashboard_for(user=user_with_role(role), now=timezone.now())

    assert [t.key for t in board.tiles] == expected


def test_support_sees_no_ledger_or_reconciliation_money_and_no_audit_figures_on_the_page():
    now = timezone.now()
    seed_requests(now)
    seed_breaks()
    seed_audit()

    page = page_of(signed_in(user_with_role("support_ops", username="sam")).get(HOME))

    keys = re.findall(r'data-tile="([a-z_]+)"', page)
    assert "manual_adjustments" not in keys and "recon_breaks" not in keys and "failed_sign_ins" not in keys
    assert "2,500.00" not in page and "750.00" not in page and "Manual adjustments executed" not in page
    assert 'data-chart="adjustments_per_day"' not in page
    assert reverse("reconciliation:break_queue") not in page and reverse("audit:event_list") not in page


def test_a_user_with_no_role_sees_no_tiles_and_is_told_so():
    page = page_of(signed_in(UserFactory(username="lonely")).get(HOME))

    assert 'data-testid="no-tiles"' in page and 'data-testid="tile"' not in page
    assert "You hold no back-office role yet" in page


def test_anonymous_is_sent_to_sign_in_and_post_is_not_allowed():
    response = Client().get(HOME)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    assert signed_in(user_with_role("auditor")).post(HOME).status_code == 405


# --- the page ---------------------------------------------------------------------------------------------


def test_the_page_shows_figures_links_money_and_the_role_and_screens_below():
    now = timezone.now()
    seed_cases(now)
    seed_requests(now)
    seed_breaks()

    mira = user_with_role("finance_manager", username="mira")
    expected = tiles(dashboard_for(user=mira, now=now))

    page = page_of(signed_in(mira).get(HOME))

    cases_tile = tile_html(page, "cases_open")
    # Three seeded by hand, one opened for the adjustments, one per break the statement left.
    assert expected["cases_open"].figure == 6
    assert re.search(r'data-testid="figure">6<', cases_tile)
    assert f'href="{reverse("cases:worklist")}?view=all"' in cases_tile
    adjustments = tile_html(page, "manual_adjustments")
    assert '<span class="amount">2,500.00</span> <span class="ccy">IDR</span>' in adjustments
    breaks = tile_html(page, "recon_breaks")
    assert f'href="{reverse("reconciliation:break_queue")}?status=OPEN&amp;age=8-30"' in breaks
    # The role line and the screens list are still there, below the tiles.
    assert page.index('data-testid="tiles"') < page.index('data-testid="role"') < page.index('data-testid="screens"')
    assert "Finance manager" in page
    # Charts: inline SVG, a text table for screen readers, no inline style or script (CSP).
    assert page.count('data-testid="chart"') == 2 and "<svg" in page and 'data-testid="chart-table"' in page
    assert "style=" not in page.split("<main", 1)[1] and "<script" not in page.split("<main", 1)[1]
    assert "css/dashboard.css" in page


def test_the_case_chart_counts_opened_and_resolved_per_business_day():
    now = timezone.now()
    seed_cases(now)

    chart = next(c for c in dashboard_for(user=user_with_role("auditor"), now=now).charts if c.key == "cases_per_day")

    assert len(chart.days) == 14 and chart.days[-1].day == local_today(now)
    assert chart.totals == (4, 0)  # four opened (one since cancelled), none resolved
    assert sum(b.value for b in chart.bars) == 4 and max(b.height for b in chart.bars) > 0
    assert all(b.y + b.height == chart.baseline for b in chart.bars)


def test_duration_text():
    assert [duration_text(dt.timedelta(minutes=m)) for m in (0, 45, 60, 200, 1440, 1500)] == [
        "0m", "45m", "1h", "3h 20m", "1d", "1d 1h",
    ]  # fmt: skip


# --- a fixed number of queries ----------------------------------------------------------------------------


def seed_everything(now: dt.datetime, *, n: int, tag: str) -> None:
    for _ in range(n):
        seed_cases(now)
    seed_requests(now, n=n, tag=tag)
    seed_unknown(now, n=n)
    seed_quarantined(now - dt.timedelta(seconds=n), n=n)
    seed_payout_hold(now, n=n)
    seed_freeze(now, n=n)
    seed_breaks(n=n, code=f"bank-{tag}")


def home_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        page_of(client.get(HOME))
    return len(queries)


def test_the_page_costs_the_same_number_of_queries_for_few_and_many_rows():
    client = signed_in(user_with_role("auditor", username="ann"))
    now = timezone.now()
    seed_everything(now, n=1, tag="few")
    home_queries(client)  # warm the session and permission caches the same way for both counts
    few = home_queries(client)

    seed_everything(now, n=4, tag="many")
    many = home_queries(client)

    assert few == many
    assert few <= 25, few  # session, user, permissions, and one or two aggregates per tile and chart
