"""Reads for the match history, one match's page, and the candidates a break could be matched with.

Candidates are the source's unmatched items on the other side of the break, in its currency, scored
by a simple, shown formula (at most 100 points):

- reference: 60 when the candidate's reference equals the break item's (ignoring case), 45 when it
  equals one of the item's other references;
- amount: 30 when the amounts are equal, 20 within 1 %, 10 within 10 % (the amount compared is a
  provider line's gross where it states one, else its amount, as the matching rules compare);
- date: 10 on the same value date, one point less per day apart.

One query whatever the number of items: scored, ordered and cut in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Case, F, Func, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Abs, Coalesce, Greatest

from approvals.models import OPEN_STATUSES, ActionRequest
from audit.models import AuditEvent
from audit.selectors import audit_events_for_targets
from reconciliation.models import (
    ItemSide,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationRule,
    ReconciliationSource,
)
from reconciliation.selectors.files import SortKey, keyset_page
from reconciliation.selectors.items import match_items, unmatched_items

PAGE_SIZE = 50
CANDIDATE_LIMIT = 20
MATCH_TARGET = "reconciliation_match"  # the approvals engine's target type for undoing a match
POINTS_REFERENCE, POINTS_OTHER_REFERENCE = 60, 45
POINTS_AMOUNT_EQUAL, POINTS_AMOUNT_1PCT, POINTS_AMOUNT_10PCT = 30, 20, 10
POINTS_DATE = 10
# Newest first by id (ids are taken in the order matches are written): the primary key, or the
# (source, id) index for one source, walked backwards. Sorting by time read every match there is
# (3.8 s a page with 2.85M matches).
MATCH_KEYS = (SortKey("id", True, "int"),)


# --- candidates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    item: ReconciliationItem
    score: int | None  # None: an item the break's item is already paired with (a difference)
    reference_points: int
    amount_points: int
    date_points: int
    days_apart: int
    delta_minor: int  # external minus internal: what a match of the two would leave


def _compared_amount(side: str):
    return Coalesce(F("gross_minor"), F("amount_minor")) if side == ItemSide.EXTERNAL else F("amount_minor")


def _other_references(item: ReconciliationItem) -> list[str]:
    values = (item.references or {}).values() if isinstance(item.references, dict) else ()
    return sorted({v.strip() for v in values if isinstance(v, str) and v.strip() and v.strip() != item.reference})


def match_candidates(*, rb: ReconciliationBreak, limit: int = CANDIDATE_LIMIT) -> list[Candidate]:
    """The best-scored unmatched items on the other side of the break's item (see the module
    docstring), best first, at most `limit`. One query."""
    item = rb.item
    other = ItemSide.INTERNAL if item.side == ItemSide.EXTERNAL else ItemSide.EXTERNAL
    target = item.amount_minor
    if item.side == ItemSide.EXTERNAL and item.gross_minor is not None:
        target = item.gross_minor
    reference = (item.reference or "").strip()
    whens = []
    if reference:
        whens.append(When(reference__iexact=reference, then=Value(POINTS_REFERENCE)))
    others = _other_references(item)
    if others:
        whens.append(When(reference__in=others, then=Value(POINTS_OTHER_REFERENCE)))
    reference_points = Case(*whens, default=Value(0), output_field=IntegerField()) if whens else Value(0)
    one_pct, ten_pct = abs(target) // 100, abs(target) // 10
    qs = (
        unmatched_items(rb.source)
        .filter(side=other, currency=item.currency)
        .exclude(pk=item.pk)
        .annotate(
            amount_diff=Abs(_compared_amount(other) - Value(target)),
            days_apart=Func(F("value_date"), Value(item.value_date), template="ABS(%(expressions)s)", arg_joiner=" - ",
                            output_field=IntegerField()),
            reference_points=reference_points,
        )
        .annotate(
            amount_points=Case(
                When(amount_diff=0, then=Value(POINTS_AMOUNT_EQUAL)),
                When(amount_diff__lte=one_pct, then=Value(POINTS_AMOUNT_1PCT)),
                When(amount_diff__lte=ten_pct, then=Value(POINTS_AMOUNT_10PCT)),
                default=Value(0), output_field=IntegerField(),
            ),
            date_points=Greatest(Value(0), Value(POINTS_DATE) - F("days_apart"), output_field=IntegerField()),
        )
        .annotate(score=F("reference_points") + F("amount_points") + F("date_points"))
        .order_by("-score", "days_apart", "amount_diff", "id")[:limit]
    )  # fmt: skip
    candidates = []
    for c in qs:
        external, internal = (item, c) if item.side == ItemSide.EXTERNAL else (c, item)
        candidates.append(Candidate(
            item=c, score=c.score, reference_points=c.reference_points, amount_points=c.amount_points,
            date_points=c.date_points, days_apart=c.days_apart,
            delta_minor=external.amount_minor - internal.amount_minor,
        ))  # fmt: skip
    return candidates


def pair_candidates(*, rb: ReconciliationBreak, items: list[ReconciliationItem]) -> list[Candidate]:
    """The items a difference match pairs the break's item with, as choices for accepting the pair
    (no query: the items are given)."""
    item = rb.item
    pairs = []
    for other in items:
        external, internal = (item, other) if item.side == ItemSide.EXTERNAL else (other, item)
        pairs.append(Candidate(item=other, score=None, reference_points=0, amount_points=0, date_points=0,
                               days_apart=abs((other.value_date - item.value_date).days),
                               delta_minor=external.amount_minor - internal.amount_minor))  # fmt: skip
    return pairs


# --- the match history -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchFilter:
    source: str = ""  # source code
    state: str = ""  # ACTIVE or UNMATCHED
    result: str = ""  # a MatchStatus value
    rule: str = ""  # a rule code, or "decision" for matches made by a decision


@dataclass(frozen=True)
class MatchPage:
    matches: list[ReconciliationMatch]  # with source, run and decision; annotated pending_undo
    next_cursor: str


def _pending_undo():
    waiting = ActionRequest.objects.filter(target_type=MATCH_TARGET, target_id=OuterRef("public_id"),
                                           status__in=OPEN_STATUSES)  # fmt: skip
    return Subquery(waiting.values("public_id")[:1])


def _filtered(f: MatchFilter) -> QuerySet[ReconciliationMatch]:
    qs = ReconciliationMatch.objects.all()
    if f.source:
        # The source's id as a value computed once, so the (source, id) index is walked; a join on the
        # code walked every match newest first looking for the source's.
        qs = qs.filter(source_id=Subquery(ReconciliationSource.objects.filter(code=f.source).values("id")[:1]))
    if f.state:
        qs = qs.filter(state=f.state)
    if f.result:
        qs = qs.filter(result=f.result)
    if f.rule == "decision":
        qs = qs.filter(decision__isnull=False)
    elif f.rule:
        qs = qs.filter(rule_code=f.rule)
    return qs


def match_page(*, filters: MatchFilter, cursor: str = "", size: int | None = None) -> MatchPage:
    """Matches newest first. One query whatever the page size. Raises ValueError for a bad cursor."""
    qs = _filtered(filters).select_related("source", "run", "decision").annotate(pending_undo=_pending_undo())
    rows, next_cursor = keyset_page(qs, MATCH_KEYS, cursor=cursor, size=size or PAGE_SIZE)
    return MatchPage(matches=rows, next_cursor=next_cursor)


def rule_codes() -> list[str]:
    return sorted(set(ReconciliationRule.objects.values_list("code", flat=True)))


# --- one match ---------------------------------------------------------------------------------------------


@dataclass
class MatchDetail:
    match: ReconciliationMatch
    external: list[ReconciliationItem] = field(default_factory=list)
    internal: list[ReconciliationItem] = field(default_factory=list)
    closed_breaks: list[ReconciliationBreak] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)  # undo requests, newest first
    pending: ActionRequest | None = None
    events: list[AuditEvent] = field(default_factory=list)


def match_get(*, public_id: str) -> ReconciliationMatch | None:
    return (
        ReconciliationMatch.objects.select_related("source", "run", "decision", "decision__recon_break")
        .filter(public_id=public_id)
        .first()
    )


def match_detail(*, match: ReconciliationMatch) -> MatchDetail:
    """The match's items by side, the breaks it closed, its undo requests and its audit events."""
    items = match_items([match.pk]).get(match.pk, [])
    requests = list(ActionRequest.objects.filter(target_type=MATCH_TARGET, target_id=match.public_id)
                    .order_by("-created_at", "-id")[:50])  # fmt: skip
    return MatchDetail(
        match=match,
        external=[i for i in items if i.side == ItemSide.EXTERNAL],
        internal=[i for i in items if i.side == ItemSide.INTERNAL],
        closed_breaks=list(ReconciliationBreak.objects.filter(closed_by_match=match).select_related("item")
                           .order_by("id")[:100]),
        requests=requests, pending=next((r for r in requests if r.status in OPEN_STATUSES), None),
        events=audit_events_for_targets(targets=[(MATCH_TARGET, match.public_id)]),
    )  # fmt: skip
