"""Expected internal movements: what payments and the ledger say should appear on a source's files."""

import datetime as dt

import pytest

from audit.models import AuditEvent
from backoffice.errors import ValidationFailed
from payments.services import attempt_void
from reconciliation.models import (
    FileStatus,
    ItemSide,
    MatchStatus,
    ReconciliationItem,
    ReconciliationOpenItem,
    SourceKind,
)
from reconciliation.selectors.items import not_yet_considered
from reconciliation.services import expected_items_refresh
from reconciliation.services.cardlike import pseudonym
from tests.card_number_guard import card_numbers
from tests.factories import reconciliation as recon
from tests.factories.payments import T0

pytestmark = pytest.mark.django_db
DAY = recon.DAY


def internal(src) -> list[ReconciliationItem]:
    return recon.items(src, side=ItemSide.INTERNAL)


def test_captures_of_the_providers_period_become_capture_items_once():
    # Given two captures at provider sim, one at another provider, and one on another day
    first = recon.capture(amount_minor=1_000_000)
    second = recon.capture(amount_minor=250_000)
    recon.capture(amount_minor=777_000, provider_code="other")
    recon.capture(amount_minor=888_000, now=T0 + dt.timedelta(days=3))
    src = recon.provider_source("sim")
    # When the period is refreshed
    created = recon.refresh(src)
    # Then each capture of sim in the period is one CAPTURE item: amount, fee, reference, date
    assert created == 2
    items = {item.internal_id: item for item in internal(src)}
    assert set(items) == {first.public_id, second.public_id}
    item = items[first.public_id]
    assert (item.kind, item.internal_type, item.amount_minor, item.currency) == ("CAPTURE", "payment_attempt",
                                                                                 1_000_000, "IDR")  # fmt: skip
    assert (item.gross_minor, item.fee_minor, item.net_minor) == (1_000_000, first.fee_minor,
                                                                  1_000_000 - first.fee_minor)  # fmt: skip
    assert item.reference == first.provider_reference and item.reference
    assert (item.value_date, recon.status_of(item), item.statement_file_id) == (DAY, MatchStatus.UNMATCHED, None)
    # The next run's work: new, above the source's watermark
    ids = sorted(i.pk for i in items.values())
    assert not_yet_considered(src.pk, ids) == ids
    assert not ReconciliationOpenItem.objects.filter(source_id=src.pk).exists()
    assert item.references["payment_intent"] == first.payment_intent.public_id
    # And a second refresh, or an overlapping one, adds nothing
    assert recon.refresh(src) == 0
    assert recon.refresh(src, since=DAY - dt.timedelta(days=5), until=DAY + dt.timedelta(days=1)) == 0
    assert len(internal(src)) == 2
    event = AuditEvent.objects.filter(event_type="reconciliation.expected_items_refreshed").latest("seq")
    assert event.after["created"] == 0


def test_a_reversed_capture_is_not_expected_outside():
    voided = recon.capture(amount_minor=500_000)
    attempt_void(attempt_id=voided.public_id, reason_code="CUSTOMER_REQUEST", reason_text="Order canceled",
                 actor=recon.ACTOR, now=T0, idempotency_key="void-1")  # fmt: skip
    src = recon.provider_source("sim")
    assert recon.refresh(src) == 0


def test_refunds_are_negative_refund_items_with_the_providers_refund_reference():
    attempt = recon.capture(amount_minor=1_000_000)
    refund = recon.refund_succeeded(attempt, 300_000)
    src = recon.provider_source("sim")
    recon.refresh(src)
    item = ReconciliationItem.objects.get(source=src, kind="REFUND")
    assert (item.internal_id, item.amount_minor, item.currency) == (refund.public_id, -300_000, "IDR")
    assert item.reference == refund.provider_refund_reference == f"prov-{refund.public_id}"
    assert item.references["payment_reference"] == attempt.provider_reference


def test_a_bank_source_expects_payouts_and_settlements():
    payout = recon.payout_sent(40_000)
    recon.settlement("stl-7", net=95_000, fee=5_000)
    src = recon.source(kind=SourceKind.BANK_ACCOUNT, currency="IDR")
    assert recon.refresh(src) == 2
    out = ReconciliationItem.objects.get(source=src, kind="PAYOUT")
    assert (out.internal_id, out.amount_minor, out.reference) == (payout.public_id, -40_000, payout.public_id)
    stl = ReconciliationItem.objects.get(source=src, kind="SETTLEMENT")
    assert (stl.amount_minor, stl.gross_minor, stl.fee_minor, stl.net_minor) == (95_000, 100_000, 5_000, 95_000)
    assert (stl.internal_type, stl.batch_id, stl.reference) == ("ledger_journal", "stl-7", "")
    # And a USD bank account expects none of them
    assert recon.refresh(recon.source(kind=SourceKind.BANK_ACCOUNT, currency="USD")) == 0


def test_a_card_number_like_provider_reference_is_kept_as_its_pseudonym_and_still_matches():
    # Given a capture whose provider reference holds a Luhn-valid digit run, and a statement line naming it
    attempt = recon.capture(amount_minor=120_000, provider_reference="REF5555593193155555")
    src = recon.provider_source("sim")
    recon.refresh(src)
    [item] = internal(src)
    assert item.reference == "REF" + pseudonym("5555593193155555")
    assert card_numbers(item.reference) == []
    file = recon.imported(src, recon.bank_csv([("2026-03-02", "1200.00", "IDR", "REF5555593193155555")]))
    assert file.status == FileStatus.IMPORTED
    # When matched, the two pseudonyms compare equal
    recon.run(src)
    line = ReconciliationItem.objects.get(statement_file=file)
    assert line.reference == item.reference
    assert recon.status_of(line) == MatchStatus.MATCHED
    assert recon.match_of(line) == recon.match_of(item)
    assert attempt.provider_reference == "REF5555593193155555"  # what payments keeps is theirs to mask


def test_an_empty_period_and_a_provider_source_without_provider_are_refused():
    src = recon.provider_source("sim")
    with pytest.raises(ValidationFailed):
        expected_items_refresh(source=src, since=DAY, until=DAY - dt.timedelta(days=1), actor=recon.ACTOR, now=T0)
    nameless = recon.source(kind=SourceKind.PROVIDER_ACCOUNT)
    with pytest.raises(ValidationFailed, match="provider code"):
        recon.refresh(nameless)
