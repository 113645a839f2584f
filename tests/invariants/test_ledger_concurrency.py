"""Real threads against real PostgreSQL, released together by a barrier."""

import threading
from collections import Counter

import pytest
from django.db import connection

from ledger.errors import AlreadyReversed, InsufficientFunds
from ledger.models import LedgerJournal
from ledger.selectors import account_balance
from ledger.services import journal_reverse
from ledger.verification import ledger_verify
from tests.factories.ledger import ACTOR, account, credit_merchant, key, now, transfer

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def run_together(workers: int, work) -> list:
    """Run work(i) in `workers` threads started at the same instant; return results or exceptions."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_opposite_transfers_do_not_deadlock_and_conserve_money():
    credit_merchant("m_a", 100_000)
    credit_merchant("m_b", 100_000)
    a, b = account("MERCHANT_PAYABLE", owner="m_a"), account("MERCHANT_PAYABLE", owner="m_b")

    def work(i: int):
        for n in range(15):
            src, dst = (a, b) if (i + n) % 2 else (b, a)
            transfer(src, dst, 10 + i)
        return "ok"

    results = run_together(8, work)
    assert results == ["ok"] * 8
    total = account_balance(account=a).balance.amount_minor + account_balance(account=b).balance.amount_minor
    assert total == 200_000
    report = ledger_verify()
    assert report.ok, report.breaches


def test_debits_against_a_limited_balance_succeed_exactly_as_far_as_it_goes():
    credit_merchant("m_lim", 1_000)
    payable, cash = account("MERCHANT_PAYABLE", owner="m_lim"), account("BANK_CASH")

    def work(i: int):
        outcomes = []
        for _ in range(3):
            try:
                transfer(payable, cash, 100)
                outcomes.append("posted")
            except InsufficientFunds:
                outcomes.append("refused")
        return outcomes

    results = run_together(8, work)
    counts = Counter(o for r in results for o in r)
    assert counts == {"posted": 10, "refused": 14}
    assert account_balance(account=payable).balance.amount_minor == 0
    assert ledger_verify().ok


def test_one_idempotency_key_from_eight_threads_posts_once():
    cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_idem")
    shared = key("shared")
    results = run_together(8, lambda i: transfer(cash, payable, 777, idempotency_key=shared).pk)
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert LedgerJournal.objects.filter(idempotency_key=shared).count() == 1
    assert account_balance(account=payable).balance.amount_minor == 777


def test_two_concurrent_reversals_one_wins():
    journal = transfer(account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_rev"), 500)
    results = run_together(
        2,
        lambda i: (
            journal_reverse(
                journal=journal,
                reason_code="ERROR",
                reason_text=f"reverser {i}",
                idempotency_key=key(f"rev{i}"),
                actor=ACTOR,
                now=now(),
            ).pk
        ),
    )
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, AlreadyReversed)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert LedgerJournal.objects.filter(reverses=journal).count() == 1
    assert ledger_verify().ok
