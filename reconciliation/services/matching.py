"""Reconciliation runs, and undoing or making a match by hand.

A run (reconciliation_run) takes the source's matching lock exclusively (a transaction-scoped
advisory lock keyed by the source; writers of items hold it shared, so the run waits for imports in
progress) and loads the items it has to explain: the source's open items (ReconciliationOpenItem:
left unexplained by earlier runs, or released by an unmatch: a capture recorded today must still
find the line left unmatched yesterday) and the items new since the source's watermark
(ReconciliationWatermark: the greatest item id its runs have considered). It pairs them in memory
(reconciliation.services.engine) with the active rules in position order, then writes the result
set-based: the matches with COPY; the open items it took leave the open items in one DELETE that
must remove exactly those (compare-and-set: fewer means another writer got there first, and the
whole run rolls back); the memberships go in with COPY, under a unique index that allows an item one
active match whoever writes. The watermark moves past the new items, and those left unexplained
become open items. The items themselves are never rewritten. Then breaks_sync opens breaks for what
is left, closes what is now explained, and one audit event records the run
(docs/adr/0007-reconciliation-matching.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, IllegalTransition, NotFound, StaleTarget, ValidationFailed
from reconciliation.models import (
    ItemSide,
    MatchShape,
    MatchState,
    MatchStatus,
    ReconciliationItem,
    ReconciliationManualDecision,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationRule,
    ReconciliationRun,
    ReconciliationSource,
    ReconciliationWatermark,
    RunStatus,
)
from reconciliation.selectors.items import considered_through, not_yet_considered
from reconciliation.services.common import (
    break_statistics_refresh,
    copy_text,
    gc_paused,
    index_walk_only,
    lock_source_for_matching,
    public_ids,
    raw_cursor,
)
from reconciliation.services.engine import BATCH_KEYS, Engine, Item, Match, Rule, duplicates

DUPLICATE_RULE = ("duplicate-check", 1)  # the final step of every run (not a rule row: always on)
_SEP = "\x1f"
_NULL = "\\N"  # NULL in COPY text
_EPOCH = dt.date(1970, 1, 1)
_UNESCAPE = re.compile(r"\\(.)")
_ESCAPED = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


class ItemsAlreadyMatched(StaleTarget):
    code = "RECON_ITEMS_ALREADY_MATCHED"
    default_message = "Some of these items were matched meanwhile; reload and decide again."


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(1)), value)


# --- loading ---------------------------------------------------------------------------------------------

_BATCH_KEY_SQL = ", ".join(f"i.\"references\" ->> '{key}'" for key in BATCH_KEYS)
_WITHOUT_BATCH_KEYS = "".join(f" - '{key}'" for key in BATCH_KEYS)
# The items of one source a run has to explain, one line each: what the engine needs and nothing
# else. An external line's references come without the batch keys (their values are read in Python,
# only where they add a key), its batch keys joined by a unit separator. First the open items (by
# their key, each item fetched by its own), then the items above the watermark (by the index
# (source, id)): never the source's history.
# Most lines name no batch key: for them the references go out as they are, without the four jsonb
# deletions and lookups per line that were half the statement's time (the result is the same). Most
# name no reference but their own either ({} or {"reference": <the reference>}): for them nothing
# goes out, and Python has no text to look at.
_COLUMNS = """
    i.id, i.side = 'EXTERNAL', i.amount_minor, i.gross_minor, i.fee_minor, i.currency,
    i.value_date - DATE '1970-01-01', i.reference,
    CASE WHEN i.side <> 'EXTERNAL' THEN ''
         WHEN i."references" ?| ARRAY[BATCH_KEY_NAMES] THEN (i."references" WITHOUT_BATCH_KEYS)::text
         WHEN i."references" = '{}'::jsonb OR i."references" = jsonb_build_object('reference', i.reference) THEN ''
         ELSE i."references"::text END,
    CASE WHEN i.side <> 'EXTERNAL' THEN i.batch_id
         WHEN i."references" ?| ARRAY[BATCH_KEY_NAMES]
         THEN concat_ws(E'\\x1f', NULLIF(i.batch_id, ''), BATCH_KEY_SQL, NULLIF(i.reference, ''))
         ELSE concat_ws(E'\\x1f', NULLIF(i.batch_id, ''), NULLIF(i.reference, '')) END
