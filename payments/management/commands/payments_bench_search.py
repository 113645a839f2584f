"""Benchmark the global search: `manage.py payments_bench_search --payments 1000000 [--json]`.

It creates --payments payment intents, each with one attempt, over merchants (one per thousand
intents) and customers (every fifth intent has one), set-based in SQL (INSERT ... SELECT
generate_series; the customers' keyed hashes are computed here and passed as arrays), runs VACUUM (ANALYZE),
then measures what an operator waits for:

- exact-key lookups (pi_, pa_) through the selector backoffice.search.search;
- contains-searches (part of a provider reference, a merchant reference, part of a merchant name)
  through the same selector;
- the search page, GET /search/?q=..., from --clients clients at once, each signed in as a payment-ops
  user with a session of its own. By default (--page-mode server) the command starts the server the
  deployment runs, gunicorn with --workers worker processes, on a loopback port, and drives it from
  --clients client processes over HTTP: what an operator waits for, queueing for a worker included.
  --page-mode threads drives the page through django.test.Client from --clients threads of this
  process instead: one interpreter, so the threads take turns at Python work and the figure is one
  process's, not a server's.

It prints the mode, p50/p95 per measure and the page's requests per second; with --json the last
line holds {"payments", "exact_p95_ms", "contains_p95_ms", "page_p95_ms", "page_mode", ...}.
Targets (issue): exact p95 <= 5 ms, contains p95 <= 50 ms, page p95 <= 100 ms at 8 clients.

Every row it writes carries the benchmark marker: public ids whose body starts with "ZB" (a real
id's body starts with its timestamp, never with Z). A run first removes what an interrupted run
left, and removes what it made at the end (--keep leaves it for a look, and --reuse measures what a
--keep run of the same --payments left instead of generating it again). It refuses a database
holding other payments, journals, cases or action requests unless --force, and always refuses in
production. Each page client's sign-in and sign-out leave their two audit events (the trail is
append-only).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import quote, urlencode

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
WARM_REQUESTS = 2  # per page client, before the measure: every server worker has served a page
SERVER_START_SECONDS = 120


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
        parser.add_argument(
            "--page-mode", choices=("server", "threads"), default="server",
            help="server: gunicorn worker processes on loopback, driven by client processes over HTTP; "
            "threads: django.test.Client from threads of this process",
        )  # fmt: skip
        parser.add_argument("--workers", type=int, default=3, help="server worker processes (the Dockerfile's 3)")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
        parser.add_argument("--force", action="store_true", help="run beside data that is not the benchmark's")
        parser.add_argument("--keep", action="store_true", help="leave the generated rows in place")
        parser.add_argument(
            "--reuse", action="store_true",
            help="measure the rows a --keep run of the same --payments left, instead of generating them again",
        )  # fmt: skip

    def handle(self, *args, **opts):
        if settings.DJANGO_ENV == "production":
            raise CommandError("payments_bench_search writes benchmark rows; it refuses to run in production")
        n = opts["payments"]
        if n < 100:
            raise CommandError("--payments must be at least 100")
        if min(opts["clients"], opts["samples"], opts["page_requests"], opts["workers"]) < 1:
            raise CommandError("--samples, --clients, --page-requests and --workers must be at least 1")
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

        started = time.perf_counter()
        counts = self._kept(n) if opts["reuse"] else None
        reused = counts is not None
        if reused:
            setup_seconds = time.perf_counter() - started
            self.stdout.write(f"reusing the {n:,} payments a --keep run left (checked in {setup_seconds:.1f} s)")
        else:
            self._cleanup()
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
            page = self._page(user, n, counts["merchants"], opts, rng)
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
            "page_mode": opts["page_mode"],
            "clients": opts["clients"],
            "workers": opts["workers"] if opts["page_mode"] == "server" else None,
            "reused": reused,
            "setup_seconds": round(setup_seconds, 1),
            "cleaned_up": not opts["keep"],
        }
        self.stdout.write(f"page measured through {page['through']}")
        self.stdout.write(f"{'measure':<34}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}  target p95")
        for label, fig, target in (
            ("exact key (selector)", exact, "<= 5"),
            ("contains (selector)", contains, "<= 50"),
            (f"page, {opts['clients']} clients", page, "<= 100"),
        ):
            self.stdout.write(
                f"{label:<34}{fig['n']:>6}{fig['p50_ms']:>10.2f}{fig['p95_ms']:>10.2f}{fig['max_ms']:>10.2f}  {target}"
            )
        self.stdout.write(f"page throughput: {page['requests_per_s']:.1f} requests/s over {page['seconds']:.1f} s")
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

    def _kept(self, n: int) -> dict | None:
        """The counts of the rows a --keep run of `n` payments left, or None when they are not exactly those."""
        from payments.models import Customer, Merchant, PaymentAttempt, PaymentIntent

        counts = {"merchants": max(10, n // 1000), "customers": max(10, n // 20)}
        found = (
            Merchant.objects.filter(public_id__startswith=f"m_{MARK}").count(),
            Customer.objects.filter(public_id__startswith=f"cus_{MARK}").count(),
            PaymentIntent.objects.filter(public_id__startswith=f"pi_{MARK}").count(),
            PaymentAttempt.objects.filter(public_id__startswith=f"pa_{MARK}").count(),
        )
        if found != (counts["merchants"], counts["customers"], n, n):
            self.stdout.write(
                f"no kept run of {n:,} payments to reuse (found {found[2]:,} benchmark payments): generating"
            )
            return None
        return counts

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

    def _page(self, user, n: int, merchants: int, opts: dict, rng: random.Random) -> dict:
        clients, per_client = opts["clients"], opts["page_requests"]
        plans = []
        for _ in range(clients):
            count = WARM_REQUESTS + per_client
            exact = self._queries_exact(n, count, rng)
            contains = self._queries_contains(n, merchants, count, rng)
            plans.append([exact[i] if i % 2 == 0 else contains[i] for i in range(count)])
        # Every client is an operator of their own: a session each (saved on every request).
        signers = []
        for _ in range(clients):
            signer = Client()
            signer.force_login(user)
            signers.append(signer)
        try:
            if opts["page_mode"] == "threads":
                outcomes = self._page_threads(signers, plans)
                through = f"django.test.Client, {clients} threads of one process"
            else:
                cookies = [s.cookies[settings.SESSION_COOKIE_NAME].value for s in signers]
                outcomes, through = self._page_server(cookies, plans, opts["workers"])
        finally:
            for signer in signers:
                signer.logout()
        times = [t for outcome in outcomes for t in outcome["times"]]
        errors: dict[str, int] = {}
        for outcome in outcomes:
            for code, count in outcome["errors"].items():
                errors[code] = errors.get(code, 0) + count
        result = figures(times)
        spans = [o for o in outcomes if o["times"]]
        seconds = max((o["end"] for o in spans), default=0.0) - min((o["start"] for o in spans), default=0.0)
        result["seconds"] = round(seconds, 2)
        result["requests_per_s"] = round(len(times) / seconds, 1) if seconds > 0 else 0.0
        result["errors"] = errors
        result["through"] = through
        return result

    def _page_threads(self, signers: list[Client], plans: list[list[str]]) -> list[dict]:
        barrier = threading.Barrier(len(plans))
        outcomes: list[dict] = []
        lock = threading.Lock()

        def worker(client: Client, queries: list[str]) -> None:
            try:
                outcome = _drive(lambda q: client.get("/search/", {"q": q}).status_code, queries, barrier)
                with lock:
                    outcomes.append(outcome)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=pair) for pair in zip(signers, plans, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(outcomes) != len(plans):
            raise CommandError("a page client thread failed; see the traceback above")
        return outcomes

    def _page_server(self, cookies: list[str], plans: list[list[str]], workers: int) -> tuple[list[dict], str]:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.set_inheritable(True)
        port = listener.getsockname()[1]
        log = tempfile.TemporaryFile()  # noqa: SIM115 (read back when the server fails)
        try:
            server = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
                [sys.executable, "-m", "gunicorn", "backoffice.wsgi:application", "--bind",
                 f"fd://{listener.fileno()}", "--workers", str(workers), "--timeout", "60", "--log-level", "warning"],
                env=self._server_env(), cwd=str(settings.BASE_DIR), pass_fds=(listener.fileno(),),
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        except OSError as exc:
            listener.close()
            log.close()
            raise CommandError(f"could not start the server ({exc}); --page-mode threads needs none") from exc
        listener.close()  # the server holds its own copy
        try:
            self._await_server(server, port, cookies[0], log)
            # Forked clients must not share this process's database connections.
            connections.close_all()
            context = multiprocessing.get_context("fork")
            barrier = context.Barrier(len(plans))
            results = context.Queue()
            name = settings.SESSION_COOKIE_NAME
            processes = [
                context.Process(target=_http_client, args=(port, f"{name}={cookie}", plan, barrier, results))
                for cookie, plan in zip(cookies, plans, strict=True)
            ]
            for process in processes:
                process.start()
            try:
                outcomes = [results.get(timeout=SERVER_START_SECONDS + 60 * len(plans[0])) for _ in processes]
            except Exception as exc:
                raise CommandError("a page client process gave no figures in time") from exc
            finally:
                for process in processes:
                    process.join(timeout=30)
                    if process.is_alive():
                        process.kill()
                        process.join()
            failed = [o["failure"] for o in outcomes if o.get("failure")]
            if failed:
                raise CommandError(f"a page client failed: {failed[0]}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
        return outcomes, f"gunicorn, {workers} worker processes on 127.0.0.1:{port}, {len(plans)} client processes"

    def _server_env(self) -> dict[str, str]:
        """This process's environment, pointed at the database this command measures (under the test
        runner that is the test database, not the one DATABASE_URL names)."""
        db = connection.settings_dict
        user = quote(db.get("USER") or "", safe="")
        password = quote(db.get("PASSWORD") or "", safe="")
        host = quote(db.get("HOST") or "", safe="")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        env = dict(os.environ)
        env["DATABASE_URL"] = f"postgres://{auth}{host}{port}/{quote(db['NAME'], safe='')}"
        env.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
        return env

    def _await_server(self, server: subprocess.Popen, port: int, cookie: str, log) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        name = settings.SESSION_COOKIE_NAME
        while True:
            if server.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise CommandError(
                    f"the server stopped (exit {server.returncode}) before answering "
                    f"(--page-mode threads needs no server):\n{tail}"
                )
            try:
                status = _http_get(port, f"{name}={cookie}", "/search/?q=warm")
            except OSError:
                status = None
            if status == 200:
                return
            if status is not None:
                raise CommandError(f"the server answered {status} to a signed-in search; is 127.0.0.1 allowed?")
            if time.monotonic() > deadline:
                raise CommandError(f"the server did not answer within {SERVER_START_SECONDS} s")
            time.sleep(0.2)


def _drive(get, queries: list[str], barrier) -> dict:
    """Warm up, wait for every client, then time each request: {"times", "errors", "start", "end"}."""
    try:
        for q in queries[:WARM_REQUESTS]:
            get(q)
        barrier.wait()
    except BaseException:
        barrier.abort()  # nobody waits for a client that will never come
        raise
    times, errors = [], {}
    start = time.monotonic()
    for q in queries[WARM_REQUESTS:]:
        t0 = time.perf_counter()
        status = get(q)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"times": times, "errors": errors, "start": start, "end": time.monotonic()}


def _http_get(port: int, cookie: str, path: str) -> int:
    """One request on a connection of its own (gunicorn's sync workers close it after each answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _http_client(port: int, cookie: str, queries: list[str], barrier, results) -> None:
    """A page client process: it reads pages over HTTP and never touches the database."""
    try:
        outcome = _drive(lambda q: _http_get(port, cookie, "/search/?" + urlencode({"q": q})), queries, barrier)
    except BaseException as exc:
        outcome = {"times": [], "errors": {}, "start": 0.0, "end": 0.0, "failure": f"{type(exc).__name__}: {exc}"}
    results.put(outcome)
