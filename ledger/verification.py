"""Proof that the ledger is whole: balanced journals, projections equal to entries, reversals that
mirror what they reverse. Set-based SQL: one pass over the entries for journals and accounts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.db import connection

_UNBALANCED = """
WITH t AS (
SELECT journal_id, currency, account_id,
       coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0) AS debits,
       coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0) AS credits,
       count(*) AS n
  FROM ledger_ledgerentry
 GROUP BY GROUPING SETS ((journal_id, currency), (account_id))
)
SELECT 'journal' AS kind, j.public_id, t.currency, t.debits, t.credits
  FROM t JOIN ledger_ledgerjournal j ON j.id = t.journal_id
 WHERE t.journal_id IS NOT NULL AND t.debits <> t.credits
UNION ALL
SELECT 'account', a.code, a.currency, coalesce(t.debits, 0), coalesce(t.credits, 0)
  FROM ledger_ledgerbalance b
  JOIN ledger_ledgeraccount a ON a.id = b.account_id
  LEFT JOIN t ON t.account_id = b.account_id AND t.journal_id IS NULL
 WHERE b.debit_total_minor <> coalesce(t.debits, 0) OR b.credit_total_minor <> coalesce(t.credits, 0)
    OR b.balance_minor <> (coalesce(t.debits, 0) - coalesce(t.credits, 0)) * b.normal_sign
"""

_SHORT_JOURNALS = """
SELECT j.public_id, count(e.id)
  FROM ledger_ledgerjournal j LEFT JOIN ledger_ledgerentry e ON e.journal_id = j.id
 GROUP BY j.id, j.public_id HAVING count(e.id) < 2
"""

_PROJECTION_SHAPE = """
SELECT a.code, a.is_hot, b.account_id IS NOT NULL
  FROM ledger_ledgeraccount a LEFT JOIN ledger_ledgerbalance b ON b.account_id = a.id
 WHERE a.is_hot = (b.account_id IS NOT NULL)
"""

_NEGATIVE = """
SELECT a.code, (coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'DEBIT'), 0)
              - coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'CREDIT'), 0))
             * CASE a.normal_side WHEN 'DEBIT' THEN 1 ELSE -1 END AS balance
  FROM ledger_ledgeraccount a JOIN ledger_ledgerentry e ON e.account_id = a.id
 WHERE NOT a.allow_negative
 GROUP BY a.id, a.code, a.normal_side
HAVING (coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'DEBIT'), 0)
      - coalesce(sum(e.amount_minor) FILTER (WHERE e.direction = 'CREDIT'), 0))
     * CASE a.normal_side WHEN 'DEBIT' THEN 1 ELSE -1 END < 0
"""

_BAD_REVERSALS = """
SELECT r.public_id, o.public_id
  FROM ledger_ledgerjournal r JOIN ledger_ledgerjournal o ON o.id = r.reverses_id
 WHERE EXISTS (
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
    report = LedgerReport()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM ledger_ledgerjournal), (SELECT count(*) FROM ledger_ledgerentry),"
            " (SELECT count(*) FROM ledger_ledgeraccount)"
        )
        report.journals, report.entries, report.accounts = cursor.fetchone()
        cursor.execute(_UNBALANCED)
        for kind, ref, currency, debits, credits in cursor.fetchall():
            if kind == "journal":
                report.breaches.append(f"journal {ref} is unbalanced in {currency}: debits {debits}, credits {credits}")
            else:
                report.breaches.append(
                    f"account {ref}: stored balance differs from its entries "
                    f"(entries: debits {debits}, credits {credits})"
                )
        cursor.execute(_SHORT_JOURNALS)
        for ref, count in cursor.fetchall():
            report.breaches.append(f"journal {ref} has {count} entries; a journal needs at least two")
        cursor.execute(_PROJECTION_SHAPE)
        for code, hot, has_projection in cursor.fetchall():
            report.breaches.append(
                f"account {code} is hot but has a stored projection" if hot and has_projection
                else f"account {code} has no balance projection"
            )  # fmt: skip
        cursor.execute(_NEGATIVE)
        for code, balance in cursor.fetchall():
            report.breaches.append(f"account {code} may not go negative but its entries sum to {balance}")
        cursor.execute(_BAD_REVERSALS)
        for reversal, original in cursor.fetchall():
            report.breaches.append(f"journal {reversal} does not mirror the journal it reverses, {original}")
    report.seconds = time.perf_counter() - started
    return report
