"""Posting journals: the only way money moves in the ledger.

One code path posts a batch of journals (a single journal is a batch of one):

1. validate every line in Python (clear messages before any round trip);
2. one statement writes the batch: the database checks the accounts (exist, same currency, open)
   before it produces a row, inserts the journals with `ON CONFLICT (idempotency_key) DO NOTHING`,
   inserts the entries of the journals it inserted, locks the balance projections of the touched
   accounts in ascending account id (one stable order for every poster, so opposite transfers
   cannot deadlock) and applies the deltas; the check constraint refuses a non-negative account
   going below zero;
3. a key already used returns the first journal when the payload hash matches and is refused when
   it differs; 4. the audit event is written last: for a single journal as part of the same statement, so
   outside a caller's transaction a posting is one round trip (the chain lock is held only to commit).

Hot accounts have no projection row, so posters never queue on them (ADR 0003).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, OperationalError, connection, transaction

from audit.models import AuditResult
from audit.services import PreparedEvent, audit_prepare, audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, IdempotencyConflict, ValidationFailed
from backoffice.ids import new_public_id
from backoffice.money import CurrencyError, currency_exponent
from backoffice.prepared import array_literal, execute_prepared
from ledger.errors import AccountNotOpen, AlreadyReversed, InsufficientFunds, LedgerBusy, UnbalancedJournal
from ledger.models import Direction, LedgerAccount, LedgerJournal

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4  # a deadlock or serialization failure is retried; the outcome is the same journal


@dataclass(frozen=True)
class PostingLine:
    account_id: int
    direction: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Source:
    type: str
    id: str


@dataclass(frozen=True)
class JournalRequest:
    lines: tuple[PostingLine, ...]
    journal_type: str
    source: Source
    accounting_date: dt.date
    idempotency_key: str
    description: str = ""
    case_ref: str = ""
    approval_ref: str = ""
    reverses_id: int | None = None
    request_hash: str = field(default="", compare=False)

    def payload(self) -> dict:
        return {
            "journal_type": self.journal_type,
            "source": [self.source.type, self.source.id],
            "accounting_date": self.accounting_date.isoformat(),
            "description": self.description,
            "case_ref": self.case_ref,
            "approval_ref": self.approval_ref,
            "reverses": self.reverses_id,
            "lines": sorted([line.account_id, line.direction, line.amount_minor, line.currency] for line in self.lines),
        }

    def hashed(self) -> JournalRequest:
        digest = hashlib.sha256(json.dumps(self.payload(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        return JournalRequest(**{**self.__dict__, "request_hash": digest})


# Counters for the benchmark: how often the database made a poster retry.
RETRY_STATS = {"deadlocks": 0, "serialization_failures": 0, "retries": 0}


def _validate(request: JournalRequest) -> None:
    if not request.idempotency_key or len(request.idempotency_key) > 160:
        raise ValidationFailed("every journal needs an idempotency key of at most 160 characters")
    if not request.journal_type or not request.source.type or not request.source.id:
        raise ValidationFailed("a journal needs a type and a source (type and id)")
    if len(request.lines) < 2:
        raise UnbalancedJournal(f"a journal needs at least two lines, got {len(request.lines)}")
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in request.lines:
        if type(line.amount_minor) is not int or line.amount_minor <= 0:
            raise ValidationFailed(f"line amounts are positive whole minor units, got {line.amount_minor!r}")
        if line.direction not in (Direction.DEBIT, Direction.CREDIT):
            raise ValidationFailed(f"line direction must be DEBIT or CREDIT, got {line.direction!r}")
        try:
            currency_exponent(line.currency)
        except CurrencyError as exc:
            raise ValidationFailed(str(exc)) from exc
        sums[line.currency][0 if line.direction == Direction.DEBIT else 1] += line.amount_minor
    for currency, (debits, credits) in sorted(sums.items()):
        if debits != credits:
            raise UnbalancedJournal(f"debits {debits} and credits {credits} differ in {currency}")


# One statement writes a batch: the accounts check (a database function that raises before any row
# is produced), the journals (a key already used inserts nothing), the entries of the journals it
# inserted, and the balance deltas of those entries, applied by ledger_apply_deltas (migration 0012),
# which locks the projection rows in ascending account id and always looks them up by key (a plan made
# once per connection must not hash whole tables). Hot accounts keep no projection (ADR 0003), so
# nobody queues on them.
_POST_BATCH = """
WITH lines AS MATERIALIZED (
    SELECT * FROM unnest(%(line_key)s::text[], %(line_account)s::bigint[], %(line_direction)s::text[],
                         %(line_amount)s::bigint[], %(line_currency)s::text[])
        AS l(idempotency_key, account_id, direction, amount_minor, currency)
), journals AS (
    INSERT INTO ledger_ledgerjournal
        (public_id, journal_type, source_type, source_id, accounting_date, posted_at, description,
         idempotency_key, request_hash, reverses_id, case_ref, approval_ref, posted_by, batch_ref)
    SELECT *, %(batch_ref)s::text FROM unnest(
        %(public_id)s::text[], %(journal_type)s::text[], %(source_type)s::text[], %(source_id)s::text[],
        %(accounting_date)s::date[], %(posted_at)s::timestamptz[], %(description)s::text[],
        %(idempotency_key)s::text[], %(request_hash)s::text[], %(reverses_id)s::bigint[], %(case_ref)s::text[],
        %(approval_ref)s::text[], %(posted_by)s::text[])
     WHERE ledger_accounts_postable(%(account_ids)s::bigint[], %(account_currencies)s::text[])
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
), entries AS (
    INSERT INTO ledger_ledgerentry (journal_id, account_id, direction, amount_minor, currency)
    SELECT j.id, l.account_id, l.direction, l.amount_minor, l.currency
      FROM lines l JOIN journals j USING (idempotency_key)
    RETURNING journal_id
), deltas AS (
    SELECT l.account_id,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.direction = 'DEBIT'), 0)::bigint AS debit,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.direction = 'CREDIT'), 0)::bigint AS credit
      FROM lines l JOIN journals j USING (idempotency_key)
     GROUP BY l.account_id
), applied AS MATERIALIZED (
    SELECT ledger_apply_deltas(array_agg(account_id ORDER BY account_id), array_agg(debit ORDER BY account_id),
                               array_agg(credit ORDER BY account_id)) AS accounts
      FROM deltas
)
{audit_cte}
SELECT j.id, j.idempotency_key,
       (SELECT accounts FROM applied) AS accounts_applied,
       (SELECT count(*) FROM entries) AS entries_written
  FROM journals j
