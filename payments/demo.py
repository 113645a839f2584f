"""Demo payments for `manage.py demo_seed`: merchants with payout accounts and customers, a few
thousand payments spread over the last 30 days in every state, refunds, payouts, disputes,
provider webhooks (processed, duplicated, quarantined, refused) and merchant changes waiting for
a second person, so the screens have something true to show on first run.

Everything is made through the payment services against the simulated provider over HTTP, the
same path production takes: the seed starts its own simulator on a free loopback port and points
the provider settings at it while it runs. Scenarios are chosen by the simulator's amount
suffixes (see payments.providers.simulator): 51 declines, 61 fails, 91 times out, 92 settles
later. What the simulator cannot be asked for (a payment awaiting 3-D Secure, an authorization
waiting for a manual capture, an expiry) is applied as the provider's webhook would apply it.

Size: settings.DEMO_PAYMENT_COUNT (DEMO_PAYMENT_COUNT in the environment). Deterministic (one
seeded random generator) and idempotent: a second run finds the demo merchants' payments and
adds nothing. The ledger verifies clean afterwards; a test holds that.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model

from approvals.services import request_submit
from backoffice.actors import Actor
from backoffice.celery import app as celery_app
from backoffice.errors import DomainError
from payments.models import (
    AttemptStatus,
    Customer,
    Merchant,
    MerchantBeneficiary,
    MethodType,
    PaymentAttempt,
    PaymentIntent,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
)
from payments.providers.http import HttpProviderAdapter
from payments.providers.simulator import SimulatorHandle, start_simulator
from payments.services import (
    ProviderOutcome,
    attempt_apply_outcome,
    attempt_capture,
    attempt_create,
    attempt_send,
    attempt_void,
    beneficiary_add,
    customer_create,
    dispute_open,
    dispute_resolve,
    inquiry_request,
    inquiry_run,
    intent_create,
    merchant_create,
    payable_available_minor,
    payout_create,
    payout_send,
    refund_create,
    refund_send,
    restriction_impose,
)
from payments.services.outcomes import OutcomeStatus
from payments.webhooks.ingest import webhook_receive
from payments.webhooks.process import webhook_process

DEMO_CARD_TOKEN = "tok_demo_visa"  # noqa: S105 (a token name, not a secret) the simulator's token; never a card number
PROVIDER_ACCOUNT = "acct_demo_main"


@dataclass(frozen=True)
class DemoMerchant:
    key: str
    public_id: str  # fixed for the two merchants the ledger demo already posts for; "" derives one
    name: str
    legal_name: str
    region: str
    currency: str
    risk_tier: str
    contact_name: str
    contact_email: str
    contact_phone: str
    bank_code: str
    bank_name: str
    account_number: str
    # A typical basket in major units (low, high); minor units follow from the currency's exponent.
    basket: tuple[int, int]
    share: int  # relative share of the demo's payments


MERCHANTS = (
    DemoMerchant("coffee", "m_demo_coffee", "Demo Coffee Roasters", "PT Kopi Demo Nusantara", "ID", "IDR", "LOW",
                 "Dewi Lestari", "finance@demo-coffee.example", "+6281234500001", "BCA", "Bank Central Asia",
                 "8830012345", (25_000, 1_500_000), 4),
    DemoMerchant("books", "m_demo_books", "Demo Books", "Demo Books LLC", "US", "USD", "MEDIUM",
                 "Alex Reader", "accounts@demo-books.example", "+12025550143", "CHASUS33", "JPMorgan Chase",
                 "000123456789", (8, 250), 3),
    DemoMerchant("gadgets", "", "Manila Gadget Hub", "Gadget Hub Trading Inc.", "PH", "PHP", "MEDIUM",
                 "Miguel Santos", "billing@gadgethub.example", "+639171234567", "BDO", "BDO Unibank",
                 "001230045678", (300, 45_000), 2),
    DemoMerchant("warung", "", "Warung Digital Sejahtera", "CV Warung Digital Sejahtera", "ID", "IDR", "HIGH",
                 "Budi Santoso", "owner@warungdigital.example", "+6285712345678", "BRI", "Bank Rakyat Indonesia",
                 "002101000123", (10_000, 400_000), 1),
)  # fmt: skip

# What becomes of a demo payment, with its weight. Most are captured, as in life.
FATES = (
    ("captured", 62), ("refunded", 8), ("disputed", 2), ("declined", 9), ("failed", 3), ("unknown", 4),
    ("pending", 2), ("settled_by_webhook", 3), ("requires_action", 2), ("authorized", 2), ("captured_manually", 1),
    ("canceled", 1), ("expired", 1),
)  # fmt: skip
# The simulator's scenario for each fate, by the amount's last two digits (None: any successful suffix).
SUFFIX = {"declined": (51, 52), "failed": (61,), "unknown": (91,), "pending": (92,), "settled_by_webhook": (92,),
          "requires_action": (92,), "authorized": (92,), "captured_manually": (92,), "canceled": (92,),
          "expired": (92,)}  # fmt: skip


def demo_payment_count() -> int:
    return int(getattr(settings, "DEMO_PAYMENT_COUNT", 2000))


# --- the provider the seed talks to --------------------------------------------------------------------


@contextlib.contextmanager
def demo_provider() -> Iterator[tuple[SimulatorHandle, HttpProviderAdapter]]:
    """A simulator of our own for the seed's duration, and the provider settings pointed at it, so
    the services and any task they run at once (tasks run in-process meanwhile) all reach it. The
    read timeout is short so the timeout scenario costs a fraction of a second per payment."""
    read_timeout = 0.2
    handle = start_simulator(timeout_delay=read_timeout * 3, settle_delay=3600, auto_webhooks="off")
    adapter = HttpProviderAdapter(base_url=handle.base_url, provider_code=handle.provider_code, api_key="",
                                  connect_timeout=2.0, read_timeout=read_timeout)  # fmt: skip
    changed = {"PAYMENTS_PROVIDER_BASE_URL": handle.base_url, "PAYMENTS_PROVIDER_CODE": handle.provider_code,
               "PAYMENTS_PROVIDER_API_KEY": "", "PAYMENTS_PROVIDER_READ_TIMEOUT": read_timeout}  # fmt: skip
    missing = object()
    saved = {name: getattr(settings, name, missing) for name in changed}
    eager = celery_app.conf.task_always_eager
    # Thousands of provider calls and task runs would bury the seed's summary; warnings about the
    # demo's deliberately bad webhooks too. The audit trail and the timeline keep all of it.
    quiet = {name: logging.getLogger(name).level for name in ("payments", "celery", "ledger", "approvals", "cases")}
    try:
        for name, value in changed.items():
            setattr(settings, name, value)
        celery_app.conf.task_always_eager = True
        for name in quiet:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield handle, adapter
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        celery_app.conf.task_always_eager = eager
        for name, value in saved.items():
            if value is missing:
                delattr(settings, name)
            else:
                setattr(settings, name, value)
        handle.stop()


# --- the seed --------------------------------------------------------------------------------------------


@dataclass
class _Seeding:
    actor: Actor
    now: dt.datetime
    rng: random.Random
    handle: SimulatorHandle
    adapter: HttpProviderAdapter
    merchants: dict[str, Merchant]
    customers: dict[str, list[Customer]]
    captured: list[tuple[str, PaymentAttempt]]  # (fate, attempt) of the payments captured


def payments_demo_seed(*, actor: Actor, now: dt.datetime, count: int | None = None) -> str:
    count = demo_payment_count() if count is None else count
    if PaymentIntent.objects.filter(business_type="DEMO_ORDER").exists():
        return f"{PaymentIntent.objects.filter(business_type='DEMO_ORDER').count()} demo payments already in place"
    with demo_provider() as (handle, adapter):
        rng = random.Random(20261121)  # noqa: S311 (demo data, not security)
        seeding = _Seeding(actor=actor, now=now, rng=rng, handle=handle, adapter=adapter, merchants={}, customers={},
                           captured=[])  # fmt: skip
        _onboard(seeding)
        _payments(seeding, count)
        _refunds(seeding)
        _disputes(seeding)
        _payouts(seeding)
        _webhooks(seeding)
        _inquiries(seeding)
        _pending_changes(seeding)
    return _summary()


def _onboard(s: _Seeding) -> None:
    start = s.now - dt.timedelta(days=45)
    for m in MERCHANTS:
        merchant = merchant_create(
            name=m.name, legal_name=m.legal_name, region=m.region, default_currency=m.currency, risk_tier=m.risk_tier,
            contact_name=m.contact_name, contact_email=m.contact_email, contact_phone=m.contact_phone,
            public_id=m.public_id, idempotency_key=f"demo:merchant:{m.key}", actor=s.actor, now=start,
        )  # fmt: skip
        beneficiary_add(merchant=merchant, bank_code=m.bank_code, bank_name=m.bank_name, account_holder=m.legal_name,
                        account_number=m.account_number, currency=m.currency, actor=s.actor, now=start)  # fmt: skip
        s.merchants[m.key] = merchant
        s.customers[m.key] = [
            customer_create(
                merchant=merchant,
                reference=f"demo-{m.key}-cust-{n:03d}",
                actor=s.actor,
                now=start,
                email=f"customer{n:03d}.{m.key}@example.com",
                phone=_phone(m.region, n),
            )
            for n in range(1, 25)
        ]


def _phone(region: str, n: int) -> str:
    return {"ID": f"+62812{7000000 + n:07d}", "US": f"+1202555{n:04d}", "PH": f"+63917{5000000 + n:07d}"}[region]


def _amount(s: _Seeding, m: DemoMerchant, fate: str) -> int:
    from backoffice.money import currency_exponent

    low, high = m.basket
    major = s.rng.randint(low, high)
    minor = major * 10 ** currency_exponent(m.currency)
    suffixes = SUFFIX.get(fate)
    suffix = s.rng.choice(suffixes) if suffixes else s.rng.choice((0, 0, 0, 25, 50))
    return max(minor - minor % 100, 100) + suffix


def _payments(s: _Seeding, count: int) -> None:
    merchants = [m for m in MERCHANTS for _ in range(m.share)]
    fates = [fate for fate, weight in FATES for _ in range(weight)]
    # Business times spread over the last 30 days, oldest first, none in the last hour (so the
    # sweeper's "stale" reading of UNKNOWN_OUTCOME payments is true at once).
    span = int(dt.timedelta(days=30).total_seconds()) - 3600
    moments = sorted(s.now - dt.timedelta(seconds=3600 + s.rng.randrange(span)) for _ in range(count))
    # A few unpaid intents, then every fate once (so even a small seed shows every state), then chance.
    planned = ["unpaid"] * 3 + [fate for fate, _ in FATES]
    for n, moment in enumerate(moments, start=1):
        fate = planned[n - 1] if n <= len(planned) else s.rng.choice(fates)
        merchant = MERCHANTS[n % len(MERCHANTS)] if n <= len(planned) else s.rng.choice(merchants)
        _payment(s, merchant, fate, n=n, at=moment)


def _payment(s: _Seeding, m: DemoMerchant, fate: str, *, n: int, at: dt.datetime) -> None:
    merchant = s.merchants[m.key]
    intent = intent_create(
        merchant=merchant, amount_minor=_amount(s, m, fate), currency=m.currency, business_type="DEMO_ORDER",
        business_id=f"{m.key.upper()}-{n:06d}", idempotency_key=f"demo:intent:{n}", actor=s.actor, now=at,
        customer=s.rng.choice(s.customers[m.key]), description=f"Demo order {n}",
        capture_mode="MANUAL" if fate in ("authorized", "captured_manually", "canceled") else "AUTOMATIC",
    )  # fmt: skip
    if fate == "unpaid":
        return
    card = s.rng.random() < 0.8
    attempt = attempt_create(
        intent=intent, method_type=MethodType.CARD if card else MethodType.BANK_TRANSFER, provider_code="sim",
        provider_account=PROVIDER_ACCOUNT, idempotency_key=f"demo:attempt:{n}", actor=s.actor, now=at,
        **(_card(s) if card else {}),
    )  # fmt: skip
    attempt_send(attempt_id=attempt.public_id, actor=s.actor, now=at, adapter=s.adapter,
                 card_token=DEMO_CARD_TOKEN if card else "")  # fmt: skip
    later = at + dt.timedelta(minutes=s.rng.randint(1, 20))
    steps = {
        "settled_by_webhook": (), "requires_action": (OutcomeStatus.REQUIRES_ACTION,),
        "authorized": (OutcomeStatus.AUTHORIZED,), "captured_manually": (OutcomeStatus.AUTHORIZED,),
        "canceled": (OutcomeStatus.AUTHORIZED,), "expired": (OutcomeStatus.REQUIRES_ACTION, OutcomeStatus.EXPIRED),
    }.get(fate, ())  # fmt: skip
    for status in steps:
        _provider_says(s, attempt.public_id, status, at=later)
    if fate == "captured_manually":
        attempt_capture(attempt_id=attempt.public_id, actor=s.actor, now=later + dt.timedelta(hours=2),
                        idempotency_key=f"demo:capture:{n}")  # fmt: skip
    elif fate == "canceled":
        attempt_void(attempt_id=attempt.public_id, reason_code="CUSTOMER_REQUEST", reason_text="Order canceled",
                     actor=s.actor, now=later + dt.timedelta(hours=1), idempotency_key=f"demo:void:{n}")  # fmt: skip
    elif fate == "settled_by_webhook":
        s.handle.settle(attempt.public_id)
        _deliver(s, "payment.succeeded", attempt.public_id, at=later)
    attempt = PaymentAttempt.objects.select_related("payment_intent__merchant").get(pk=attempt.pk)
    if attempt.status == AttemptStatus.SUCCEEDED and fate in ("captured", "refunded", "disputed", "captured_manually"):
        s.captured.append((fate, attempt))


def _card(s: _Seeding) -> dict[str, str]:
    brand, last4 = s.rng.choice((("VISA", "4242"), ("VISA", "1881"), ("MASTERCARD", "4444"), ("MASTERCARD", "5100"),
                                 ("AMEX", "8431"), ("JCB", "0000")))  # fmt: skip
    return {"card_brand": brand, "card_last4": last4, "card_fingerprint": f"fp_demo_{brand.lower()}_{last4}"}


def _provider_says(s: _Seeding, attempt_id: str, status: str, *, at: dt.datetime) -> None:
    attempt = PaymentAttempt.objects.select_related("payment_intent__merchant").get(public_id=attempt_id)
    outcome = ProviderOutcome(
        status=status, provider_code=attempt.provider_code, provider_reference=attempt.provider_reference,
        our_reference=attempt.public_id, merchant_ref=attempt.payment_intent.merchant.public_id,
        amount_minor=attempt.amount_minor, currency=attempt.currency, raw_status=status.lower(), occurred_at=at,
    )  # fmt: skip
    attempt_apply_outcome(attempt_id=attempt_id, outcome=outcome, source="WEBHOOK", actor=s.actor, now=at)


def _deliver(s: _Seeding, event_type: str, reference: str, *, at: dt.datetime, **build) -> object:
    """A webhook as the provider signs it, received and processed now (deliveries carry today's
    signature time: the receiver refuses stale signatures, as it should)."""
    received_at = s.now
    _, body, headers = s.handle.build_webhook(event_type, reference, occurred_at=at,
                                              timestamp=int(received_at.timestamp()), **build)  # fmt: skip
    event = webhook_receive(provider_code="sim", headers=headers, body=body, received_at=received_at, actor=s.actor)
    if event.processing_status == "RECEIVED":
        webhook_process(event_id=event.public_id, actor=s.actor, now=received_at)
    return event


def _refunds(s: _Seeding) -> None:
    for n, attempt in enumerate(a for fate, a in s.captured if fate == "refunded"):
        intent = attempt.payment_intent
        full = n % 3 == 0
        third = intent.amount_minor // 3
        amount = intent.amount_minor if full else max(100, third - third % 100)
        if n % 7 == 3:
            amount = amount - amount % 100 + 61 if amount > 100 else amount  # the provider fails this one
        at = intent.created_at + dt.timedelta(days=1)
        try:
            refund = refund_create(intent=intent, amount_minor=amount, reason_code="CUSTOMER_REQUEST",
                                   reason_text="Returned goods", idempotency_key=f"demo:refund:{intent.public_id}",
                                   actor=s.actor, now=min(at, s.now))  # fmt: skip
        except DomainError:
            continue  # e.g. the merchant's balance does not cover it on that day: refused and audited
        refund = Refund.objects.get(pk=refund.pk)
        if refund.status == RefundStatus.REQUESTED and n % 5 != 4:  # a few stay requested, not yet sent
            refund_send(refund_id=refund.public_id, actor=s.actor, now=min(at, s.now), adapter=s.adapter)


def _disputes(s: _Seeding) -> None:
    for n, attempt in enumerate(a for fate, a in s.captured if fate == "disputed"):
        intent = attempt.payment_intent
        at = min(intent.created_at + dt.timedelta(days=3), s.now)
        dispute_open(intent_id=intent.public_id, reason_code="FRAUDULENT", reason_text="Cardholder does not "
                     "recognise the charge", actor=s.actor, now=at, idempotency_key=f"demo:dispute:{intent.public_id}",
                     source="WEBHOOK")  # fmt: skip
        if n % 3 == 0:
            continue  # still open
        dispute_resolve(intent_id=intent.public_id, won=n % 3 == 2, reason_code="SCHEME_DECISION",
                        reason_text="Scheme ruling received", actor=s.actor, now=min(at + dt.timedelta(days=5), s.now),
                        idempotency_key=f"demo:dispute-resolved:{intent.public_id}", source="WEBHOOK")  # fmt: skip


def _payouts(s: _Seeding) -> None:
    """Each merchant is paid out part of its balance a few times; one payout comes back from the
    bank; the high-risk merchant's payouts wait for review (a REVIEW restriction)."""
    restriction_impose(
        merchant=s.merchants["warung"], capability="CREATE_PAYOUT", mode="REVIEW", reason_code="RISK_REVIEW",
        reason_text="New merchant with a rising refund rate: payouts reviewed by risk", source="RISK",
        actor=s.actor, now=s.now - dt.timedelta(days=2),
    )  # fmt: skip
    for m in MERCHANTS:
        merchant = s.merchants[m.key]
        beneficiary = MerchantBeneficiary.objects.get(merchant=merchant, currency=m.currency, status="ACTIVE")
        for n in range(3):
            available, _ = payable_available_minor(merchant=merchant, currency=m.currency)
            amount = (available // 4) - (available // 4) % 100
            if amount <= 0:
                break
            if m.key == "gadgets" and n == 1:
                amount += 96  # the beneficiary bank returns it
            at = s.now - dt.timedelta(days=3 - n)
            payout = payout_create(merchant=merchant, beneficiary=beneficiary, amount_minor=amount, currency=m.currency,
                                   idempotency_key=f"demo:payout:{m.key}:{n}", actor=s.actor, now=at)  # fmt: skip
            payout = Payout.objects.get(pk=payout.pk)
            if payout.status == PayoutStatus.APPROVED:
                payout_send(payout_id=payout.public_id, actor=s.actor, now=at, adapter=s.adapter)
            # The provider is called after commit; inside a transaction that never commits (a test's)
            # it was not, and there is nothing at the provider to return.
            sent = s.handle.get(payout.public_id) is not None
            if amount % 100 == 96 and sent:
                s.handle.settle(payout.public_id)
                _deliver(s, "payout.returned", payout.public_id, at=at + dt.timedelta(days=1))


def _webhooks(s: _Seeding) -> None:
    """What arrives from a provider on a bad day: a duplicate delivery, an event about a payment we
    never made, one whose amount disagrees with ours, and one with a bad signature."""
    captured = [a for fate, a in s.captured if fate == "captured"][:3]
    if not captured:
        return
    first = captured[0]
    event_id = f"sev_demo_duplicate_{first.public_id}"
    _deliver(s, "payment.succeeded", first.public_id, at=s.now, event_id=event_id)
    _deliver(s, "payment.succeeded", first.public_id, at=s.now, event_id=event_id)
    _deliver(
        s,
        "payment.succeeded",
        first.public_id,
        at=s.now,
        event_id=f"sev_demo_unknown_{first.public_id}",
        overrides={"merchant_reference": "pa_demo_never_made", "provider_reference": "sim_pay_demo_unknown"},
    )
    if len(captured) > 1:
        other = captured[1]
        _deliver(s, "payment.succeeded", other.public_id, at=s.now, event_id=f"sev_demo_amount_{other.public_id}",
                 overrides={"amount_minor": other.amount_minor + 100})  # fmt: skip
    if len(captured) > 2:
        _deliver(s, "payment.succeeded", captured[2].public_id, at=s.now, secret=b"whsec_not_ours",
                 event_id=f"sev_demo_forged_{captured[2].public_id}")  # fmt: skip


def _inquiries(s: _Seeding) -> None:
    """An operator refreshed a few unknown payments from the provider: it had taken the money."""
    demo = PaymentAttempt.objects.filter(payment_intent__business_type="DEMO_ORDER")
    unknown = list(demo.filter(status=AttemptStatus.UNKNOWN_OUTCOME).order_by("id"))
    for attempt in unknown[: min(5, len(unknown) // 3)]:  # most stay unknown, for the queue
        inquiry = inquiry_request(attempt_id=attempt.public_id, trigger="OPERATOR", reason_code="CUSTOMER_COMPLAINT",
                                  reason_text="Customer says the card was charged", actor=s.actor, now=s.now,
                                  idempotency_key=f"demo:inquiry:{attempt.public_id}", enqueue=False)  # fmt: skip
        inquiry_run(inquiry_id=inquiry.public_id, actor=s.actor, now=s.now, adapter=s.adapter)


def _pending_changes(s: _Seeding) -> None:
    """Changes proposed today and waiting for a second person (the nightly job rejects whatever is
    still pending at the end of the business day)."""
    users = {u.username: u for u in get_user_model().objects.filter(username__in=("support", "risk"))}
    if "support" in users:
        request_submit(
            action_type="CHANGE_MERCHANT_PROFILE",
            payload={"merchant": s.merchants["gadgets"].public_id, "name": "Manila Gadget Hub & Repairs",
                     "contact_email": "finance@gadgethub.example"},
            reason_code="MERCHANT_REQUEST", reason_text="Merchant emailed new trading name and finance contact",
            actor=Actor.from_user(users["support"]), now=s.now, idempotency_key="demo-payments:pending:profile",
        )  # fmt: skip
    waiting = Payout.objects.filter(merchant=s.merchants["warung"], status=PayoutStatus.APPROVAL_REQUIRED)
    waiting = waiting.order_by("id")
    if "risk" in users and waiting:
        request_submit(
            action_type="HOLD_PAYOUT", payload={"payout": waiting[0].public_id}, reason_code="BENEFICIARY_VERIFICATION",
            reason_text="Beneficiary name differs from the legal name on file", actor=Actor.from_user(users["risk"]),
            now=s.now, idempotency_key="demo-payments:pending:hold",
        )  # fmt: skip


def _summary() -> str:
    intents = PaymentIntent.objects.filter(business_type="DEMO_ORDER")
    by_status = Counter(PaymentAttempt.objects.filter(payment_intent__in=intents).values_list("status", flat=True))
    states = ", ".join(f"{count} {status.lower()}" for status, count in sorted(by_status.items()))
    refunds = Refund.objects.filter(payment_intent__in=intents).count()
    payouts = Payout.objects.filter(idempotency_key__startswith="demo:").count()
    return f"{intents.count()} payments (attempts: {states}), {refunds} refunds, {payouts} payouts"
