"""The ledger's maker-checker actions: an approved adjustment posts exactly its rule's lines once; a
reversal mirrors its journal once; the sign of an amount never decides a direction."""

import pytest

from approvals.models import ActionRequest
from approvals.services import request_submit
from backoffice.errors import IllegalTransition, PolicyDenied, ValidationFailed
from ledger.models import LedgerEntry, LedgerJournal, PostingRule
from ledger.selectors import merchant_balances
from ledger.services import Source, journal_post_rule
from ledger.verification import ledger_verify
from tests.factories.approvals import (
    actor_for,
    approve,
    at,
    checker,
    fetch,
    fund,
    last_refusal,
    maker,
    money_state,
    open_case,
    propose,
    propose_reversal,
)
from tests.factories.ledger import ACTOR, key

pytestmark = pytest.mark.django_db

# adjustment type -> how the merchant's (payable, reserve) balances move per unit of amount.
ADJUSTMENTS = {
    "MERCHANT_CREDIT": (1, 0),
    "MERCHANT_DEBIT": (-1, 0),
    "FEE_REFUND": (1, 0),
    "RESERVE_RELEASE_CORRECTION": (1, -1),
    "RESERVE_HOLD_CORRECTION": (-1, 1),
}


@pytest.fixture
def alice():
    return maker("alice")


@pytest.fixture
def bob():
    return checker("bob")


@pytest.fixture
def case(alice):
    return open_case(alice)


def balances(merchant: str, currency: str = "IDR") -> tuple[int, int]:
    found = {b.account.role: b.balance.amount_minor for b in merchant_balances(merchant_ref=merchant)
             if b.account.currency == currency}  # fmt: skip
    return found.get("MERCHANT_PAYABLE", 0), found.get("MERCHANT_RESERVE", 0)


def lines(journal: LedgerJournal) -> list[tuple[str, str, str, int, str]]:
    return [
        (e.direction, e.account.role, e.account.owner_ref, e.amount_minor, e.currency)
        for e in LedgerEntry.objects.filter(journal=journal).select_related("account").order_by("id")
    ]


def test_every_adjustment_type_is_covered():
    assert set(PostingRule.objects.filter(is_adjustment=True, active=True).values_list("code", flat=True)) == set(
        ADJUSTMENTS
    )


@pytest.mark.parametrize("kind", sorted(ADJUSTMENTS))
def test_an_approved_adjustment_posts_exactly_its_rules_lines_once(alice, bob, case, kind):
    merchant = f"m_{kind.lower()}"
    fund(merchant, 50_000)
    journal_post_rule(
        rule_code="RESERVE_HOLD_CORRECTION", currency="IDR", amounts={"AMOUNT": 20_000}, merchant_ref=merchant,
        source=Source("test", merchant), accounting_date=at(0).date(), idempotency_key=key("reserve"), actor=ACTOR,
        now=at(0),
    )  # fmt: skip
    payable, reserve = balances(merchant)
    assert (payable, reserve) == (30_000, 20_000)
    request = propose(alice, case=case, merchant=merchant, amount_minor=1_234, kind=kind, now=at(1))
    journals = LedgerJournal.objects.count()

    done = fetch(approve(bob, request, now=at(2)).public_id)

    assert done.status == "SUCCEEDED"
    journal = LedgerJournal.objects.get(approval_ref=request.public_id)
    assert LedgerJournal.objects.count() == journals + 1
    rule = [(ln.direction, ln.account_role) for ln in PostingRule.objects.get(code=kind).lines.order_by("line_no")]
    assert lines(journal) == [
        (direction, role, merchant if role.startswith("MERCHANT") else "", 1_234, "IDR") for direction, role in rule
    ]
    assert [(ln["direction"], ln["role"], ln["amount_minor"]) for ln in request.preview["lines"]] == [
        (direction, role, 1_234) for direction, role in rule
    ]
    assert (journal.journal_type, journal.case_ref, journal.approval_ref, journal.idempotency_key) == (
        kind, case.case_number, request.public_id, f"{request.public_id}:journal",
    )  # fmt: skip
    assert (journal.source_type, journal.source_id, journal.posted_by) == ("action_request", request.public_id, "bob")
    d_payable, d_reserve = ADJUSTMENTS[kind]
    assert balances(merchant) == (payable + d_payable * 1_234, reserve + d_reserve * 1_234)
    assert done.result == {"ledger_journal": journal.public_id}

    # A second approval (a double click, a retry) is refused and posts nothing.
    before = money_state()
    with pytest.raises(IllegalTransition):
        approve(bob, request, now=at(3))
    assert money_state() == before
    assert LedgerJournal.objects.filter(approval_ref=request.public_id).count() == 1
    assert ledger_verify().ok


def test_the_preview_balances_are_what_the_posting_does(alice, bob, case):
    fund("m_prev", 10_000)
    request = propose(alice, case=case, merchant="m_prev", amount_minor=4_000, kind="MERCHANT_DEBIT")
    assert request.preview["balances"] == [
        {"account": "2100-IDR-m_prev", "before_minor": 10_000, "after_minor": 6_000, "before": "100.00 IDR",
         "after": "60.00 IDR"},
    ]  # fmt: skip
    approve(bob, request)
    assert balances("m_prev") == (6_000, 0)


