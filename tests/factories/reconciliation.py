"""Reconciliation test data, made only through the reconciliation services: sources, statement files
received and imported, expected internal movements refreshed from payments and the ledger, runs.

    src = reconciliation.source(parser="generic_csv")
    file = reconciliation.imported(src, reconciliation.bank_csv([("2026-03-02", "10.00", "IDR", "REF-1")]))
    run = reconciliation.run(src)
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable

from django.db import connection, transaction

from backoffice.actors import Actor, system_actor
from ledger.services import Source, journal_post_rule
from payments.models import EventSource, PaymentAttempt, Payout, Refund
from payments.providers.base import (
    ProviderAdapter,
    ProviderPayoutResult,
    ProviderRefundResult,
    ProviderStatus,
)
from payments.services import attempt_send
from payments.services.merchants import beneficiary_add
from payments.services.outcomes import OutcomeStatus, ProviderOutcome
from payments.services.payouts import payout_create, payout_send
from payments.services.refunds import refund_apply_outcome, refund_create, refund_send
from reconciliation.models import (
    ReconciliationItem,
    ReconciliationMatch,
    ReconciliationMatchItem,
    ReconciliationOpenItem,
    ReconciliationRun,
    ReconciliationSource,
    SourceKind,
    StatementFile,
)
from reconciliation.selectors.items import item_states
from reconciliation.services import (
    expected_items_refresh,
    reconciliation_run,
    source_create,
    statement_import,
    statement_receive,
)
from reconciliation.services.common import lock_source_for_new_items
from tests.factories import payments
from tests.factories.ledger import credit_merchant
from tests.factories.payments import CARD_TOKEN, T0, StubAdapter, fetch_attempt, payment_result

ACTOR: Actor = system_actor("recon_tests")
BANK_MAPPING = {"date": "date", "amount": "amount", "currency": "currency", "reference": "reference",
                "description": "description"}  # fmt: skip
DAY = dt.date(2026, 3, 2)  # the business date of tests.factories.payments.T0
_seq = itertools.count(1)


def source(*, code: str | None = None, parser: str = "generic_csv", kind: str = SourceKind.BANK_ACCOUNT,
           column_mapping: dict | None = None, currency: str = "", provider_code: str = "",
           **fields) -> ReconciliationSource:  # fmt: skip
    mapping = column_mapping if column_mapping is not None else (BANK_MAPPING if parser == "generic_csv" else None)
    return source_create(
        code=code or f"src-{next(_seq)}", name=fields.pop("name", "Test source"), kind=kind, parser=parser,
        currency=currency, provider_code=provider_code, column_mapping=mapping, actor=ACTOR, now=T0, **fields,
    )  # fmt: skip


def provider_source(provider_code: str = "sim", **fields) -> ReconciliationSource:
    """A provider account read with the generic CSV mapping (reference, amount), for captures of `provider_code`."""
    return source(kind=SourceKind.PROVIDER_ACCOUNT, provider_code=provider_code, **fields)


def bank_csv(rows: Iterable[tuple[str, str, str, str]], *, description: str = "line") -> bytes:
    """A bank export for BANK_MAPPING: rows of (date, amount in major units, currency, reference)."""
    lines = ["date,amount,currency,reference,description"]
    lines.extend(f"{d},{amount},{cur},{ref},{description} {n}" for n, (d, amount, cur, ref) in enumerate(rows, 1))
    return ("\n".join(lines) + "\n").encode()


def stripe_csv(rows: Iterable[tuple[str, str, str, str, str]]) -> bytes:
    """A Stripe itemized settlement report: rows of (reference, gross, fee, currency, category), net computed."""
    lines = ["balance_transaction_id,created,available_on,currency,gross,fee,net,reporting_category,source_id,"
             "payment_intent_id,automatic_payout_id"]  # fmt: skip
    for n, (reference, gross, fee, currency, category) in enumerate(rows, 1):
        net = _major(_minor(gross) - _minor(fee))
        lines.append(f"txn_{n},2026-03-02 10:00:00,2026-03-03 00:00:00,{currency},{gross},{fee},{net},{category},"
                     f"{reference},,po_test")  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _minor(major: str) -> int:
    whole, _, frac = major.lstrip("-").partition(".")
    value = int(whole) * 100 + int((frac + "00")[:2])
    return -value if major.startswith("-") else value


def _major(minor: int) -> str:
    return f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def received(src: ReconciliationSource, data: bytes, filename: str = "statement.csv", *,
             now: dt.datetime = T0) -> StatementFile:  # fmt: skip
    file, _ = statement_receive(source=src, filename=filename, data=data, actor=ACTOR, now=now)
    return file


def imported(src: ReconciliationSource, data: bytes, filename: str = "statement.csv", *,
             now: dt.datetime = T0) -> StatementFile:  # fmt: skip
    file = received(src, data, filename, now=now)
    return statement_import(file_id=file.public_id, actor=ACTOR, now_fn=lambda: now)


def refresh(src: ReconciliationSource, *, since: dt.date = DAY, until: dt.date = DAY, now: dt.datetime = T0) -> int:
    return expected_items_refresh(source=src, since=since, until=until, actor=ACTOR, now=now)


def run(src: ReconciliationSource, *, now: dt.datetime = T0) -> ReconciliationRun:
    return reconciliation_run(source=src, actor=ACTOR, now_fn=lambda: now)


def settlement(batch: str, *, net: int, fee: int = 0, currency: str = "IDR", key: str | None = None,
               accounting_date: dt.date = DAY):  # fmt: skip
    """A SETTLEMENT_RECEIVED journal (a provider's settlement credited at the bank) for batch `batch`."""
    return journal_post_rule(
        rule_code="SETTLEMENT_RECEIVED", currency=currency, amounts={"NET": net, "FEE": fee, "GROSS": net + fee},
        source=Source("provider_settlement", batch), accounting_date=accounting_date,
        idempotency_key=key or f"settlement-{batch}-{next(_seq)}", actor=ACTOR, now=T0,
    )  # fmt: skip


def items(src: ReconciliationSource, **filters) -> list[ReconciliationItem]:
    return list(ReconciliationItem.objects.filter(source=src, **filters).order_by("id"))


def snapshot(src: ReconciliationSource) -> list[tuple]:
    """Every item's id, status and match: what a run may change."""
    ids = list(ReconciliationItem.objects.filter(source=src).order_by("id").values_list("id", flat=True))
    states = item_states(ids)
    return [(pk, states[pk].status, states[pk].match_id) for pk in ids]


def status_of(item: ReconciliationItem | int) -> str:
    pk = item if isinstance(item, int) else item.pk
    return item_states([pk])[pk].status


def match_of(item: ReconciliationItem | int) -> int | None:
    pk = item if isinstance(item, int) else item.pk
    return item_states([pk])[pk].match_id


def left_open(src: ReconciliationSource) -> list[tuple]:
    """The source's open items as a run leaves them to breaks_sync (its `left`)."""
    rows = ReconciliationItem.objects.filter(
        pk__in=ReconciliationOpenItem.objects.filter(source_id=src.pk).values("item_id")
    ).values_list("id", "side", "amount_minor", "currency", "value_date")
    return [(pk, side == "EXTERNAL", amount, currency, day) for pk, side, amount, currency, day in rows]


def new_item(**fields) -> ReconciliationItem:
    """Set-up only: an item written as an import or a refresh writes one, under its source's lock (new:
    above the source's watermark, the next run's work)."""
    source_id = fields["source"].pk if "source" in fields else fields["source_id"]
    with transaction.atomic():
        lock_source_for_new_items(source_id)
        return ReconciliationItem.objects.create(**fields)


def open_item(item: ReconciliationItem) -> ReconciliationItem:
    """Set-up only: the item as a run leaves it unexplained (considered: the source's watermark moves up
    to it; and open, the next run's work)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO reconciliation_reconciliationwatermark AS w
                      (source_id, considered_through, decisions_through) VALUES (%s, %s, 0)
               ON CONFLICT (source_id) DO UPDATE
               SET considered_through = GREATEST(w.considered_through, EXCLUDED.considered_through)""",
            [item.source_id, item.pk],
        )
    ReconciliationOpenItem.objects.create(source_id=item.source_id, item=item)
    return item


