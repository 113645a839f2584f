"""journal_post, posting rules, reversals: what they write, and that every refusal writes nothing
to the ledger and is audited."""

import datetime as dt

import pytest
from django.db import DatabaseError, connection

from audit.models import AuditEvent, AuditResult
from backoffice.errors import IdempotencyConflict, ValidationFailed
from ledger.errors import AccountNotOpen, AlreadyReversed, InsufficientFunds, UnbalancedJournal
from ledger.models import LedgerAccount, LedgerBalance, LedgerEntry, LedgerJournal
from ledger.selectors import account_balance, account_balance_as_of, merchant_balances
from ledger.services import (
    JournalRequest,
    PostingLine,
    Source,
    journal_post,
    journal_post_many,
    journal_post_rule,
    journal_reverse,
    posting_preview,
)
from ledger.verification import ledger_verify
from tests.factories.ledger import ACTOR, account, credit_merchant, key, now, transfer

pytestmark = pytest.mark.django_db


def ledger_counts():
    return (
        LedgerJournal.objects.count(),
        LedgerEntry.objects.count(),
        list(LedgerBalance.objects.order_by("pk").values_list("pk", "balance_minor", "version")),
    )


def last_refusal():
    return AuditEvent.objects.filter(event_type="ledger.journal_refused").latest("seq")


class TestPostingRules:
    def test_capture_posts_gross_net_and_fee(self):
        journal = journal_post_rule(
            rule_code="CAPTURE_SUCCEEDED",
            currency="IDR",
            amounts={"GROSS": 100_000, "FEE": 2_500},
            merchant_ref="m_1",
            source=Source("payment_attempt", "pa_1"),
            accounting_date=dt.date(2026, 11, 20),
            idempotency_key="cap-1",
            actor=ACTOR,
            now=now(),
        )
        lines = sorted((e.account.code, e.direction, e.amount_minor) for e in journal.entries.select_related("account"))
        assert lines == [
            ("1100-IDR", "DEBIT", 100_000),
            ("2100-IDR-m_1", "CREDIT", 97_500),
            ("4000-IDR", "CREDIT", 2_500),
        ]
        assert journal.journal_type == "CAPTURE_SUCCEEDED" and journal.public_id.startswith("lj_")
        payable = LedgerAccount.objects.get(code="2100-IDR-m_1")
        assert account_balance(account=payable).balance.amount_minor == 97_500
        assert account_balance(account=LedgerAccount.objects.get(code="4000-IDR")).balance.amount_minor == 2_500
        posted = AuditEvent.objects.filter(event_type="ledger.journal_posted").latest("seq")
        assert posted.target_id == "cap-1" and posted.result == AuditResult.SUCCEEDED

    def test_fee_refund_preview_matches_what_posts(self):
        credit_merchant("m_2", 10_000)
        preview = posting_preview(rule_code="FEE_REFUND", currency="IDR", amounts={"AMOUNT": 2_500}, merchant_ref="m_2")
        assert [(p.direction, p.account_code, p.amount.amount_minor) for p in preview] == [
            ("DEBIT", "4000-IDR", 2_500),
            ("CREDIT", "2100-IDR-m_2", 2_500),
        ]
        journals_before = LedgerJournal.objects.count()
        assert LedgerJournal.objects.count() == journals_before  # preview wrote nothing

    def test_capture_without_fee_has_no_fee_line(self):
        journal = journal_post_rule(
            rule_code="CAPTURE_SUCCEEDED",
            currency="PHP",
            amounts={"GROSS": 5_000, "FEE": 0},
            merchant_ref="m_1",
            source=Source("payment_attempt", "pa_2"),
            accounting_date=dt.date(2026, 11, 20),
            idempotency_key=key(),
            actor=ACTOR,
            now=now(),
        )
        assert journal.entries.count() == 2

    @pytest.mark.parametrize("amounts", [{"AMOUNT": -2_500}, {"AMOUNT": 0}, {"AMOUNT": 25.0}, {}])
    def test_a_sign_cannot_flip_a_rule(self, amounts):
        before = ledger_counts()
        with pytest.raises(ValidationFailed):
            journal_post_rule(
                rule_code="MERCHANT_CREDIT",
                currency="IDR",
                amounts=amounts,
                merchant_ref="m_1",
                source=Source("test", "x"),
                accounting_date=dt.date(2026, 11, 20),
                idempotency_key=key(),
                actor=ACTOR,
                now=now(),
            )
        assert ledger_counts() == before


