"""Proof that the ledger is whole: balanced journals, projections equal to entries, reversals that
mirror what they reverse. Set-based SQL in one snapshot: one pass over the entries per journal,
one per account, and the reversals; an exact per-currency look only at the journals the first pass
could not clear."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.db import connection, transaction

# One pass over the entries, grouped by journal alone (a narrow key: grouping by journal and currency
# cost twice as much): how many journals have entries, and the journals worth a closer look: fewer
# than two entries, debits and credits that differ, or more than one currency (such a journal may be
# balanced in each, or not: the exact check below decides).
_JOURNAL_SUSPECTS = """
SELECT count(*), coalesce(array_agg(journal_id) FILTER (WHERE n < 2 OR signed <> 0 OR lo <> hi), '{}')
  FROM (SELECT journal_id, count(*) AS n,
               sum(CASE WHEN direction = 'DEBIT' THEN amount_minor ELSE -amount_minor END) AS signed,
               min(currency COLLATE "C") AS lo, max(currency COLLATE "C") AS hi
          FROM ledger_ledgerentry GROUP BY journal_id) AS t
"""

# Journals with no entry at all, looked for only when fewer journals have entries than exist.
_JOURNALS_WITHOUT_ENTRIES = """
SELECT j.id FROM ledger_ledgerjournal j
 WHERE NOT EXISTS (SELECT 1 FROM ledger_ledgerentry e WHERE e.journal_id = j.id)
"""

# The exact check, per journal and currency, of the suspects: each journal whose entries are missing,
# fewer than two, or unbalanced in some currency.
_JOURNAL_BREACHES = """
SELECT j.public_id, t.currency, coalesce(t.debits, 0), coalesce(t.credits, 0),
       coalesce(sum(t.n) OVER (PARTITION BY j.id), 0) AS entries
  FROM ledger_ledgerjournal j
  LEFT JOIN (SELECT journal_id, currency,
                    sum(CASE WHEN direction = 'DEBIT' THEN amount_minor ELSE 0 END) AS debits,
                    sum(CASE WHEN direction = 'CREDIT' THEN amount_minor ELSE 0 END) AS credits,
                    count(*) AS n
               FROM ledger_ledgerentry WHERE journal_id = ANY(%s) GROUP BY journal_id, currency) AS t
         ON t.journal_id = j.id
 WHERE j.id = ANY(%s) AND (t.journal_id IS NULL OR t.n < 2 OR t.debits <> t.credits)
 ORDER BY j.id, t.currency
"""

# One pass per account: stored projections against their entries, and non-negative accounts.
_ACCOUNT_BREACHES = """
WITH t AS (
    SELECT account_id,
           sum(CASE WHEN direction = 'DEBIT' THEN amount_minor ELSE 0 END) AS debits,
           sum(CASE WHEN direction = 'CREDIT' THEN amount_minor ELSE 0 END) AS credits,
           count(*) AS n
      FROM ledger_ledgerentry GROUP BY account_id
)
SELECT a.code, a.is_hot, b.account_id IS NOT NULL AS has_projection,
       coalesce(t.debits, 0), coalesce(t.credits, 0), coalesce(t.n, 0),
       b.debit_total_minor <> coalesce(t.debits, 0) OR b.credit_total_minor <> coalesce(t.credits, 0)
           OR b.balance_minor <> (coalesce(t.debits, 0) - coalesce(t.credits, 0)) * b.normal_sign AS projection_differs,
       (coalesce(t.debits, 0) - coalesce(t.credits, 0)) * CASE a.normal_side WHEN 'DEBIT' THEN 1 ELSE -1 END AS balance,
       a.allow_negative
  FROM ledger_ledgeraccount a
  LEFT JOIN ledger_ledgerbalance b ON b.account_id = a.id
  LEFT JOIN t ON t.account_id = a.id
"""

_BAD_REVERSALS = """
SELECT r.public_id, o.public_id
  FROM ledger_ledgerjournal r JOIN ledger_ledgerjournal o ON o.id = r.reverses_id
 WHERE r.reverses_id IS NOT NULL AND EXISTS (
        (SELECT account_id, CASE direction WHEN 'DEBIT' THEN 'CREDIT' ELSE 'DEBIT' END, amount_minor, currency
           FROM ledger_ledgerentry WHERE journal_id = o.id
         EXCEPT ALL
         SELECT account_id, direction, amount_minor, currency FROM ledger_ledgerentry WHERE journal_id = r.id)
        UNION ALL
        (SELECT account_id, direction, amount_minor, currency FROM ledger_ledgerentry WHERE journal_id = r.id
         EXCEPT ALL
         SELECT account_id, CASE direction WHEN 'DEBIT' THEN 'CREDIT' ELSE 'DEBIT' END, amount_minor, currency
           FROM ledger_ledgerentry WHERE journal_id = o.id))
"""


@dataclass
class LedgerReport:
    journals: int = 0
    entries: int = 0
    accounts: int = 0
    seconds: float = 0.0
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaches


def ledger_verify() -> LedgerReport:
    """Check the whole ledger in one consistent snapshot and name every breach."""
    report = LedgerReport()
    started = time.perf_counter()
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # One snapshot for every check (when the caller has no transaction of its own), and room
        # for the per-journal hash aggregate in memory.
        if own_transaction:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(
            "SELECT (SELECT count(*) FROM ledger_ledgerjournal), (SELECT count(*) FROM ledger_ledgeraccount)"
        )
        report.journals, report.accounts = cursor.fetchone()
        cursor.execute(_JOURNAL_SUSPECTS)
        with_entries, suspects = cursor.fetchone()
        if with_entries != report.journals:
            cursor.execute(_JOURNALS_WITHOUT_ENTRIES)
            suspects += [jid for (jid,) in cursor.fetchall()]
        cursor.execute(_JOURNAL_BREACHES, [suspects, suspects])
        for ref, currency, debits, credits, entries in cursor.fetchall():
            if entries < 2:
                report.breaches.append(f"journal {ref} has {entries} entries; a journal needs at least two")
            elif debits != credits:
                report.breaches.append(f"journal {ref} is unbalanced in {currency}: debits {debits}, credits {credits}")
        cursor.execute(_ACCOUNT_BREACHES)
        for code, hot, has_projection, debits, credits, entries, differs, balance, allow_negative in cursor.fetchall():
            report.entries += entries
            if hot and has_projection:
                report.breaches.append(f"account {code} is hot but has a stored projection")
            elif not hot and not has_projection:
                report.breaches.append(f"account {code} has no balance projection")
            elif differs:
                report.breaches.append(
                    f"account {code}: stored balance differs from its entries"
                    f" (entries: debits {debits}, credits {credits})"
                )
            if not allow_negative and balance < 0:
                report.breaches.append(f"account {code} may not go negative but its entries sum to {balance}")
        cursor.execute(_BAD_REVERSALS)
        for reversal, original in cursor.fetchall():
            report.breaches.append(f"journal {reversal} does not mirror the journal it reverses, {original}")
    report.seconds = time.perf_counter() - started
    return report
