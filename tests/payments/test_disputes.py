"""Lost chargebacks always post: the scheme has taken the funds whatever the merchant holds, so
CHARGEBACK_LOST is one balanced journal (key chargeback:<pi_id>) that takes what the merchant's
payable balance covers from it and books the rest to the merchant's receivable (what it owes the
platform); replaying the resolution posts nothing more. Disputes opened, won and lost once, and
concurrently, are tested in test_capture_once."""

from dataclasses import replace

import pytest

from audit.models import AuditEvent, AuditResult
from backoffice.errors import IllegalTransition
from backoffice.money import Money
from ledger.models import LedgerAccount, LedgerEntry, LedgerJournal
from ledger.selectors import merchant_balances
from ledger.verification import ledger_verify
from payments.models import PaymentEvent
from payments.services import attempts, dispute_open, dispute_resolve, payout_create, payout_send
from payments.services.merchants import beneficiary_add
from tests.factories import payments as f

pytestmark = pytest.mark.django_db

ACTOR = f.system("disputes")


def open_dispute(intent) -> None:
    dispute_open(intent_id=intent.public_id, reason_code="FRAUD", reason_text="Card holder disputes", actor=ACTOR,
                 now=f.at(10), idempotency_key=f"dispute-{intent.public_id}")  # fmt: skip


def lose(intent, *, key: str = "lost-1", **kwargs):
    return dispute_resolve(intent_id=intent.public_id, won=False, reason_code="FRAUD",
                           reason_text="Issuer upheld the dispute", actor=ACTOR, now=f.at(20), idempotency_key=key,
                           **kwargs)  # fmt: skip


def balances(merchant) -> dict[str, int]:
    """The merchant's IDR balances by role (each on its normal side: an asset's is what is owed to us)."""
    return {b.account.role: b.balance.amount_minor for b in merchant_balances(merchant_ref=merchant.public_id)
            if b.account.currency == "IDR"}  # fmt: skip


def lines(journal: LedgerJournal) -> list[tuple[str, str, str, int]]:
    return [(e.direction, e.account.role, e.account.owner_ref, e.amount_minor) for e in
            LedgerEntry.objects.filter(journal=journal).select_related("account").order_by("id")]  # fmt: skip


def chargebacks() -> list[LedgerJournal]:
    return list(LedgerJournal.objects.filter(journal_type="CHARGEBACK_LOST"))


def pay_out_everything(merchant) -> None:
    """Pay the merchant's whole payable balance out (PAYOUT_SENT posted)."""
    ben = beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                          account_holder="PT Toko Test", account_number="1234567890", currency="IDR", actor=ACTOR,
                          now=f.at(11))  # fmt: skip
    payout = payout_create(merchant=merchant, beneficiary=ben, amount_minor=f.payable_minor(merchant), currency="IDR",
                           idempotency_key=f"all-{merchant.public_id}", actor=ACTOR, now=f.at(12))  # fmt: skip
    payout_send(payout_id=payout.public_id, actor=ACTOR, now=f.at(13), adapter=f.StubAdapter())


def test_a_chargeback_the_payable_cannot_cover_books_the_shortfall_to_the_merchant_receivable():
    # Given a captured payment of 1,000,000 whose merchant's payable holds only the net 771,000.
    intent, attempt = f.captured_payment(amount_minor=1_000_000)
    assert (attempt.fee_minor, f.payable_minor(intent.merchant)) == (229_000, 771_000)
    open_dispute(intent)
    merchant = intent.merchant.public_id

    # When the dispute is lost,
    lose(intent)

    # then one balanced journal: the payable down to zero, the 229,000 it lacked owed by the merchant.
    (chargeback,) = chargebacks()
    assert (chargeback.idempotency_key, chargeback.source_type, chargeback.source_id) == (
        f"chargeback:{intent.public_id}", "payment_intent", intent.public_id,
    )  # fmt: skip
    assert lines(chargeback) == [
        ("DEBIT", "MERCHANT_PAYABLE", merchant, 771_000),
        ("DEBIT", "MERCHANT_RECEIVABLE", merchant, 229_000),
        ("CREDIT", "PSP_RECEIVABLE", "", 1_000_000),
    ]
    assert chargeback.description == (
        f"Chargeback lost on {intent.public_id}: FRAUD; 2,290.00 IDR owed by the merchant"
    )
    assert balances(intent.merchant) == {"MERCHANT_PAYABLE": 0, "MERCHANT_RECEIVABLE": 229_000}
    receivable = LedgerAccount.objects.get(role="MERCHANT_RECEIVABLE", owner_ref=merchant)
    assert (receivable.code, receivable.account_type, receivable.allow_negative) == (
        f"1200-IDR-{merchant}", "ASSET", False,
    )  # fmt: skip
    assert f.fetch_intent(intent.public_id).status == "REFUNDED"
    event = PaymentEvent.objects.get(subject_id=intent.public_id, to_status="REFUNDED")
    assert (event.journal_ref, event.data["chargeback_minor"], event.data["merchant_receivable_minor"]) == (
        chargeback.public_id, 1_000_000, 229_000,
    )  # fmt: skip
    assert ledger_verify().ok

    # A replay of the same resolution posts nothing more; another one is refused and changes nothing.
    journals, entries = LedgerJournal.objects.count(), LedgerEntry.objects.count()
    assert lose(intent).status == "REFUNDED"
    with pytest.raises(IllegalTransition, match="is REFUNDED"):
        lose(intent, key="lost-2")
    assert (LedgerJournal.objects.count(), LedgerEntry.objects.count()) == (journals, entries)
    assert balances(intent.merchant) == {"MERCHANT_PAYABLE": 0, "MERCHANT_RECEIVABLE": 229_000}
    refusal = AuditEvent.objects.filter(event_type="payments.dispute_resolve_refused", result=AuditResult.REFUSED,
                                        target_id=intent.public_id).get()  # fmt: skip
    assert refusal.error_code == "ILLEGAL_TRANSITION"


