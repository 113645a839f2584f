"""Benchmark posting through the ledger's services against a raw PostgreSQL baseline.

Prints figures; it asserts nothing (targets live in the issue and the notes, not in tests).
Run it against a scratch database: it writes real journals (merchant refs bench_<run>_<n>).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import threading
import time
import uuid

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections
from django.utils import timezone

from backoffice.actors import system_actor
from ledger.services import JournalRequest, PostingLine, Source, account_for, journal_post, journal_post_many
from ledger.services.posting import RETRY_STATS
from ledger.verification import ledger_verify

CURRENCY = "USD"


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def _run_workers(workers: int, total: int, work) -> tuple[float, list[float], list[str], dict]:
    """Run `total` calls of work(worker, n) in `workers` forked processes (like web and worker
    processes in production, and free of the GIL). Returns (seconds, latencies ms, errors, retry stats)."""
    connections.close_all()  # children must open their own connections
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    per_worker = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]

    def target(w: int) -> None:
        latencies, errors = [], []
        RETRY_STATS.update(deadlocks=0, serialization_failures=0, retries=0)
        try:
            barrier.wait()
            for n in range(per_worker[w]):
                started = time.perf_counter()
                work(w, n)
                latencies.append((time.perf_counter() - started) * 1000)
        except BaseException as exc:  # reported, never swallowed
            errors.append(repr(exc))
        finally:
            connections.close_all()
            results.put((latencies, errors, dict(RETRY_STATS)))

    procs = [ctx.Process(target=target, args=(w,)) for w in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    collected = [results.get() for _ in procs]
    seconds = time.perf_counter() - started
    for proc in procs:
        proc.join()
    stats = {key: sum(c[2][key] for c in collected) for key in ("deadlocks", "serialization_failures", "retries")}
    return seconds, [x for c in collected for x in c[0]], [e for c in collected for e in c[1]], stats


class Command(BaseCommand):
    help = "Measure journal posting throughput (many accounts, one hot account, bulk) against a raw baseline."

    def add_arguments(self, parser):
        parser.add_argument("--journals", type=int, default=5000)
        parser.add_argument("--workers", type=int, default=8)
        parser.add_argument("--accounts", type=int, default=400, help="merchant accounts for the many-accounts case")
        parser.add_argument("--batch", type=int, default=500, help="journals per journal_post_many call")
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")

    def handle(self, *args, **opts):
        if settings.DJANGO_ENV == "production":
            raise CommandError("ledger_bench writes benchmark journals; it refuses to run in production")
        journals, workers = opts["journals"], opts["workers"]
        run = uuid.uuid4().hex[:8]
        actor = system_actor("ledger_bench")
        today = timezone.now().date()
        where = "embedded" if settings.EMBEDDED_DATABASE else connection.settings_dict["HOST"]
        self.stdout.write(f"ledger_bench run {run}: {journals} journals, {workers} worker processes, database {where}")

        merchants = [
            account_for(
                role="MERCHANT_PAYABLE",
                currency=CURRENCY,
                owner_ref=f"bench_{run}_{i}",
                actor=actor,
                now=timezone.now(),
            )
            for i in range(opts["accounts"])
        ]
        cash = account_for(role="BANK_CASH", currency=CURRENCY, actor=actor, now=timezone.now())
        receivable = account_for(role="PSP_RECEIVABLE", currency=CURRENCY, actor=actor, now=timezone.now())
        revenue = account_for(role="PLATFORM_FEE_REVENUE", currency=CURRENCY, actor=actor, now=timezone.now())
        assert receivable.is_hot and revenue.is_hot

        # Fund every merchant once (bulk), so transfers between merchants never hit the floor.
        funding = [
            JournalRequest(
                lines=(PostingLine(cash.pk, "DEBIT", 10**12, CURRENCY), PostingLine(m.pk, "CREDIT", 10**12, CURRENCY)),
                journal_type="BENCH_FUNDING", source=Source("bench", run), accounting_date=today,
                idempotency_key=f"bench-{run}-fund-{m.pk}",
            )
            for m in merchants
        ]  # fmt: skip
        journal_post_many(requests=funding, batch_key=f"bench-{run}-funding", actor=actor, now=timezone.now())
        # Fresh statistics for the tables just grown, as autovacuum gives a server within a minute
        # (where it runs): the posting statement's plan is made once per connection from them, and
        # on a database never analyzed it would be measuring the planner's guesses, not posting.
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE ledger_ledgeraccount, ledger_ledgerbalance, ledger_ledgerjournal, ledger_ledgerentry"
            )
        # (a) many accounts: transfers between random pairs of merchant accounts.
        rng = random.Random(run)  # noqa: S311 (choosing benchmark pairs, not secrets)
        pairs = [rng.sample(merchants, 2) for _ in range(journals)]

        def many(w: int, n: int) -> None:
            src, dst = pairs[(n * workers + w) % journals]
            journal_post(
                lines=[PostingLine(src.pk, "DEBIT", 100 + n % 50, CURRENCY),
                       PostingLine(dst.pk, "CREDIT", 100 + n % 50, CURRENCY)],
                journal_type="BENCH_TRANSFER", source=Source("bench", run), accounting_date=today,
                idempotency_key=f"bench-{run}-a-{w}-{n}", actor=actor, now=timezone.now(),
            )  # fmt: skip

        a_seconds, a_lat, a_err, a_stats = _run_workers(workers, journals, many)

        # (b) one hot account: captures, every one debiting the PSP receivable and crediting fee revenue.
        def hot(w: int, n: int) -> None:
            merchant = merchants[(n * workers + w) % len(merchants)]
            gross, fee = 10_000 + n % 97, 250
            journal_post(
                lines=[PostingLine(receivable.pk, "DEBIT", gross, CURRENCY),
                       PostingLine(merchant.pk, "CREDIT", gross - fee, CURRENCY),
                       PostingLine(revenue.pk, "CREDIT", fee, CURRENCY)],
                journal_type="CAPTURE_SUCCEEDED", source=Source("bench", run), accounting_date=today,
                idempotency_key=f"bench-{run}-b-{w}-{n}", actor=actor, now=timezone.now(),
            )  # fmt: skip

        b_seconds, b_lat, b_err, b_stats = _run_workers(workers, journals, hot)

        # (c) bulk: journal_post_many in batches, one poster.
        batch = opts["batch"]
        bulk_requests = [
            JournalRequest(
                lines=(PostingLine(receivable.pk, "DEBIT", 5_000, CURRENCY),
                       PostingLine(merchants[i % len(merchants)].pk, "CREDIT", 4_900, CURRENCY),
                       PostingLine(revenue.pk, "CREDIT", 100, CURRENCY)),
                journal_type="CAPTURE_SUCCEEDED", source=Source("bench", run), accounting_date=today,
                idempotency_key=f"bench-{run}-c-{i:09d}",
            )
            for i in range(journals)
        ]  # fmt: skip
        started = time.perf_counter()
        for i in range(0, journals, batch):
            journal_post_many(
                requests=bulk_requests[i : i + batch], batch_key=f"bench-{run}-c-{i}", actor=actor, now=timezone.now()
            )
        c_seconds = time.perf_counter() - started

        # (d) baseline: minimal INSERT-and-commit transactions on raw connections, same concurrency.
        baseline_seconds, base_lat, base_err = self._baseline(journals, workers, run)

        verify = ledger_verify()
        figures = {
            "journals": journals,
            "workers": workers,
            "service_journals_per_s": round(journals / a_seconds, 1),
            "service_p50_ms": round(statistics.median(a_lat), 2) if a_lat else None,
            "service_p95_ms": round(_percentile(a_lat, 95), 2),
            "hot_journals_per_s": round(journals / b_seconds, 1),
            "hot_p50_ms": round(statistics.median(b_lat), 2) if b_lat else None,
            "hot_p95_ms": round(_percentile(b_lat, 95), 2),
            "bulk_journals_per_s": round(journals / c_seconds, 1),
            "baseline_tx_per_s": round(journals / baseline_seconds, 1),
            "baseline_p95_ms": round(_percentile(base_lat, 95), 2),
            "service_to_baseline": round((journals / a_seconds) / (journals / baseline_seconds), 3),
            "hot_to_service": round((journals / b_seconds) / (journals / a_seconds), 3),
            "deadlocks": a_stats["deadlocks"] + b_stats["deadlocks"],
            "retries": a_stats["retries"] + b_stats["retries"],
            "errors": len(a_err) + len(b_err) + len(base_err),
            "verify_ok": verify.ok,
            "verify_seconds": round(verify.seconds, 3),
            "verified_entries": verify.entries,
        }
        for err in (a_err + b_err + base_err)[:5]:
            self.stderr.write(f"error: {err}")
        self.stdout.write(
            f"(a) many accounts : {figures['service_journals_per_s']:>9} journals/s  p50 {figures['service_p50_ms']} ms"
            f"  p95 {figures['service_p95_ms']} ms\n"
            f"(b) hot account   : {figures['hot_journals_per_s']:>9} journals/s  p50 {figures['hot_p50_ms']} ms"
            f"  p95 {figures['hot_p95_ms']} ms  ({figures['hot_to_service']:.0%} of (a))\n"
            f"(c) bulk          : {figures['bulk_journals_per_s']:>9} journals/s  (batches of {batch})\n"
            f"(d) raw baseline  : {figures['baseline_tx_per_s']:>9} tx/s  p95 {figures['baseline_p95_ms']} ms"
            f"  (service is {figures['service_to_baseline']:.0%} of it)\n"
            f"deadlocks {figures['deadlocks']}, retries {figures['retries']}, errors {figures['errors']}\n"
            f"ledger_verify: {'ok' if verify.ok else 'FAILED'} over {verify.entries} entries in {verify.seconds:.3f} s"
        )
        if not verify.ok:
            for breach in verify.breaches[:20]:
                self.stderr.write(f"BREACH: {breach}")
        if opts["json"]:
            self.stdout.write(json.dumps(figures))

    def _baseline(self, journals: int, workers: int, run: str):
        params = connection.get_connection_params()
        table = f"ledger_bench_baseline_{run}"
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {table} (id bigserial primary key, v bigint)")
            conn.execute(f"ALTER TABLE {table} SET LOGGED")  # durable commits, like the ledger
        local = threading.local()

        def work(w: int, n: int) -> None:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = psycopg.connect(**params)
            with conn.transaction():
                conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", [n])  # noqa: S608

        try:
            seconds, latencies, errors, _ = _run_workers(workers, journals, work)
        finally:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        return seconds, latencies, errors
