"""Where an item stands: its match status and the match that explains it.

Screens, exports and the demo read an item's match state only through these functions. The state is
not a column of the item (items are fixed at creation): an item in an active match has that match's
result; an open item is UNMATCHED until a run leaves it unexplained (it then has a break), after
which it is UNMATCHED_EXTERNAL or UNMATCHED_INTERNAL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from reconciliation.models import (
    MatchStatus,
    ReconciliationItem,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
    ReconciliationSource,
    ReconciliationWatermark,
)

_STATES = """
SELECT i.id, i.side, m.id, m.public_id, m.result,
       EXISTS (SELECT 1 FROM reconciliation_reconciliationbreak b WHERE b.item_id = i.id)
  FROM reconciliation_reconciliationitem i
  LEFT JOIN reconciliation_reconciliationmatchitem mi ON mi.item_id = i.id AND mi.active
  LEFT JOIN reconciliation_reconciliationmatch m ON m.id = mi.match_id
 WHERE i.id = ANY(%s)
"""


@dataclass(frozen=True)
class ItemState:
    status: str  # a MatchStatus value
    match_id: int | None  # the ReconciliationMatch explaining the item now, if any
    match_public_id: str  # rm_..., "" when none

    @property
    def label(self) -> str:
        return MatchStatus(self.status).label


def item_states(item_ids: Iterable[int]) -> dict[int, ItemState]:
    """The current state of each item (one query whatever the number of items)."""
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_STATES, [ids])
        rows = cursor.fetchall()
    states = {}
    for pk, side, match_id, public_id, result, had_break in rows:
        if match_id is not None:
            states[pk] = ItemState(result, match_id, public_id)
        elif had_break:
            left = MatchStatus.UNMATCHED_EXTERNAL if side == "EXTERNAL" else MatchStatus.UNMATCHED_INTERNAL
            states[pk] = ItemState(left, None, "")
        else:
            states[pk] = ItemState(MatchStatus.UNMATCHED, None, "")
    return states


def unmatched_items(source: ReconciliationSource) -> QuerySet[ReconciliationItem]:
    """The source's items no active match explains: its open items (a run left them unexplained, or
    an unmatch released them) and its new items (above its watermark: no run has considered them
    yet) that no decision has matched."""
    watermark = considered_through(source.pk)
    open_items = ReconciliationOpenItem.objects.filter(source_id=source.pk).values("item_id")
    matched = ReconciliationMatchItem.objects.filter(item_id=OuterRef("pk"), active=True)
    return ReconciliationItem.objects.filter(
        Q(pk__in=open_items) | Q(source_id=source.pk, pk__gt=watermark) & ~Exists(matched)
    )


def considered_through(source_id: int) -> int:
    """The source's watermark: the greatest item id its runs have considered (0 before its first
    run). The items above it are new, the next run's work."""
    found = ReconciliationWatermark.objects.filter(source_id=source_id).values_list("considered_through", flat=True)
    return found.first() or 0


def not_yet_considered(source_id: int, item_ids: Iterable[int]) -> list[int]:
    """Those of the items no run of the source has considered yet (above its watermark)."""
    watermark = considered_through(source_id)
    return sorted(pk for pk in set(item_ids) if pk > watermark)


def match_items(match_ids: Iterable[int]) -> dict[int, list[ReconciliationItem]]:
    """The items each match groups, also after it was undone (its items then), in item order."""
    ids = sorted(set(match_ids))
    grouped: dict[int, list[ReconciliationItem]] = {pk: [] for pk in ids}
    if not ids:
        return grouped
    memberships = ReconciliationMatchItem.objects.filter(match_id__in=ids).select_related("item").order_by("item_id")
    for membership in memberships:
        grouped[membership.match_id].append(membership.item)
    return grouped
