"""Benchmark the global search: `manage.py payments_bench_search --payments 1000000 [--json]`.

It creates --payments payment intents, each with one attempt, over merchants (one per thousand
intents) and customers (every fifth intent has one), set-based in SQL (INSERT ... SELECT
generate_series; the customers' keyed hashes are computed here and passed as arrays), runs VACUUM (ANALYZE),
then measures what an operator waits for:

- exact-key lookups (pi_, pa_) through the selector backoffice.search.search;
- contains-searches (part of a provider reference, a merchant reference, part of a merchant name)
  through the same selector;
- the search page, GET /search/?q=... through django.test.Client signed in as a payment-ops user,
  from --clients threads at once (each thread its own database connection, closed at the end).

It prints p50/p95 per measure; with --json the last line holds {"payments", "exact_p95_ms",
"contains_p95_ms", "page_p95_ms", ...}. Targets (issue): exact p95 <= 5 ms, contains p95 <= 50 ms,
page p95 <= 100 ms at 8 clients.

Every row it writes carries the benchmark marker: public ids whose body starts with "ZB" (a real
id's body starts with its timestamp, never with Z). A run first removes what an interrupted run
left, and removes what it made at the end (--keep leaves it for a look). It refuses a database
holding other payments, journals, cases or action requests unless --force, and always refuses in
production. The page's sign-in and sign-out leave their two audit events (the trail is append-only).
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import threading
import time
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections, transaction
from django.test import Client

from backoffice.search import search
from payments.services import customer_email_digest, customer_phone_digest

MARK = "ZB"  # the first characters of every benchmark public id's body
ROLE = "payment_ops"  # sees provider references whole, so contains-search runs on them
WORDS = ("Kopi", "Batik", "Elektronik", "Buku", "Sepatu", "Apotek", "Roti", "Mainan")
DAYS = 180
TABLES = ("payments_merchant", "payments_customer", "payments_paymentintent", "payments_paymentattempt")


def bench_id(prefix: str, n: int) -> str:
    return f"{prefix}_{MARK}{n:024d}"


def provider_reference(n: int) -> str:
    return "psp_" + hashlib.md5(f"bench{n}".encode()).hexdigest()  # noqa: S324 (test data, not security)


def business_id(n: int, payments: int) -> str:
    return f"ORD-{n % max(payments // 2, 1):08d}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def figures(values_ms: list[float]) -> dict:
    return {
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 0.50), 2),
        "p95_ms": round(percentile(values_ms, 0.95), 2),
        "max_ms": round(max(values_ms, default=0.0), 2),
        "mean_ms": round(statistics.fmean(values_ms), 2) if values_ms else 0.0,
    }


_LIKE_MARK = f"\\_{MARK}%"
_CLEANUP = [
    # Attempts, intents and customers hang off the benchmark merchants; nothing else refers to them.
    f"""DELETE FROM payments_paymentattempt a USING payments_paymentintent i, payments_merchant m
         WHERE a.payment_intent_id = i.id AND i.merchant_id = m.id AND m.public_id LIKE 'm{_LIKE_MARK}'""",  # noqa: S608 (constants only)
    f"""DELETE FROM payments_paymentintent i USING payments_merchant m
         WHERE i.merchant_id = m.id AND m.public_id LIKE 'm{_LIKE_MARK}'""",  # noqa: S608 (constants only)
    f"""DELETE FROM payments_customer c USING payments_merchant m
         WHERE c.merchant_id = m.id AND m.public_id LIKE 'm{_LIKE_MARK}'""",  # noqa: S608 (constants only)
    f"DELETE FROM payments_merchant WHERE public_id LIKE 'm{_LIKE_MARK}'",  # noqa: S608 (constants only)
]


class Command(BaseCommand):
    help = "Time the global search's exact and contains lookups and its page over --payments generated payments."

    def add_arguments(self, parser):
        parser.add_argument("--payments", type=int, default=1_000_000)
        parser.add_argument("--samples", type=int, default=300, help="selector calls per measure")
        parser.add_argument("--clients", type=int, default=8, help="concurrent page clients")
        parser.add_argument("--page-requests", type=int, default=50, help="requests per client")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
        parser.add_argument("--force", action="store_true", help="run beside data that is not the benchmark's")
        parser.add_argument("--keep", action="store_true", help="leave the generated rows in place")

    def handle(self, *args, **opts):
        if settings.DJANGO_ENV == "production":
            raise CommandError("payments_bench_search writes benchmark rows; it refuses to run in production")
        n = opts["payments"]
        if n < 100:
            raise CommandError("--payments must be at least 100")
        if opts["clients"] < 1 or opts["samples"] < 1 or opts["page_requests"] < 1:
            raise CommandError("--samples, --clients and --page-requests must be at least 1")
        foreign = self._foreign_data()
        if foreign and not opts["force"]:
            raise CommandError(
                f"this database holds data that is not the benchmark's ({', '.join(foreign)}); "
                "run it against a scratch database, or pass --force to run beside it"
            )
        run = uuid.uuid4().hex[:8]
        where = "embedded" if settings.EMBEDDED_DATABASE else connection.settings_dict["HOST"]
        self.stdout.write(f"payments_bench_search run {run}: {n:,} payments, database {where}")
        rng = random.Random(opts["seed"])  # noqa: S311 (benchmark sampling, not secrets)

        self._cleanup()
        started = time.perf_counter()
        counts = self._generate(n)
        setup_seconds = time.perf_counter() - started
        self.stdout.write(
            f"created {counts['merchants']:,} merchants, {counts['customers']:,} customers, {n:,} intents and "
            f"attempts in {setup_seconds:.1f} s (VACUUM ANALYZE included)"
        )
        user = self._user(run)
        try:
            exact = self._exact(user, n, opts["samples"], rng)
            contains, hits = self._contains(user, n, counts["merchants"], opts["samples"], rng)
            page = self._page(user, n, counts["merchants"], opts["clients"], opts["page_requests"], rng)
        finally:
            get_user_model().objects.filter(pk=user.pk).delete()
            if not opts["keep"]:
                self._cleanup()

        result = {
            "payments": n,
            "exact_p95_ms": exact["p95_ms"],
            "contains_p95_ms": contains["p95_ms"],
            "page_p95_ms": page["p95_ms"],
            "exact": exact,
            "contains": contains,
            "contains_rows_mean": round(statistics.fmean(hits), 2) if hits else 0,
            "page": page,
            "clients": opts["clients"],
            "setup_seconds": round(setup_seconds, 1),
            "cleaned_up": not opts["keep"],
        }
        self.stdout.write(f"{'measure':<34}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}  target p95")
        for label, fig, target in (
            ("exact key (selector)", exact, "<= 5"),
            ("contains (selector)", contains, "<= 50"),
            (f"page, {opts['clients']} clients", page, "<= 100"),
        ):
            self.stdout.write(
                f"{label:<34}{fig['n']:>6}{fig['p50_ms']:>10.2f}{fig['p95_ms']:>10.2f}{fig['max_ms']:>10.2f}  {target}"
            )
        if page.get("errors"):
            self.stdout.write(f"page answers other than 200: {page['errors']}")
        if opts["json"]:
            self.stdout.write(json.dumps(result))

    # --- guard and cleanup ------------------------------------------------------------------------

    def _foreign_data(self) -> list[str]:
        from approvals.models import ActionRequest
        from cases.models import OpsCase
        from ledger.models import LedgerJournal
        from payments.models import Merchant, PaymentIntent

        checks = {
            "merchants": Merchant.objects.exclude(public_id__startswith=f"m_{MARK}"),
            "payment intents": PaymentIntent.objects.exclude(public_id__startswith=f"pi_{MARK}"),
            "ledger journals": LedgerJournal.objects.all(),
            "cases": OpsCase.objects.all(),
            "action requests": ActionRequest.objects.all(),
        }
        return [label for label, qs in checks.items() if qs.exists()]

    def _cleanup(self) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            for sql in _CLEANUP:
                cursor.execute(sql)

    # --- data -------------------------------------------------------------------------------------

    def _generate(self, n: int) -> dict:
        merchants = max(10, n // 1000)
        customers = max(10, n // 20)
        emails, email_masks, phones, phone_masks = [], [], [], []
        for k in range(1, customers + 1):
            email_hash, email_mask = customer_email_digest(f"bench{k}@example.com")
            phone_hash, phone_mask = customer_phone_digest(f"+62812{k:08d}", region="ID")
            emails.append(email_hash)
            email_masks.append(email_mask)
            phones.append(phone_hash)
            phone_masks.append(phone_mask)
        words = "ARRAY[" + ", ".join(f"'{w}'" for w in WORDS) + "]"
        half = max(n // 2, 1)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"""INSERT INTO payments_merchant (public_id, name, legal_name, status, region, risk_tier,
                        default_currency, contact_name, contact_email, contact_phone, version, created_at, updated_at)
                    SELECT 'm_{MARK}' || lpad(g::text, 24, '0'),
                           'Bench Store ' || g || ' ' || ({words})[1 + g %% {len(WORDS)}],
                           '', 'ACTIVE', 'ID', 'MEDIUM', 'IDR', '', '', '', 1,
                           now() - interval '{DAYS + 1} days', now() - interval '{DAYS + 1} days'
                      FROM generate_series(1, %s) g""",  # noqa: S608 (constants only)
                [merchants],
            )
            cursor.execute(
                f"""INSERT INTO payments_customer (public_id, merchant_id, reference, email_hash, email_masked,
                        phone_hash, phone_masked, version, created_at, updated_at)
                    SELECT 'cus_{MARK}' || lpad(c.k::text, 24, '0'), m.id, 'bench-cust-' || c.k,
                           c.email_hash, c.email_masked, c.phone_hash, c.phone_masked, 1,
                           now() - interval '{DAYS + 1} days', now() - interval '{DAYS + 1} days'
                      FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY
                           AS c(email_hash, email_masked, phone_hash, phone_masked, k)
                      JOIN payments_merchant m ON m.public_id = 'm_{MARK}' || lpad((1 + c.k %% %s)::text, 24, '0')""",  # noqa: S608
                [emails, email_masks, phones, phone_masks, merchants],
            )
            # Status by position: 7 in 10 captured, then failed, processing, awaiting a new method.
            cursor.execute(
                f"""INSERT INTO payments_paymentintent (public_id, merchant_id, customer_id, business_type,
                        business_id, amount_minor, currency, capture_mode, description, status, captured_minor,
                        refund_reserved_minor, refunded_minor, idempotency_key, metadata, version, created_at,
                        updated_at)
                    SELECT 'pi_{MARK}' || lpad(g::text, 24, '0'), m.id, c.id, 'ORDER',
                           'ORD-' || lpad((g %% %(half)s)::text, 8, '0'), a.amount,
                           CASE WHEN g %% 10 = 9 THEN 'PHP' ELSE 'IDR' END, 'AUTOMATIC', '',
                           CASE WHEN g %% 10 < 7 THEN 'SUCCEEDED' WHEN g %% 10 = 7 THEN 'FAILED'
                                WHEN g %% 10 = 8 THEN 'PROCESSING' ELSE 'REQUIRES_PAYMENT_METHOD' END,
                           CASE WHEN g %% 10 < 7 THEN a.amount ELSE 0 END, 0, 0, 'bench-' || g, '{{}}'::jsonb, 1,
                           t.at, t.at
                      FROM generate_series(1, %(n)s) g
                      CROSS JOIN LATERAL (SELECT ((g::bigint * 7919) %% 200000 + 1) * 100 AS amount) a
                      CROSS JOIN LATERAL (SELECT now() - interval '{DAYS} days'
                                                 + (g::float / %(n)s) * interval '{DAYS} days' AS at) t
                      JOIN payments_merchant m
                        ON m.public_id = 'm_{MARK}' || lpad((1 + g %% %(merchants)s)::text, 24, '0')
                      LEFT JOIN payments_customer c
                        ON g %% 5 = 0
                       AND c.public_id = 'cus_{MARK}' || lpad((1 + (g / 5) %% %(customers)s)::text, 24, '0')
                """,  # noqa: S608 (constants only)
                {"n": n, "half": half, "merchants": merchants, "customers": customers},
            )
            cursor.execute(
                f"""INSERT INTO payments_paymentattempt (public_id, payment_intent_id, attempt_no, method_type,
                        card_brand, card_last4, card_fingerprint, provider_code, provider_account, provider_reference,
                        last_provider_status, decline_code, amount_minor, currency, fee_minor, status, idempotency_key,
                        capture_journal_ref, sent_at, completed_at, inquiry_count, escalated_case_ref, version,
                        created_at, updated_at)
                    SELECT 'pa_{MARK}' || substr(i.public_id, 6), i.id, 1,
                           CASE WHEN s.g % 3 = 0 THEN 'QRIS' ELSE 'CARD' END,
                           CASE WHEN s.g % 3 = 0 THEN '' ELSE 'VISA' END, CASE WHEN s.g % 3 = 0 THEN '' ELSE '4242' END,
                           '', 'sim', 'acct_bench', 'psp_' || md5('bench' || s.g), '', '', i.amount_minor, i.currency,
                           0,
                           CASE i.status WHEN 'SUCCEEDED' THEN 'SUCCEEDED' WHEN 'FAILED' THEN 'DECLINED'
                                         WHEN 'PROCESSING' THEN 'SENT_TO_PROVIDER' ELSE 'FAILED' END,
                           'bench-pa-' || s.g, '', i.created_at, NULL, 0, '', 1, i.created_at, i.created_at
                      FROM payments_paymentintent i
                      CROSS JOIN LATERAL (SELECT substr(i.public_id, 6)::bigint AS g) s
                     WHERE i.public_id LIKE 'pi{_LIKE_MARK}'"""  # noqa: S608 (constants only)
            )
        with connection.cursor() as cursor:
            # VACUUM too: it sets the hint bits and visibility map a fresh bulk load lacks, so the
            # measures neither pay for them nor race autovacuum doing the same.
            for table in TABLES:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
        return {"merchants": merchants, "customers": customers}

    def _user(self, run: str):
        User = get_user_model()
        user = User(username=f"bench-search-{run}", first_name="Search", last_name="Benchmark")
        user.set_unusable_password()
        user.save()
        user.groups.add(Group.objects.get(name=ROLE))
        return User.objects.get(pk=user.pk)

    # --- measures ---------------------------------------------------------------------------------

    def _queries_exact(self, n: int, count: int, rng: random.Random) -> list[str]:
        return [bench_id("pi" if i % 2 == 0 else "pa", rng.randint(1, n)) for i in range(count)]

    def _queries_contains(self, n: int, merchants: int, count: int, rng: random.Random) -> list[str]:
        queries = []
        for i in range(count):
            k = rng.randint(1, n)
            if i % 3 == 0:  # part of a provider reference, as an operator pastes it from an email
                start = rng.randint(4, 20)
                queries.append(provider_reference(k)[start : start + 12])
            elif i % 3 == 1:  # a merchant reference (two intents share each)
                queries.append(business_id(k, n))
            else:  # part of a merchant's name
                m = rng.randint(1, merchants)
                queries.append(f"Store {m} {WORDS[m % len(WORDS)]}")
        return queries

    def _time_selector(self, user, queries: list[str]) -> tuple[list[float], list[int]]:
        search(user=user, query=queries[0])  # warm: permissions cache, plans
        times, hits = [], []
        for q in queries:
            t0 = time.perf_counter()
            result = search(user=user, query=q)
            times.append((time.perf_counter() - t0) * 1000)
            hits.append(result.total)
        return times, hits

    def _exact(self, user, n: int, samples: int, rng: random.Random) -> dict:
        times, hits = self._time_selector(user, self._queries_exact(n, samples, rng))
        if sum(1 for h in hits if h == 1) != len(hits):
            raise CommandError("an exact lookup did not find its generated row")
        return figures(times)

    def _contains(self, user, n: int, merchants: int, samples: int, rng: random.Random) -> tuple[dict, list[int]]:
        times, hits = self._time_selector(user, self._queries_contains(n, merchants, samples, rng))
        return figures(times), hits

    def _page(self, user, n: int, merchants: int, clients: int, per_client: int, rng: random.Random) -> dict:
        signer = Client()
        signer.force_login(user)
        cookies = signer.cookies
        plans = []
        for _ in range(clients):
            exact = self._queries_exact(n, per_client, rng)
            contains = self._queries_contains(n, merchants, per_client, rng)
            plans.append([exact[i] if i % 2 == 0 else contains[i] for i in range(per_client)])
        barrier = threading.Barrier(clients)
        times: list[float] = []
        errors: dict[str, int] = {}
        lock = threading.Lock()

        def worker(queries: list[str]) -> None:
            try:
                client = Client()
                client.cookies = cookies
                client.get("/search/", {"q": queries[0]})  # warm this thread's connection
                barrier.wait()
                mine, bad = [], {}
                for q in queries:
                    t0 = time.perf_counter()
                    response = client.get("/search/", {"q": q})
                    mine.append((time.perf_counter() - t0) * 1000)
                    if response.status_code != 200:
                        bad[str(response.status_code)] = bad.get(str(response.status_code), 0) + 1
                with lock:
                    times.extend(mine)
                    for code, count in bad.items():
                        errors[code] = errors.get(code, 0) + count
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        signer.logout()
        result = figures(times)
        result["errors"] = errors
        return result
