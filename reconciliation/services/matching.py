"""Reconciliation runs, and undoing or making a match by hand.

A run (reconciliation_run) takes the source's matching lock (a transaction-scoped advisory lock
keyed by the source), loads every item of the source no match explains (UNMATCHED, and the
UNMATCHED_EXTERNAL / UNMATCHED_INTERNAL an earlier run left: a capture recorded today must still
find the line left unmatched yesterday), pairs them in memory (reconciliation.services.engine) with
the active rules in position order, then writes the result set-based: the matches with COPY, the
items' new match and status with COPY into a temporary table and one UPDATE ... FROM that only
touches items still without a match (compare-and-set). If that UPDATE finds fewer items than it
was given, another writer got there first and the whole run rolls back. Then breaks_sync makes the
breaks agree with the items, and one audit event records the run.

Why the item's match status is not a state machine field: a run sets it for up to a million rows
in one statement, under the run's lock and with compare-and-set; the item check constraint keeps
status and match consistent whoever writes (docs/adr/0007-reconciliation-matching.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterable

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

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
    ReconciliationRule,
    ReconciliationRun,
    ReconciliationSource,
    RunStatus,
)
from reconciliation.services.common import (
    UNMATCHED_STATES,
    copy_text,
    gc_paused,
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
# The unmatched items of one source, one line each: what the engine needs and nothing else. An
# external line's references come without the batch keys (their values are read in Python, only
# where they add a key), its batch keys joined by a unit separator.
_LOAD = """
COPY (
    SELECT i.id, i.side = 'EXTERNAL', i.amount_minor, i.gross_minor, i.fee_minor, i.currency,
           i.value_date - DATE '1970-01-01', i.reference,
           CASE WHEN i.side = 'EXTERNAL' THEN (i."references" WITHOUT_BATCH_KEYS)::text ELSE '' END,
           CASE WHEN i.side = 'EXTERNAL'
                THEN concat_ws(E'\\x1f', NULLIF(i.batch_id, ''), BATCH_KEY_SQL, NULLIF(i.reference, ''))
                ELSE i.batch_id END,
           i.match_status
      FROM reconciliation_reconciliationitem i
     WHERE i.source_id = %s AND i.match_status IN ('UNMATCHED', 'UNMATCHED_EXTERNAL', 'UNMATCHED_INTERNAL')
) TO STDOUT
""".replace("WITHOUT_BATCH_KEYS", _WITHOUT_BATCH_KEYS).replace("BATCH_KEY_SQL", _BATCH_KEY_SQL)


def _int_or_none(text: str) -> int | None:
    return None if text == "\\N" else int(text)


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


def _load_items(source_id: int) -> list[Item]:
    items: list[Item] = []
    append = items.append
    with raw_cursor() as cursor, cursor.copy(_LOAD, [source_id]) as copy:
        for block in copy:  # one row at a time, never the whole result in one buffer
            row = str(block, "utf-8")
            (id_, side, amount, gross, fee, currency, day, reference, references, batch, status) = row[:-1].split("\t")
            amount_minor = int(amount)
            if "\\" in reference:
                reference = _unescape(reference)
            keys = (reference,) if reference else ()
            if side == "t":
                gross_minor = None if gross == _NULL else int(gross)
                extra = _extra_keys(references, reference)
                if extra:
                    keys += extra
                compare = amount_minor if gross_minor is None else gross_minor
                append(Item(int(id_), True, amount_minor, compare, currency, _int_or_none(fee), int(day), reference,
                            keys, _keys(batch), status, gross_minor is not None))  # fmt: skip
            else:
                append(Item(int(id_), False, amount_minor, amount_minor, currency, _int_or_none(fee), int(day),
                            reference, keys, _keys(batch), status, False))  # fmt: skip
    return items


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
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT ON (i.reference, i.amount_minor, i.currency) i.reference, i.amount_minor, i.currency,
                      m.public_id
                 FROM reconciliation_reconciliationitem i
                 JOIN reconciliation_reconciliationmatch m ON m.id = i.match_id
                WHERE i.source_id = %s AND i.side = 'EXTERNAL' AND i.match_id IS NOT NULL
                  AND i.match_status <> 'DUPLICATE' AND i.reference = ANY(%s)
                ORDER BY i.reference, i.amount_minor, i.currency, i.id""",
            [source_id, references],
        )
        return {(ref, amount, currency): public_id for ref, amount, currency, public_id in cursor.fetchall()}


