"""Reads for the break queue, its CSV export and one break's page.

The queue filters by source, age bucket, amount band, break type, owner team and status; sorts by
age, amount or type; pages by keyset; and counts the breaks in each age bucket. A page costs a fixed
number of queries whatever its length (the rows with their source, item and file; the counts).

Ages count whole days from the break's business date to today's business date, in the buckets of
reconciliation.services.breaks.AGE_BUCKETS. Amount bands are in major units of the break's currency:
each band's edges become minor units with the currency's exponent (backoffice.money), so 100.00 IDR
and 100 JPY fall in the same band.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Case, Count, DecimalField, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Abs

from approvals.models import OPEN_STATUSES, ActionRequest
from backoffice.money import CURRENCY_EXPONENTS
from reconciliation.models import BreakStatus, MatchStatus, ReconciliationBreak, ReconciliationManualDecision
from reconciliation.selectors.files import SortKey, keyset_page, order_by
from reconciliation.selectors.items import ItemState, item_states, match_items
from reconciliation.services.breaks import AGE_BUCKETS, BREAK_TYPES, age_bucket

PAGE_SIZE = 50
BREAK_TARGET = "reconciliation_break"  # the approvals engine's target type for a decision on a break
# (key, label, low, high) in major units of the break's currency: low <= |amount| < high.
AMOUNT_BANDS = (
    ("lt100", "under 100", None, 100),
    ("100-1k", "100 to 1,000", 100, 1_000),
    ("1k-10k", "1,000 to 10,000", 1_000, 10_000),
    ("gt10k", "10,000 and more", 10_000, None),
)
SORT_LABELS = {
    "age": "oldest first",
    "newest": "newest first",
    "amount": "largest amount first",
    "type": "break type, then oldest first",
}
SORTS = {
    "age": (SortKey("business_date", False, "date"), SortKey("id", False, "int")),
    "newest": (SortKey("business_date", True, "date"), SortKey("id", True, "int")),
    "amount": (SortKey("amount_scaled", True, "decimal"), SortKey("id", True, "int")),
    "type": (SortKey("break_type", False, "str"), SortKey("business_date", False, "date"), SortKey("id", False, "int")),
}
STATUS_ANY = "ANY"
_SCALE = max(CURRENCY_EXPONENTS.values())
_BY_EXPONENT: dict[int, list[str]] = defaultdict(list)
for _code, _exponent in sorted(CURRENCY_EXPONENTS.items()):
    _BY_EXPONENT[_exponent].append(_code)


@dataclass(frozen=True)
class BreakFilter:
    source: str = ""  # source code
    age: str = ""  # an AGE_BUCKETS label
    band: str = ""  # an AMOUNT_BANDS key
    break_type: str = ""
    owner_team: str = ""
    status: str = BreakStatus.OPEN  # OPEN, CLOSED or ANY
    file: str = ""  # sf_...: breaks on this file's lines


def band_condition(key: str) -> Q:
    """|amount_minor| within the band, its edges in minor units of each currency (exponent groups)."""
    _, _, low, high = next(b for b in AMOUNT_BANDS if b[0] == key)
    condition = Q(pk__in=[])
    for exponent, codes in sorted(_BY_EXPONENT.items()):
        group = Q(currency__in=codes)
        if low is not None:
            group &= Q(abs_amount__gte=low * 10**exponent)
        if high is not None:
            group &= Q(abs_amount__lt=high * 10**exponent)
        condition |= group
    return condition


def age_condition(label: str, today: dt.date) -> Q:
    """Business dates whose age today falls in the bucket (a future date counts as age 0)."""
    _, low, high = next(b for b in AGE_BUCKETS if b[0] == label)
    condition = Q() if low == 0 else Q(business_date__lte=today - dt.timedelta(days=low))
    if high is not None:
        condition &= Q(business_date__gte=today - dt.timedelta(days=high))
    return condition


def _amount_scaled():
    """|amount| in the smallest unit any currency has, so amounts of different exponents compare."""
    whens = [When(currency__in=codes, then=Abs(F("amount_minor")) * Value(Decimal(10 ** (_SCALE - exponent))))
             for exponent, codes in sorted(_BY_EXPONENT.items())]  # fmt: skip
    return Case(*whens, default=Abs(F("amount_minor")) * Value(Decimal(1)), output_field=DecimalField())


def _pending_request():
    """The public id of the decision waiting on each break, if any (one subquery, not one query a row)."""
    waiting = ActionRequest.objects.filter(target_type=BREAK_TARGET, target_id=OuterRef("public_id"),
                                           status__in=OPEN_STATUSES)  # fmt: skip
    return Subquery(waiting.values("public_id")[:1])


def _filtered(f: BreakFilter, *, today: dt.date, with_age: bool = True) -> QuerySet[ReconciliationBreak]:
    qs = ReconciliationBreak.objects.annotate(abs_amount=Abs("amount_minor"))
    if f.status in (BreakStatus.OPEN, BreakStatus.CLOSED):
        qs = qs.filter(status=f.status)
    if f.source:
        qs = qs.filter(source__code=f.source)
    if f.file:
        qs = qs.filter(item__statement_file__public_id=f.file)
    if f.break_type:
        qs = qs.filter(break_type=f.break_type)
    if f.owner_team:
        qs = qs.filter(owner_team=f.owner_team)
    if f.band:
        qs = qs.filter(band_condition(f.band))
    if with_age and f.age:
        qs = qs.filter(age_condition(f.age, today))
    return qs


@dataclass(frozen=True)
class BreakRow:
    rb: ReconciliationBreak  # with source, item and the item's file; annotated pending_request
    age_days: int
    age_bucket: str


@dataclass(frozen=True)
class BreakPage:
    rows: list[BreakRow]
    next_cursor: str
    bucket_counts: list[tuple[str, int]]  # (bucket, breaks) under the other filters
    total: int


def _row(rb: ReconciliationBreak, today: dt.date) -> BreakRow:
    return BreakRow(
        rb=rb, age_days=max((today - rb.business_date).days, 0), age_bucket=age_bucket(rb.business_date, today)
    )


def bucket_counts(f: BreakFilter, *, today: dt.date) -> list[tuple[str, int]]:
    """How many breaks each age bucket holds under the filters other than age. One query."""
    aggregates = {
        f"b{i}": Count("id", filter=age_condition(label, today)) for i, (label, _, _) in enumerate(AGE_BUCKETS)
    }
    counted = _filtered(f, today=today, with_age=False).aggregate(**aggregates)
    return [(label, counted[f"b{i}"]) for i, (label, _, _) in enumerate(AGE_BUCKETS)]


def break_page(*, filters: BreakFilter, sort: str = "age", cursor: str = "", today: dt.date,
               size: int | None = None) -> BreakPage:  # fmt: skip
    """A page of the queue. Two queries whatever the page size. Raises ValueError for a bad cursor."""
    keys = SORTS.get(sort, SORTS["age"])
    qs = (
        _filtered(filters, today=today)
        .annotate(amount_scaled=_amount_scaled(), pending_request=_pending_request())
        .select_related("source", "item", "item__statement_file")
    )
    rows, next_cursor = keyset_page(qs, keys, cursor=cursor, size=size or PAGE_SIZE)
    counts = bucket_counts(filters, today=today)
    total = sum(n for label, n in counts if not filters.age or label == filters.age)
    return BreakPage(rows=[_row(rb, today) for rb in rows], next_cursor=next_cursor, bucket_counts=counts,
                     total=total)  # fmt: skip


def break_export_rows(*, filters: BreakFilter, sort: str = "age", today: dt.date, chunk_size: int = 2000):
    """Every break under the filters in the queue's order, streamed from a server-side cursor."""
    keys = SORTS.get(sort, SORTS["age"])
    qs = (
        _filtered(filters, today=today)
        .annotate(amount_scaled=_amount_scaled(), pending_request=_pending_request())
        .select_related("source", "item", "item__statement_file")
        .order_by(*order_by(keys))
    )
    return (_row(rb, today) for rb in qs.iterator(chunk_size=chunk_size))


