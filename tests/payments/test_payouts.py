"""Payouts: refused under a CREATE_PAYOUT block or above the available balance (also when created
at once), approved at once or left for review, handed to the provider after commit when approved
(at creation or on release), sent once (PAYOUT_SENT posts once), failed after sending (the posting
reversed once), returned (PAYOUT_RETURNED posts once), held and released."""

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent, AuditResult
from backoffice.actors import system_actor
from backoffice.errors import IdempotencyConflict, IllegalTransition, ValidationFailed
from ledger.errors import InsufficientFunds
from ledger.models import LedgerEntry, LedgerJournal
from ledger.verification import ledger_verify
from payments.models import Capability, EventSource, PaymentEvent, Payout, PayoutStatus, RestrictionMode
from payments.providers import (
    ProviderAdapter,
    ProviderPayoutResult,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
    http,
)
from payments.services.merchants import beneficiary_add
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.payouts import (
    PayoutExceedsAvailable,
    payout_apply_outcome,
    payout_create,
    payout_hold,
    payout_release_hold,
    payout_send,
)
from payments.services.restrictions import CapabilityRestricted, restriction_impose, restriction_lift
from tests.factories.approvals import at, money_state, payable_balance
from tests.factories.ledger import credit_merchant
from tests.factories.payments import merchant as make_merchant

OPS = system_actor("payout_scheduler")
WEBHOOK = system_actor("webhook")


class FakeProvider(ProviderAdapter):
    """A provider that answers every payout with `answer` (a provider status word) or raises it."""

    provider_code = "sim"

    def __init__(self, answer="paid"):
        self.answer = answer
        self.calls = []

    def payout(self, req):
        self.calls.append(req)
        if isinstance(self.answer, Exception):
            raise self.answer
        status = {"paid": ProviderStatus.SUCCEEDED, "pending": ProviderStatus.PENDING,
                  "failed": ProviderStatus.FAILED}[self.answer]  # fmt: skip
        return ProviderPayoutResult(
            status=status, provider_reference=f"prv_{req.payout_id}", merchant_reference=req.payout_id,
            amount_minor=req.amount_minor, currency=req.currency, merchant_id=req.merchant_id,
            provider_status=self.answer, error_code="account_closed" if self.answer == "failed" else "",
        )  # fmt: skip

    def create_payment(self, req):
        raise NotImplementedError

    def query_status(self, **kwargs):
        raise NotImplementedError

    def refund(self, req):
        raise NotImplementedError


@pytest.fixture
def configured(monkeypatch):
    """configured(provider): the provider as configured, which the send task queued after commit uses."""

    def use(provider: FakeProvider) -> FakeProvider:
        monkeypatch.setattr(http, "provider_adapter_from_settings", lambda *, provider_code=None: provider)
        return provider

    return use


def funded_merchant(balance: int = 100_000, name: str = "Toko Sinar"):
    m = make_merchant(name=name)
    ben = beneficiary_add(merchant=m, bank_code="BCA", bank_name="Bank Central Asia", account_holder="PT Toko Sinar",
                          account_number="1234567890", currency="IDR", actor=OPS, now=at(0))  # fmt: skip
    if balance:
        credit_merchant(m.public_id, balance)
    return m, ben


def create(m, ben, amount: int, *, key: str | None = None, now=None) -> Payout:
    return payout_create(merchant=m, beneficiary=ben, amount_minor=amount, currency="IDR",
                         idempotency_key=key or f"po-{m.public_id}-{amount}-{now or at(1)}", actor=OPS,
                         now=now or at(1))  # fmt: skip


def fetch(payout: Payout) -> Payout:
    return Payout.objects.get(pk=payout.pk)


def outcome(payout: Payout, status: str, **changes) -> ProviderOutcome:
    fields = {
        "provider_code": "sim",
        "provider_reference": f"prv_{payout.public_id}",
        "our_reference": payout.public_id,
        "merchant_ref": payout.merchant.public_id,
        "amount_minor": payout.amount_minor,
        "currency": "IDR",
    }
    return ProviderOutcome(status=status, **{**fields, **changes})


def apply(payout: Payout, status: str, *, now=None, **changes) -> Payout:
    return payout_apply_outcome(payout_id=payout.public_id, outcome=outcome(payout, status, **changes),
                                source=EventSource.WEBHOOK, actor=WEBHOOK, now=now or at(10))  # fmt: skip


def journals(payout: Payout) -> list[tuple[str, str]]:
    found = LedgerJournal.objects.filter(source_type__in=["payout", "ledger_journal"]).order_by("id")
    return [(j.journal_type, j.idempotency_key) for j in found if payout.public_id in j.idempotency_key]