# --- writing ---------------------------------------------------------------------------------------------

_MATCH_COLUMNS = (
    "id", "public_id", "source_id", "run_id", "rule_code", "rule_version", "decision_id", "shape", "result",
    "confidence", "amount_delta_minor", "currency", "tolerance", "state", "created_at", "unmatched_at",
    "unmatched_by",
)  # fmt: skip


_COPY_MATCHES = f"COPY reconciliation_reconciliationmatch ({', '.join(_MATCH_COLUMNS)}) FROM STDIN"


def _reserve_match_ids(n: int) -> list[int]:
    """n ids from the match table's sequence (nextval: safe whoever else takes ids meanwhile)."""
    sql = (
        "COPY (SELECT nextval(pg_get_serial_sequence('reconciliation_reconciliationmatch', 'id')) "
        "FROM generate_series(1, %s)) TO STDOUT"
    )
    with raw_cursor() as cursor, cursor.copy(sql, [n]) as copy:
        text = b"".join(bytes(block) for block in copy)
    return [int(value) for value in text.split()]


def _write(
    source: ReconciliationSource, run: ReconciliationRun | None, matches: list[Match], leftovers: Iterable[Item],
    *, now: dt.datetime,
) -> int:  # fmt: skip
    """Write the matches and every item's new status; returns the items updated. Raises
    ItemsAlreadyMatched (the caller's transaction must roll back) if any item was matched meanwhile."""
    ids = _reserve_match_ids(len(matches)) if matches else []
    names = public_ids("rm", len(matches)) if matches else []
    db_id: dict[int, int] = {}
    public: dict[int, str] = {}
    for match, pk, name in zip(matches, ids, names, strict=True):
        db_id[id(match)], public[id(match)] = pk, name
    created = now.isoformat()
    run_id = str(run.pk) if run is not None else "\\N"
    with raw_cursor() as cursor:
        if matches:
            with cursor.copy(_COPY_MATCHES) as copy:
                buffer = []
                for match in matches:
                    if match.rule is not None:
                        code, version = match.rule.code, match.rule.version
                    else:
                        code, version = DUPLICATE_RULE
                    tolerance = match.tolerance
                    if match.duplicate_of is not None:
                        original = match.duplicate_of
                        tolerance = {"duplicate_of": original if isinstance(original, str) else public[id(original)]}
                    buffer.append(
                        f"{db_id[id(match)]}\t{public[id(match)]}\t{source.pk}\t{run_id}\t{copy_text(code)}\t{version}\t"
                        f"\\N\t{match.shape}\t{match.result}\t{match.confidence}\t{match.delta}\t{match.currency}\t"
                        f"{copy_text(json.dumps(tolerance, separators=(',', ':')))}\t{MatchState.ACTIVE}\t{created}\t"
                        f"\\N\t\n"
                    )
                    if len(buffer) >= 10_000:
                        copy.write("".join(buffer).encode())
                        buffer.clear()
                copy.write("".join(buffer).encode())
        cursor.execute("DROP TABLE IF EXISTS pg_temp.recon_assign")
        cursor.execute(
            "CREATE TEMPORARY TABLE recon_assign (id bigint, match_id bigint, status varchar(20),"
            " free boolean NOT NULL DEFAULT true) ON COMMIT DROP"
        )
        # In item id order, which is (nearly) the order of the rows on disk: the UPDATE then reads and
        # rewrites the table front to back instead of jumping (measured: 2.4 times faster).
        assignments = [(item.id, db_id[id(match)], match.result) for match in matches for item in match.items]
        assignments.extend(
            (item.id, _NULL, MatchStatus.UNMATCHED_EXTERNAL if item.external else MatchStatus.UNMATCHED_INTERNAL)
            for item in leftovers
            if item.status == MatchStatus.UNMATCHED
        )
        assignments.sort()
        assigned = len(assignments)
        with cursor.copy("COPY recon_assign (id, match_id, status) FROM STDIN") as copy:
            for start in range(0, assigned, 50_000):
                copy.write("".join([
                    f"{item_id}\t{match_pk}\t{status}\n"
                    for item_id, match_pk, status in assignments[start : start + 50_000]
                ]).encode())  # fmt: skip
        if not assigned:
            return 0
        cursor.execute("ANALYZE recon_assign")
        # Compare-and-set: only items still without a match take the run's result.
        #
        # The plan is fixed: the assignments (in id order) drive, each item is fetched through the
        # primary key. The item's conditions are compared with the assignment's `free` (always true),
        # so they are checked on the fetched row and never estimated on the item table alone (a table
        # that just grew by a million rows has no statistics yet, and looks empty to the planner);
        # hash, merge and materialised joins are off for this one statement. Any other plan grows
        # with the source's history (hashing all its items), scrambles the order (a hash join's
        # batches), or rescans the assignments once per item.
        cursor.execute(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'),"
            " current_setting('enable_material')"
        )
        before = cursor.fetchone()
        cursor.execute(
            "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),"
            " set_config('enable_material', 'off', true)"
        )
        cursor.execute(
            """UPDATE reconciliation_reconciliationitem i SET match_id = a.match_id, match_status = a.status
                 FROM recon_assign a
                WHERE i.id = a.id
                  AND a.free = (i.source_id = %s AND i.match_id IS NULL
                                AND i.match_status IN ('UNMATCHED', 'UNMATCHED_EXTERNAL', 'UNMATCHED_INTERNAL'))""",
            [source.pk],
        )
        updated = cursor.rowcount
        cursor.execute(
            "SELECT set_config('enable_hashjoin', %s, true), set_config('enable_mergejoin', %s, true),"
            " set_config('enable_material', %s, true)",
            list(before),
        )
        if updated != assigned:
            raise ItemsAlreadyMatched(
                f"{assigned - updated} of the {assigned} items of this run were matched meanwhile; "
                "the run is rolled back"
            )
        return assigned