class TestIdempotency:
    def test_same_key_same_payload_returns_the_first_journal_without_writing(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        first = transfer(cash, payable, 700, idempotency_key="same")
        before, events = ledger_counts(), AuditEvent.objects.count()
        again = transfer(cash, payable, 700, idempotency_key="same")
        assert again.pk == first.pk
        assert ledger_counts() == before
        assert AuditEvent.objects.count() == events

    def test_same_key_different_payload_is_refused_and_audited(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        transfer(cash, payable, 700, idempotency_key="same")
        before = ledger_counts()
        with pytest.raises(IdempotencyConflict, match="'same' was used for lj_"):
            transfer(cash, payable, 701, idempotency_key="same")
        assert ledger_counts() == before
        refusal = last_refusal()
        assert (refusal.result, refusal.error_code, refusal.target_id) == (
            AuditResult.REFUSED,
            "IDEMPOTENCY_CONFLICT",
            "same",
        )


class TestRefusals:
    def test_unbalanced_lines_are_refused(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        before = ledger_counts()
        with pytest.raises(UnbalancedJournal, match="debits 100 and credits 99 differ in IDR"):
            journal_post(
                lines=[PostingLine(cash.pk, "DEBIT", 100, "IDR"), PostingLine(payable.pk, "CREDIT", 99, "IDR")],
                journal_type="T",
                source=Source("t", "1"),
                accounting_date=dt.date(2026, 11, 20),
                idempotency_key=key(),
                actor=ACTOR,
                now=now(),
            )
        assert ledger_counts() == before
        assert last_refusal().error_code == "UNBALANCED_JOURNAL"

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            ([("cash", "DEBIT", 100, "IDR")], "at least two lines"),
            ([("cash", "DEBIT", 0, "IDR"), ("payable", "CREDIT", 0, "IDR")], "positive whole minor units"),
            ([("cash", "DEBIT", -5, "IDR"), ("payable", "CREDIT", -5, "IDR")], "positive whole minor units"),
            ([("cash", "DEBIT", 1.5, "IDR"), ("payable", "CREDIT", 1.5, "IDR")], "positive whole minor units"),
            ([("cash", "SIDEWAYS", 5, "IDR"), ("payable", "CREDIT", 5, "IDR")], "DEBIT or CREDIT"),
            ([("cash", "DEBIT", 5, "USD"), ("payable", "CREDIT", 5, "USD")], "cannot post to 1000-IDR"),
            ([("cash", "DEBIT", 5, "ZZZ"), ("payable", "CREDIT", 5, "ZZZ")], "unknown ISO 4217 currency"),
        ],
    )
    def test_bad_lines_are_refused_with_a_reason(self, lines, message):
        accounts = {"cash": account("BANK_CASH"), "payable": account("MERCHANT_PAYABLE", owner="m_1")}
        before = ledger_counts()
        with pytest.raises(ValidationFailed, match=message):
            journal_post(
                lines=[PostingLine(accounts[a].pk, d, amt, c) for a, d, amt, c in lines],
                journal_type="T",
                source=Source("t", "1"),
                accounting_date=dt.date(2026, 11, 20),
                idempotency_key=key(),
                actor=ACTOR,
                now=now(),
            )
        assert ledger_counts() == before
        assert last_refusal().result == AuditResult.REFUSED

    def test_non_negative_account_cannot_go_below_zero(self):
        credit_merchant("m_poor", 1_000)
        payable, cash = account("MERCHANT_PAYABLE", owner="m_poor"), account("BANK_CASH")
        transfer(payable, cash, 600)
        before = ledger_counts()
        with pytest.raises(InsufficientFunds, match=r"below zero: 2100-IDR-m_poor$"):
            transfer(payable, cash, 401)
        assert ledger_counts() == before
        assert account_balance(account=payable).balance.amount_minor == 400
        assert last_refusal().error_code == "INSUFFICIENT_FUNDS"
        transfer(payable, cash, 400)  # exactly down to zero is fine
        assert account_balance(account=payable).balance.amount_minor == 0

    def test_frozen_account_refuses_postings(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        LedgerAccount.objects.filter(pk=payable.pk).update(status="FROZEN")  # the freeze service comes with approvals
        before = ledger_counts()
        with pytest.raises(AccountNotOpen, match="2100-IDR-m_1 is frozen"):
            transfer(cash, payable, 5)
        assert ledger_counts() == before
        assert last_refusal().error_code == "ACCOUNT_NOT_OPEN"

    def test_replay_after_the_account_was_frozen_returns_the_posted_journal(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        same_key = key()
        first = transfer(cash, payable, 5, idempotency_key=same_key)
        LedgerAccount.objects.filter(pk=payable.pk).update(status="FROZEN")
        before = ledger_counts()
        assert transfer(cash, payable, 5, idempotency_key=same_key).pk == first.pk
        assert ledger_counts() == before
        with pytest.raises(AccountNotOpen):
            transfer(cash, payable, 5)  # a new posting is still refused

    def test_failure_after_the_first_entry_leaves_nothing(self):
        # The posting is one statement, so the failure is injected inside it: a trigger that fails
        # the second entry, after the journal, the first entry and (maybe) balances were written.
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        before, events = ledger_counts(), AuditEvent.objects.filter(event_type="ledger.journal_posted").count()
        with connection.cursor() as cursor:
            cursor.execute("""
                CREATE FUNCTION pg_temp.fail_second_entry() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF (SELECT count(*) FROM ledger_ledgerentry WHERE journal_id = NEW.journal_id) >= 1 THEN
                        RAISE EXCEPTION 'disk on fire after the first entry was written';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER test_fail_second_entry AFTER INSERT ON ledger_ledgerentry
                    FOR EACH ROW EXECUTE FUNCTION pg_temp.fail_second_entry();
            """)  # fmt: skip
        try:
            with pytest.raises(DatabaseError, match="disk on fire"):
                transfer(cash, payable, 5)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER test_fail_second_entry ON ledger_ledgerentry")
        assert ledger_counts() == before
        assert AuditEvent.objects.filter(event_type="ledger.journal_posted").count() == events

    def test_bulk_failure_after_the_entries_leaves_nothing(self, monkeypatch):
        from ledger.services import posting

        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        before = ledger_counts()

        def explode(*args, **kwargs):
            raise RuntimeError("disk on fire after the entries were written")

        monkeypatch.setattr(posting, "_audit_posted_bulk", explode)
        requests = [
            JournalRequest(
                lines=(PostingLine(cash.pk, "DEBIT", 5, "IDR"), PostingLine(payable.pk, "CREDIT", 5, "IDR")),
                journal_type="TEST", source=Source("test", "bulk"), accounting_date=now().date(),
                idempotency_key=key(),
            )
            for _ in range(3)
        ]  # fmt: skip
        with pytest.raises(RuntimeError):
            journal_post_many(requests=requests, batch_key=key(), actor=ACTOR, now=now())
        assert ledger_counts() == before


class TestReversal:
    def test_reversal_mirrors_every_line_and_restores_balances(self):
        credit_merchant("m_r", 10_000)
        payable, cash = account("MERCHANT_PAYABLE", owner="m_r"), account("BANK_CASH")
        payout = transfer(payable, cash, 4_000)
        reversal = journal_reverse(
            journal=payout,
            reason_code="PAYOUT_RETURNED",
            reason_text="bank returned it",
            idempotency_key=key(),
            actor=ACTOR,
            now=now(),
        )
        assert reversal.reverses_id == payout.pk and reversal.journal_type == "REVERSAL"
        mirrored = sorted((e.account_id, e.direction, e.amount_minor) for e in reversal.entries.all())
        assert mirrored == sorted(
            (payable.pk, "CREDIT", 4_000) if e.account_id == payable.pk else (cash.pk, "DEBIT", 4_000)
            for e in payout.entries.all()
        )
        assert account_balance(account=payable).balance.amount_minor == 10_000
        assert ledger_verify().ok

    def test_second_reversal_is_refused(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        journal = transfer(cash, payable, 50)
        journal_reverse(
            journal=journal,
            reason_code="ERROR",
            reason_text="posted twice",
            idempotency_key=key(),
            actor=ACTOR,
            now=now(),
        )
        before = ledger_counts()
        with pytest.raises(AlreadyReversed):
            journal_reverse(
                journal=journal, reason_code="ERROR", reason_text="again", idempotency_key=key(), actor=ACTOR, now=now()
            )
        assert ledger_counts() == before
        assert last_refusal().error_code == "ALREADY_REVERSED"

    def test_reversal_needs_a_reason(self):
        journal = transfer(account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1"), 50)
        with pytest.raises(ValidationFailed, match="reason"):
            journal_reverse(
                journal=journal, reason_code="", reason_text="", idempotency_key=key(), actor=ACTOR, now=now()
            )
        assert last_refusal().result == AuditResult.REFUSED


class TestBalances:
    def test_point_in_time_and_merchant_buckets(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_t")
        transfer(cash, payable, 100, date=dt.date(2026, 11, 1))
        transfer(cash, payable, 50, date=dt.date(2026, 11, 5))
        assert account_balance_as_of(account=payable, accounting_date=dt.date(2026, 10, 31)).amount_minor == 0
        assert account_balance_as_of(account=payable, accounting_date=dt.date(2026, 11, 1)).amount_minor == 100
        assert account_balance_as_of(account=payable, accounting_date=dt.date(2026, 11, 30)).amount_minor == 150
        assert account_balance_as_of(account=cash, accounting_date=dt.date(2026, 11, 30)).amount_minor == 150
        journal_post_rule(
            rule_code="RESERVE_HOLD_CORRECTION",
            currency="IDR",
            amounts={"AMOUNT": 30},
            merchant_ref="m_t",
            source=Source("t", "r"),
            accounting_date=dt.date(2026, 11, 6),
            idempotency_key=key(),
            actor=ACTOR,
            now=now(),
        )
        buckets = {
            (b.account.balance_bucket, b.account.currency): b.balance.amount_minor
            for b in merchant_balances(merchant_ref="m_t")
        }
        assert buckets == {("AVAILABLE", "IDR"): 120, ("RESERVED", "IDR"): 30}

    def test_hot_accounts_have_no_projection_and_read_from_entries(self):
        journal_post_rule(
            rule_code="CAPTURE_SUCCEEDED",
            currency="USD",
            amounts={"GROSS": 1_000, "FEE": 30},
            merchant_ref="m_h",
            source=Source("t", "h"),
            accounting_date=dt.date(2026, 11, 6),
            idempotency_key=key(),
            actor=ACTOR,
            now=now(),
        )
        receivable = LedgerAccount.objects.get(code="1100-USD")
        assert receivable.is_hot and not LedgerBalance.objects.filter(account=receivable).exists()
        balance = account_balance(account=receivable)
        assert (balance.balance.amount_minor, balance.from_projection) == (1_000, False)


@pytest.mark.django_db(transaction=True)
class TestOutsideATransaction:
    """Called outside a transaction, a single posting is one statement that is its own transaction."""

    def test_posts_journal_and_audit_event_together(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_auto")
        assert connection.get_autocommit() and not connection.in_atomic_block
        journal = transfer(cash, payable, 700)
        event = AuditEvent.objects.get(event_type="ledger.journal_posted", target_id=journal.idempotency_key)
        assert event.after["lines"] and account_balance(account=payable).balance.amount_minor == 700
        assert ledger_verify().ok

    @pytest.mark.parametrize(
        "table, when",
        [("ledger_ledgerbalance", "AFTER UPDATE"), ("audit_auditevent", "AFTER INSERT")],
        ids=["balances", "audit-event"],
    )
    def test_failure_inside_the_statement_leaves_nothing(self, table, when):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_auto")
        before = ledger_counts()
        events = AuditEvent.objects.count()
        with connection.cursor() as cursor:
            cursor.execute(f"""
                CREATE FUNCTION test_disk_on_fire() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'disk on fire after the entries were written'; END $$;
                CREATE TRIGGER test_disk_on_fire {when} ON {table}
                    FOR EACH ROW EXECUTE FUNCTION test_disk_on_fire();
            """)  # fmt: skip
        try:
            with pytest.raises(DatabaseError, match="disk on fire"):
                transfer(cash, payable, 5)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TRIGGER test_disk_on_fire ON {table}; DROP FUNCTION test_disk_on_fire();")
        assert ledger_counts() == before
        assert AuditEvent.objects.count() == events
