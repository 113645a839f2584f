"""GET /metrics: the operational metrics in the Prometheus text format, counted from the database
(exact label values and counts for seeded data), at a fixed number of queries, and open only to a
signed-in user with audit.view_auditevent or a scraper with the configured bearer token; every
other caller gets a 403 (never a sign-in redirect) and the refusal is audited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from audit.models import AuditEvent, AuditResult
from backoffice.metrics import REGISTRY, WAIT_BUCKETS_SECONDS
from cases.models import CaseType, Severity
from payments.models import AttemptStatus, InquiryOutcome, ProviderInquiry
from payments.providers import ProviderTimeout, ProviderUnavailable
from payments.services.inquiry import inquiry_request, inquiry_run
from tests.backoffice.test_dashboard import OPS, seed_cases, seed_requests
from tests.factories import payments
from tests.factories.users import user_with_role

pytestmark = pytest.mark.django_db

METRICS = reverse("metrics")
TOKEN = "scrape-token-1f0c9a7e"


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def families(response) -> dict:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family, name: str | None = None) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name}


def denials(path: str = METRICS):
    return AuditEvent.objects.filter(event_type="access.denied", target_id=path, result=AuditResult.REFUSED)


# --- what it reports --------------------------------------------------------------------------------------


def test_metrics_report_cases_actions_waits_adjustments_replays_and_inquiries(settings):
    now = timezone.now()
    seed_cases(now)
    seed_requests(now)
    attempt = payments.attempt_in(AttemptStatus.UNKNOWN_OUTCOME, now=now - dt.timedelta(minutes=30))
    inquiry = inquiry_request(attempt_id=attempt.public_id, trigger="SWEEPER", reason_code="STALE_UNKNOWN",
                              reason_text="Stuck in unknown outcome", actor=OPS, now=now,
                              idempotency_key="inq-metrics-1", enqueue=False)  # fmt: skip
    assert ProviderInquiry.objects.get(pk=inquiry.pk).status == "QUEUED"

    found = families(signed_in(user_with_role("sre")).get(METRICS))

    cases = found["ops_case_open_total"]
    assert cases.type == "gauge"
    case_values = samples(cases)
    assert len(case_values) == len(CaseType.values) * len(Severity.values)
    opened = {k: v for k, v in case_values.items() if v}
    # seed_cases: two payment investigations and a dispute; seed_requests: the adjustments' case.
    assert opened == {
        (("case_type", "PAYMENT_INVESTIGATION"), ("severity", "HIGH")): 1.0,
        (("case_type", "PAYMENT_INVESTIGATION"), ("severity", "LOW")): 1.0,
        (("case_type", "DISPUTE"), ("severity", "MEDIUM")): 1.0,
        (("case_type", "RECONCILIATION_BREAK"), ("severity", "LOW")): 1.0,
    }

    actions = found["ops_action_total"]
    assert samples(actions) == {
        (("action_type", "CREATE_LEDGER_ADJUSTMENT"), ("status", "FAILED")): 1.0,
        (("action_type", "CREATE_LEDGER_ADJUSTMENT"), ("status", "REQUESTED")): 1.0,
        (("action_type", "CREATE_LEDGER_ADJUSTMENT"), ("status", "SUCCEEDED")): 1.0,
    }

    wait = found["ops_action_approval_wait_seconds"]
    assert wait.type == "histogram"
    # Two decided: one after 30 minutes (executed), one after 20 minutes (failed at execution).
    assert samples(wait, "ops_action_approval_wait_seconds_count") == {(): 2.0}
    assert samples(wait, "ops_action_approval_wait_seconds_sum") == {(): 3000.0}
    buckets = {dict(k)["le"]: v for k, v in samples(wait, "ops_action_approval_wait_seconds_bucket").items()}
    assert buckets["900.0"] == 0 and buckets["1800.0"] == 2 and buckets["+Inf"] == 2
    assert len(buckets) == len(WAIT_BUCKETS_SECONDS) + 1

    adjustments = found["ops_manual_adjustment_amount_minor"]
    assert adjustments.type == "summary"
    key = (("currency", "IDR"), ("reason_code", "FEE_CORRECTION"))
    assert samples(adjustments, "ops_manual_adjustment_amount_minor_sum") == {key: 250_000.0}
    assert samples(adjustments, "ops_manual_adjustment_amount_minor_count") == {key: 1.0}

    assert samples(found["ops_webhook_replay"], "ops_webhook_replay_total") == {(): 0.0}
    assert samples(found["ops_provider_inquiry"], "ops_provider_inquiry_total") == {}
    assert samples(found["ops_provider_inquiry_queued"]) == {(("provider", "sim"),): 1.0}


class SilentProvider(payments.StubAdapter):
    """Answers every state inquiry with `error` (a timeout or a provider error)."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.error = error

    def query_status(self, **kwargs):
        raise self.error