"""
# A single journal's audit event is written by the same statement, only when the journal is new.
_AUDIT_CTE = ", audited AS ({insert})"

# SQLSTATEs raised by ledger_accounts_postable (migration 0004) and ledger_apply_deltas (0012).
_ACCOUNT_REFUSALS = {
    "LG001": ValidationFailed, "LG002": ValidationFailed, "LG003": AccountNotOpen, "LG004": DomainError,
}  # fmt: skip


def _parameters(
    ordered: Sequence[JournalRequest], public_ids: list[str], actor: Actor, now: dt.datetime, batch_ref: str
) -> dict:
    params: dict[str, Any] = {"batch_ref": batch_ref}
    params |= {name: [] for name in (
        "public_id", "journal_type", "source_type", "source_id", "accounting_date", "posted_at", "description",
        "idempotency_key", "request_hash", "reverses_id", "case_ref", "approval_ref", "posted_by",
        "line_key", "line_account", "line_direction", "line_amount", "line_currency",
    )}  # fmt: skip
    account_currencies: set[tuple[int, str]] = set()
    for pid, r in zip(public_ids, ordered, strict=True):
        for name, value in (
            ("public_id", pid), ("journal_type", r.journal_type), ("source_type", r.source.type),
            ("source_id", r.source.id), ("accounting_date", r.accounting_date), ("posted_at", now),
            ("description", r.description[:300]), ("idempotency_key", r.idempotency_key),
            ("request_hash", r.request_hash), ("reverses_id", r.reverses_id), ("case_ref", r.case_ref),
            ("approval_ref", r.approval_ref), ("posted_by", actor.label),
        ):  # fmt: skip
            params[name].append(value)
        for line in r.lines:
            params["line_key"].append(r.idempotency_key)
            params["line_account"].append(line.account_id)
            params["line_direction"].append(line.direction)
            params["line_amount"].append(line.amount_minor)
            params["line_currency"].append(line.currency)
            account_currencies.add((line.account_id, line.currency))
    pairs = sorted(account_currencies)
    params["account_ids"] = [account_id for account_id, _ in pairs]
    params["account_currencies"] = [currency for _, currency in pairs]
    # Sent as array literals, cast by the statement (backoffice/prepared.py says why).
    return {name: value if name == "batch_ref" else array_literal(value) for name, value in params.items()}


def _refusal_from_database(exc: DatabaseError) -> DomainError | None:
    """The domain error a database refusal stands for, or None when it is not one of ours."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in _ACCOUNT_REFUSALS:
        return _ACCOUNT_REFUSALS[sqlstate](cause.diag.message_primary)
    constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
    if constraint == "ledger_balance_not_below_zero":
        return InsufficientFunds()  # the message names the accounts once the transaction is gone
    if sqlstate == "23505" and "reverses_id" in str(exc):
        return AlreadyReversed()
    return None


