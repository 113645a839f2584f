"""Breaks: the items nobody has explained yet, each owned by a team and counted by age.

breaks_sync runs at the end of every reconciliation run (and after an unmatch or a decision) and
makes the breaks agree with the items:

- an item left unexplained gets one open break (the partial unique index keeps it one, whatever
  runs overlap): an external line nobody recognises (UNMATCHED_EXTERNAL), an internal movement not
  seen outside (UNMATCHED_INTERNAL), an external line paired with a difference (AMOUNT_MISMATCH,
  FEE_MISMATCH: the break is on the external side and is worth the difference) or a duplicate
  external line (DUPLICATE);
- an open break whose item is now explained (MATCHED, MANUAL_MATCHED, TIMING_DIFFERENCE) closes
  through its state machine, naming the match (and so the rule and version) that explained it;
- an open break whose item is unexplained in another way now (an unmatched line later paired
  beyond tolerance) closes as superseded and a new break of the new type opens.

New breaks join a RECONCILIATION_BREAK case per source, business date and break type through
cases.exception_report, so repeated runs add occurrences to the open case instead of opening more.
Opening is set-based (breaks are created, not transitioned); closing goes through the FSM.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection, transaction

from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.ids import new_public_id
from cases.models import CaseType
from cases.services import exception_report
from reconciliation.models import (
    BreakStatus,
    ItemSide,
    MatchStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationRun,
    ReconciliationSource,
)

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


def _wanted(source: ReconciliationSource):
    """Items that should have an open break, with the type and amount it should have."""
    items = ReconciliationItem.objects.filter(source=source, match_status__in=BREAK_TYPES).exclude(
        side=ItemSide.INTERNAL, match_status__in=(MatchStatus.AMOUNT_MISMATCH, MatchStatus.FEE_MISMATCH)
    )
    return items.values_list(
        "id", "match_status", "amount_minor", "currency", "value_date", "match__amount_delta_minor"
    )


def breaks_sync(
    *, source: ReconciliationSource, actor: Actor, now: dt.datetime, run: ReconciliationRun | None = None
) -> BreakSync:
    """Open, close and supersede breaks of `source` so they agree with its items (see the module
    docstring). Idempotent: a second call with nothing changed opens and closes nothing. Audited
    with one event naming the counts (and the run, if any)."""
    with transaction.atomic():
        wanted = {row[0]: row for row in _wanted(source)}
        open_breaks = list(
            ReconciliationBreak.objects.select_for_update(of=("self",))
            .filter(source=source, status=BreakStatus.OPEN)
            .select_related("item", "item__match")
            .order_by("id")
        )
        closed = 0
        kept: set[int] = set()
        for rb in open_breaks:
            want = wanted.get(rb.item_id)
            if want is not None and want[1] == rb.break_type:
                kept.add(rb.item_id)
                continue
            if rb.item.match_status in EXPLAINED and rb.item.match is not None:
                match = rb.item.match
                how = f"{match.rule_code} v{match.rule_version}" if match.rule_code else "decision"
                _close(rb, now=now, match=match, note=f"explained by {match.public_id} ({how})")
            else:
                _close(rb, now=now, match=None, note=f"superseded: the item is now {rb.item.match_status}")
            closed += 1
        to_open = [row for item_id, row in wanted.items() if item_id not in kept]
        created = _open(source, to_open, now=now)
        cases = _report_cases(source, created, actor=actor, now=now)
        audit_record(
            event_type="reconciliation.breaks_synced", actor=actor, action_type="RECONCILIATION_RUN",
            target_type="reconciliation_source", target_id=source.code, now=now,
            after={"opened": len(created), "closed": closed, "run": run.public_id if run else "",
                   "cases": sorted(cases)},
        )  # fmt: skip
    return BreakSync(opened=len(created), closed=closed, cases=tuple(sorted(cases)))


def _close(rb: ReconciliationBreak, *, now: dt.datetime, match, note: str) -> None:
    rb.close()
    rb.closed_at = now
    rb.closed_by_match = match
    rb.closing_note = note[:200]
    rb.version += 1
    rb.save(update_fields=["status", "closed_at", "closed_by_match", "closing_note", "version"])


def _open(source: ReconciliationSource, rows, *, now: dt.datetime) -> list[tuple[int, str, str, dt.date, str]]:
    """COPY the new breaks in; returns (item id, break id, type, business date, currency) of each."""
    created = []
    if not rows:
        return created
    with connection.cursor() as cursor:
        columns = (
            "public_id", "item_id", "source_id", "break_type", "amount_minor", "currency", "business_date",
            "owner_team", "owner_user", "case_ref", "status", "opened_at", "closing_note", "version",
        )  # fmt: skip
        with cursor.copy(f"COPY reconciliation_reconciliationbreak ({', '.join(columns)}) FROM STDIN") as copy:
            for item_id, status, amount, currency, value_date, delta in rows:
                at_stake = delta if status in (MatchStatus.AMOUNT_MISMATCH, MatchStatus.FEE_MISMATCH) else amount
                public_id = new_public_id("rb")
                copy.write_row((public_id, item_id, source.pk, status, at_stake or 0, currency, value_date,
                                source.owner_team, "", "", BreakStatus.OPEN, now, "", 1))  # fmt: skip
                created.append((item_id, public_id, status, value_date, currency))
    return created


def _report_cases(source: ReconciliationSource, created, *, actor: Actor, now: dt.datetime) -> set[str]:
    """One occurrence per (business date, break type) with new breaks, on the open case for it."""
    groups: dict[tuple[dt.date, str], list[str]] = defaultdict(list)
    for _, public_id, status, business_date, _currency in created:
        groups[(business_date, status)].append(public_id)
    cases = set()
    for (business_date, status), public_ids in sorted(groups.items()):
        case, _ = exception_report(
            source_system=SOURCE_SYSTEM, business_key=f"{source.code}:{business_date:%Y-%m-%d}:{status}"[:128],
            exception_type="RECONCILIATION_BREAK", error_code=status, detail=f"reconciliation break {status}",
            severity="MEDIUM", now=now, actor=actor, case_type=CaseType.RECONCILIATION_BREAK,
            title=f"{MatchStatus(status).label} on {source.name}, {business_date:%Y-%m-%d}"[:200],
        )  # fmt: skip
        ReconciliationBreak.objects.filter(public_id__in=public_ids).update(case_ref=case.case_number)
        cases.add(case.case_number)
    return cases