""".replace("WITHOUT_BATCH_KEYS", _WITHOUT_BATCH_KEYS).replace("BATCH_KEY_SQL", _BATCH_KEY_SQL)
_COLUMNS = _COLUMNS.replace("BATCH_KEY_NAMES", ", ".join(f"'{key}'" for key in BATCH_KEYS))
_LOAD = f"""
COPY (
    SELECT {_COLUMNS}
      FROM reconciliation_reconciliationopenitem o
      JOIN reconciliation_reconciliationitem i ON i.id = o.item_id
     WHERE o.source_id = %s
    UNION ALL
    SELECT {_COLUMNS}
      FROM reconciliation_reconciliationitem i
     WHERE i.source_id = %s AND i.id > %s AND i.id <> ALL(%s::bigint[])
) TO STDOUT
"""  # noqa: S608 (constants only)
# The new items (above the watermark) decisions have matched since the source's last run: not new any
# more, and not open either. From the source's matches made by decisions (their index), then their
# memberships by key. Materialised, so the plan starts there: left to itself, with a watermark still
# at 0 (a source's first run), it walked every membership of every source (2.4 s at 5.9M).
_DECIDED_NEW = """
WITH decided AS MATERIALIZED (
    SELECT m.id FROM reconciliation_reconciliationmatch m
     WHERE m.source_id = %s AND m.decision_id IS NOT NULL AND m.id > %s
)
SELECT mi.item_id
  FROM decided d
  JOIN reconciliation_reconciliationmatchitem mi ON mi.match_id = d.id AND mi.active AND mi.item_id > %s
"""


def _date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def _extra_keys(references: str, reference: str) -> tuple[str, ...]:
    """The values of a line's references (batch keys removed) that are not its reference."""
    if references in ("", "{}") or references == '{"reference": "' + reference + '"}':
        return ()
    values = json.loads(_unescape(references)).values()
    return tuple(v for v in dict.fromkeys(values) if isinstance(v, str) and v and v != reference)


def _keys(joined: str) -> tuple[str, ...]:
    if not joined:
        return ()
    if _SEP not in joined and "\\" not in joined:
        return (joined,)
    return tuple(k for k in dict.fromkeys(_unescape(joined).split(_SEP)) if k)


@dataclass(frozen=True)
class _Watermark:
    considered_through: int
    decisions_through: int


def _watermark(source_id: int) -> _Watermark:
    row = ReconciliationWatermark.objects.filter(source_id=source_id).values_list(
        "considered_through", "decisions_through"
    )
    return _Watermark(*(row.first() or (0, 0)))


def _load_items(source_id: int, watermark: _Watermark) -> tuple[list[Item], list[int]]:
    """The items the run has to explain, and the new items it leaves out (decisions matched them)."""
    items: list[Item] = []
    append = items.append
    with index_walk_only(), connection.cursor() as cursor:
        cursor.execute(_DECIDED_NEW, [source_id, watermark.decisions_through, watermark.considered_through])
        decided = [row[0] for row in cursor.fetchall()]
    params = [source_id, source_id, watermark.considered_through, decided]
    with index_walk_only(), raw_cursor() as cursor, cursor.copy(_LOAD, params) as copy:
        for block in copy:  # one row at a time, never the whole result in one buffer
            row = str(block, "utf-8")
            (id_, side, amount, gross, fee, currency, day, reference, references, batch) = row[:-1].split("\t")
            amount_minor = int(amount)
            if "\\" in reference:
                reference = _unescape(reference)
            keys = (reference,) if reference else ()
            fee_minor = None if fee == _NULL else int(fee)  # written out: two million rows
            if side == "t":
                gross_minor = None if gross == _NULL else int(gross)
                extra = _extra_keys(references, reference) if references else ()
                if extra:
                    keys += extra
                compare = amount_minor if gross_minor is None else gross_minor
                # Most lines name no batch but their reference: one tuple serves as both.
                batch_keys = keys if batch == reference and not extra and _SEP not in batch else _keys(batch)
                append(Item(int(id_), True, amount_minor, compare, currency, fee_minor, int(day), reference,
                            keys, batch_keys, gross_minor is not None))  # fmt: skip
            else:
                append(Item(int(id_), False, amount_minor, amount_minor, currency, fee_minor, int(day),
                            reference, keys, _keys(batch) if batch else (), False))  # fmt: skip
    return items, decided


def _rules(source: ReconciliationSource) -> list[Rule]:
    rows = ReconciliationRule.objects.filter(Q(source__isnull=True) | Q(source=source), active=True).order_by(
        "position", "id"
    )
    return [Rule(code=r.code, version=r.version, kind=r.kind, params=dict(r.params or {})) for r in rows]