def test_answered_inquiries_are_counted_by_provider_and_result():
    now = timezone.now()
    attempt = payments.attempt_in(AttemptStatus.UNKNOWN_OUTCOME, now=now - dt.timedelta(minutes=30))
    errors = [ProviderTimeout(provider_code="sim"), ProviderTimeout(provider_code="sim"),
              ProviderUnavailable("the provider answered 503")]  # fmt: skip
    for n, error in enumerate(errors):
        inquiry = inquiry_request(attempt_id=attempt.public_id, trigger="SWEEPER", reason_code="STALE_UNKNOWN",
                                  reason_text="Stuck in unknown outcome", actor=OPS, now=now,
                                  idempotency_key=f"inq-answered-{n}", enqueue=False)  # fmt: skip
        inquiry_run(inquiry_id=inquiry.public_id, actor=OPS, now=now, adapter=SilentProvider(error))

    found = families(signed_in(user_with_role("auditor")).get(METRICS))

    assert samples(found["ops_provider_inquiry"], "ops_provider_inquiry_total") == {
        (("provider", "sim"), ("result", InquiryOutcome.ERROR.value)): 1.0,
        (("provider", "sim"), ("result", InquiryOutcome.TIMEOUT.value)): 2.0,
    }
    assert samples(found["ops_provider_inquiry_queued"]) == {}


def test_a_scrape_costs_the_same_queries_whatever_the_rows():
    now = timezone.now()
    seed_cases(now)
    few = _collect_queries()
    seed_cases(now)
    seed_requests(now)
    assert _collect_queries() == few == 5


def _collect_queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        list(REGISTRY.collect())
    return len(queries)


# --- who may scrape ---------------------------------------------------------------------------------------


def test_anonymous_without_a_token_is_refused_not_redirected_and_audited(settings):
    settings.METRICS_BEARER_TOKEN = TOKEN

    response = Client().get(METRICS)

    assert response.status_code == 403
    page = response.content.decode()
    assert "audit.view_auditevent" in page and "ops_case_open_total" not in page
    assert denials().count() == 1 and denials().get().actor == "anonymous"


def test_a_wrong_token_is_refused_and_the_right_one_scrapes(settings):
    settings.METRICS_BEARER_TOKEN = TOKEN

    wrong = Client().get(METRICS, headers={"Authorization": "Bearer not-the-token"})
    basic = Client().get(METRICS, headers={"Authorization": f"Basic {TOKEN}"})
    right = Client().get(METRICS, headers={"Authorization": f"Bearer {TOKEN}"})

    assert (wrong.status_code, basic.status_code) == (403, 403)
    assert "ops_case_open_total" not in wrong.content.decode()
    assert "ops_case_open_total" in families(right)
    assert denials().count() == 2


def test_no_token_configured_means_no_token_access(settings):
    settings.METRICS_BEARER_TOKEN = ""

    assert Client().get(METRICS, headers={"Authorization": "Bearer "}).status_code == 403
    assert Client().get(METRICS, headers={"Authorization": "Bearer anything"}).status_code == 403


@pytest.mark.parametrize("role", ["sre", "auditor"])
def test_a_signed_in_reader_of_the_audit_trail_scrapes(role):
    assert "ops_action_total" in families(signed_in(user_with_role(role)).get(METRICS))


@pytest.mark.parametrize("role", ["support_ops", "finance_manager"])
def test_a_signed_in_user_without_the_permission_is_shown_why(role):
    response = signed_in(user_with_role(role)).get(METRICS)

    assert response.status_code == 403
    page = response.content.decode()
    assert 'data-testid="denied-reason"' in page
    assert "The metrics endpoint needs the permission audit.view_auditevent" in page and "auditor, sre" in page
    assert "ops_case_open_total" not in page
    event = denials().get()
    assert event.error_code == "PERMISSION_DENIED" and event.actor == f"{role}_user"


def test_a_signed_in_reader_presenting_a_wrong_token_is_judged_by_the_token(settings):
    settings.METRICS_BEARER_TOKEN = TOKEN
    client = signed_in(user_with_role("sre"))

    assert client.get(METRICS, headers={"Authorization": "Bearer nope"}).status_code == 403


def test_only_get_is_served():
    client = signed_in(user_with_role("sre"))
    assert client.post(METRICS).status_code == 405
