"""Benchmark reconciliation end to end: `manage.py recon_bench --lines 1000000 [--json]`.

For each size (the number given, then twice it, so the growth shows) it creates a source of its own
(bench-<run>-<lines>), writes its internal side straight into the items table (COPY: the expected
movements a refresh would create, without a million payments behind them), generates a bank
statement of that many lines as a generic CSV, then times what an operator's import and run cost:
receiving the file, importing it (parsing, loading) and the reconciliation run (loading the items,
matching, writing, breaks). It prints figures and asserts nothing; with --json the last line holds
them. It writes rows that are never deleted (reconciliation records are kept): run it against a
scratch database.

The statement's mix, per 100 lines: 81 with an exact reference match, 7 within the amount
tolerance, 1 beyond it (AMOUNT_MISMATCH), 2 batched payout lines (each the sum of 5 internal
payouts), 3 without a reference matched by amount and date, 5 with no internal counterpart, 1
duplicate of an earlier line; and internal movements never seen outside for 5% of the lines.
"""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
import random
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from audit.context import audit_context
from backoffice.actors import system_actor
from reconciliation.models import ItemSide, ReconciliationOpenItem, SourceKind
from reconciliation.services import reconciliation_run, source_create, statement_import, statement_receive
from reconciliation.services.common import item_statistics_refresh, lock_source_for_new_items, raw_cursor

ACTOR = system_actor("recon_bench")
CURRENCY = "USD"
MAPPING = {"date": "date", "amount": "amount", "currency": "currency", "reference": "reference",
           "description": "description"}  # fmt: skip
START = dt.date(2026, 10, 1)
_INTERNAL_COLUMNS = (
    "side", "source_id", "internal_type", "internal_id", "kind", "amount_minor", "currency", "value_date",
    "reference", "references", "counterparty", "description", "batch_id", "reversal", "created_at",
)  # fmt: skip


_QUOTED = ", ".join(f'"{column}"' for column in _INTERNAL_COLUMNS)


