"""Operational metrics for Prometheus, counted from the database at scrape time.

Several web processes serve the site, so nothing is counted in process memory: each scrape runs a
handful of aggregate queries (GROUP BY in PostgreSQL) and reports what the tables say. The metrics
live in their own CollectorRegistry, never the process-global one, so a library's default metrics
do not leak into this endpoint and tests can collect it directly.

- ops_case_open_total{case_type,severity}: cases open now (gauge; every type and severity reported,
  zero included, so a series does not vanish when its last case closes).
- ops_action_total{action_type,status}: action requests by current status (gauge: a request moves
  from one status to another).
- ops_action_approval_wait_seconds: decided requests' wait from request to decision (histogram).
- ops_manual_adjustment_amount_minor{currency,reason_code}: executed manual ledger adjustments, as a
  summary: _count adjustments and _sum of their amounts in minor units.
- ops_webhook_replay_total: webhook replays requested (counter; REPLAY_WEBHOOK requests, whatever
  became of them: ops_action_total splits them by status).
- ops_provider_inquiry_total{provider,result}: provider inquiries answered, by outcome (counter);
  ops_provider_inquiry_queued{provider}: inquiries still waiting for an answer (gauge).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily

from approvals.models import ActionRequest, RequestStatus
from cases.models import DONE_STATUSES, CaseType, OpsCase, Severity
from payments.models import InquiryStatus, ProviderInquiry

ADJUSTMENT_ACTION = "CREATE_LEDGER_ADJUSTMENT"
REPLAY_ACTION = "REPLAY_WEBHOOK"
# Approval waits run from minutes (a checker at hand) to the end of the business day.
WAIT_BUCKETS_SECONDS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)


def _case_metrics() -> GaugeMetricFamily:
    open_now = {
        (row["case_type"], row["severity"]): row["n"]
        for row in OpsCase.objects.exclude(status__in=DONE_STATUSES)
        .values("case_type", "severity").annotate(n=Count("id")).order_by()
    }  # fmt: skip
    family = GaugeMetricFamily("ops_case_open_total", "Operational cases open now (not resolved, closed or cancelled).",
                               labels=["case_type", "severity"])  # fmt: skip
    keys = {(t, s) for t in CaseType.values for s in Severity.values} | set(open_now)
    for case_type, severity in sorted(keys):
        family.add_metric([case_type, severity], open_now.get((case_type, severity), 0))
    return family


def _action_metrics() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
    rows = list(ActionRequest.objects.values("action_type", "status").annotate(n=Count("id")).order_by())
    family = GaugeMetricFamily("ops_action_total", "Action requests (maker-checker changes) by current status.",
                               labels=["action_type", "status"])  # fmt: skip
    for row in sorted(rows, key=lambda r: (r["action_type"], r["status"])):
        family.add_metric([row["action_type"], row["status"]], row["n"])
    replays = CounterMetricFamily("ops_webhook_replay", "Webhook replays requested (REPLAY_WEBHOOK action requests).")
    replays.add_metric([], sum(r["n"] for r in rows if r["action_type"] == REPLAY_ACTION))
    return family, replays


def _wait_metrics() -> HistogramMetricFamily:
    wait = ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
    aggregates = {f"le_{s}": Count("id", filter=Q(wait__lte=dt.timedelta(seconds=s))) for s in WAIT_BUCKETS_SECONDS}
    counted = (
        ActionRequest.objects.filter(decided_at__isnull=False)
        .annotate(wait=wait)
        .aggregate(count=Count("id"), total=Sum("wait"), **aggregates)
    )
    buckets = [(str(float(s)), counted[f"le_{s}"]) for s in WAIT_BUCKETS_SECONDS] + [("+Inf", counted["count"])]
    total = counted["total"] or dt.timedelta(0)
    family = HistogramMetricFamily("ops_action_approval_wait_seconds",
                                   "Time from request to decision of decided action requests, in seconds.")  # fmt: skip
    family.add_metric([], buckets, sum_value=max(total.total_seconds(), 0.0))
    return family


def _adjustment_metrics() -> SummaryMetricFamily:
    rows = (
        ActionRequest.objects.filter(action_type=ADJUSTMENT_ACTION, status=RequestStatus.SUCCEEDED)
        .values("currency", "reason_code").annotate(n=Count("id"), total=Sum("amount_minor")).order_by()
    )  # fmt: skip
    family = SummaryMetricFamily(
        "ops_manual_adjustment_amount_minor",
        "Executed manual ledger adjustments: count and amount in minor units of the currency.",
        labels=["currency", "reason_code"],
    )
    for row in sorted(rows, key=lambda r: (r["currency"], r["reason_code"])):
        family.add_metric([row["currency"], row["reason_code"]], count_value=row["n"], sum_value=row["total"] or 0)
    return family


def _inquiry_metrics() -> tuple[CounterMetricFamily, GaugeMetricFamily]:
    rows = ProviderInquiry.objects.values("provider_code", "status", "outcome").annotate(n=Count("id")).order_by()
    answered: dict[tuple[str, str], int] = defaultdict(int)
    queued: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["status"] == InquiryStatus.QUEUED:
            queued[row["provider_code"]] += row["n"]
        else:
            answered[(row["provider_code"], row["outcome"] or "UNKNOWN")] += row["n"]
    total = CounterMetricFamily("ops_provider_inquiry", "Provider state inquiries answered, by outcome.",
                                labels=["provider", "result"])  # fmt: skip
    for (provider, result), n in sorted(answered.items()):
        total.add_metric([provider, result], n)
    waiting = GaugeMetricFamily("ops_provider_inquiry_queued", "Provider state inquiries waiting for an answer.",
                                labels=["provider"])  # fmt: skip
    for provider, n in sorted(queued.items()):
        waiting.add_metric([provider], n)
    return total, waiting


class OperationsCollector:
    """Collected on every scrape; five aggregate queries whatever the table sizes."""

    def collect(self):
        yield _case_metrics()
        yield from _action_metrics()
        yield _wait_metrics()
        yield _adjustment_metrics()
        yield from _inquiry_metrics()


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(OperationsCollector())


def metrics_text() -> tuple[bytes, str]:
    """(body, content type) of one scrape in the Prometheus text format."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
