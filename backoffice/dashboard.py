"""The operations dashboard: what needs attention now, as tiles and two small charts.

One selector, `dashboard_for(user=, now=)`, returns everything the home page shows, prepared: each
tile's figure, a small breakdown, the address of the filtered list behind it and whether the user
may open that list. Every figure is counted in the database (GROUP BY and conditional aggregates),
never by loading rows, so the page costs the same handful of queries whatever the volume. A tile is
built only when the user holds the permission to read what it counts; the rest are not queried.

Windows: "last 7 days" starts at local midnight (business timezone) six days before today, so it
is the same span as the list it links to (those lists filter by business-timezone dates); sign-ins
and denials count the last 24 hours and link to the audit trail from the day that window began.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Aggregate, Count, DateTimeField, ExpressionWrapper, F, Min, Q, Sum, Value
from django.db.models.functions import Abs, Coalesce, TruncDate
from django.urls import NoReverseMatch, reverse

from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent, AuditResult
from backoffice.clock import business_date, business_timezone
from backoffice.money import CurrencyError, Money
from backoffice.navigation import all_screens
from backoffice.visibility import Visibility, visibility_for
from cases import permissions as case_permissions
from cases.models import DONE_STATUSES, CaseType, Severity
from cases.selectors import visible_cases
from payments.models import (
    AttemptStatus,
    CapabilityRestriction,
    EventProcessing,
    PaymentAttempt,
    Payout,
    PayoutStatus,
    ProviderEventRaw,
    RestrictionStatus,
)
from reconciliation.models import BreakStatus, ReconciliationBreak
from reconciliation.selectors.breaks import age_condition
from reconciliation.services.breaks import AGE_BUCKETS

ADJUSTMENT_ACTION = "CREATE_LEDGER_ADJUSTMENT"  # ledger.actions.LEDGER_ADJUSTMENT
SIGN_IN_FAILURES = ("auth.login_failed", "auth.locked_out")  # backoffice.auth_events
# Refusals that are a permission or policy saying no (not a stale page or a bad input).
DENIAL_CODES = ("PERMISSION_DENIED", "POLICY_DENIED", "SELF_APPROVAL")
CHART_DAYS = 14
WEEK_DAYS = 7
# Open cases older than these many hours: each is exactly the worklist's "Older than (h)" filter.
CASE_AGES = ((24, "older than 1 day"), (72, "older than 3 days"), (168, "older than 7 days"))
BREAKDOWN_ROWS = 6  # a tile shows its largest groups; the list behind it shows all

# The permission that lets a user read what each tile counts.
READ = {
    "cases": "cases.open_worklist",
    "approvals": "approvals.view_actionrequest",
    "unknown": "payments.view_paymentattempt",
    "webhooks": "payments.view_providereventraw",
    "payouts": "payments.view_payout",
    "freezes": "payments.view_capabilityrestriction",
    "breaks": "reconciliation.view_reconciliationbreak",
    "audit": "audit.view_auditevent",
}


class PercentileDisc(Aggregate):
    """PostgreSQL's percentile_disc(fraction) WITHIN GROUP (ORDER BY expr): an actual value of the group."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class TileRow:
    label: str
    count: int | None = None
    amounts: tuple[Money, ...] = ()
    note: str = ""
    url: str = ""


@dataclass(frozen=True)
class Tile:
    key: str
    title: str
    figure: int
    unit: str  # what the figure counts: "open", "pending", ...
    tone: str  # ok (nothing to do), warn, bad: the badge colour of the figure
    url: str  # the filtered list; "" when it does not exist (yet) or the user may not open it
    may_open: bool
    note: str = ""  # one line under the figure: oldest, median wait, window
    amounts: tuple[Money, ...] = ()  # totals per currency, when the tile is about money
    rows: tuple[TileRow, ...] = ()
    rows_title: str = ""
    more_rows: tuple[TileRow, ...] = ()  # a second breakdown (e.g. by severity after by type)
    more_title: str = ""
    links: tuple[tuple[str, str], ...] = ()  # further lists: (label, url)