def lines(journal_key: str) -> list[tuple[str, str, int]]:
    return [
        (e.direction, e.account.role, e.amount_minor)
        for e in LedgerEntry.objects.filter(journal__idempotency_key=journal_key)
        .select_related("account")
        .order_by("id")
    ]


def payout_state() -> dict:
    return {"payouts": sorted(Payout.objects.values_list("public_id", "status", "version")),
            "events": PaymentEvent.objects.count(), **money_state()}  # fmt: skip


def refused(event_type: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type, result=AuditResult.REFUSED).latest("seq")


def freeze(m, mode=RestrictionMode.BLOCK, *, now=None):
    return restriction_impose(merchant=m, capability=Capability.CREATE_PAYOUT, mode=mode, reason_code="RISK_REVIEW",
                              reason_text="Unusual payout pattern", source="RISK", actor=OPS,
                              now=now or at(0))  # fmt: skip


def send(payout: Payout, provider: FakeProvider, *, now=None) -> Payout:
    return payout_send(payout_id=payout.public_id, actor=OPS, now=now or at(5), adapter=provider)


@pytest.fixture
def send_now(django_capture_on_commit_callbacks):
    """Send and run what waits for the commit (the provider call), as a real commit would."""

    def run(payout: Payout, provider: FakeProvider, *, now=None) -> Payout:
        with django_capture_on_commit_callbacks(execute=True):
            send(payout, provider, now=now)
        return fetch(payout)

    return run


@pytest.mark.django_db
class TestCreate:
    def test_a_payout_within_the_balance_is_created_and_approved_at_once(self):
        m, ben = funded_merchant(100_000)
        before = money_state()

        payout = create(m, ben, 40_000)

        assert (payout.status, payout.amount_minor, payout.beneficiary, payout.requested_by) == (
            PayoutStatus.APPROVED, 40_000, ben, "system:payout_scheduler",
        )  # fmt: skip
        events = PaymentEvent.objects.filter(subject_id=payout.public_id).order_by("id")
        assert list(events.values_list("event_type", "to_status")) == [
            ("payout.created", "CREATED"), ("payout.approved", "APPROVED"),
        ]  # fmt: skip
        assert events[0].data["account"] == "****7890"  # masked, never the account number
        assert AuditEvent.objects.filter(event_type="payments.payout_created", target_id=payout.public_id).exists()
        assert money_state() == before  # nothing posts before it is sent

    def test_refused_while_create_payout_is_blocked_nothing_written_refusal_audited(self):
        m, ben = funded_merchant(100_000)
        freeze(m)
        before = payout_state()

        with pytest.raises(CapabilityRestricted, match="Receive payouts is blocked for this merchant: RISK_REVIEW"):
            create(m, ben, 10_000)

        assert payout_state() == before
        event = refused("payments.payout_create_refused")
        assert (event.error_code, event.target_id) == ("CAPABILITY_RESTRICTED", m.public_id)
        assert "RISK_REVIEW" in event.error_message

    def test_over_the_available_balance_minus_committed_payouts_is_refused(self):
        m, ben = funded_merchant(100_000)
        create(m, ben, 70_000)
        before = payout_state()

        with pytest.raises(PayoutExceedsAvailable, match=r"400\.00 IDR is more than .* may be paid out: 300\.00 IDR "
                           r"\(payable 1,000\.00 IDR, committed to payouts not yet sent 700\.00 IDR\)"):  # fmt: skip
            create(m, ben, 40_000)

        assert payout_state() == before
        assert refused("payments.payout_create_refused").error_code == "PAYOUT_EXCEEDS_AVAILABLE"
        assert create(m, ben, 30_000).status == PayoutStatus.APPROVED  # exactly what is left

    def test_a_merchant_without_a_payable_balance_is_refused(self):
        m, ben = funded_merchant(0)
        with pytest.raises(PayoutExceedsAvailable):
            create(m, ben, 1)
        assert Payout.objects.count() == 0

    def test_only_the_merchants_active_account_in_that_currency(self):
        m, ben = funded_merchant(100_000)
        _other, other_ben = funded_merchant(100_000, name="Toko Lain")
        before = payout_state()

        with pytest.raises(ValidationFailed, match=rf"Bank Central Asia \*\*\*\*7890 is not the active IDR payout "
                           rf"account of {m.public_id}"):  # fmt: skip
            create(m, other_ben, 10_000)
        with pytest.raises(ValidationFailed, match="not the active USD payout account"):
            payout_create(merchant=m, beneficiary=ben, amount_minor=10_000, currency="USD", idempotency_key="usd",
                          actor=OPS, now=at(1))  # fmt: skip

        assert payout_state() == before
        assert "1234567890" not in refused("payments.payout_create_refused").error_message

    @pytest.mark.parametrize("amount", [0, -5, 10.0, True, "100"])
    def test_the_amount_is_a_positive_whole_number_of_minor_units(self, amount):
        m, ben = funded_merchant(100_000)
        with pytest.raises(ValidationFailed, match="positive whole number"):
            create(m, ben, amount, key="bad")
        assert Payout.objects.count() == 0

    def test_idempotent_by_key(self):
        m, ben = funded_merchant(100_000)
        first = create(m, ben, 10_000, key="po-key-1")

        assert create(m, ben, 10_000, key="po-key-1", now=at(2)) == first
        with pytest.raises(IdempotencyConflict, match=first.public_id):
            create(m, ben, 20_000, key="po-key-1")
        assert Payout.objects.count() == 1

    def test_under_review_the_payout_waits_for_approval(self):
        m, ben = funded_merchant(100_000)
        freeze(m, RestrictionMode.REVIEW)

        payout = create(m, ben, 10_000)

        assert payout.status == PayoutStatus.APPROVAL_REQUIRED
        with pytest.raises(IllegalTransition):
            send(payout, FakeProvider())
        # It still counts against the balance while it waits.
        with pytest.raises(PayoutExceedsAvailable):
            create(m, ben, 95_000)


