"""Posting journals: the only way money moves in the ledger.

One code path posts a batch of journals (a single journal is a batch of one):

1. validate every line in Python (messages), the database re-checks (safety);
2. insert the journals with `ON CONFLICT (idempotency_key) DO NOTHING`: a key already used returns
   the first journal when the payload hash matches and is refused when it differs;
3. lock the balance projections of the touched accounts in ascending account id (one stable order
   for every poster, so opposite transfers cannot deadlock) and apply the deltas; the database
   check constraint refuses a non-negative account going below zero;
4. insert the entries; 5. write the audit event last (its chain lock is held only to commit).

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

from django.db import IntegrityError, OperationalError, connection, transaction

from audit.models import AuditResult
from audit.services import audit_record
from backoffice.actors import Actor
from backoffice.errors import DomainError, IdempotencyConflict, ValidationFailed
from backoffice.ids import new_public_id
from backoffice.money import CurrencyError, currency_exponent
from ledger.errors import AccountNotOpen, AlreadyReversed, InsufficientFunds, LedgerBusy, UnbalancedJournal
from ledger.models import AccountStatus, Direction, LedgerJournal

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


def _load_accounts(account_ids: set[int]) -> dict[int, tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, code, currency, status, is_hot, allow_negative, normal_side FROM ledger_ledgeraccount"
            " WHERE id = ANY(%s)",
            [list(account_ids)],
        )
        return {row[0]: row for row in cursor.fetchall()}


def _check_accounts(requests: Sequence[JournalRequest], accounts: dict[int, tuple]) -> None:
    for request in requests:
        for line in request.lines:
            account = accounts.get(line.account_id)
            if account is None:
                raise ValidationFailed(f"no ledger account with id {line.account_id}")
            _, code, currency, status, *_ = account
            if currency != line.currency:
                raise ValidationFailed(f"a {line.currency} line cannot post to {code}, which is in {currency}")
            if status != AccountStatus.OPEN:
                raise AccountNotOpen(f"{code} is {status.lower()}: nothing can be posted to it")


_INSERT_JOURNALS = """
INSERT INTO ledger_ledgerjournal
    (public_id, journal_type, source_type, source_id, accounting_date, posted_at, description,
     idempotency_key, request_hash, reverses_id, case_ref, approval_ref, posted_by)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::date[], %s::timestamptz[], %s::text[],
                     %s::text[], %s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key
"""

_INSERT_ENTRIES = """
INSERT INTO ledger_ledgerentry (journal_id, account_id, direction, amount_minor, currency)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::text[])
"""

_LOCK_BALANCES = """
SELECT account_id FROM ledger_ledgerbalance WHERE account_id = ANY(%s) ORDER BY account_id FOR UPDATE
"""

_APPLY_BALANCES = """
UPDATE ledger_ledgerbalance AS b
   SET debit_total_minor = b.debit_total_minor + d.debit,
       credit_total_minor = b.credit_total_minor + d.credit,
       balance_minor = b.balance_minor + (d.debit - d.credit) * b.normal_sign,
       version = b.version + 1
  FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS d(account_id, debit, credit)
 WHERE b.account_id = d.account_id