@dataclass(frozen=True)
class ChartBar:
    x: int
    y: int
    width: int
    height: int
    value: int
    series: int  # 0 or 1: the CSS class of the bar


@dataclass(frozen=True)
class ChartDay:
    day: dt.date
    values: tuple[int, ...]
    label: str  # e.g. "03-02", under every other bar
    label_x: int


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    series: tuple[str, ...]
    days: tuple[ChartDay, ...]
    bars: tuple[ChartBar, ...]
    totals: tuple[int, ...]
    peak: int
    width: int
    height: int
    baseline: int
    summary: str  # the chart in one sentence, for screen readers

    @property
    def legend(self) -> list[tuple[int, str, int]]:
        """(series index, name, total over the window) for the legend."""
        return [(i, name, self.totals[i]) for i, name in enumerate(self.series)]


@dataclass
class Dashboard:
    now: dt.datetime
    today: dt.date
    tiles: list[Tile] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


# --- helpers ----------------------------------------------------------------------------------------------


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=business_timezone())


def _local_day(field_name: str):
    """The business day an instant belongs to, in SQL: the local date, shifted by the cut-off (a day
    closes at BUSINESS_DAY_CUTOFF; what happens after it belongs to the next day)."""
    cutoff = settings.BUSINESS_DAY_CUTOFF
    shift = dt.timedelta(hours=cutoff.hour, minutes=cutoff.minute)
    expression = F(field_name)
    if shift:
        expression = ExpressionWrapper(F(field_name) + Value(dt.timedelta(days=1) - shift),
                                       output_field=DateTimeField())  # fmt: skip
    return TruncDate(expression, tzinfo=business_timezone())


def _url(name: str, query: dict | None = None) -> str:
    """The list's address with its filters, or "" when no such list is installed (yet)."""
    try:
        path = reverse(name)
    except NoReverseMatch:
        return ""
    clean = {k: v for k, v in (query or {}).items() if v not in ("", None)}
    return f"{path}?{urlencode(clean)}" if clean else path


def _screen_permission(url_name: str) -> str | bool | None:
    """The permission of the screen registered for `url_name`; False when no screen names it."""
    for screen in all_screens():
        if screen.url_name == url_name:
            return screen.permission
    return False


class _Links:
    """Addresses of filtered lists, offered only to a user who may open them."""

    def __init__(self, perms: set[str]):
        self.perms = perms
        self._allowed: dict[str, bool] = {}

    def may_open(self, url_name: str, fallback: str) -> bool:
        if url_name not in self._allowed:
            needed = _screen_permission(url_name)
            if needed is False:
                needed = fallback
            self._allowed[url_name] = needed is None or needed in self.perms
        return self._allowed[url_name]

    def url(self, url_name: str, fallback: str, **query) -> str:
        return _url(url_name, query) if self.may_open(url_name, fallback) else ""


def _money(rows: dict[str, int]) -> tuple[Money, ...]:
    found = []
    for currency, amount in sorted(rows.items()):
        try:
            found.append(Money(int(amount or 0), currency))
        except CurrencyError:
            continue  # a currency this deployment does not know is counted, not formatted
    return tuple(found)


