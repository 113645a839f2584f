"""Breaks: the items nobody has explained yet, each owned by a team and counted by age.

breaks_sync runs at the end of every reconciliation run (and after an unmatch or a decision) and
makes the breaks agree with where the items stand:

- an item a run left open, or an unmatch released, gets one open break (the partial unique index
  keeps it one, whatever runs overlap): an external line nobody recognises (UNMATCHED_EXTERNAL) or
  an internal movement not seen outside (UNMATCHED_INTERNAL);
- an external line in an active match with a difference (AMOUNT_MISMATCH, FEE_MISMATCH: the break is
  worth the difference) or an active duplicate match (DUPLICATE) gets one open break;
- an open break whose item is now explained (an active MATCHED, MANUAL_MATCHED or TIMING_DIFFERENCE
  match) closes through its state machine, naming the match (and so the rule and version, or the
  decision) that explained it;
- an open break whose item is unexplained in another way now (an unmatched line later paired
  beyond tolerance, a difference whose match was undone) closes as superseded, and a break of the
  new type opens.

A break closed by a decision stays closed: every closing decision explains its item with a match of
its own, so the item is neither open nor in a difference any more.

New breaks join a RECONCILIATION_BREAK case per source, business date and break type through
cases.exception_report, so repeated runs add occurrences to the open case instead of opening more.
Opening is set-based (breaks are created, not transitioned); closing goes through the FSM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction

from audit.services import audit_record
from backoffice.actors import Actor
from cases.models import CaseType
from cases.services import exception_report
from reconciliation.models import (
    BreakStatus,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationMatch,
    ReconciliationRun,
    ReconciliationSource,
)
from reconciliation.services.common import copy_text, index_walk_only, public_ids, raw_cursor

# What keeps an item a break, and on which side the break is kept.
BREAK_TYPES = (
    MatchStatus.UNMATCHED_EXTERNAL, MatchStatus.UNMATCHED_INTERNAL, MatchStatus.AMOUNT_MISMATCH,
    MatchStatus.FEE_MISMATCH, MatchStatus.DUPLICATE,
)  # fmt: skip
EXPLAINED = (MatchStatus.MATCHED, MatchStatus.MANUAL_MATCHED, MatchStatus.TIMING_DIFFERENCE)
SOURCE_SYSTEM = "reconciliation"
AGE_BUCKETS = (("0-1", 0, 1), ("2-7", 2, 7), ("8-30", 8, 30), (">30", 31, None))


@dataclass(frozen=True)
class BreakSync:
    opened: int
    closed: int
    cases: tuple[str, ...] = ()


def age_bucket(business_date: dt.date, today: dt.date) -> str:
    days = max((today - business_date).days, 0)
    for label, low, high in AGE_BUCKETS:
        if days >= low and (high is None or days <= high):
            return label
    return AGE_BUCKETS[-1][0]


# Results of an active match that keep its external line a break (and the break's type).
DIFFERENCES = (MatchStatus.AMOUNT_MISMATCH, MatchStatus.FEE_MISMATCH, MatchStatus.DUPLICATE)

# Every open break of the source with the active match of its item, if any.
_OPEN_BREAKS = """
SELECT b.id, mi.match_id FROM reconciliation_reconciliationbreak b
  LEFT JOIN reconciliation_reconciliationmatchitem mi ON mi.item_id = b.item_id AND mi.active
 WHERE b.source_id = %s AND b.status = 'OPEN'
"""
# The external lines of the source's active matches with a difference (by the partial index on them).
_DIFFERENCES = """
SELECT mi.item_id, m.result, m.amount_delta_minor, i.amount_minor, i.currency, i.value_date
  FROM reconciliation_reconciliationmatch m
  JOIN reconciliation_reconciliationmatchitem mi ON mi.match_id = m.id AND mi.active AND mi.external
  JOIN reconciliation_reconciliationitem i ON i.id = mi.item_id
 WHERE m.source_id = %s AND m.state = 'ACTIVE' AND m.result IN ('AMOUNT_MISMATCH', 'FEE_MISMATCH', 'DUPLICATE')