def considered_item(**fields) -> ReconciliationItem:
    """Set-up only: an item a run has considered and left unexplained (see new_item, open_item)."""
    return open_item(new_item(**fields))


def match_directly(match: ReconciliationMatch, items: list[ReconciliationItem]) -> ReconciliationMatch:
    """Set-up only: the items join `match` as a run writes them (off the open items, one membership each)."""
    ReconciliationOpenItem.objects.filter(item_id__in=[i.pk for i in items]).delete()
    ReconciliationMatchItem.objects.bulk_create(
        ReconciliationMatchItem(match=match, item=i, external=i.side == "EXTERNAL") for i in items
    )
    return match


# --- what payments and the ledger record (the internal side) ------------------------------------------


class ProviderDouble(ProviderAdapter):
    """Answers refunds and payouts as succeeded, with provider references rf-<id> / po-<id>."""

    def __init__(self, provider_code: str = payments.PROVIDER) -> None:
        self.provider_code = provider_code

    def refund(self, req):
        return ProviderRefundResult(
            status=ProviderStatus.SUCCEEDED, provider_reference=f"prov-{req.refund_id}",
            merchant_reference=req.refund_id, amount_minor=req.amount_minor, currency=req.currency,
            merchant_id=req.merchant_id, provider_status="succeeded", decline_code="",
        )  # fmt: skip

    def payout(self, req):
        return ProviderPayoutResult(
            status=ProviderStatus.SUCCEEDED, provider_reference=f"prov-{req.payout_id}",
            merchant_reference=req.payout_id, amount_minor=req.amount_minor, currency=req.currency,
            merchant_id=req.merchant_id, provider_status="paid",
        )  # fmt: skip

    def create_payment(self, req):
        raise NotImplementedError

    def query_status(self, **kwargs):
        raise NotImplementedError


