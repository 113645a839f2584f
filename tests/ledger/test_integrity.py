"""The database itself refuses a broken ledger, whoever writes: raw SQL cannot alter history,
post an unbalanced journal or mix currencies; ledger_verify names what tampering it finds."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from audit.models import AuditEvent
from backoffice.errors import DomainError
from ledger.models import LedgerBalance, LedgerEntry, LedgerJournal
from ledger.verification import ledger_verify
from tests.factories.ledger import account, credit_merchant, transfer

pytestmark = pytest.mark.django_db


def sql(statement: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def raw_journal(key: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO ledger_ledgerjournal (public_id, journal_type, source_type, source_id, accounting_date,
               posted_at, description, idempotency_key, request_hash, case_ref, approval_ref, posted_by)
               VALUES (%s, 'RAW', 'raw', 'raw', current_date, now(), '', %s, 'x', '', '', 'attacker') RETURNING id""",
            [f"lj_raw_{key}", key],
        )
        return cursor.fetchone()[0]


def raw_entry(journal_id: int, account_id: int, direction: str, amount: int, currency: str = "IDR"):
    sql(
        "INSERT INTO ledger_ledgerentry (journal_id, account_id, direction, amount_minor, currency)"
        " VALUES (%s, %s, %s, %s, %s)",
        [journal_id, account_id, direction, amount, currency],
    )