# --- the run ---------------------------------------------------------------------------------------------


def _breaks_sync(*, source: ReconciliationSource, run: ReconciliationRun | None, actor: Actor, now: dt.datetime):
    from reconciliation.services.breaks import breaks_sync

    return breaks_sync(source=source, run=run, actor=actor, now=now)


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
            with gc_paused():
                items = _load_items(source.pk)
                mark = lap("load", mark)
                engine = Engine(items)
                outcome = engine.apply(rules)
                mark = lap("match", mark)
                leftovers = [i for i in engine.externals if not i.taken]
                originals: dict[tuple[str, int, str], str | Match] = dict(_earlier_originals(source.pk, leftovers))
                for match in outcome.matches:
                    for e in match.external:
                        if e.reference:
                            originals.setdefault((e.reference, e.amount, e.currency), match)
                found = duplicates(leftovers, originals)
                matches = outcome.matches + found
                per_rule = {**outcome.per_rule, DUPLICATE_RULE[0]: len(found)}
                mark = lap("duplicates", mark)
                now = now_fn()
                left = [i for i in items if not i.taken]
                _write(source, run, matches, left, now=now)
                mark = lap("write", mark)
            synced = _breaks_sync(source=source, run=run, actor=actor, now=now)
            mark = lap("breaks", mark)
            results: dict[str, int] = {}
            for match in matches:
                results[match.result] = results.get(match.result, 0) + 1
            run.succeed()
            run.finished_at = now_fn()
            run.items_considered = len(items)
            run.matches_made = len(matches)
            run.breaks_opened, run.breaks_closed = synced.opened, synced.closed
            run.seconds = round(time.monotonic() - clock, 3)
            run.save(update_fields=["status", "finished_at", "items_considered", "matches_made", "breaks_opened",
                                    "breaks_closed", "seconds"])  # fmt: skip
            audit_record(
                event_type="reconciliation.run_finished", actor=actor, action_type="RECONCILIATION_RUN",
                target_type="reconciliation_run", target_id=run.public_id, now=run.finished_at,
                after={"source": source.code, "items_considered": len(items), "matches": len(matches),
                       "by_rule": per_rule, "by_result": results, "unmatched_external": sum(i.external for i in left),
                       "unmatched_internal": sum(not i.external for i in left), "breaks_opened": synced.opened,
                       "breaks_closed": synced.closed, "seconds": run.seconds},
            )  # fmt: skip
            mark = lap("record", mark)
        lap("commit", mark)
    except Exception as exc:
        _run_failed(run, exc, actor=actor, now=now_fn(), seconds=time.monotonic() - clock)
        raise
    run.timings = timings  # what the benchmark prints; not stored
    return run


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
    row is kept, with who and when), its items go back to UNMATCHED_EXTERNAL / UNMATCHED_INTERNAL with
    no match, and breaks_sync reopens their breaks. Serialised with runs by the source's matching lock.
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
            with connection.cursor() as cursor:
                cursor.execute(
                    """UPDATE reconciliation_reconciliationitem
                          SET match_id = NULL,
                              match_status = CASE side WHEN 'EXTERNAL' THEN 'UNMATCHED_EXTERNAL'
                                                       ELSE 'UNMATCHED_INTERNAL' END
                        WHERE match_id = %s""",
                    [match.pk],
                )
                released = cursor.rowcount
            synced = _breaks_sync(source=match.source, run=None, actor=actor, now=now)
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
) -> ReconciliationMatch:  # fmt: skip
    """A MANUAL_MATCHED match of the given items (item primary keys), made by an approved decision.

    The items must belong to `source`, be on the side named, share one currency and be unmatched;
    they are locked in id order under the source's matching lock and taken by compare-and-set.
    Raises ItemsAlreadyMatched (a StaleTarget) if any is matched already, ValidationFailed for items
    that are not the source's, not on that side, or in several currencies. The decision's breaks are
    the caller's to close (it closes them with the decision); the next run's breaks_sync would too.
    Audited, refusals too."""
    external_ids, internal_ids = sorted(set(map(int, external_ids))), sorted(set(map(int, internal_ids)))
    try:
        if not external_ids and not internal_ids:
            raise ValidationFailed("a manual match needs at least one item")
        if set(external_ids) & set(internal_ids):
            raise ValidationFailed("an item is on one side only")
        if decision is None:
            raise ValidationFailed("a manual match is made by a decision")
        with transaction.atomic():
            lock_source_for_matching(source.pk)
            wanted = external_ids + internal_ids
            items = {
                item.pk: item
                for item in ReconciliationItem.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
            }
            missing = sorted(set(wanted) - set(items))
            if missing:
                raise ValidationFailed(f"no reconciliation items {missing}")
            for pk in wanted:
                item, side = items[pk], ItemSide.EXTERNAL if pk in external_ids else ItemSide.INTERNAL
                if item.source_id != source.pk:
                    raise ValidationFailed(f"item {pk} belongs to another source")
                if item.side != side:
                    raise ValidationFailed(f"item {pk} is {item.side}, not {side}")
            taken = sorted(pk for pk, item in items.items() if item.match_id is not None)
            if taken:
                raise ItemsAlreadyMatched(f"items {taken} are matched already")
            currencies = {item.currency for item in items.values()}
            if len(currencies) != 1:
                raise ValidationFailed(f"the items are in several currencies ({', '.join(sorted(currencies))})")
            external_total = sum(items[pk].amount_minor for pk in external_ids)
            delta = external_total - sum(items[pk].amount_minor for pk in internal_ids)
            match = ReconciliationMatch.objects.create(
                public_id=public_ids("rm", 1)[0], source=source, run=None, rule_code="", rule_version=None,
                decision=decision, shape=_shape(len(external_ids), len(internal_ids)),
                result=MatchStatus.MANUAL_MATCHED, confidence="1.000", amount_delta_minor=delta,
                currency=currencies.pop(), tolerance={"decision": decision.public_id,
                                                       "decision_type": decision.decision_type},
                created_at=now,
            )  # fmt: skip
            updated = ReconciliationItem.objects.filter(
                pk__in=wanted, match__isnull=True, match_status__in=UNMATCHED_STATES
            ).update(match=match, match_status=MatchStatus.MANUAL_MATCHED)
            if updated != len(wanted):
                raise ItemsAlreadyMatched(f"{len(wanted) - updated} of the items were matched meanwhile")
            audit_record(
                event_type="reconciliation.match_manual", actor=actor, action_type="MANUAL_MATCH_RECONCILIATION",
                target_type="reconciliation_match", target_id=match.public_id, approval_ref=decision.approval_ref,
                case_ref=decision.case_ref, now=now,
                after={"decision": decision.public_id, "external_items": external_ids, "internal_items": internal_ids,
                       "amount_delta_minor": delta, "currency": match.currency, "shape": match.shape},
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
