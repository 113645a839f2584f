"""Reads for the sources and files screens, and the keyset pager every reconciliation list uses.

Every list is keyset-paginated (the cursor carries the sort values of the last row shown, never an
offset) and costs a fixed number of queries whatever its length.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from reconciliation.models import (
    BreakStatus,
    ReconciliationBreak,
    ReconciliationItem,
    ReconciliationRun,
    ReconciliationSource,
    StatementFile,
)
from reconciliation.selectors.items import ItemState, item_states

PAGE_SIZE = 50
LINES_PAGE_SIZE = 50
RUNS_SHOWN = 10
BAD_CURSOR = "The page cursor is not valid (it was changed or is from an old link); start from the first page."


# --- keyset pages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One column of a keyset order. kind says how the cursor writes it: int, str, date, datetime, decimal."""

    field: str
    descending: bool
    kind: str


def order_by(keys: tuple[SortKey, ...]) -> list[str]:
    return [f"-{k.field}" if k.descending else k.field for k in keys]


def _plain(key: SortKey, value) -> object:
    if key.kind in ("date", "datetime"):
        return value.isoformat()
    if key.kind == "decimal":
        return str(value)
    return value


def encode_cursor(keys: tuple[SortKey, ...], values: list) -> str:
    raw = json.dumps([_plain(k, v) for k, v in zip(keys, values, strict=True)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(keys: tuple[SortKey, ...], cursor: str) -> list:
    """The sort values a cursor carries; ValueError for anything that is not a cursor of this order."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError(BAD_CURSOR) from exc
    if not isinstance(raw, list) or len(raw) != len(keys):
        raise ValueError(BAD_CURSOR)
    values = []
    for key, value in zip(keys, raw, strict=True):
        try:
            if (key.kind == "int" and type(value) is int) or (key.kind == "str" and isinstance(value, str)):
                values.append(value)
            elif key.kind == "date" and isinstance(value, str):
                values.append(dt.date.fromisoformat(value))
            elif key.kind == "datetime" and isinstance(value, str):
                parsed = dt.datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError(BAD_CURSOR)
                values.append(parsed)
            elif key.kind == "decimal" and isinstance(value, str):
                values.append(Decimal(value))
            else:
                raise ValueError(BAD_CURSOR)
        except (ValueError, InvalidOperation) as exc:
            raise ValueError(BAD_CURSOR) from exc
    return values


def after_condition(keys: tuple[SortKey, ...], values: list) -> Q:
    """Rows strictly after `values` in the order `keys` (the last key is unique, so the order is total)."""
    condition = Q()
    for i, key in enumerate(keys):
        step = Q(**{f"{key.field}__{'lt' if key.descending else 'gt'}": values[i]})
        for j in range(i):
            step &= Q(**{keys[j].field: values[j]})
        condition |= step
    return condition


def keyset_page(qs: QuerySet, keys: tuple[SortKey, ...], *, cursor: str, size: int) -> tuple[list, str]:
    """One query: the rows after the cursor plus one, to know whether another page exists.
    Returns (rows, next cursor or ""). Raises ValueError for a cursor that does not decode."""
    if cursor:
        qs = qs.filter(after_condition(keys, decode_cursor(keys, cursor)))
    rows = list(qs.order_by(*order_by(keys))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode_cursor(keys, [getattr(rows[-1], k.field) for k in keys]) if more and rows else ""
    return rows, next_cursor


# --- sources -----------------------------------------------------------------------------------------------

SOURCE_KEYS = (SortKey("code", False, "str"),)


@dataclass(frozen=True)
class SourcePage:
    sources: list[ReconciliationSource]  # annotated: file_count, open_breaks, last_file_id, last_file_status, ...
    next_cursor: str


def _count(qs: QuerySet) -> Coalesce:
    counted = qs.order_by().values("source").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def source_page(*, cursor: str = "", size: int | None = None) -> SourcePage:
    """Sources by code, each with its number of files, its latest file and its open breaks. One query."""
    latest = StatementFile.objects.filter(source=OuterRef("pk")).order_by("-uploaded_at", "-id")
    qs = ReconciliationSource.objects.annotate(
        file_count=_count(StatementFile.objects.filter(source=OuterRef("pk"))),
        open_breaks=_count(ReconciliationBreak.objects.filter(source=OuterRef("pk"), status=BreakStatus.OPEN)),
        last_file_id=Subquery(latest.values("public_id")[:1]),
        last_file_status=Subquery(latest.values("status")[:1]),
        last_uploaded_at=Subquery(latest.values("uploaded_at")[:1]),
    )
    rows, next_cursor = keyset_page(qs, SOURCE_KEYS, cursor=cursor, size=size or PAGE_SIZE)
    return SourcePage(sources=rows, next_cursor=next_cursor)


def source_get(*, code: str) -> ReconciliationSource | None:
    return ReconciliationSource.objects.filter(code=code).first()


def source_choices() -> list[tuple[str, str]]:
    """(code, "code: name") of every source, for filter forms. One query."""
    return [(code, f"{code}: {name}") for code, name in
            ReconciliationSource.objects.order_by("code").values_list("code", "name")]  # fmt: skip


def source_open_breaks(*, source: ReconciliationSource) -> int:
    return ReconciliationBreak.objects.filter(source=source, status=BreakStatus.OPEN).count()


def source_runs(*, source: ReconciliationSource, limit: int = RUNS_SHOWN) -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.filter(source=source).order_by("-started_at", "-id")[:limit])


# --- files -------------------------------------------------------------------------------------------------

FILE_KEYS = (SortKey("uploaded_at", True, "datetime"), SortKey("id", True, "int"))


@dataclass(frozen=True)
class FilePage:
    files: list[StatementFile]
    next_cursor: str


def file_page(*, source: ReconciliationSource, cursor: str = "", size: int | None = None) -> FilePage:
    """The source's files, newest first. One query (the bytes are in another table and never loaded)."""
    files = StatementFile.objects.filter(source=source)
    rows, next_cursor = keyset_page(files, FILE_KEYS, cursor=cursor, size=size or PAGE_SIZE)
    return FilePage(files=rows, next_cursor=next_cursor)


def file_get(*, public_id: str) -> StatementFile | None:
    return StatementFile.objects.select_related("source").filter(public_id=public_id).first()


def file_open_breaks(*, file: StatementFile) -> int:
    """Open breaks on the lines of this file."""
    return ReconciliationBreak.objects.filter(item__statement_file=file, status=BreakStatus.OPEN).count()


@dataclass(frozen=True)
class FileLine:
    item: ReconciliationItem
    state: ItemState | None
    open_break: str  # rb_... of the line's open break, "" when none


@dataclass(frozen=True)
class LinePage:
    lines: list[FileLine]
    next_after: int | None  # the line number to continue after


def file_lines(*, file: StatementFile, after: int | None = None, size: int | None = None) -> LinePage:
    """The file's lines in file order with where each stands and its open break. Three queries
    whatever the page size (lines, their states, their open breaks)."""
    size = size or LINES_PAGE_SIZE
    qs = ReconciliationItem.objects.filter(statement_file=file)
    if after is not None:
        qs = qs.filter(line_no__gt=after)
    items = list(qs.order_by("line_no")[: size + 1])
    more = len(items) > size
    items = items[:size]
    ids = [i.pk for i in items]
    states = item_states(ids)
    breaks = dict(
        ReconciliationBreak.objects.filter(item_id__in=ids, status=BreakStatus.OPEN).values_list("item_id", "public_id")
    ) if ids else {}  # fmt: skip
    lines = [FileLine(item=i, state=states.get(i.pk), open_break=breaks.get(i.pk, "")) for i in items]
    return LinePage(lines=lines, next_after=items[-1].line_no if more and items else None)