def _insert_batch(
    requests: Sequence[JournalRequest],
    actor: Actor,
    now: dt.datetime,
    event: PreparedEvent | None = None,
    batch_ref: str = "",
) -> tuple[dict[str, LedgerJournal], list[JournalRequest]]:
    """Write journals, entries, balances and, when given, the audit event of the new journals.
    Returns ({key: new journal}, requests whose key existed)."""
    # Keys in one order for every poster: two batches sharing keys cannot deadlock on the index.
    ordered = sorted(requests, key=lambda r: r.idempotency_key)
    public_ids = [new_public_id("lj") for _ in ordered]
    params = _parameters(ordered, public_ids, actor, now, batch_ref)
    audit_cte = ""
    if event is not None:
        audit_cte = _AUDIT_CTE.format(insert=event.sql(only_if="EXISTS (SELECT 1 FROM journals)"))
        params.update(event.params())
    try:
        rows = execute_prepared(_POST_BATCH.format(audit_cte=audit_cte), params)
    except DatabaseError as exc:
        refusal = _refusal_from_database(exc)
        if refusal is None:
            raise
        raise refusal from exc
    inserted = {key: jid for jid, key, *_ in rows}
    if rows:
        _, _, _, entries_written = rows[0]
        if entries_written != sum(len(r.lines) for r in ordered if r.idempotency_key in inserted):
            raise DomainError("the entries written do not match the journals posted")
    existing = [r for r in ordered if r.idempotency_key not in inserted]
    # The caller gets the journals as written, without reading them back.
    posted = {}
    for pid, r in zip(public_ids, ordered, strict=True):
        if r.idempotency_key not in inserted:
            continue
        journal = LedgerJournal(
            id=inserted[r.idempotency_key], public_id=pid, journal_type=r.journal_type,
            source_type=r.source.type, source_id=r.source.id, accounting_date=r.accounting_date,
            posted_at=now, description=r.description[:300], idempotency_key=r.idempotency_key,
            request_hash=r.request_hash, reverses_id=r.reverses_id, case_ref=r.case_ref,
            approval_ref=r.approval_ref, posted_by=actor.label, batch_ref=batch_ref,
        )  # fmt: skip
        journal._state.adding = False
        posted[r.idempotency_key] = journal
    return posted, existing


def _replays(requests: Sequence[JournalRequest]) -> dict[str, LedgerJournal]:
    """The journals already posted under these requests' keys. A key posted with a different
    request is refused: the caller meant something else by it."""
    found = LedgerJournal.objects.in_bulk([r.idempotency_key for r in requests], field_name="idempotency_key")
    for r in requests:
        journal = found.get(r.idempotency_key)
        if journal is not None and journal.request_hash != r.request_hash:
            raise IdempotencyConflict(
                f"idempotency key {r.idempotency_key!r} was used for {journal.public_id} with a different request"
            )
    return found