class TestImmutable:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE ledger_ledgerentry SET amount_minor = amount_minor + 1",
            "DELETE FROM ledger_ledgerentry",
            "UPDATE ledger_ledgerjournal SET description = 'rewritten'",
            "DELETE FROM ledger_ledgerjournal",
        ],
    )
    def test_posted_rows_cannot_be_changed(self, statement):
        journal = transfer(account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1"), 100)
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            sql(statement)
        assert LedgerEntry.objects.filter(journal=journal).count() == 2
        assert LedgerJournal.objects.get(pk=journal.pk).description == journal.description


class TestDatabaseChecks:
    def test_unbalanced_raw_journal_fails_when_constraints_are_checked(self):
        cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
        with pytest.raises(IntegrityError, match="unbalanced in IDR: debits 100 credits 99"), transaction.atomic():
            jid = raw_journal("unbalanced")
            raw_entry(jid, cash.pk, "DEBIT", 100)
            raw_entry(jid, payable.pk, "CREDIT", 99)
            sql("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT does
        assert not LedgerJournal.objects.filter(idempotency_key="unbalanced").exists()

    def test_journal_with_one_entry_fails(self):
        cash = account("BANK_CASH")
        with pytest.raises(IntegrityError, match="has 1 entries"), transaction.atomic():
            jid = raw_journal("single")
            raw_entry(jid, cash.pk, "DEBIT", 100)
            sql("SET CONSTRAINTS ALL IMMEDIATE")

    def test_entry_in_another_currency_than_its_account_is_refused(self):
        cash = account("BANK_CASH")
        with pytest.raises(IntegrityError, match="entry in USD refused"), transaction.atomic():
            jid = raw_journal("ccy")
            raw_entry(jid, cash.pk, "DEBIT", 100, "USD")

    @pytest.mark.parametrize("amount", [0, -100])
    def test_amount_must_be_positive(self, amount):
        cash = account("BANK_CASH")
        with pytest.raises(IntegrityError, match="ledger_entry_amount_positive"), transaction.atomic():
            raw_entry(raw_journal(f"amt{amount}"), cash.pk, "DEBIT", amount)

    def test_projection_cannot_be_pushed_below_zero_on_a_non_negative_account(self):
        credit_merchant("m_n", 100)
        payable = account("MERCHANT_PAYABLE", owner="m_n")
        with (
            pytest.raises(IntegrityError, match=r"ledger_balance_not_below_zero|ledger_balance_equals_totals"),
            transaction.atomic(),
        ):
            sql("UPDATE ledger_ledgerbalance SET balance_minor = -1 WHERE account_id = %s", [payable.pk])


@pytest.mark.django_db(transaction=True)
def test_unbalanced_raw_journal_fails_at_commit():
    cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
    with pytest.raises(IntegrityError, match="unbalanced"), transaction.atomic():
        jid = raw_journal("at-commit")
        raw_entry(jid, cash.pk, "DEBIT", 100)
        raw_entry(jid, payable.pk, "CREDIT", 90)
    assert not LedgerJournal.objects.filter(idempotency_key="at-commit").exists()


@pytest.mark.django_db(transaction=True)
def test_a_posted_journal_never_gains_an_entry():
    cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_1")
    journal = transfer(cash, payable, 100)
    with pytest.raises(IntegrityError, match="posted by an earlier transaction"), transaction.atomic():
        # a balanced pair, so only the rule about earlier journals can refuse it
        raw_entry(journal.pk, cash.pk, "DEBIT", 50)
        raw_entry(journal.pk, payable.pk, "CREDIT", 50)
    assert LedgerEntry.objects.filter(journal=journal).count() == 2


class TestVerify:
    def test_clean_ledger_verifies(self, capsys):
        credit_merchant("m_v", 500)
        call_command("ledger_verify")
        assert "no breaches" in capsys.readouterr().out

    def test_tampered_projection_is_named(self, capsys):
        credit_merchant("m_v", 500)
        payable = account("MERCHANT_PAYABLE", owner="m_v")
        LedgerBalance.objects.filter(pk=payable.pk).update(
            credit_total_minor=900, balance_minor=900
        )  # tampering with the projection directly
        report = ledger_verify()
        assert report.breaches == [
            "account 2100-IDR-m_v: stored balance differs from its entries (entries: debits 0, credits 500)"
        ]
        with pytest.raises(CommandError, match="1 breach"):
            call_command("ledger_verify")
        assert "BREACH: account 2100-IDR-m_v" in capsys.readouterr().err

    def test_tampered_entry_is_named(self):
        journal = credit_merchant("m_v", 500)
        # Only a test may switch the trigger off, to play an attacker with the table owner's rights.
        sql("SET CONSTRAINTS ALL IMMEDIATE")  # run the pending commit-time checks first
        sql("ALTER TABLE ledger_ledgerentry DISABLE TRIGGER ledger_entry_immutable")
        sql(
            "UPDATE ledger_ledgerentry SET amount_minor = 400 WHERE journal_id = %s AND direction = 'CREDIT'",
            [journal.pk],
        )
        sql("ALTER TABLE ledger_ledgerentry ENABLE TRIGGER ledger_entry_immutable")
        breaches = ledger_verify().breaches
        assert f"journal {journal.public_id} is unbalanced in IDR: debits 500, credits 400" in breaches
        assert any(b.startswith("account 2100-IDR-m_v: stored balance differs") for b in breaches)


class TestVerifyFindsWhatTheFirstPassCannotClear:
    """ledger_verify clears most journals in one pass grouped by journal; these breaches each need
    its second, exact look (or its count of journals with entries)."""

    def _as_attacker(self, statement: str, params: list) -> None:
        sql("SET CONSTRAINTS ALL IMMEDIATE")  # run the pending commit-time checks first
        sql("ALTER TABLE ledger_ledgerentry DISABLE TRIGGER ledger_entry_immutable")
        sql(statement, params)
        sql("ALTER TABLE ledger_ledgerentry ENABLE TRIGGER ledger_entry_immutable")

    def _fx_journal(self):
        from ledger.services import PostingLine, Source, journal_post
        from tests.factories.ledger import ACTOR, now

        idr_cash, idr_payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_fx")
        usd_cash, usd_payable = account("BANK_CASH", "USD"), account("MERCHANT_PAYABLE", "USD", owner="m_fx")
        return journal_post(
            lines=[PostingLine(idr_cash.pk, "DEBIT", 90, "IDR"), PostingLine(idr_payable.pk, "CREDIT", 90, "IDR"),
                   PostingLine(usd_cash.pk, "DEBIT", 100, "USD"), PostingLine(usd_payable.pk, "CREDIT", 100, "USD")],
            journal_type="FX_TEST", source=Source("test", "fx"), accounting_date=now().date(),
            idempotency_key="fx-1", actor=ACTOR, now=now(),
        )  # fmt: skip

    def test_a_journal_balanced_in_each_of_two_currencies_is_clean(self):
        self._fx_journal()
        assert ledger_verify().breaches == []

    def test_two_currencies_unbalanced_in_opposite_ways_are_both_named(self):
        # Debits and credits still agree in total (100 + 90 both ways): only a per-currency look sees it.
        journal = self._fx_journal()
        self._as_attacker(
            "UPDATE ledger_ledgerentry SET amount_minor = CASE currency WHEN 'IDR' THEN 100 ELSE 90 END"
            " WHERE journal_id = %s AND direction = 'CREDIT'",
            [journal.pk],
        )
        breaches = [b for b in ledger_verify().breaches if b.startswith("journal")]
        assert breaches == [
            f"journal {journal.public_id} is unbalanced in IDR: debits 90, credits 100",
            f"journal {journal.public_id} is unbalanced in USD: debits 100, credits 90",
        ]

    def test_a_journal_left_with_one_entry_is_named(self):
        journal = credit_merchant("m_v", 500)
        self._as_attacker("DELETE FROM ledger_ledgerentry WHERE journal_id = %s AND direction = 'DEBIT'", [journal.pk])
        assert f"journal {journal.public_id} has 1 entries; a journal needs at least two" in ledger_verify().breaches

    def test_a_journal_left_with_no_entries_is_named(self):
        journal = credit_merchant("m_v", 500)
        self._as_attacker("DELETE FROM ledger_ledgerentry WHERE journal_id = %s", [journal.pk])
        assert f"journal {journal.public_id} has 0 entries; a journal needs at least two" in ledger_verify().breaches


@pytest.mark.parametrize(
    "function", ["ledger_entries_currency_match", "ledger_journal_check_balanced", "ledger_accounts_postable"]
)
def test_integrity_triggers_never_plan_a_scan_of_the_whole_history(function):
    # Planned once per connection: a plan made while the tables were nearly empty would otherwise
    # read every journal on every posting (migration 0011).
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = %s", [function])
        assert cursor.fetchone()[0] == ["enable_seqscan=off"]


def test_a_posting_to_an_account_whose_projection_is_missing_is_refused_whole():
    cash, payable = account("BANK_CASH"), account("MERCHANT_PAYABLE", owner="m_gone")
    sql("DELETE FROM ledger_ledgerbalance WHERE account_id = %s", [payable.pk])  # a damaged database
    journals, entries = LedgerJournal.objects.count(), LedgerEntry.objects.count()
    with pytest.raises(DomainError, match="no balance projection; run ledger_verify"):
        transfer(cash, payable, 100)
    assert (LedgerJournal.objects.count(), LedgerEntry.objects.count()) == (journals, entries)
    assert LedgerBalance.objects.get(pk=cash.pk).balance_minor == 0
    refusal = AuditEvent.objects.filter(event_type="ledger.journal_refused").latest("seq")
    assert refusal.result == "REFUSED" and "no balance projection" in refusal.error_message