def _earlier_originals(source_id: int, leftovers: list[Item]) -> dict[tuple[str, int, str], str]:
    """(reference, amount, currency) -> public id of the match of an external line matched by an earlier
    run (or a decision), for the references of the lines this run left free."""
    references = sorted({e.reference for e in leftovers if e.external and not e.taken and e.reference})
    if not references:
        return {}
    # By the source's reference index, then each membership and match by key: what this costs follows
    # the references asked about, never the size of the membership table (which a hash join read whole).
    # One index probe per reference from the list, already sorted (reference = ANY(list) first sorted
    # the 100,000 references again in the database: twice the time).
    with index_walk_only(), connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT ON (i.reference, i.amount_minor, i.currency) i.reference, i.amount_minor, i.currency,
                      m.public_id
                 FROM unnest(%s::text[]) AS r(reference)
                 JOIN reconciliation_reconciliationitem i ON i.source_id = %s AND i.reference = r.reference
                 JOIN reconciliation_reconciliationmatchitem mi ON mi.item_id = i.id AND mi.active
                 JOIN reconciliation_reconciliationmatch m ON m.id = mi.match_id
                WHERE i.side = 'EXTERNAL' AND m.result <> 'DUPLICATE'
                ORDER BY i.reference, i.amount_minor, i.currency, i.id""",
            [references, source_id],
        )
        return {(ref, amount, currency): public_id for ref, amount, currency, public_id in cursor.fetchall()}


def _originals(source_id: int, leftovers: list[Item], matches: list[Match]) -> dict[tuple[str, int, str], str | Match]:
    """(reference, amount, currency) -> the match of a line matched already, for the references of
    the lines this run left free: an earlier run's (its public id), else the first of this run's."""
    originals: dict[tuple[str, int, str], str | Match] = dict(_earlier_originals(source_id, leftovers))
    wanted = {e.reference for e in leftovers if e.reference}  # a few percent of the lines
    for match in matches:
        for e in match.external:
            if e.reference in wanted:
                originals.setdefault((e.reference, e.amount, e.currency), match)
    return originals


# --- writing ---------------------------------------------------------------------------------------------

_MATCH_COLUMNS = (
    "id", "public_id", "source_id", "run_id", "rule_code", "rule_version", "decision_id", "shape", "result",
    "confidence", "amount_delta_minor", "currency", "tolerance", "state", "created_at", "unmatched_at",
    "unmatched_by",
)  # fmt: skip


_COPY_MATCHES = f"COPY reconciliation_reconciliationmatch ({', '.join(_MATCH_COLUMNS)}) FROM STDIN"
_COPY_MEMBERSHIPS = "COPY reconciliation_reconciliationmatchitem (match_id, item_id, external, active) FROM STDIN"


def _reserve_match_ids(n: int) -> list[int]:
    """n ids from the match table's sequence (nextval: safe whoever else takes ids meanwhile)."""
    with raw_cursor() as cursor:
        # The sequence is named once: pg_get_serial_sequence inside the SELECT list is evaluated per
        # row, and cost seven times the nextval calls themselves.
        cursor.execute("SELECT pg_get_serial_sequence('reconciliation_reconciliationmatch', 'id')::regclass::oid")
        sequence = cursor.fetchone()[0]
        # One value back, not a row per id: reading 950,000 rows one by one cost a second.
        cursor.execute(
            "SELECT string_agg(nextval(%s::oid::regclass)::text, ' ') FROM generate_series(1, %s)", [sequence, n]
        )
        text = cursor.fetchone()[0]
    return list(map(int, text.split()))


class _RunObjects:
    """The run's millions of objects (its items, the engine's indexes, the matches). The write drops
    them as soon as they are COPY text, so that freeing them (more than a second at a million lines)
    happens while PostgreSQL takes the matches, not after."""

    def __init__(self, matches: list[Match], *others: object) -> None:
        self.matches: list[Match] | None = matches
        self.others: tuple[object, ...] = others

    def drop(self) -> None:
        self.matches, self.others = None, ()


def _match_rows(
    matches: list[Match], ids: list[int], names: list[str], *, source_id: int, run_id: str, created: str
) -> Iterator[bytes]:
    """The matches as COPY text, 10,000 rows a piece. Each match gets its id and public id here, as it
    is rendered: the memberships rendered next need the ids, and a duplicate names its original's
    public id (an original comes before its duplicates)."""
    rule_columns = {}  # rule -> its code and version as COPY text, once per rule rather than per match
    buffer = []
    for match, pk, name in zip(matches, ids, names, strict=True):
        match.pk, match.public_id = pk, name
        rule = rule_columns.get(id(match.rule))  # rules are held by the run: their ids are stable
        if rule is None:
            code, version = (match.rule.code, match.rule.version) if match.rule is not None else DUPLICATE_RULE
            rule = rule_columns[id(match.rule)] = f"{copy_text(code)}\t{version}"
        tolerance = match.tolerance
        if match.duplicate_of is not None:
            original = match.duplicate_of
            tolerance = {"duplicate_of": original if isinstance(original, str) else original.public_id}
        tolerance = copy_text(json.dumps(tolerance, separators=(",", ":"))) if tolerance else "{}"
        buffer.append(
            f"{pk}\t{name}\t{source_id}\t{run_id}\t{rule}\t\\N\t{match.shape}\t"
            f"{match.result}\t{match.confidence}\t{match.delta}\t{match.currency}\t{tolerance}\t"
            f"{MatchState.ACTIVE}\t{created}\t\\N\t\n"
        )
        if len(buffer) >= 10_000:
            yield "".join(buffer).encode()
            buffer.clear()
    if buffer:
        yield "".join(buffer).encode()