def duration_text(delta: dt.timedelta) -> str:
    """A short, human length of time: 45m, 3h 20m, 2d 4h."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def _tone(figure: int, *, bad_from: int | None = 1) -> str:
    """ok for nothing, bad from `bad_from` on (None: never bad, only worth a look), warn between."""
    if figure <= 0:
        return "ok"
    return "bad" if bad_from is not None and figure >= bad_from else "warn"


def _label(choices, value: str) -> str:
    try:
        return choices(value).label
    except ValueError:
        return value


# --- the selector -----------------------------------------------------------------------------------------


def dashboard_for(*, user, now: dt.datetime) -> Dashboard:
    """The tiles and charts `user` may read at `now`. A fixed number of queries: about one or two per
    tile the user may read, whatever the number of rows behind them."""
    perms = user.get_all_permissions() if getattr(user, "is_authenticated", False) else set()
    vis = visibility_for(user)
    links = _Links(perms)
    today_local = now.astimezone(business_timezone()).date()
    board = Dashboard(now=now, today=business_date(now))
    week_from = today_local - dt.timedelta(days=WEEK_DAYS - 1)
    chart_from = today_local - dt.timedelta(days=CHART_DAYS - 1)
    if READ["cases"] in perms:
        board.tiles.extend(_case_tiles(user, now, links))
        board.charts.append(_cases_chart(user, chart_from, today_local))
    if READ["approvals"] in perms:
        board.tiles.extend(_request_tiles(now, week_from, links))
        if vis.ledger_detail:
            board.tiles.append(_adjustment_tile(week_from, links))
            board.charts.append(_adjustments_chart(chart_from, today_local))
    if READ["unknown"] in perms:
        board.tiles.append(_unknown_tile(now, links))
    if READ["webhooks"] in perms:
        board.tiles.append(_webhook_tile(now, links))
    if READ["payouts"] in perms:
        board.tiles.append(_payout_hold_tile(links))
    if READ["freezes"] in perms:
        board.tiles.append(_freeze_tile(vis, links))
    if READ["breaks"] in perms:
        board.tiles.append(_breaks_tile(board.today, links))
    if READ["audit"] in perms:
        board.tiles.extend(_audit_tiles(now, links))
    return board


# --- cases --------------------------------------------------------------------------------------------------


def _case_tiles(user, now: dt.datetime, links: _Links) -> list[Tile]:
    """Open cases in the user's queue (the worklist's default tab: their teams' queue, or every case
    they may see when they belong to no team) and SLA breaches among every case they may see (the
    worklist's "SLA breached" tab). Two queries."""
    teams = sorted(case_permissions.user_teams(user))
    view = "team" if teams else "all"
    in_queue = Q(owner_team__in=teams) if teams else Q()
    breached = Q(sla_due_at__lt=now)
    cases = visible_cases(user).exclude(status__in=DONE_STATUSES)
    totals = cases.aggregate(
        open=Count("id", filter=in_queue),
        breached=Count("id", filter=breached),
        oldest=Min("created_at", filter=in_queue),
        **{f"older_{hours}": Count("id", filter=in_queue & Q(created_at__lte=now - dt.timedelta(hours=hours)))
           for hours, _ in CASE_AGES},
    )  # fmt: skip
    groups = list(
        cases.values("case_type", "severity")
        .annotate(n=Count("id", filter=in_queue), late=Count("id", filter=breached))
        .order_by()
    )
    by_type: dict[str, int] = defaultdict(int)
    by_severity: dict[str, int] = defaultdict(int)
    late_by_severity: dict[str, int] = defaultdict(int)
    for g in groups:
        by_type[g["case_type"]] += g["n"]
        by_severity[g["severity"]] += g["n"]
        late_by_severity[g["severity"]] += g["late"]

    def worklist(**query) -> str:
        return links.url("cases:worklist", READ["cases"], **query)

    severities = [s for s in reversed(Severity.values)]  # critical first
    type_rows = tuple(
        TileRow(_label(CaseType, t), n, url=worklist(view=view, case_type=t))
        for t, n in sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
        if n
    )[:BREAKDOWN_ROWS]
    severity_rows = tuple(
        TileRow(_label(Severity, s), by_severity[s], url=worklist(view=view, severity=s))
        for s in severities
        if by_severity.get(s)
    )
    age_rows = tuple(
        TileRow(label, totals[f"older_{hours}"], url=worklist(view=view, min_age_hours=hours))
        for hours, label in CASE_AGES
    )
    oldest = totals["oldest"]
    open_tile = Tile(
        key="cases_open", title="Open cases" + (" in your teams' queues" if teams else ""),
        figure=totals["open"], unit="open", tone=_tone(totals["open"], bad_from=None),
        url=worklist(view=view), may_open=links.may_open("cases:worklist", READ["cases"]),
        note=f"oldest opened {duration_text(now - oldest)} ago" if oldest else "nothing open",
        rows=type_rows, rows_title="By type", more_rows=severity_rows + age_rows, more_title="By severity and age",
    )  # fmt: skip
    breach_tile = Tile(
        key="sla_breaches", title="SLA breaches", figure=totals["breached"], unit="open past due",
        tone=_tone(totals["breached"]), url=worklist(view="breached"),
        may_open=links.may_open("cases:worklist", READ["cases"]),
        note="open cases past their SLA due time, among every case you may see",
        rows=tuple(TileRow(_label(Severity, s), late_by_severity[s], url=worklist(view="breached", severity=s))
                   for s in severities if late_by_severity.get(s)),
        rows_title="By severity",
    )  # fmt: skip
    return [open_tile, breach_tile]


def _days(start: dt.date, today: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((today - start).days + 1)]


def _cases_chart(user, start: dt.date, today: dt.date) -> Chart:
    """Cases opened and resolved (or closed) per business day. Two queries."""
    since = _local_midnight(start)
    cases = visible_cases(user)
    opened = dict(
        cases.filter(created_at__gte=since).annotate(day=_local_day("created_at"))
        .values("day").annotate(n=Count("id")).order_by().values_list("day", "n")
    )  # fmt: skip
    done = dict(
        cases.annotate(done_at=Coalesce("resolved_at", "closed_at"))
        .filter(done_at__gte=since).annotate(day=_local_day("done_at"))
        .values("day").annotate(n=Count("id")).order_by().values_list("day", "n")
    )  # fmt: skip
    days = _days(start, today)
    return build_chart(
        key="cases_per_day", title="Cases opened and resolved per day", series=("opened", "resolved or closed"),
        days=days, values=[(opened.get(d, 0), done.get(d, 0)) for d in days],
    )  # fmt: skip


# --- approvals ----------------------------------------------------------------------------------------------


def _request_tiles(now: dt.datetime, week_from: dt.date, links: _Links) -> list[Tile]:
    """Requests waiting for a checker (count, oldest and median wait, by action) and requests that
    failed at execution in the last seven days (by action). Two queries."""
    since = _local_midnight(week_from)
    pending = Q(status=RequestStatus.REQUESTED)
    failed = Q(status=RequestStatus.FAILED, created_at__gte=since)
    groups = list(
        ActionRequest.objects.filter(pending | failed)
        .values("action_type")
        .annotate(pending=Count("id", filter=pending), failed=Count("id", filter=failed),
                  oldest=Min("created_at", filter=pending))
        .order_by()
    )  # fmt: skip
    median = ActionRequest.objects.filter(pending).aggregate(m=PercentileDisc("created_at", 0.5))["m"]
    waiting = sum(g["pending"] for g in groups)
    failures = sum(g["failed"] for g in groups)
    oldest = min((g["oldest"] for g in groups if g["oldest"]), default=None)

    def requests(**query) -> str:
        return links.url("approvals:request_list", READ["approvals"], **query)

    pending_rows = tuple(
        TileRow(g["action_type"], g["pending"], note=f"oldest {duration_text(now - g['oldest'])}",
                url=requests(status=RequestStatus.REQUESTED, action_type=g["action_type"]))
        for g in sorted(groups, key=lambda g: (-g["pending"], g["action_type"])) if g["pending"]
    )[:BREAKDOWN_ROWS]  # fmt: skip
    failed_rows = tuple(
        TileRow(g["action_type"], g["failed"],
                url=requests(status=RequestStatus.FAILED, action_type=g["action_type"], date_from=week_from))
        for g in sorted(groups, key=lambda g: (-g["failed"], g["action_type"])) if g["failed"]
    )[:BREAKDOWN_ROWS]  # fmt: skip
    inbox = links.url("approvals:inbox", READ["approvals"])
    return [
        Tile(
            key="approvals_pending", title="Requests waiting for approval", figure=waiting, unit="pending",
            tone=_tone(waiting, bad_from=None), url=requests(status=RequestStatus.REQUESTED),
            may_open=links.may_open("approvals:request_list", READ["approvals"]),
            note=(f"oldest waits {duration_text(now - oldest)}, median {duration_text(now - median)}"
                  if oldest and median else "nothing waiting"),
            rows=pending_rows, rows_title="By action", links=(("Checker inbox", inbox),) if inbox else (),
        ),
        Tile(
            key="actions_failed", title="Failed actions", figure=failures, unit="failed in 7 days",
            tone=_tone(failures), url=requests(status=RequestStatus.FAILED, date_from=week_from),
            may_open=links.may_open("approvals:request_list", READ["approvals"]),
            note=f"approved changes whose execution failed, requested since {week_from:%Y-%m-%d}",
            rows=failed_rows, rows_title="By action",
        ),
    ]  # fmt: skip


def _adjustment_tile(week_from: dt.date, links: _Links) -> Tile:
    """Manual ledger adjustments executed, requested in the last seven days: totals per currency and
    per maker. One query."""
    groups = list(
        ActionRequest.objects.filter(action_type=ADJUSTMENT_ACTION, status=RequestStatus.SUCCEEDED,
                                     created_at__gte=_local_midnight(week_from))
        .values("currency", "maker").annotate(n=Count("id"), total=Sum("amount_minor")).order_by()
    )  # fmt: skip
    per_currency: dict[str, int] = defaultdict(int)
    per_maker: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    count_by_maker: dict[str, int] = defaultdict(int)
    for g in groups:
        per_currency[g["currency"]] += g["total"] or 0
        per_maker[g["maker"]][g["currency"]] += g["total"] or 0
        count_by_maker[g["maker"]] += g["n"]

    def requests(**query) -> str:
        return links.url("approvals:request_list", READ["approvals"], action_type=ADJUSTMENT_ACTION,
                         status=RequestStatus.SUCCEEDED, date_from=week_from, **query)  # fmt: skip

    rows = tuple(
        TileRow(maker, count_by_maker[maker], amounts=_money(per_maker[maker]), url=requests(maker=maker))
        for maker in sorted(count_by_maker, key=lambda m: (-count_by_maker[m], m))
    )[:BREAKDOWN_ROWS]
    figure = sum(count_by_maker.values())
    return Tile(
        key="manual_adjustments", title="Manual ledger adjustments", figure=figure, unit="executed in 7 days",
        tone="warn" if figure else "ok", url=requests(),
        may_open=links.may_open("approvals:request_list", READ["approvals"]),
        note=f"requested since {week_from:%Y-%m-%d} and posted", amounts=_money(per_currency),
        rows=rows, rows_title="By maker",
    )  # fmt: skip


def _adjustments_chart(start: dt.date, today: dt.date) -> Chart:
    """Manual adjustments executed per business day. One query."""
    per_day = dict(
        ActionRequest.objects.filter(action_type=ADJUSTMENT_ACTION, status=RequestStatus.SUCCEEDED,
                                     executed_at__gte=_local_midnight(start))
        .annotate(day=_local_day("executed_at")).values("day").annotate(n=Count("id")).order_by()
        .values_list("day", "n")
    )  # fmt: skip
    days = _days(start, today)
    return build_chart(key="adjustments_per_day", title="Manual adjustments executed per day",
                       series=("adjustments",), days=days, values=[(per_day.get(d, 0),) for d in days])  # fmt: skip


# --- payments -----------------------------------------------------------------------------------------------


def _unknown_tile(now: dt.datetime, links: _Links) -> Tile:
    """Attempts whose outcome nobody knows yet (a provider call timed out). One query."""
    groups = list(
        PaymentAttempt.objects.filter(status=AttemptStatus.UNKNOWN_OUTCOME)
        .values("provider_code", "currency")
        .annotate(n=Count("id"), total=Sum("amount_minor"), oldest=Min(Coalesce("sent_at", "created_at")))
        .order_by()
    )
    per_provider: dict[str, int] = defaultdict(int)
    per_currency: dict[str, int] = defaultdict(int)
    for g in groups:
        per_provider[g["provider_code"]] += g["n"]
        per_currency[g["currency"]] += g["total"] or 0
    figure = sum(per_provider.values())
    oldest = min((g["oldest"] for g in groups if g["oldest"]), default=None)
    url_name = "payments:unknown_queue"
    return Tile(
        key="unknown_payments", title="Payments with unknown outcome", figure=figure, unit="pending resolution",
        tone=_tone(figure), url=links.url(url_name, READ["unknown"]),
        may_open=links.may_open(url_name, READ["unknown"]),
        note=f"oldest sent {duration_text(now - oldest)} ago" if oldest else "none waiting for the provider",
        amounts=_money(per_currency),
        rows=tuple(TileRow(p, n, url=links.url(url_name, READ["unknown"], provider=p))
                   for p, n in sorted(per_provider.items(), key=lambda i: (-i[1], i[0])))[:BREAKDOWN_ROWS],
        rows_title="By provider",
    )  # fmt: skip


def _webhook_tile(now: dt.datetime, links: _Links) -> Tile:
    """Provider events in quarantine, by provider and failure. One query."""
    groups = list(
        ProviderEventRaw.objects.filter(processing_status=EventProcessing.QUARANTINED)
        .values("provider_code", "failure_code").annotate(n=Count("id"), oldest=Min("received_at")).order_by()
    )  # fmt: skip
    figure = sum(g["n"] for g in groups)
    oldest = min((g["oldest"] for g in groups), default=None)
    url_name = "payments:webhook_queue"
    return Tile(
        key="quarantined_webhooks", title="Quarantined webhooks", figure=figure, unit="quarantined",
        tone=_tone(figure), url=links.url(url_name, READ["webhooks"]),
        may_open=links.may_open(url_name, READ["webhooks"]),
        note=f"oldest received {duration_text(now - oldest)} ago" if oldest else "nothing in quarantine",
        rows=tuple(TileRow(f"{g['provider_code']} · {g['failure_code'] or 'no code'}", g["n"],
                           url=links.url(url_name, READ["webhooks"], provider=g["provider_code"],
                                         failure_code=g["failure_code"]))
                   for g in sorted(groups, key=lambda g: (-g["n"], g["provider_code"], g["failure_code"])))
        [:BREAKDOWN_ROWS],
        rows_title="By provider and failure",
    )  # fmt: skip


def _payout_hold_tile(links: _Links) -> Tile:
    """Payouts on hold, with the amounts they hold per currency. One query."""
    groups = list(
        Payout.objects.filter(status=PayoutStatus.HELD)
        .values("currency").annotate(n=Count("id"), total=Sum("amount_minor")).order_by()
    )  # fmt: skip
    figure = sum(g["n"] for g in groups)
    url_name = "payments:payout_hold_queue"
    return Tile(
        key="payout_holds", title="Payouts on hold", figure=figure, unit="held", tone="warn" if figure else "ok",
        url=links.url(url_name, READ["payouts"]), may_open=links.may_open(url_name, READ["payouts"]),
        note="held by an approved hold until released", amounts=_money({g["currency"]: g["total"] for g in groups}),
        rows=tuple(TileRow(g["currency"], g["n"], amounts=_money({g["currency"]: g["total"]}),
                           url=links.url(url_name, READ["payouts"], currency=g["currency"]))
                   for g in sorted(groups, key=lambda g: g["currency"])),
        rows_title="By currency",
    )  # fmt: skip


def _freeze_tile(vis: Visibility, links: _Links) -> Tile:
    """Active capability restrictions (freezes), by capability; by reason only for those who may
    read why a merchant is restricted. One query."""
    groups = list(
        CapabilityRestriction.objects.filter(status=RestrictionStatus.ACTIVE)
        .values("capability", "mode", "reason_code").annotate(n=Count("id")).order_by()
    )  # fmt: skip
    merchants = CapabilityRestriction.objects.filter(status=RestrictionStatus.ACTIVE).aggregate(
        m=Count("merchant", distinct=True)
    )["m"]
    by_capability: dict[tuple[str, str], int] = defaultdict(int)
    by_reason: dict[str, int] = defaultdict(int)
    for g in groups:
        by_capability[(g["capability"], g["mode"])] += g["n"]
        by_reason[g["reason_code"]] += g["n"]
    figure = sum(by_capability.values())
    url_name = "payments:freeze_queue"
    return Tile(
        key="merchant_freezes", title="Merchant freezes", figure=figure, unit="active restrictions",
        tone="warn" if figure else "ok", url=links.url(url_name, READ["freezes"]),
        may_open=links.may_open(url_name, READ["freezes"]),
        note=f"on {merchants} merchant{'s' if merchants != 1 else ''}" if figure else "no capability restricted",
        rows=tuple(TileRow(f"{cap} · {mode}", n, url=links.url(url_name, READ["freezes"], capability=cap, mode=mode))
                   for (cap, mode), n in sorted(by_capability.items(), key=lambda i: (-i[1], i[0]))),
        rows_title="By capability",
        more_rows=tuple(TileRow(reason, n) for reason, n in sorted(by_reason.items(), key=lambda i: (-i[1], i[0])))
        if vis.restriction_reasons else (),
        more_title="By reason" if vis.restriction_reasons else "",
    )  # fmt: skip


# --- reconciliation -----------------------------------------------------------------------------------------


def _breaks_tile(today: dt.date, links: _Links) -> Tile:
    """Open reconciliation breaks in the break queue's age buckets (its own bucket conditions), with
    the amount at stake per currency. One query."""
    aggregates = {}
    for i, (label, _, _) in enumerate(AGE_BUCKETS):
        condition = age_condition(label, today)
        aggregates[f"n{i}"] = Count("id", filter=condition)
        aggregates[f"s{i}"] = Sum(Abs("amount_minor"), filter=condition)
    groups = list(
        ReconciliationBreak.objects.filter(status=BreakStatus.OPEN).values("currency").annotate(**aggregates)
        .order_by()
    )  # fmt: skip

    def queue(**query) -> str:
        return links.url("reconciliation:break_queue", READ["breaks"], **query)

    rows = []
    for i, (label, _, _) in enumerate(AGE_BUCKETS):
        count = sum(g[f"n{i}"] for g in groups)
        rows.append(TileRow(f"{label} days", count, amounts=_money({g["currency"]: g[f"s{i}"] for g in groups
                                                                    if g[f"n{i}"]}),
                            url=queue(status=BreakStatus.OPEN, age=label)))  # fmt: skip
    figure = sum(r.count or 0 for r in rows)
    totals: dict[str, int] = defaultdict(int)
    for g in groups:
        totals[g["currency"]] += sum(g[f"s{i}"] or 0 for i in range(len(AGE_BUCKETS)))
    return Tile(
        key="recon_breaks", title="Reconciliation breaks", figure=figure, unit="open",
        tone=_tone(figure, bad_from=None),
        url=queue(status=BreakStatus.OPEN), may_open=links.may_open("reconciliation:break_queue", READ["breaks"]),
        note=f"by age in days at business date {today:%Y-%m-%d}; amounts at stake", amounts=_money(totals),
        rows=tuple(rows), rows_title="By age",
    )  # fmt: skip


# --- audit --------------------------------------------------------------------------------------------------


def _audit_tiles(now: dt.datetime, links: _Links) -> list[Tile]:
    """Failed sign-ins and permission or policy denials in the last 24 hours. One query."""
    since = now - dt.timedelta(hours=24)
    from_day = since.astimezone(business_timezone()).date()
    sign_in = Q(event_type__in=SIGN_IN_FAILURES)
    denial = Q(result=AuditResult.REFUSED, error_code__in=DENIAL_CODES) & ~sign_in
    groups = list(
        AuditEvent.objects.filter(Q(occurred_at__gte=since) & (sign_in | denial))
        .values("event_type", "error_code").annotate(n=Count("seq")).order_by()
    )  # fmt: skip
    failures = [g for g in groups if g["event_type"] in SIGN_IN_FAILURES]
    denials = [g for g in groups if g["event_type"] not in SIGN_IN_FAILURES]

    def trail(**query) -> str:
        return links.url("audit:event_list", READ["audit"], date_from=from_day, **query)

    may_open = links.may_open("audit:event_list", READ["audit"])
    failed_total = sum(g["n"] for g in failures)
    denied_total = sum(g["n"] for g in denials)
    by_type: dict[str, int] = defaultdict(int)
    for g in denials:
        by_type[g["event_type"]] += g["n"]
    return [
        Tile(
            key="failed_sign_ins", title="Failed sign-ins", figure=failed_total, unit="in 24 h",
            tone=_tone(failed_total, bad_from=10), url=trail(event_type="auth.login_failed"), may_open=may_open,
            note="refused sign-ins and lock-outs; the trail lists them from " + f"{from_day:%Y-%m-%d}",
            rows=tuple(TileRow(f"{g['event_type']} · {g['error_code'] or 'no code'}", g["n"],
                               url=trail(event_type=g["event_type"]))
                       for g in sorted(failures, key=lambda g: (-g["n"], g["event_type"], g["error_code"]))),
            rows_title="By event and reason",
        ),
        Tile(
            key="policy_denials", title="Permission and policy denials", figure=denied_total, unit="in 24 h",
            tone=_tone(denied_total, bad_from=10), url=trail(result=AuditResult.REFUSED), may_open=may_open,
            note="screens refused for a missing permission and commands refused by policy or four eyes",
            rows=tuple(TileRow(event_type, n, url=trail(event_type=event_type, result=AuditResult.REFUSED))
                       for event_type, n in sorted(by_type.items(), key=lambda i: (-i[1], i[0])))[:BREAKDOWN_ROWS],
            rows_title="By event",
        ),
    ]  # fmt: skip


# --- charts -------------------------------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_BOTTOM, CHART_TOP = 420, 150, 22, 14


def build_chart(*, key: str, title: str, series: tuple[str, ...], days: list[dt.date],
                values: list[tuple[int, ...]]) -> Chart:  # fmt: skip
    """Bars for one or two series per day, laid out for an SVG of CHART_WIDTH x CHART_HEIGHT (the
    template only draws what is computed here)."""
    peak = max((v for row in values for v in row), default=0)
    baseline = CHART_HEIGHT - CHART_BOTTOM
    usable = baseline - CHART_TOP
    slot = CHART_WIDTH // max(len(days), 1)
    width = max((slot - 6) // len(series), 2)
    bars, labelled = [], []
    for i, (day, row) in enumerate(zip(days, values, strict=True)):
        left = i * slot + 3
        for s, value in enumerate(row):
            height = 0 if not peak else max(round(value * usable / peak), 1 if value else 0)
            bars.append(ChartBar(x=left + s * width, y=baseline - height, width=width - 1, height=height,
                                 value=value, series=s))  # fmt: skip
        label = f"{day:%m-%d}" if (len(days) - 1 - i) % 2 == 0 else ""
        labelled.append(ChartDay(day=day, values=tuple(row), label=label, label_x=left + (slot - 6) // 2))
    totals = tuple(sum(row[s] for row in values) for s in range(len(series)))
    summary = f"{title}, {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}: " + ", ".join(
        f"{total} {name}" for name, total in zip(series, totals, strict=True)
    )
    return Chart(key=key, title=title, series=series, days=tuple(labelled), bars=tuple(bars), totals=totals,
                 peak=peak, width=CHART_WIDTH, height=CHART_HEIGHT, baseline=baseline, summary=summary)  # fmt: skip