def capture(*, amount_minor: int = 1_000_000, currency: str = "IDR", provider_code: str = payments.PROVIDER,
            provider_reference: str | None = None, now: dt.datetime = T0) -> PaymentAttempt:  # fmt: skip
    """A captured payment (CAPTURE_SUCCEEDED posted), through the payment services."""
    merchant = payments.merchant(default_currency=currency, now=now)
    created = payments.attempt(payments.intent(merchant=merchant, amount_minor=amount_minor, currency=currency,
                                               now=now), provider_code=provider_code, now=now)  # fmt: skip

    def answer(req):
        changes = {"provider_reference": provider_reference} if provider_reference else {}
        return payment_result(req, status=ProviderStatus.SUCCEEDED, **changes)

    attempt_send(attempt_id=created.public_id, actor=payments.system(), now=now, card_token=CARD_TOKEN,
                 adapter=StubAdapter(answer, provider_code=provider_code))  # fmt: skip
    return fetch_attempt(created.public_id)


def refund_succeeded(attempt: PaymentAttempt, amount_minor: int, *, now: dt.datetime = T0) -> Refund:
    """A refund of `attempt` the provider confirmed (REFUND_SUCCEEDED posted)."""
    intent = attempt.payment_intent
    credit_merchant(intent.merchant.public_id, attempt.amount_minor, currency=attempt.currency)
    refund = refund_create(intent=intent, amount_minor=amount_minor, reason_code="CUSTOMER_REQUEST",
                           reason_text="Customer returned the goods", idempotency_key=f"rf-{next(_seq)}",
                           actor=ACTOR, now=now)  # fmt: skip
    refund_send(refund_id=refund.public_id, actor=ACTOR, now=now, adapter=ProviderDouble(attempt.provider_code))
    outcome = ProviderOutcome(
        status=OutcomeStatus.SUCCEEDED, provider_code=attempt.provider_code,
        provider_reference=f"prov-{refund.public_id}", our_reference=refund.public_id,
        merchant_ref=intent.merchant.public_id, amount_minor=amount_minor, currency=attempt.currency,
    )  # fmt: skip
    refund_apply_outcome(refund_id=refund.public_id, outcome=outcome, source=EventSource.WEBHOOK, actor=ACTOR, now=now)
    return Refund.objects.get(pk=refund.pk)


def payout_sent(amount_minor: int, *, provider_code: str = payments.PROVIDER, now: dt.datetime = T0) -> Payout:
    """A payout sent to the merchant's bank (PAYOUT_SENT posted)."""
    merchant = payments.merchant(now=now)
    beneficiary = beneficiary_add(merchant=merchant, bank_code="BCA", bank_name="Bank Central Asia",
                                  account_holder="PT Toko Test", account_number="1234567890", currency="IDR",
                                  actor=ACTOR, now=now)  # fmt: skip
    credit_merchant(merchant.public_id, amount_minor)
    payout = payout_create(merchant=merchant, beneficiary=beneficiary, amount_minor=amount_minor, currency="IDR",
                           idempotency_key=f"po-{next(_seq)}", actor=ACTOR, now=now)  # fmt: skip
    payout_send(payout_id=payout.public_id, actor=ACTOR, now=now, adapter=ProviderDouble(provider_code))
    return Payout.objects.get(pk=payout.pk)