def _membership_rows(matches: list[Match]) -> list[bytes]:
    """The memberships as COPY text in match order (ascending match ids: the primary key's index is
    appended to), 100,000 rows a piece."""
    pieces, buffer = [], []
    for match in matches:
        pk = match.pk
        for item in match.external:
            buffer.append(f"{pk}\t{item.id}\tt\tt\n")
        for item in match.internal:
            buffer.append(f"{pk}\t{item.id}\tf\tt\n")
        if len(buffer) >= 100_000:
            pieces.append("".join(buffer).encode())
            buffer.clear()
    if buffer:
        pieces.append("".join(buffer).encode())
    return pieces


def _write(
    source: ReconciliationSource, run: ReconciliationRun, objects: _RunObjects, *, were_open: list[int],
    now: dt.datetime, timings: dict | None = None,
) -> None:  # fmt: skip
    """Write the matches and their memberships and take the open items they took (`were_open`: those
    at or below the watermark; the new ones above it have no open-item row) off the open items. Drops
    `objects` once they are written out. Raises ItemsAlreadyMatched (the caller's transaction must
    roll back) if any open item was taken meanwhile."""
    matches = objects.matches
    if not matches:
        objects.drop()
        return
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        if timings is not None:
            moment = time.monotonic()
            timings[f"write.{name}"] = round(moment - clock, 3)
            clock = moment

    # The public ids are made in a thread of their own while PostgreSQL hands out the ids: the one is
    # Python's work, the other the server's.
    with ThreadPoolExecutor(max_workers=1) as pool:
        minted = pool.submit(public_ids, "rm", len(matches))
        ids = _reserve_match_ids(len(matches))
        names = minted.result()
    lap("prepare")
    with raw_cursor() as cursor:
        if were_open:
            _take_open_items(cursor, source, were_open)
        lap("take_open_items")
        # PostgreSQL takes the rows from a thread of psycopg's (QueuedLibpqWriter: it waits on the socket
        # without the GIL) while this thread renders the rest and frees the run's objects: the server's
        # work and Python's overlap on two cores instead of following each other.
        with cursor.copy(_COPY_MATCHES, writer=QueuedLibpqWriter(cursor)) as copy:
            run_id = str(run.pk)
            for rows in _match_rows(matches, ids, names, source_id=source.pk, run_id=run_id, created=now.isoformat()):
                copy.write(rows)
            memberships = _membership_rows(matches)
            matches = ids = names = None  # the last references but the holder's
            objects.drop()
        lap("copy_matches")
        # The unique index on an item's active membership is the database's own guard: a writer that
        # ignored the open items still cannot give an item a second active match.
        with cursor.copy(_COPY_MEMBERSHIPS, writer=QueuedLibpqWriter(cursor)) as copy:
            for rows in memberships:
                copy.write(rows)
            del memberships
        lap("copy_memberships")


def _take_open_items(cursor, source: ReconciliationSource, were_open: list[int]) -> None:
    """Compare-and-set: the run takes an open item by removing it from the open items. An item
    another writer took since the run read it is not there any more, and the count falls short."""
    cursor.execute("DROP TABLE IF EXISTS pg_temp.recon_taken")
    cursor.execute("CREATE TEMPORARY TABLE recon_taken (item_id bigint PRIMARY KEY) ON COMMIT DROP")
    with cursor.copy("COPY recon_taken (item_id) FROM STDIN") as copy:
        for start in range(0, len(were_open), 200_000):
            copy.write("\n".join(map(str, were_open[start : start + 200_000])).encode() + b"\n")
    cursor.execute("ANALYZE recon_taken")
    with index_walk_only():
        cursor.execute(
            """DELETE FROM reconciliation_reconciliationopenitem o USING recon_taken t
                WHERE o.source_id = %s AND o.item_id = t.item_id""",
            [source.pk],
        )
    if cursor.rowcount != len(were_open):
        raise ItemsAlreadyMatched(
            f"{len(were_open) - cursor.rowcount} of the {len(were_open)} open items this run took were matched "
            "meanwhile; the run is rolled back"
        )