def _insufficient_message(requests: Sequence[JournalRequest]) -> str:
    """Name the non-negative accounts the refused posting takes down (the refusal itself came from
    the database's floor constraint; this only says which accounts it concerns)."""
    deltas: dict[int, int] = defaultdict(int)
    for r in requests:
        for line in r.lines:
            deltas[line.account_id] += line.amount_minor if line.direction == Direction.DEBIT else -line.amount_minor
    accounts = LedgerAccount.objects.filter(pk__in=deltas, allow_negative=False).order_by("pk")
    names = [a.code for a in accounts if deltas[a.pk] * (1 if a.normal_side == Direction.DEBIT else -1) < 0]
    return "the posting would take a non-negative account below zero: " + ", ".join(names)


def _run_with_retries(fn):
    """Run `fn` (which owns one transaction) again after a deadlock or serialization failure."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return fn()
        except OperationalError as exc:
            cause = getattr(exc, "__cause__", None)
            sqlstate = getattr(cause, "sqlstate", "")
            if sqlstate not in ("40P01", "40001"):
                raise
            RETRY_STATS["deadlocks" if sqlstate == "40P01" else "serialization_failures"] += 1
            if attempt == MAX_ATTEMPTS:
                raise LedgerBusy() from exc
            RETRY_STATS["retries"] += 1
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


def _audit_refusal(exc: DomainError, requests: Sequence[JournalRequest], actor: Actor, now: dt.datetime, event: str):
    first = requests[0] if requests else None
    audit_record(
        event_type=event,
        result=AuditResult.REFUSED,
        actor=actor,
        action_type="JOURNAL_POST",
        target_type="ledger_journal",
        target_id=first.idempotency_key if first else "",
        case_ref=first.case_ref if first else "",
        approval_ref=first.approval_ref if first else "",
        error_code=exc.code,
        error_message=exc.message,
        after={"journals": len(requests), "first": first.payload() if first else None},
        now=now,
    )


def _post(
    requests: list[JournalRequest], *, actor: Actor, now: dt.datetime, batch_key: str = ""
) -> list[LedgerJournal]:
    hashed = [r.hashed() for r in requests]
    try:
        if not hashed:
            raise ValidationFailed("nothing to post")
        keys = [r.idempotency_key for r in hashed]
        if len(set(keys)) != len(keys):
            raise ValidationFailed("two journals in one batch share an idempotency key")
        for r in hashed:
            _validate(r)

        # A single journal carries its audit event in its own statement: outside a transaction that
        # statement is the whole transaction (one round trip); inside one it runs in a savepoint.
        event = _posted_event(hashed[0], actor, now) if len(hashed) == 1 else None

        def write():
            posted, existing = _insert_batch(hashed, actor, now, event, batch_key)
            new_keys = list(posted)
            if existing:
                posted.update(_replays(existing))
            if new_keys and event is None:
                _audit_posted_bulk(hashed, new_keys, actor=actor, now=now, batch_key=batch_key)
            return posted

        def attempt():
            if event is not None and connection.get_autocommit() and not connection.in_atomic_block:
                return write()
            with transaction.atomic():
                return write()

        try:
            posted = _run_with_retries(attempt)
        except AccountNotOpen:
            # A replay of journals posted before the account was frozen returns them unchanged.
            posted = _replays(hashed)
            if len(posted) != len(hashed):
                raise
    except InsufficientFunds as exc:
        named = InsufficientFunds(_insufficient_message(hashed))
        _audit_refusal(named, hashed, actor, now, "ledger.journal_refused")
        raise named from exc
    except DomainError as exc:
        _audit_refusal(exc, hashed, actor, now, "ledger.journal_refused")
        raise
    return [posted[r.idempotency_key] for r in hashed]


def _posted_event(r: JournalRequest, actor: Actor, now: dt.datetime) -> PreparedEvent:
    return audit_prepare(
        event_type="ledger.journal_posted" if r.reverses_id is None else "ledger.journal_reversed",
        actor=actor, action_type=r.journal_type, target_type="ledger_journal", target_id=r.idempotency_key,
        case_ref=r.case_ref, approval_ref=r.approval_ref, after=r.payload(), now=now,
    )  # fmt: skip


def _audit_posted_bulk(requests, new_keys, *, actor, now, batch_key) -> None:
    audit_record(
        event_type="ledger.journals_posted_bulk", actor=actor, action_type="JOURNAL_POST_MANY",
        target_type="ledger_batch", target_id=batch_key,
        after={"journals": len(new_keys), "replayed": len(requests) - len(new_keys),
               "first_key": min(new_keys), "last_key": max(new_keys)},
        now=now,
    )  # fmt: skip


def journal_post(
    *,
    lines: Sequence[PostingLine],
    journal_type: str,
    source: Source,
    accounting_date: dt.date,
    idempotency_key: str,
    actor: Actor,
    now: dt.datetime,
    description: str = "",
    case_ref: str = "",
    approval_ref: str = "",
) -> LedgerJournal:
    """Post one balanced journal and return it.

    Guarantees: all of journal, entries, balance projections and the audit event, or nothing; the
    same key with the same payload returns the first journal without writing; the same key with a
    different payload raises IdempotencyConflict. Raises ValidationFailed / UnbalancedJournal for
    bad lines, AccountNotOpen for a frozen or closed account, InsufficientFunds when a
    non-negative account would go below zero. Every refusal is audited.
    """
    request = JournalRequest(
        lines=tuple(lines), journal_type=journal_type, source=source, accounting_date=accounting_date,
        idempotency_key=idempotency_key, description=description, case_ref=case_ref, approval_ref=approval_ref,
    )  # fmt: skip
    return _post([request], actor=actor, now=now)[0]


def journal_post_many(
    *, requests: Sequence[JournalRequest], batch_key: str, actor: Actor, now: dt.datetime
) -> list[LedgerJournal]:
    """Post many journals in one transaction (settlement files, imports) with the same guarantees.

    All or nothing: one refused journal refuses the batch. Journals whose key was already posted
    with the same payload are returned as they are. The non-negative check applies to each
    account's balance after the whole batch. One audit event records the batch.
    """
    return _post(list(requests), actor=actor, now=now, batch_key=batch_key)


def journal_reverse(
    *, journal: LedgerJournal, reason_code: str, reason_text: str, idempotency_key: str, actor: Actor, now: dt.datetime,
    accounting_date: dt.date | None = None,
) -> LedgerJournal:  # fmt: skip
    """Post the mirror image of `journal`, linked by `reverses`. A journal is reversed at most once
    (the database enforces it, also for two reversals at the same moment)."""
    if not reason_code or not reason_text:
        exc = ValidationFailed("a reversal needs a reason code and an explanation")
        _audit_refusal(exc, [], actor, now, "ledger.journal_refused")
        raise exc
    lines = tuple(
        PostingLine(
            account_id=e.account_id,
            direction=Direction.CREDIT if e.direction == Direction.DEBIT else Direction.DEBIT,
            amount_minor=e.amount_minor,
            currency=e.currency,
        )
        for e in journal.entries.order_by("id")
    )
    request = JournalRequest(
        lines=lines, journal_type="REVERSAL", source=Source("ledger_journal", journal.public_id),
        accounting_date=accounting_date or journal.accounting_date, idempotency_key=idempotency_key,
        description=f"Reversal of {journal.public_id}: {reason_code}: {reason_text}"[:300],
        case_ref=journal.case_ref, approval_ref=journal.approval_ref, reverses_id=journal.pk,
    )  # fmt: skip
    existing = LedgerJournal.objects.filter(reverses=journal).exclude(idempotency_key=idempotency_key).first()
    if existing is not None:
        exc = AlreadyReversed(f"{journal.public_id} was already reversed by {existing.public_id}")
        _audit_refusal(exc, [request.hashed()], actor, now, "ledger.journal_refused")
        raise exc
    return _post([request], actor=actor, now=now)[0]