def _money(minor: int) -> str:
    return f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def generate(lines: int, tag: str, seed: int) -> tuple[bytes, list[tuple], dict[str, int]]:
    """(statement CSV, internal items as (kind, amount, day, reference, batch_id), expected counts)."""
    rng = random.Random(seed)  # noqa: S311 (benchmark data, not secrets)
    csv = io.StringIO()
    csv.write("date,amount,currency,reference,description\n")
    internal: list[tuple] = []
    expected = dict.fromkeys(("exact", "tolerance", "mismatch", "batch", "window", "unmatched_external",
                              "duplicate", "unmatched_internal"), 0)  # fmt: skip
    exact_lines: dict[int, tuple[str, int]] = {}
    for n in range(lines):
        category = n % 100
        day = START + dt.timedelta(days=n % 28)
        reference, amount = "", 0
        if category < 80 or category == 99:
            amount = rng.randint(100, 5_000_000) * (-1 if rng.random() < 0.2 else 1)
            reference = f"T{tag}x{n:09d}"
            internal.append(("CAPTURE" if amount > 0 else "PAYOUT", amount, day, reference, ""))
            exact_lines[n] = (reference, amount)
            expected["exact"] += 1
        elif category < 87:
            base = rng.randint(100_000, 5_000_000)
            amount, reference = base + rng.randint(1, 100), f"T{tag}x{n:09d}"
            internal.append(("CAPTURE", base, day, reference, ""))
            expected["tolerance"] += 1
        elif category == 87:
            base = rng.randint(100_000, 5_000_000)
            amount, reference = base + base // 10 + 1_000, f"T{tag}x{n:09d}"
            internal.append(("CAPTURE", base, day, reference, ""))
            expected["mismatch"] += 1
        elif category < 90:
            reference = f"B{tag}x{n:09d}"
            parts = [-rng.randint(5_000_001, 5_999_999) for _ in range(5)]
            for k, part in enumerate(parts):
                internal.append(("PAYOUT", part, day - dt.timedelta(days=1), f"P{tag}x{n:09d}-{k}", reference))
            amount = sum(parts)
            expected["batch"] += 1
        elif category < 93:
            amount = 80_000_000 + n
            internal.append(("CAPTURE", amount, day - dt.timedelta(days=rng.randint(0, 2)), f"W{tag}x{n:09d}", ""))
            expected["window"] += 1
        elif category < 98:
            amount, reference = 70_000_000 + n, f"U{tag}x{n:09d}"
            expected["unmatched_external"] += 1
        else:  # a second copy of an earlier exact line
            original = n - 50
            reference, amount = exact_lines.get(original, (f"U{tag}x{n:09d}", 70_000_000 + n))
            expected["duplicate" if original in exact_lines else "unmatched_external"] += 1
        csv.write(f"{day.isoformat()},{_money(amount)},{CURRENCY},{reference},bench line {n}\n")
    for k in range(lines * 5 // 100):
        internal.append(("CAPTURE", 60_000_000 + k, START + dt.timedelta(days=k % 28), f"V{tag}x{k:09d}", ""))
        expected["unmatched_internal"] += 1
    return csv.getvalue().encode(), internal, expected


def _load_internal(source_id: int, tag: str, internal: list[tuple]) -> None:
    created = timezone.now().isoformat()
    rows = "".join(
        f"INTERNAL\t{source_id}\tbench\tbi_{tag}_{k}\t{kind}\t{amount}\t{CURRENCY}\t{day.isoformat()}\t{reference}\t"
        f"{{}}\t\t\t{batch}\tf\t{created}\n"
        for k, (kind, amount, day, reference, batch) in enumerate(internal)
    )
    data = rows.encode()
    copy_sql = f"COPY reconciliation_reconciliationitem ({_QUOTED}) FROM STDIN"
    # Under the source's lock, as expected_items_refresh writes them: new items above the watermark.
    with transaction.atomic(), raw_cursor() as cursor:
        lock_source_for_new_items(source_id)
        with cursor.copy(copy_sql) as copy:
            for start in range(0, len(data), 1 << 22):
                copy.write(data[start : start + (1 << 22)])
    item_statistics_refresh(len(internal))  # as expected_items_refresh does after creating as many


def _external_by_status(source_id: int) -> dict[str, int]:
    """External lines by where they stand: the result of their active match, or unmatched."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT COALESCE(m.result, 'UNMATCHED_EXTERNAL'), count(*)
                 FROM reconciliation_reconciliationitem i
                 LEFT JOIN reconciliation_reconciliationmatchitem mi ON mi.item_id = i.id AND mi.active
                 LEFT JOIN reconciliation_reconciliationmatch m ON m.id = mi.match_id
                WHERE i.source_id = %s AND i.side = 'EXTERNAL'
                GROUP BY 1""",
            [source_id],
        )
        return dict(cursor.fetchall())