def _watermark_advance(source: ReconciliationSource, run: ReconciliationRun, watermark: _Watermark, through: int,
                       left_new: list[int]) -> None:  # fmt: skip
    """The run has considered every item up to `through`: the watermark moves there (and past the
    source's decisions so far: none can be in progress, they take the source's lock), and the new
    items it left unexplained (above the old watermark) become open items, the next run's work."""
    if through <= watermark.considered_through:
        return
    with raw_cursor() as cursor:
        cursor.execute(
            """INSERT INTO reconciliation_reconciliationwatermark AS w
                      (source_id, considered_through, decisions_through, run_id)
               SELECT %s, %s, GREATEST(%s, COALESCE(max(m.id), 0)), %s
                 FROM reconciliation_reconciliationmatch m WHERE m.source_id = %s AND m.decision_id IS NOT NULL
               ON CONFLICT (source_id) DO UPDATE SET considered_through = EXCLUDED.considered_through,
                                                     decisions_through = EXCLUDED.decisions_through,
                                                     run_id = EXCLUDED.run_id""",
            [source.pk, through, watermark.decisions_through, run.pk, source.pk],
        )
        if left_new:
            with cursor.copy("COPY reconciliation_reconciliationopenitem (source_id, item_id) FROM STDIN") as copy:
                prefix = f"{source.pk}\t"
                for start in range(0, len(left_new), 100_000):
                    chunk = left_new[start : start + 100_000]
                    copy.write("".join(f"{prefix}{pk}\n" for pk in chunk).encode())


# --- the run ---------------------------------------------------------------------------------------------


def _breaks_sync(*, source: ReconciliationSource, run: ReconciliationRun | None, actor: Actor, now: dt.datetime,
                 left: Iterable[tuple[int, bool, int, str, dt.date]] = ()):  # fmt: skip
    from reconciliation.services.breaks import breaks_sync

    return breaks_sync(source=source, run=run, actor=actor, now=now, left=left)


def reconciliation_run(
    *, source: ReconciliationSource, actor: Actor, now_fn: Callable[[], dt.datetime] = timezone.now
) -> ReconciliationRun:
    """Match the source's unmatched items with its active rules and record the run.

    Guarantees: one run at a time per source (the second waits for the first's commit and then finds
    only what the first left); an item is matched at most once, also against a concurrent manual
    match (compare-and-set; a run that loses a race rolls back whole and is recorded FAILED); a
    second run with nothing new matches nothing and changes no item. Items left over become
    UNMATCHED_EXTERNAL / UNMATCHED_INTERNAL. breaks_sync runs in the same transaction and its counts
    are kept on the run. One audit event per run. Raises ValidationFailed for a rule the engine
    cannot apply (the run is recorded FAILED)."""
    started_at = now_fn()
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            public_id=public_ids("rr", 1)[0], source=source, started_by=actor.label,
            started_at=started_at,
        )  # fmt: skip
    clock = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        moment = time.monotonic()
        timings[name] = round(moment - since, 3)
        return moment

    try:
        with transaction.atomic():
            lock_source_for_matching(source.pk)
            mark = lap("lock", clock)
            rules = _rules(source)
            # The run's millions of small objects live only inside _match_and_write: they are freed (by
            # reference counting: they hold no cycles) before the collector runs again, which would
            # otherwise walk all of them, several times over, in the statements that follow.
            with gc_paused():
                now, made = _match_and_write(source, run, rules, now_fn=now_fn, lap=lap, mark=mark, timings=timings)
            mark = time.monotonic()
            synced = _breaks_sync(source=source, run=run, actor=actor, now=now, left=made.unexplained)
            mark = lap("breaks", mark)
            run.succeed()
            run.finished_at = now_fn()
            run.items_considered = made.considered
            run.matches_made = made.matches
            run.breaks_opened, run.breaks_closed = synced.opened, synced.closed
            run.seconds = round(time.monotonic() - clock, 3)
            run.save(update_fields=["status", "finished_at", "items_considered", "matches_made", "breaks_opened",
                                    "breaks_closed", "seconds"])  # fmt: skip
            audit_record(
                event_type="reconciliation.run_finished", actor=actor, action_type="RECONCILIATION_RUN",
                target_type="reconciliation_run", target_id=run.public_id, now=run.finished_at,
                after={"source": source.code, "items_considered": made.considered, "matches": made.matches,
                       "by_rule": made.per_rule, "by_result": made.results, "unmatched_external": made.left_external,
                       "unmatched_internal": made.left_internal, "breaks_opened": synced.opened,
                       "breaks_closed": synced.closed, "considered_through": made.considered_through,
                       "seconds": run.seconds},
            )  # fmt: skip
            mark = lap("record", mark)
        mark = lap("commit", mark)
    except Exception as exc:
        _run_failed(run, exc, actor=actor, now=now_fn(), seconds=time.monotonic() - clock)
        raise
    break_statistics_refresh(run.breaks_opened + run.breaks_closed)  # the run is committed: not part of it
    lap("statistics", mark)
    run.timings = timings  # what the benchmark prints; not stored
    return run


