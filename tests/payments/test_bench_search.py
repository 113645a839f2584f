"""The search benchmark command at a tiny size: it measures, reports its figures and leaves nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from payments.models import Customer, Merchant, PaymentAttempt, PaymentIntent
from tests.factories import payments

KEYS = {"payments", "exact_p95_ms", "contains_p95_ms", "page_p95_ms"}


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("payments_bench_search", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def bench_rows() -> tuple[int, int, int, int]:
    return (Merchant.objects.count(), Customer.objects.count(), PaymentIntent.objects.count(),
            PaymentAttempt.objects.count())  # fmt: skip


# The page is measured from threads with connections of their own: they must see committed rows.
@pytest.mark.django_db(transaction=True)
def test_the_benchmark_reports_its_figures_and_cleans_up():
    users_before = get_user_model().objects.count()
    lines = run("--payments", "2000", "--samples", "20", "--clients", "2", "--page-requests", "5", "--json")
    figures = json.loads(lines[-1])
    assert set(figures) >= KEYS and figures["payments"] == 2000
    assert all(isinstance(figures[k], float | int) and figures[k] > 0 for k in KEYS - {"payments"})
    assert figures["page"]["errors"] == {} and figures["page"]["n"] == 10
    assert figures["exact"]["n"] == 20 and figures["contains_rows_mean"] >= 1
    assert any("exact key (selector)" in line for line in lines)
    assert bench_rows() == (0, 0, 0, 0)
    assert get_user_model().objects.count() == users_before


@pytest.mark.django_db(transaction=True)
def test_the_benchmark_keeps_its_rows_only_when_asked_and_a_rerun_starts_clean():
    run("--payments", "200", "--samples", "5", "--clients", "1", "--page-requests", "2", "--keep")
    assert bench_rows() == (10, 10, 200, 200)
    run("--payments", "300", "--samples", "5", "--clients", "1", "--page-requests", "2", "--keep")
    assert bench_rows() == (10, 15, 300, 300)
    run("--payments", "100", "--samples", "5", "--clients", "1", "--page-requests", "2")
    assert bench_rows() == (0, 0, 0, 0)


@pytest.mark.django_db
def test_the_benchmark_refuses_a_database_with_other_payments():
    payments.intent()
    with pytest.raises(CommandError, match="not the benchmark's"):
        run("--payments", "100")
    assert PaymentIntent.objects.count() == 1


@pytest.mark.django_db
def test_the_benchmark_refuses_to_run_in_production(settings):
    settings.DJANGO_ENV = "production"
    with pytest.raises(CommandError, match="production"):
        run("--payments", "100")