def test_a_chargeback_after_the_balance_was_paid_out_is_owed_in_full():
    # Given a disputed payment whose merchant has been paid out everything it held.
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    open_dispute(intent)
    pay_out_everything(intent.merchant)
    assert f.payable_minor(intent.merchant) == 0

    # When the dispute is lost, the whole amount is owed by the merchant; the payable is not touched.
    lose(intent)

    (chargeback,) = chargebacks()
    assert lines(chargeback) == [
        ("DEBIT", "MERCHANT_RECEIVABLE", intent.merchant.public_id, 1_000_000),
        ("CREDIT", "PSP_RECEIVABLE", "", 1_000_000),
    ]
    assert balances(intent.merchant) == {"MERCHANT_PAYABLE": 0, "MERCHANT_RECEIVABLE": 1_000_000}
    assert ledger_verify().ok


def test_a_chargeback_the_payable_covers_owes_nothing():
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    open_dispute(intent)

    lose(intent, amount_minor=500_000)

    (chargeback,) = chargebacks()
    assert lines(chargeback) == [
        ("DEBIT", "MERCHANT_PAYABLE", intent.merchant.public_id, 500_000),
        ("CREDIT", "PSP_RECEIVABLE", "", 500_000),
    ]
    assert chargeback.description == f"Chargeback lost on {intent.public_id}: FRAUD"
    assert balances(intent.merchant) == {"MERCHANT_PAYABLE": 271_000}  # no receivable opened
    event = PaymentEvent.objects.get(subject_id=intent.public_id, to_status="REFUNDED")
    assert event.data["merchant_receivable_minor"] == 0


def test_a_payable_lowered_between_reading_and_posting_is_read_again(monkeypatch):
    # Given a dispute, and a payable read once as 100,000 more than it holds (as if a manual debit,
    # which does not queue on the merchant, had committed just after the read).
    intent, _ = f.captured_payment(amount_minor=1_000_000)
    open_dispute(intent)
    read = attempts.account_balance
    calls = []

    def stale_first(*, account):
        found = read(account=account)
        calls.append(found.balance.amount_minor)
        return found if len(calls) > 1 else replace(found, balance=Money(found.balance.amount_minor + 100_000, "IDR"))

    monkeypatch.setattr(attempts, "account_balance", stale_first)

    # When the dispute is lost, the ledger refuses the first split and the second one posts.
    lose(intent)

    assert calls == [771_000, 771_000]
    (chargeback,) = chargebacks()
    assert lines(chargeback) == [
        ("DEBIT", "MERCHANT_PAYABLE", intent.merchant.public_id, 771_000),
        ("DEBIT", "MERCHANT_RECEIVABLE", intent.merchant.public_id, 229_000),
        ("CREDIT", "PSP_RECEIVABLE", "", 1_000_000),
    ]
    # The refused first try is on record; the payable never went below zero.
    refused = AuditEvent.objects.get(event_type="ledger.journal_refused", target_id=f"chargeback:{intent.public_id}")
    assert refused.error_code == "INSUFFICIENT_FUNDS"
    assert balances(intent.merchant) == {"MERCHANT_PAYABLE": 0, "MERCHANT_RECEIVABLE": 229_000}
    assert ledger_verify().ok