@dataclass(frozen=True)
class _Made:
    """What a run's matching leaves for the rest of the run: counts, and the items it left open."""

    considered: int
    matches: int
    per_rule: dict[str, int]
    results: dict[str, int]
    left_external: int
    left_internal: int
    unexplained: list[tuple[int, bool, int, str, dt.date]]
    considered_through: int  # the source's watermark after the run


def _match_and_write(
    source: ReconciliationSource, run: ReconciliationRun, rules: list[Rule], *, now_fn: Callable[[], dt.datetime],
    lap: Callable[[str, float], float], mark: float, timings: dict[str, float],
) -> tuple[dt.datetime, _Made]:  # fmt: skip
    """Load the source's open items and new items, apply the rules and the duplicate check, write the
    result, move the watermark."""
    watermark = _watermark(source.pk)
    items, decided = _load_items(source.pk, watermark)
    mark = lap("load", mark)
    engine = Engine(items)
    outcome = engine.apply(rules)
    mark = lap("match", mark)
    leftovers = [i for i in engine.externals if not i.taken]
    found = duplicates(leftovers, _originals(source.pk, leftovers, outcome.matches))
    matches = outcome.matches + found
    per_rule = {**outcome.per_rule, DUPLICATE_RULE[0]: len(found)}
    mark = lap("duplicates", mark)
    now = now_fn()
    results = dict(Counter(match.result for match in matches))
    left = [i for i in items if not i.taken]
    left_external = sum(i.external for i in left)
    # Past every item the run loaded, and past the new items decisions took (considered, by a person):
    # stopping short of one would offer it to the next run as new once decisions_through has moved on.
    through = max(watermark.considered_through, max((i.id for i in items), default=0), max(decided, default=0))
    made = _Made(
        considered=len(items), matches=len(matches), per_rule=per_rule, results=results,
        left_external=left_external, left_internal=len(left) - left_external,
        unexplained=[(i.id, i.external, i.amount, i.currency, _date(i.day)) for i in left],
        considered_through=through,
    )  # fmt: skip
    left_new = [i.id for i in left if i.id > watermark.considered_through]
    # The open items the matches took: the items at or below the watermark are the open items loaded.
    were_open = [i.id for i in items if i.id <= watermark.considered_through and i.taken]
    # From here the run's objects live only in the holder, which the write empties.
    objects = _RunObjects(matches, items, engine, outcome, leftovers, found, left)
    del items, engine, outcome, leftovers, found, left, matches
    _write(source, run, objects, were_open=were_open, now=now, timings=timings)
    mark = lap("write", mark)
    _watermark_advance(source, run, watermark, through, left_new)
    lap("watermark", mark)
    return now, made


def _run_failed(run: ReconciliationRun, exc: Exception, *, actor: Actor, now: dt.datetime, seconds: float) -> None:
    code = exc.code if isinstance(exc, DomainError) else type(exc).__name__
    message = exc.message if isinstance(exc, DomainError) else str(exc)
    if connection.in_atomic_block and connection.needs_rollback:
        return  # the caller's transaction is broken; it records nothing, and neither can this
    with transaction.atomic():
        # The run row may have rolled back with the run's own transaction; then there is nothing to mark.
        failed = ReconciliationRun.objects.select_for_update().filter(pk=run.pk, status=RunStatus.RUNNING).first()
        if failed is not None:
            failed.fail()
            failed.finished_at, failed.seconds, failed.error_message = now, round(seconds, 3), message[:2000]
            failed.save(update_fields=["status", "finished_at", "seconds", "error_message"])
        audit_record(
            event_type="reconciliation.run_failed", result=AuditResult.FAILED, actor=actor,
            action_type="RECONCILIATION_RUN", target_type="reconciliation_run", target_id=run.public_id, now=now,
            error_code=code, error_message=message[:2000], after={"source": run.source.code},
        )  # fmt: skip


# --- undo and manual -------------------------------------------------------------------------------------