@pytest.mark.django_db
class TestSendAndOutcomes:
    def test_sending_posts_payout_sent_once_and_the_answer_is_applied(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        provider = FakeProvider("paid")

        sent = send_now(payout, provider)

        assert sent.status == PayoutStatus.SUCCEEDED
        assert (sent.provider_payout_reference, sent.executed_at) == (f"prv_{payout.public_id}", at(5))
        assert journals(payout) == [("PAYOUT_SENT", f"payout:{payout.public_id}:sent")]
        assert lines(f"payout:{payout.public_id}:sent") == [("DEBIT", "MERCHANT_PAYABLE", 40_000),
                                                            ("CREDIT", "BANK_CASH", 40_000)]  # fmt: skip
        assert (
            sent.sent_journal_ref
            == LedgerJournal.objects.get(idempotency_key=f"payout:{payout.public_id}:sent").public_id
        )
        assert payable_balance(m.public_id) == 60_000
        (request,) = provider.calls
        assert (request.idempotency_key, request.beneficiary_token, request.amount_minor) == (
            payout.public_id, ben.public_id, 40_000,
        )  # fmt: skip

        # Sent again (a redelivered task) and paid again (a webhook): nothing more happens.
        assert send_now(payout, provider, now=at(6)).status == PayoutStatus.SUCCEEDED
        assert apply(payout, OutcomeStatus.SUCCEEDED).status == PayoutStatus.SUCCEEDED
        assert len(provider.calls) == 1
        assert journals(payout) == [("PAYOUT_SENT", f"payout:{payout.public_id}:sent")]
        assert payable_balance(m.public_id) == 60_000
        assert ledger_verify().ok

    @pytest.mark.parametrize("error", [ProviderTimeout(), ProviderUnavailable()])
    def test_no_answer_leaves_it_unknown_and_it_is_never_sent_again(self, send_now, error):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        provider = FakeProvider(error)

        assert send_now(payout, provider).status == PayoutStatus.UNKNOWN_OUTCOME
        assert send_now(payout, provider, now=at(7)).status == PayoutStatus.UNKNOWN_OUTCOME

        assert len(provider.calls) == 1
        assert payable_balance(m.public_id) == 60_000  # the money may have left: it stays posted
        # The inquiry finds it paid.
        assert apply(payout, OutcomeStatus.SUCCEEDED).status == PayoutStatus.SUCCEEDED

    def test_failed_after_sending_reverses_the_posting_once(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        send_now(payout, FakeProvider("pending"))
        assert fetch(payout).status == PayoutStatus.PROCESSING
        assert payable_balance(m.public_id) == 60_000

        failed = apply(payout, OutcomeStatus.FAILED, decline_code="account_closed")

        assert (failed.status, failed.failure_code) == (PayoutStatus.FAILED, "account_closed")
        sent = LedgerJournal.objects.get(idempotency_key=f"payout:{payout.public_id}:sent")
        reversal = LedgerJournal.objects.get(reverses=sent)
        assert reversal.idempotency_key == f"payout:{payout.public_id}:sent:reversal"
        assert payable_balance(m.public_id) == 100_000
        # Again (a replayed webhook): a no-op; a later "paid" contradicts it and changes nothing.
        assert apply(payout, OutcomeStatus.FAILED).status == PayoutStatus.FAILED
        before = payout_state()
        with pytest.raises(OutcomeConflict):
            apply(payout, OutcomeStatus.SUCCEEDED)
        assert payout_state() == before
        assert refused("payments.payout_outcome_refused").error_code == "OUTCOME_CONFLICT"
        assert LedgerJournal.objects.filter(reverses=sent).count() == 1
        assert ledger_verify().ok

    def test_a_rejected_request_fails_and_reverses(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        done = send_now(payout, FakeProvider("failed"))
        assert (done.status, done.failure_code) == (PayoutStatus.FAILED, "account_closed")
        assert payable_balance(m.public_id) == 100_000

    def test_a_returned_payout_posts_payout_returned_once(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        send_now(payout, FakeProvider("paid"))

        returned = apply(payout, OutcomeStatus.RETURNED, decline_code="account_closed")

        assert returned.status == PayoutStatus.RETURNED
        key = f"payout:{payout.public_id}:returned"
        assert returned.returned_journal_ref == LedgerJournal.objects.get(idempotency_key=key).public_id
        assert lines(key) == [("DEBIT", "BANK_CASH", 40_000), ("CREDIT", "MERCHANT_PAYABLE", 40_000)]
        assert payable_balance(m.public_id) == 100_000
        assert apply(payout, OutcomeStatus.RETURNED, now=at(11)).status == PayoutStatus.RETURNED
        assert [j for j in journals(payout) if j[0] == "PAYOUT_RETURNED"] == [("PAYOUT_RETURNED", key)]
        assert ledger_verify().ok

    def test_a_mismatching_answer_changes_nothing(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        send_now(payout, FakeProvider("pending"))
        before = payout_state()

        with pytest.raises(OutcomeMismatch) as raised:
            apply(payout, OutcomeStatus.SUCCEEDED, amount_minor=39_999)

        assert raised.value.mismatch == {"amount_minor": {"ours": 40_000, "theirs": 39_999}}
        assert payout_state() == before
        assert refused("payments.payout_outcome_refused").error_code == "OUTCOME_MISMATCH"

    def test_sending_rechecks_the_restriction(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        restriction = freeze(m, now=at(2))
        before = payout_state()
        provider = FakeProvider("paid")

        with pytest.raises(CapabilityRestricted, match=f"RISK_REVIEW.*payout {payout.public_id} is not sent"):
            send(payout, provider)

        assert payout_state() == before
        assert provider.calls == []
        assert refused("payments.payout_send_refused").error_code == "CAPABILITY_RESTRICTED"
        # Lifted: it goes.
        restriction_lift(restriction_id=restriction.pk, reason_text="Cleared", actor=OPS, now=at(6))
        assert send_now(payout, provider, now=at(7)).status == PayoutStatus.SUCCEEDED

    def test_under_review_an_unreviewed_payout_is_held_at_sending(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        freeze(m, RestrictionMode.REVIEW, now=at(2))
        provider = FakeProvider("paid")

        held = send(payout, provider)

        assert (held.status, provider.calls) == (PayoutStatus.HELD, [])
        assert "under review" in held.hold_reason
        assert journals(payout) == []
        # The review is a release through an approved request; then it is sent.
        payout_release_hold(payout_id=payout.public_id, reason="Reviewed", actor=OPS, now=at(6),
                            approval_ref="act_01REVIEWED")  # fmt: skip
        assert send_now(payout, provider, now=at(7)).status == PayoutStatus.SUCCEEDED

    def test_a_balance_spent_meanwhile_is_refused_by_the_ledger(self):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        # A posting that does not go through payout creation takes the balance down meanwhile.
        from ledger.services import Source, journal_post_rule

        journal_post_rule(rule_code="MERCHANT_DEBIT", currency="IDR", amounts={"AMOUNT": 90_000},
                          merchant_ref=m.public_id, source=Source("test", "debit"), accounting_date=at(2).date(),
                          idempotency_key="debit-1", actor=OPS, now=at(2))  # fmt: skip
        before = payout_state()

        with pytest.raises(InsufficientFunds):
            send(payout, FakeProvider("paid"))

        assert payout_state() == before
        assert fetch(payout).status == PayoutStatus.APPROVED
        assert refused("payments.payout_send_refused").error_code == "INSUFFICIENT_FUNDS"


@pytest.mark.django_db
class TestHold:
    def test_hold_and_release(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)

        held = payout_hold(payout_id=payout.public_id, reason="Beneficiary name mismatch", actor=OPS, now=at(2),
                           approval_ref="act_01HOLD")  # fmt: skip

        assert (held.status, held.hold_reason, held.hold_ref) == (
            PayoutStatus.HELD, "Beneficiary name mismatch", "act_01HOLD",
        )  # fmt: skip
        before = payout_state()
        with pytest.raises(IllegalTransition):
            send(payout, FakeProvider())
        assert payout_state() == before
        assert refused("payments.payout_send_refused").error_code == "ILLEGAL_TRANSITION"
        # A held payout still counts against the balance.
        with pytest.raises(PayoutExceedsAvailable):
            create(m, ben, 70_000)

        released = payout_release_hold(payout_id=payout.public_id, reason="Name verified", actor=OPS, now=at(3),
                                       approval_ref="act_01RELEASE")  # fmt: skip

        assert (released.status, released.hold_reason, released.hold_ref) == (PayoutStatus.APPROVED, "", "")
        assert PaymentEvent.objects.filter(subject_id=payout.public_id, to_status="APPROVED").last().approval_ref == (
            "act_01RELEASE"
        )
        assert send_now(payout, FakeProvider()).status == PayoutStatus.SUCCEEDED

    def test_a_sent_payout_cannot_be_held(self, send_now):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        send_now(payout, FakeProvider("pending"))
        before = payout_state()

        with pytest.raises(IllegalTransition, match=f"payout {payout.public_id} is PROCESSING; it cannot hold"):
            payout_hold(payout_id=payout.public_id, reason="Too late", actor=OPS, now=at(6))
        with pytest.raises(IllegalTransition, match="only a held payout or one waiting for approval"):
            payout_release_hold(payout_id=payout.public_id, reason="Nothing held", actor=OPS, now=at(6))

        assert payout_state() == before
        assert refused("payments.payout_hold_refused").error_code == "ILLEGAL_TRANSITION"
        assert refused("payments.payout_release_refused").error_code == "ILLEGAL_TRANSITION"

    def test_a_hold_needs_a_reason(self):
        m, ben = funded_merchant(100_000)
        payout = create(m, ben, 40_000)
        with pytest.raises(ValidationFailed):
            payout_hold(payout_id=payout.public_id, reason=" ", actor=OPS, now=at(2))
        assert fetch(payout).status == PayoutStatus.APPROVED


def run_together(workers: int, work) -> list:
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


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_eight_payouts_created_at_once_never_exceed_the_balance(configured):
    provider = configured(FakeProvider("paid"))
    m, ben = funded_merchant(100_000)

    results = run_together(8, lambda i: create(m, ben, 30_000, key=f"storm-{i}").public_id)

    created = [r for r in results if isinstance(r, str)]
    refused_ = [r for r in results if isinstance(r, PayoutExceedsAvailable)]
    assert (len(created), len(refused_)) == (3, 5), results
    assert sum(Payout.objects.values_list("amount_minor", flat=True)) == 90_000
    assert AuditEvent.objects.filter(event_type="payments.payout_create_refused").count() == 5
    # Each payout created was handed to the provider once, after its creation committed.
    assert sorted(call.payout_id for call in provider.calls) == sorted(created)
    assert set(Payout.objects.values_list("status", flat=True)) == {PayoutStatus.SUCCEEDED}
    assert payable_balance(m.public_id) == 10_000
    assert ledger_verify().ok


@pytest.mark.concurrency
@pytest.mark.django_db(transaction=True)
def test_a_return_applied_twice_at_once_posts_once(configured):
    provider = configured(FakeProvider("paid"))
    m, ben = funded_merchant(100_000)
    payout = create(m, ben, 40_000)  # approved, and sent once the creation commits
    assert fetch(payout).status == PayoutStatus.SUCCEEDED
    payout_send(payout_id=payout.public_id, actor=OPS, now=at(5), adapter=provider)  # a late second send: nothing
    assert (fetch(payout).status, len(provider.calls)) == (PayoutStatus.SUCCEEDED, 1)

    results = run_together(2, lambda i: apply(payout, OutcomeStatus.RETURNED, now=at(10 + i)).status)

    assert results == [PayoutStatus.RETURNED, PayoutStatus.RETURNED], results
    assert LedgerJournal.objects.filter(journal_type="PAYOUT_RETURNED").count() == 1
    assert payable_balance(m.public_id) == 100_000
    assert ledger_verify().ok
