"""A hypothesis state machine posts, replays, conflicts and reverses against a simple Python model.

After every step the database balances equal the model's, and non-negative accounts stay
non-negative; at the end every journal balances and every projection equals its entries.
"""

import itertools
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from backoffice.errors import IdempotencyConflict
from ledger.errors import AlreadyReversed, InsufficientFunds
from ledger.models import Direction
from ledger.selectors import account_balance
from ledger.services import journal_reverse
from ledger.verification import ledger_verify
from tests.factories.ledger import ACTOR, account, now, transfer

NAMES = ("cash", "loss", "m1", "m2")


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def open_accounts(self):
        run = uuid.uuid4().hex[:8]
        self.accounts = {
            "cash": account("BANK_CASH", currency="SGD"),
            "loss": account("PLATFORM_OPS_LOSS", currency="SGD"),
            "m1": account("MERCHANT_PAYABLE", currency="SGD", owner=f"m1_{run}"),
            "m2": account("MERCHANT_PAYABLE", currency="SGD", owner=f"m2_{run}"),
        }
        # Platform accounts are shared with earlier runs: the model tracks movement from here.
        self.start = {n: account_balance(account=a).balance.amount_minor for n, a in self.accounts.items()}
        self.model = dict.fromkeys(NAMES, 0)
        # key -> [journal, debit name, credit name, amount, reversed?], in posting order: keys are
        # random, so draws pick by position to stay reproducible when hypothesis replays a case.
        self.journals = {}
        self.keys = itertools.count()

    def _sign(self, name: str) -> int:
        return 1 if self.accounts[name].normal_side == Direction.DEBIT else -1

    def _apply(self, debit: str, credit: str, amount: int) -> dict:
        after = dict(self.model)
        after[debit] += amount * self._sign(debit)
        after[credit] -= amount * self._sign(credit)
        return after

    def _affordable(self, after: dict) -> bool:
        return all(self.start[n] + after[n] >= 0 for n in ("m1", "m2"))

    @rule(debit=st.sampled_from(NAMES), credit=st.sampled_from(NAMES), amount=st.integers(1, 5_000))
    def post(self, debit, credit, amount):
        if debit == credit:
            return
        key = f"hyp-{uuid.uuid4().hex}"
        after = self._apply(debit, credit, amount)
        if self._affordable(after):
            journal = transfer(self.accounts[debit], self.accounts[credit], amount, idempotency_key=key)
            self.model = after
            self.journals[key] = [journal, debit, credit, amount, False]
        else:
            with pytest.raises(InsufficientFunds):
                transfer(self.accounts[debit], self.accounts[credit], amount, idempotency_key=key)

    @precondition(lambda self: self.journals)
    @rule(data=st.data())
    def replay(self, data):
        key = data.draw(st.sampled_from(list(self.journals)))
        journal, debit, credit, amount, _ = self.journals[key]
        again = transfer(
            self.accounts[debit], self.accounts[credit], amount, idempotency_key=key, date=journal.accounting_date
        )
        assert again.pk == journal.pk

    @precondition(lambda self: self.journals)
    @rule(data=st.data())
    def conflicting_replay(self, data):
        key = data.draw(st.sampled_from(list(self.journals)))
        _, debit, credit, amount, _ = self.journals[key]
        with pytest.raises(IdempotencyConflict):
            transfer(self.accounts[debit], self.accounts[credit], amount + 1, idempotency_key=key)

    @precondition(lambda self: self.journals)
    @rule(data=st.data())
    def reverse(self, data):
        key = data.draw(st.sampled_from(list(self.journals)))
        record = self.journals[key]
        journal, debit, credit, amount, reversed_ = record
        call = dict(
            journal=journal,
            reason_code="TEST",
            reason_text="model reversal",
            idempotency_key=f"rev-{uuid.uuid4().hex}",
            actor=ACTOR,
            now=now(),
        )
        if reversed_:
            with pytest.raises(AlreadyReversed):
                journal_reverse(**call)
            return
        after = self._apply(credit, debit, amount)
        if self._affordable(after):
            journal_reverse(**call)
            self.model = after
            record[4] = True
        else:
            with pytest.raises(InsufficientFunds):
                journal_reverse(**call)

    @invariant()
    def balances_match_the_model(self):
        if not hasattr(self, "accounts"):
            return
        for name, acct in self.accounts.items():
            assert account_balance(account=acct).balance.amount_minor == self.start[name] + self.model[name], name
        assert all(self.start[n] + self.model[n] >= 0 for n in ("m1", "m2"))

    def teardown(self):
        report = ledger_verify()
        assert report.ok, report.breaches


@pytest.mark.django_db
def test_ledger_against_model():
    LedgerMachine.TestCase.settings = settings(
        max_examples=15, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    LedgerMachine.TestCase().runTest()