def match_undo(
    *, match_id: str, actor: Actor, now: dt.datetime, reason_text: str, approval_ref: str = ""
) -> ReconciliationMatch:
    """Undo an ACTIVE match (the unmatch): the match goes ACTIVE -> UNMATCHED by its state machine (the
    row is kept, with who and when, and so are its memberships, made inactive), its items become open
    items again, and breaks_sync opens their breaks. Serialised with runs by the source's matching lock.
    Raises NotFound, ValidationFailed (no reason), IllegalTransition (already undone); refusals audited."""
    try:
        if not (reason_text or "").strip():
            raise ValidationFailed("undoing a match needs a reason")
        found = ReconciliationMatch.objects.filter(public_id=match_id).values_list("source_id", flat=True).first()
        if found is None:
            raise NotFound(f"no reconciliation match {match_id}")
        with transaction.atomic():
            lock_source_for_matching(found)
            locked = ReconciliationMatch.objects.select_for_update(of=("self",)).select_related("source")
            match = locked.get(public_id=match_id)
            if match.state != MatchState.ACTIVE:
                raise IllegalTransition(f"match {match_id} is {match.state}; only an active match can be undone")
            match.unmatch()
            match.unmatched_at, match.unmatched_by = now, actor.label
            match.save(update_fields=["state", "unmatched_at", "unmatched_by"])
            released = _memberships_undo(match)
            # An item a run has considered becomes open again; a new one (a decision took it before any
            # run did) is new again, the next run's work.
            watermark = considered_through(match.source_id)
            with connection.cursor() as cursor:
                cursor.execute(
                    """INSERT INTO reconciliation_reconciliationopenitem (source_id, item_id)
                       SELECT %s, unnest(%s::bigint[])""",
                    [match.source_id, [pk for pk in released if pk <= watermark]],
                )
            rows = ReconciliationItem.objects.filter(pk__in=released).values_list(
                "id", "side", "amount_minor", "currency", "value_date"
            )
            left = [(pk, side == ItemSide.EXTERNAL, amount, currency, day) for pk, side, amount, currency, day in rows]
            synced = _breaks_sync(source=match.source, run=None, actor=actor, now=now, left=left)
            released = len(released)
            audit_record(
                event_type="reconciliation.match_undone", actor=actor, action_type="UNMATCH_RECONCILIATION",
                target_type="reconciliation_match", target_id=match.public_id, reason_text=reason_text,
                approval_ref=approval_ref, now=now,
                before={"state": MatchState.ACTIVE.value, "result": match.result},
                after={"state": match.state, "items_released": released, "breaks_opened": synced.opened,
                       "breaks_closed": synced.closed},
            )  # fmt: skip
            return match
    except DomainError as exc:
        audit_record(
            event_type="reconciliation.match_undo_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="UNMATCH_RECONCILIATION", target_type="reconciliation_match", target_id=str(match_id)[:64],
            reason_text=reason_text or "", approval_ref=approval_ref, error_code=exc.code, error_message=exc.message,
            now=now,
        )  # fmt: skip
        raise