class Command(BaseCommand):
    help = "Time importing and matching a generated statement of --lines lines, and of twice as many."

    def add_arguments(self, parser):
        parser.add_argument("--lines", type=int, default=100_000)
        parser.add_argument("--single", action="store_true", help="only the size given, not twice it as well")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")

    def handle(self, *args, **opts):
        if settings.DJANGO_ENV == "production":
            raise CommandError("recon_bench writes rows that are never deleted; it refuses to run in production")
        if opts["lines"] < 100:
            raise CommandError("--lines must be at least 100 (the mix is laid out per hundred lines)")
        run = uuid.uuid4().hex[:8]
        where = "embedded" if settings.EMBEDDED_DATABASE else connection.settings_dict["HOST"]
        sizes = [opts["lines"]] if opts["single"] else [opts["lines"], 2 * opts["lines"]]
        self.stdout.write(f"recon_bench run {run}: sizes {sizes}, database {where}")
        figures = []
        with audit_context(actor=ACTOR):
            for lines in sizes:
                figures.append(self._one(lines, run, opts["seed"]))
        if len(figures) == 2:
            ratio = figures[1]["total_seconds"] / max(figures[0]["total_seconds"], 1e-9)
            self.stdout.write(f"{sizes[1]:,} lines took {ratio:.2f}x the time of {sizes[0]:,} (2x the lines)")
        if opts["json"]:
            summary = {"results": [{k: f[k] for k in ("lines", "total_seconds", "match_lines_per_s")} for f in figures],
                       "details": figures}  # fmt: skip
            if len(figures) == 2:
                summary["time_ratio_2x"] = round(ratio, 3)
            self.stdout.write(json.dumps(summary))

    def _one(self, lines: int, run: str, seed: int) -> dict:
        tag = f"{run}L{lines}"
        source = source_create(
            code=f"bench-{run}-{lines}", name=f"Benchmark {run} ({lines:,} lines)", kind=SourceKind.BANK_ACCOUNT,
            parser="generic_csv", currency=CURRENCY, column_mapping=MAPPING, actor=ACTOR, now=timezone.now(),
        )  # fmt: skip
        started = time.perf_counter()
        data, internal, expected = generate(lines, tag, seed)
        generated = time.perf_counter()
        _load_internal(source.pk, tag, internal)
        # The generator's millions of tuples are not what a worker holds while it imports and matches;
        # kept alive, every full garbage collection in the timed part would walk them too.
        internal_items = len(internal)
        del internal
        gc.collect()
        setup = time.perf_counter()

        file, _ = statement_receive(source=source, filename=f"bench-{tag}.csv", data=data, actor=ACTOR,
                                    now=timezone.now())  # fmt: skip
        received = time.perf_counter()
        file = statement_import(file_id=file.public_id, actor=ACTOR, now_fn=timezone.now)
        imported = time.perf_counter()
        if file.status != "IMPORTED":
            raise CommandError(f"the generated statement was refused: {file.error_message}")
        result = reconciliation_run(source=source, actor=ACTOR, now_fn=timezone.now)
        matched = time.perf_counter()

        statuses = _external_by_status(source.pk)
        internal_left = ReconciliationOpenItem.objects.filter(source_id=source.pk, item__side=ItemSide.INTERNAL).count()
        total = matched - setup
        run_seconds = matched - imported
        figure = {
            "lines": lines,
            "internal_items": internal_items,
            "statement_mb": round(len(data) / 1e6, 1),
            "generate_seconds": round(generated - started, 3),
            "setup_internal_seconds": round(setup - generated, 3),
            "receive_seconds": round(received - setup, 3),
            "import_seconds": round(imported - received, 3),
            "run_seconds": round(run_seconds, 3),
            "run_phases": getattr(result, "timings", {}),
            "total_seconds": round(total, 3),
            "import_lines_per_s": round(lines / (imported - received)),
            "match_lines_per_s": round(lines / run_seconds),
            "engine_lines_per_s": round(lines / max(result.timings.get("match", 0), 1e-9)),
            "matches": result.matches_made,
            "breaks_opened": result.breaks_opened,
            "external_by_status": statuses,
            "internal_unmatched": internal_left,
            "expected_mix": expected,
        }
        self.stdout.write(
            f"{lines:>10,} lines ({figure['statement_mb']} MB, {internal_items:,} internal items): "
            f"total {total:.2f} s = receive {figure['receive_seconds']:.2f} + import {figure['import_seconds']:.2f} "
            f"({figure['import_lines_per_s']:,} lines/s) + run {run_seconds:.2f} "
            f"({figure['match_lines_per_s']:,} lines/s)\n"
            f"{'':>12}run phases {figure['run_phases']}\n"
            f"{'':>12}external lines {statuses}, internal left unmatched {internal_left:,}; "
            f"{result.matches_made:,} matches, {result.breaks_opened:,} breaks opened"
        )
        return figure