# --- one break ---------------------------------------------------------------------------------------------


@dataclass
class BreakDetail:
    rb: ReconciliationBreak
    age_days: int
    age_bucket: str
    state: ItemState | None  # where the break's item stands now
    counterparts: list = field(default_factory=list)  # the other items of the match explaining the item, if any
    decisions: list[ReconciliationManualDecision] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)  # every decision proposed on the break, newest first
    pending: ActionRequest | None = None
    item_breaks: list[ReconciliationBreak] = field(default_factory=list)  # other breaks the item had or has


def break_get(*, public_id: str) -> ReconciliationBreak | None:
    return (
        ReconciliationBreak.objects.select_related("source", "item", "item__statement_file", "closed_by_match")
        .filter(public_id=public_id)
        .first()
    )


def break_detail(*, rb: ReconciliationBreak, today: dt.date) -> BreakDetail:
    """Everything the break's page shows about it (a fixed handful of queries)."""
    state = item_states([rb.item_id]).get(rb.item_id)
    counterparts = []
    if state is not None and state.match_id is not None:
        counterparts = [i for i in match_items([state.match_id]).get(state.match_id, []) if i.pk != rb.item_id]
    requests = list(ActionRequest.objects.filter(target_type=BREAK_TARGET, target_id=rb.public_id)
                    .order_by("-created_at", "-id")[:50])  # fmt: skip
    return BreakDetail(
        rb=rb, age_days=max((today - rb.business_date).days, 0), age_bucket=age_bucket(rb.business_date, today),
        state=state, counterparts=counterparts,
        decisions=list(ReconciliationManualDecision.objects.filter(recon_break=rb).order_by("-decided_at", "-id")),
        requests=requests, pending=next((r for r in requests if r.status in OPEN_STATUSES), None),
        item_breaks=list(ReconciliationBreak.objects.filter(item_id=rb.item_id).exclude(pk=rb.pk)
                         .order_by("-opened_at", "-id")[:20]),
    )  # fmt: skip


def break_types() -> list[tuple[str, str]]:
    return [(t, MatchStatus(t).label) for t in BREAK_TYPES]