def test_an_approved_reversal_mirrors_the_journal_once(alice, bob, case):
    original = fund("m_rev", 7_000)
    request = propose_reversal(alice, case=case, journal=original, now=at(1))
    assert request.preview["lines"] == [
        {"direction": "CREDIT", "account": "5100-IDR", "role": "PLATFORM_OPS_LOSS", "amount_minor": 7_000,
         "currency": "IDR", "display": "70.00 IDR"},
        {"direction": "DEBIT", "account": "2100-IDR-m_rev", "role": "MERCHANT_PAYABLE", "amount_minor": 7_000,
         "currency": "IDR", "display": "70.00 IDR"},
    ]  # fmt: skip

    done = fetch(approve(bob, request, now=at(2)).public_id)

    reversal = LedgerJournal.objects.get(reverses=original)
    assert done.result == {"ledger_journal": reversal.public_id}
    assert reversal.journal_type == "REVERSAL" and reversal.idempotency_key == f"{request.public_id}:reversal"
    assert lines(reversal) == [
        ("CREDIT" if d == "DEBIT" else "DEBIT", role, owner, amount, currency)
        for d, role, owner, amount, currency in lines(original)
    ]
    assert balances("m_rev") == (0, 0)

    # Proposing it again is refused at once, naming the reversal; nothing is stored, nothing moves.
    before = money_state()
    with pytest.raises(ValidationFailed, match=f"already reversed by {reversal.public_id}"):
        propose_reversal(alice, case=case, journal=original, now=at(3))
    assert ActionRequest.objects.count() == 1
    assert money_state() == before
    assert last_refusal("submit", case.case_number).error_code == "VALIDATION_FAILED"
    assert ledger_verify().ok


def test_two_reversal_requests_for_one_journal_reverse_it_once(alice, bob, case):
    original = fund("m_rev2", 3_000)
    first = propose_reversal(alice, case=case, journal=original, now=at(1))
    # The journal is the target: a second request waits until the first is decided.
    with pytest.raises(PolicyDenied, match=f"already has a change waiting: {first.public_id}"):
        propose_reversal(maker("carol"), case=case, journal=original, now=at(1))
    approve(bob, first, now=at(2))
    assert LedgerJournal.objects.filter(reverses=original).count() == 1


def test_a_reversal_itself_is_not_reversed(alice, bob, case):
    original = fund("m_rr", 3_000)
    approve(bob, propose_reversal(alice, case=case, journal=original, now=at(1)), now=at(2))
    reversal = LedgerJournal.objects.get(reverses=original)
    with pytest.raises(ValidationFailed, match="is itself a reversal"):
        propose_reversal(alice, case=case, journal=reversal, now=at(3))


@pytest.mark.parametrize("journal", ["", "lj_NOSUCHJOURNAL00000000000000", "CASE-2026-000001"])
def test_a_reversal_of_no_journal_is_refused(alice, case, journal):
    with pytest.raises(ValidationFailed):
        request_submit(
            action_type="REVERSE_LEDGER_JOURNAL", payload={"journal": journal}, reason_code="DUPLICATE",
            reason_text="duplicate", actor=actor_for(alice), now=at(1), idempotency_key=key("rev"),
            case_ref=case.case_number,
        )  # fmt: skip
    assert ActionRequest.objects.count() == 0


@pytest.mark.parametrize("amount", [0, -2_500, 2_500.0, "2500", True, None])
@pytest.mark.parametrize("kind", ["MERCHANT_CREDIT", "MERCHANT_DEBIT"])
def test_the_sign_of_an_amount_never_decides_the_direction(alice, case, amount, kind):
    fund("m_sign", 10_000)
    before = money_state()
    with pytest.raises(ValidationFailed, match="positive whole number of minor units; the type decides"):
        propose(alice, case=case, merchant="m_sign", amount_minor=amount, kind=kind)
    assert ActionRequest.objects.count() == 0
    assert money_state() == before
    assert last_refusal("submit", case.case_number).error_code == "VALIDATION_FAILED"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("merchant", "", "give the merchant's reference"),
        ("merchant", "m 1; DROP TABLE", "give the merchant's reference"),
        ("merchant", "m_" + "x" * 63, "give the merchant's reference"),
        ("currency", "ZZZ", "unknown ISO 4217 currency 'ZZZ'"),
        ("currency", "", "unknown ISO 4217 currency ''"),
        ("kind", "PAYOUT_SENT", "unknown adjustment type 'PAYOUT_SENT'"),
        ("kind", "CAPTURE_SUCCEEDED", "unknown adjustment type"),
    ],
)
def test_an_unknown_merchant_currency_or_type_is_refused(alice, case, field, value, message):
    arguments = {"merchant": "m_ok", "currency": "IDR", "kind": "MERCHANT_CREDIT", field: value}
    with pytest.raises(ValidationFailed, match=message):
        propose(alice, case=case, **arguments)
    assert ActionRequest.objects.count() == 0
    assert last_refusal("submit", case.case_number).error_code == "VALIDATION_FAILED"


def test_an_unknown_action_type_is_refused(alice, case):
    with pytest.raises(ValidationFailed, match="unknown action type 'DROP_LEDGER'"):
        request_submit(
            action_type="DROP_LEDGER", payload={}, reason_code="X", reason_text="x", actor=actor_for(alice),
            now=at(1), idempotency_key="k", case_ref=case.case_number,
        )  # fmt: skip
    assert ActionRequest.objects.count() == 0