"""

# (item id, external?, amount, currency, value date) of an item left open.
LeftItem = tuple[int, bool, int, str, dt.date]


def breaks_sync(
    *, source: ReconciliationSource, actor: Actor, now: dt.datetime, run: ReconciliationRun | None = None,
    left: Iterable[LeftItem] = (),
) -> BreakSync:  # fmt: skip
    """Open, close and supersede breaks of `source` so they agree with its items (see the module
    docstring); `left` names the items a run left open or an unmatch released. Idempotent: a second
    call with nothing changed opens and closes nothing. Audited with one event naming the counts
    (and the run, if any)."""
    with transaction.atomic():
        with index_walk_only(), connection.cursor() as cursor:  # bounded by the source's breaks, not its history
            cursor.execute(_DIFFERENCES, [source.pk])
            wanted: dict[int, tuple] = {
                item_id: (item_id, result, delta if result != MatchStatus.DUPLICATE else amount, currency, day)
                for item_id, result, delta, amount, currency, day in cursor.fetchall()
            }
            cursor.execute(_OPEN_BREAKS, [source.pk])
            active_match = dict(cursor.fetchall())
        for item_id, external, amount, currency, day in left:
            kind = MatchStatus.UNMATCHED_EXTERNAL if external else MatchStatus.UNMATCHED_INTERNAL
            wanted.setdefault(item_id, (item_id, kind, amount, currency, day))
        open_breaks = list(
            ReconciliationBreak.objects.select_for_update(of=("self",)).filter(pk__in=list(active_match)).order_by("id")
        )
        matches = ReconciliationMatch.objects.in_bulk({m for m in active_match.values() if m is not None})
        closed = 0
        kept: set[int] = set()
        for rb in open_breaks:
            match = matches.get(active_match[rb.pk])
            want = wanted.get(rb.item_id)
            if match is None and rb.break_type in (MatchStatus.UNMATCHED_EXTERNAL, MatchStatus.UNMATCHED_INTERNAL):
                kept.add(rb.item_id)  # still open: still unexplained, as the break says
            elif match is not None and match.result in EXPLAINED:
                how = f"{match.rule_code} v{match.rule_version}" if match.rule_code else "decision"
                _close(rb, now=now, match=match, note=f"explained by {match.public_id} ({how})")
                closed += 1
            elif want is not None and want[1] == rb.break_type:
                kept.add(rb.item_id)
            else:
                now_is = match.result if match is not None else "unmatched"
                _close(rb, now=now, match=None, note=f"superseded: the item is now {now_is}")
                closed += 1
        to_open = [row for item_id, row in wanted.items() if item_id not in kept]
        opened, cases = _open(source, to_open, actor=actor, now=now)
        audit_record(
            event_type="reconciliation.breaks_synced", actor=actor, action_type="RECONCILIATION_RUN",
            target_type="reconciliation_source", target_id=source.code, now=now,
            after={"opened": opened, "closed": closed, "run": run.public_id if run else "", "cases": sorted(cases)},
        )  # fmt: skip
    return BreakSync(opened=opened, closed=closed, cases=tuple(sorted(cases)))


def _close(rb: ReconciliationBreak, *, now: dt.datetime, match, note: str) -> None:
    rb.close()
    rb.closed_at = now
    rb.closed_by_match = match
    rb.closing_note = note[:200]
    rb.version += 1
    rb.save(update_fields=["status", "closed_at", "closed_by_match", "closing_note", "version"])


def _open(source: ReconciliationSource, rows, *, actor: Actor, now: dt.datetime) -> tuple[int, set[str]]:
    """Report the new breaks' cases, then COPY the breaks in, each naming its case (written once: no
    second pass over a hundred thousand fresh rows). Returns (breaks opened, case numbers)."""
    if not rows:
        return 0, set()
    case_of = _report_cases(source, {(day, status) for _, status, _, _, day in rows}, actor=actor, now=now)
    names = public_ids("rb", len(rows))
    opened_at, team = now.isoformat(), copy_text(source.owner_team)
    columns = (
        "public_id", "item_id", "source_id", "break_type", "amount_minor", "currency", "business_date",
        "owner_team", "owner_user", "case_ref", "status", "opened_at", "closing_note", "version",
    )  # fmt: skip
    sql = f"COPY reconciliation_reconciliationbreak ({', '.join(columns)}) FROM STDIN"
    with raw_cursor() as cursor, cursor.copy(sql) as copy:
        for start in range(0, len(rows), 50_000):
            copy.write("".join([
                f"{name}\t{item_id}\t{source.pk}\t{status}\t{at_stake or 0}\t{currency}\t{day.isoformat()}\t"
                f"{team}\t\t{case_of[(day, status)]}\t{BreakStatus.OPEN}\t{opened_at}\t\t1\n"
                for name, (item_id, status, at_stake, currency, day) in zip(
                    names[start : start + 50_000], rows[start : start + 50_000], strict=True
                )
            ]).encode())  # fmt: skip
    return len(rows), set(case_of.values())


def _report_cases(
    source: ReconciliationSource, groups: set[tuple[dt.date, str]], *, actor: Actor, now: dt.datetime
) -> dict[tuple[dt.date, str], str]:
    """One occurrence per (business date, break type) with new breaks, on the open case for it;
    returns the case number of each group."""
    case_of = {}
    for business_date, status in sorted(groups):
        case, _ = exception_report(
            source_system=SOURCE_SYSTEM, business_key=f"{source.code}:{business_date:%Y-%m-%d}:{status}"[:128],
            exception_type="RECONCILIATION_BREAK", error_code=status, detail=f"reconciliation break {status}",
            severity="MEDIUM", now=now, actor=actor, case_type=CaseType.RECONCILIATION_BREAK,
            title=f"{MatchStatus(status).label} on {source.name}, {business_date:%Y-%m-%d}"[:200],
        )  # fmt: skip
        case_of[(business_date, status)] = case.case_number
    return case_of
