"""The search benchmark command at a tiny size: it measures, reports its figures and leaves nothing.

The page is measured through a real server (gunicorn worker processes on loopback) by default, and
through django.test.Client threads with --page-mode threads."""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
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


# The page is measured from server processes or threads with connections of their own: they must
# see committed rows.
@pytest.mark.django_db(transaction=True)
def test_the_benchmark_reports_its_figures_and_cleans_up():
    users_before = get_user_model().objects.count()
    lines = run("--payments", "2000", "--samples", "20", "--clients", "2", "--page-requests", "5", "--workers", "2",
                "--json")  # fmt: skip
    figures = json.loads(lines[-1])
    assert set(figures) >= KEYS and figures["payments"] == 2000
    assert all(isinstance(figures[k], float | int) and figures[k] > 0 for k in KEYS - {"payments"})
    assert figures["page"]["errors"] == {} and figures["page"]["n"] == 10
    assert figures["page_mode"] == "server" and figures["workers"] == 2 and figures["page"]["requests_per_s"] > 0
    assert figures["page"]["through"].startswith("gunicorn, 2 worker processes on 127.0.0.1:")
    assert figures["exact"]["n"] == 20 and figures["contains_rows_mean"] >= 1
    assert any("exact key (selector)" in line for line in lines)
    assert any(line.startswith("page measured through gunicorn") for line in lines)
    assert any(line.startswith("page throughput: ") and "requests/s" in line for line in lines)
    assert bench_rows() == (0, 0, 0, 0)
    assert get_user_model().objects.count() == users_before
    # Each client signed in and out with a session of its own; none is left behind.
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_page_can_be_measured_from_threads_of_one_process():
    lines = run("--payments", "300", "--samples", "5", "--clients", "3", "--page-requests", "4",
                "--page-mode", "threads", "--json")  # fmt: skip
    figures = json.loads(lines[-1])
    assert figures["page_mode"] == "threads" and figures["workers"] is None
    assert figures["page"]["errors"] == {} and figures["page"]["n"] == 12 and figures["page_p95_ms"] > 0
    assert figures["page"]["through"] == "django.test.Client, 3 threads of one process"
    assert bench_rows() == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_rerun_reuses_the_rows_a_kept_run_of_the_same_size_left():
    run("--payments", "200", "--samples", "5", "--clients", "1", "--page-requests", "2", "--page-mode", "threads",
        "--keep")  # fmt: skip
    made = set(PaymentIntent.objects.values_list("pk", flat=True))
    lines = run("--payments", "200", "--samples", "5", "--clients", "1", "--page-requests", "2",
                "--page-mode", "threads", "--reuse", "--keep", "--json")  # fmt: skip
    assert any(line.startswith("reusing the 200 payments") for line in lines)
    assert json.loads(lines[-1])["reused"] is True
    assert set(PaymentIntent.objects.values_list("pk", flat=True)) == made  # the same rows, not new ones
    # Another size is generated afresh, and without --keep nothing is left.
    lines = run("--payments", "300", "--samples", "5", "--clients", "1", "--page-requests", "2",
                "--page-mode", "threads", "--reuse", "--json")  # fmt: skip
    assert any(line.startswith("no kept run of 300 payments to reuse") for line in lines)
    assert json.loads(lines[-1])["reused"] is False
    assert bench_rows() == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_the_benchmark_keeps_its_rows_only_when_asked_and_a_rerun_starts_clean():
    run("--payments", "200", "--samples", "5", "--clients", "1", "--page-requests", "2", "--workers", "1", "--keep")
    assert bench_rows() == (10, 10, 200, 200)
    run("--payments", "300", "--samples", "5", "--clients", "1", "--page-requests", "2", "--workers", "1", "--keep")
    assert bench_rows() == (10, 15, 300, 300)
    run("--payments", "100", "--samples", "5", "--clients", "1", "--page-requests", "2", "--workers", "1")
    assert bench_rows() == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_server_that_does_not_start_fails_the_run_and_leaves_nothing(monkeypatch):
    users_before = get_user_model().objects.count()
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the server process exits at once
    with pytest.raises(CommandError, match=r"the server stopped \(exit 1\) before answering"):
        run("--payments", "200", "--samples", "5", "--clients", "2", "--page-requests", "2")
    assert bench_rows() == (0, 0, 0, 0)
    assert get_user_model().objects.count() == users_before and not Session.objects.exists()


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