def _memberships_undo(match: ReconciliationMatch) -> list[int]:
    """The match's memberships become inactive (kept: the match still shows what it grouped); returns
    the items released."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE reconciliation_reconciliationmatchitem SET active = false WHERE match_id = %s AND active"
            " RETURNING item_id",
            [match.pk],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _shape(externals: int, internals: int) -> str:
    if externals <= 1 and internals <= 1:
        return MatchShape.ONE_TO_ONE
    if externals <= 1:
        return MatchShape.ONE_TO_MANY
    if internals <= 1:
        return MatchShape.MANY_TO_ONE
    return MatchShape.MANY_TO_MANY


def match_manual(
    *, source: ReconciliationSource, external_ids: list[int], internal_ids: list[int],
    decision: ReconciliationManualDecision, actor: Actor, now: dt.datetime,
    result: str = MatchStatus.MANUAL_MATCHED, replacing: ReconciliationMatch | None = None,
) -> ReconciliationMatch:  # fmt: skip
    """A match of the given items (item primary keys) made by an approved decision: MANUAL_MATCHED, or
    TIMING_DIFFERENCE for a timing classification. A classification explains one item on its own,
    so the item is never offered to a run again and its break stays closed.

    The items must belong to `source`, be on the side named, share one currency and be open items,
    except with `replacing`: an active match with exactly these items (a difference a decision
    accepts), which is undone in the same transaction and whose items pass straight to the new match.
    Items are taken off the open items under the source's matching lock (compare-and-set).
    Raises ItemsAlreadyMatched (a StaleTarget) if any is matched already, ValidationFailed for items
    that are not the source's, not on that side, or in several currencies. The decision's breaks are
    the caller's to close (it closes them with the decision). Audited, refusals too."""
    external_ids, internal_ids = sorted(set(map(int, external_ids))), sorted(set(map(int, internal_ids)))
    try:
        if not external_ids and not internal_ids:
            raise ValidationFailed("a manual match needs at least one item")
        if set(external_ids) & set(internal_ids):
            raise ValidationFailed("an item is on one side only")
        if decision is None:
            raise ValidationFailed("a manual match is made by a decision")
        if result not in (MatchStatus.MANUAL_MATCHED, MatchStatus.TIMING_DIFFERENCE):
            raise ValidationFailed(f"a decision explains items; {result} is not an explanation")
        with transaction.atomic():
            lock_source_for_matching(source.pk)
            wanted = sorted(external_ids + internal_ids)
            items = {item.pk: item for item in ReconciliationItem.objects.filter(pk__in=wanted)}
            missing = sorted(set(wanted) - set(items))
            if missing:
                raise ValidationFailed(f"no reconciliation items {missing}")
            for pk in wanted:
                item, side = items[pk], ItemSide.EXTERNAL if pk in external_ids else ItemSide.INTERNAL
                if item.source_id != source.pk:
                    raise ValidationFailed(f"item {pk} belongs to another source")
                if item.side != side:
                    raise ValidationFailed(f"item {pk} is {item.side}, not {side}")
            currencies = {item.currency for item in items.values()}
            if len(currencies) != 1:
                raise ValidationFailed(f"the items are in several currencies ({', '.join(sorted(currencies))})")
            if replacing is not None:
                _replace(replacing, wanted, actor=actor, now=now)
            else:
                _take_open(source, wanted)
            external_total = sum(items[pk].amount_minor for pk in external_ids)
            delta = external_total - sum(items[pk].amount_minor for pk in internal_ids)
            tolerance = {"decision": decision.public_id, "decision_type": decision.decision_type}
            if replacing is not None:
                tolerance["replaces"] = replacing.public_id
            match = ReconciliationMatch.objects.create(
                public_id=public_ids("rm", 1)[0], source=source, run=None, rule_code="", rule_version=None,
                decision=decision, shape=_shape(len(external_ids), len(internal_ids)), result=result,
                confidence="1.000", amount_delta_minor=delta, currency=currencies.pop(), tolerance=tolerance,
                created_at=now,
            )  # fmt: skip
            ReconciliationMatchItem.objects.bulk_create(
                ReconciliationMatchItem(match=match, item_id=pk, external=pk in external_ids) for pk in wanted
            )
            audit_record(
                event_type="reconciliation.match_manual", actor=actor, action_type="MANUAL_MATCH_RECONCILIATION",
                target_type="reconciliation_match", target_id=match.public_id, approval_ref=decision.approval_ref,
                case_ref=decision.case_ref, now=now,
                after={"decision": decision.public_id, "external_items": external_ids, "internal_items": internal_ids,
                       "amount_delta_minor": delta, "currency": match.currency, "shape": match.shape,
                       "result": match.result, "replaces": replacing.public_id if replacing else ""},
            )  # fmt: skip
            return match
    except DomainError as exc:
        audit_record(
            event_type="reconciliation.match_manual_refused", result=AuditResult.REFUSED, actor=actor,
            action_type="MANUAL_MATCH_RECONCILIATION", target_type="reconciliation_source", target_id=source.code,
            error_code=exc.code, error_message=exc.message, now=now,
            after={"external_items": external_ids, "internal_items": internal_ids,
                   "decision": getattr(decision, "public_id", "")},
        )  # fmt: skip
        raise


def _take_open(source: ReconciliationSource, wanted: list[int]) -> None:
    """Take the items, all or none: those a run has considered off the source's open items
    (compare-and-set), the new ones (above the watermark: no open-item row) only if no match holds
    them (the next run leaves them out: see _DECIDED_NEW). Under the source's lock."""
    new = set(not_yet_considered(source.pk, wanted))
    considered = [pk for pk in wanted if pk not in new]
    with connection.cursor() as cursor:
        cursor.execute(
            """DELETE FROM reconciliation_reconciliationopenitem WHERE source_id = %s AND item_id = ANY(%s::bigint[])
               RETURNING item_id""",
            [source.pk, considered],
        )
        taken = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT item_id FROM reconciliation_reconciliationmatchitem WHERE item_id = ANY(%s::bigint[]) AND active",
            [sorted(new)],
        )
        held = {row[0] for row in cursor.fetchall()}
    missing = sorted((set(considered) - taken) | held)
    if missing:
        raise ItemsAlreadyMatched(f"items {missing} are matched already")


def _replace(replacing: ReconciliationMatch, wanted: list[int], *, actor: Actor, now: dt.datetime) -> None:
    """Undo `replacing` so a decision's match can take its items (they never become open)."""
    current = ReconciliationMatch.objects.select_for_update(of=("self",)).get(pk=replacing.pk)
    if current.state != MatchState.ACTIVE:
        raise ItemsAlreadyMatched(f"match {current.public_id} was undone meanwhile")
    members = sorted(
        ReconciliationMatchItem.objects.filter(match=current, active=True).values_list("item_id", flat=True)
    )
    if members != wanted:
        raise ValidationFailed(f"match {current.public_id} groups other items than the decision names")
    current.unmatch()
    current.unmatched_at, current.unmatched_by = now, actor.label
    current.save(update_fields=["state", "unmatched_at", "unmatched_by"])
    _memberships_undo(current)