"""


def _insert_batch(
    requests: Sequence[JournalRequest], accounts: dict[int, tuple], actor: Actor, now: dt.datetime
) -> tuple[dict[str, LedgerJournal], list[str]]:
    """Write journals, balances and entries. Returns ({key: new journal}, keys that already existed)."""
    # Keys in one order for every poster: two batches sharing keys cannot deadlock on the index.
    ordered = sorted(requests, key=lambda r: r.idempotency_key)
    public_ids = [new_public_id("lj") for _ in ordered]
    columns = list(zip(*[
        (pid, r.journal_type, r.source.type, r.source.id, r.accounting_date, now, r.description[:300],
         r.idempotency_key, r.request_hash, r.reverses_id, r.case_ref, r.approval_ref, actor.label)
        for pid, r in zip(public_ids, ordered, strict=True)
    ], strict=True))  # fmt: skip
    with connection.cursor() as cursor:
        try:
            cursor.execute(_INSERT_JOURNALS, [list(col) for col in columns])
        except IntegrityError as exc:
            if "reverses_id" in str(exc):
                raise AlreadyReversed() from exc
            raise
        inserted = dict((key, jid) for jid, key in cursor.fetchall())
        existing = [r for r in ordered if r.idempotency_key not in inserted]
        if existing:
            cursor.execute(
                "SELECT idempotency_key, request_hash, public_id FROM ledger_ledgerjournal"
                " WHERE idempotency_key = ANY(%s)",
                [[r.idempotency_key for r in existing]],
            )
            found = {key: (digest, pid) for key, digest, pid in cursor.fetchall()}
            for r in existing:
                digest, pid = found[r.idempotency_key]
                if digest != r.request_hash:
                    raise IdempotencyConflict(
                        f"idempotency key {r.idempotency_key!r} was used for {pid} with a different request"
                    )
        new = [r for r in ordered if r.idempotency_key in inserted]
        if not new:
            return {}, [r.idempotency_key for r in existing]

        deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        entry_cols: tuple[list, ...] = ([], [], [], [], [])
        for r in new:
            jid = inserted[r.idempotency_key]
            for line in r.lines:
                entry_cols[0].append(jid)
                entry_cols[1].append(line.account_id)
                entry_cols[2].append(line.direction)
                entry_cols[3].append(line.amount_minor)
                entry_cols[4].append(line.currency)
                if not accounts[line.account_id][4]:  # hot accounts keep no projection
                    deltas[line.account_id][0 if line.direction == Direction.DEBIT else 1] += line.amount_minor
        if deltas:
            ids = sorted(deltas)
            cursor.execute(_LOCK_BALANCES, [ids])
            locked = {row[0] for row in cursor.fetchall()}
            if locked != set(ids):
                missing = ", ".join(accounts[i][1] for i in sorted(set(ids) - locked))
                raise DomainError(f"balance projection missing for {missing}")
            try:
                cursor.execute(_APPLY_BALANCES, [ids, [deltas[i][0] for i in ids], [deltas[i][1] for i in ids]])
            except IntegrityError as exc:
                if "ledger_balance_not_below_zero" in str(exc):
                    raise InsufficientFunds(_insufficient_message(ids, deltas, accounts)) from exc
                raise
        cursor.execute(_INSERT_ENTRIES, [list(col) for col in entry_cols])
    # The caller gets the journals as written, without reading them back.
    public_by_key = {r.idempotency_key: pid for pid, r in zip(public_ids, ordered, strict=True)}
    posted = {}
    for r in new:
        journal = LedgerJournal(
            id=inserted[r.idempotency_key],
            public_id=public_by_key[r.idempotency_key],
            journal_type=r.journal_type,
            source_type=r.source.type,
            source_id=r.source.id,
            accounting_date=r.accounting_date,
            posted_at=now,
            description=r.description[:300],
            idempotency_key=r.idempotency_key,
            request_hash=r.request_hash,
            reverses_id=r.reverses_id,
            case_ref=r.case_ref,
            approval_ref=r.approval_ref,
            posted_by=actor.label,
        )
        journal._state.adding = False
        posted[r.idempotency_key] = journal
    return posted, [r.idempotency_key for r in existing]


def _insufficient_message(ids, deltas, accounts) -> str:
    """Name the non-negative accounts this posting takes down (the refusal itself came from the
    database's floor constraint; this only says which accounts it concerns)."""

    def decreases(i: int) -> bool:
        debit, credit = deltas[i]
        sign = 1 if accounts[i][6] == Direction.DEBIT else -1
        return (debit - credit) * sign < 0

    names = [accounts[i][1] for i in ids if not accounts[i][5] and decreases(i)]
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

        def attempt():
            with transaction.atomic():
                accounts = _load_accounts({line.account_id for r in hashed for line in r.lines})
                _check_accounts(hashed, accounts)
                posted, replayed = _insert_batch(hashed, accounts, actor, now)
                if posted:
                    _audit_posted(hashed, list(posted), actor=actor, now=now, batch_key=batch_key)
                return posted, replayed

        posted, replayed = _run_with_retries(attempt)
    except DomainError as exc:
        _audit_refusal(exc, hashed, actor, now, "ledger.journal_refused")
        raise
    if replayed:
        posted.update(LedgerJournal.objects.in_bulk(replayed, field_name="idempotency_key"))
    return [posted[r.idempotency_key] for r in hashed]


def _audit_posted(requests, new_keys, *, actor, now, batch_key) -> None:
    if len(requests) == 1:
        r = requests[0]
        audit_record(
            event_type="ledger.journal_posted" if r.reverses_id is None else "ledger.journal_reversed",
            actor=actor, action_type=r.journal_type, target_type="ledger_journal", target_id=r.idempotency_key,
            case_ref=r.case_ref, approval_ref=r.approval_ref, after=r.payload(), now=now,
        )  # fmt: skip
    else:
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
