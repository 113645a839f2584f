"""Payment attempts: creating one, sending it to its provider, applying what the provider says
(whichever way it arrives), manual capture, void, and disputes of the captured intent.

Money moves here only through ledger posting services: a capture posts CAPTURE_SUCCEEDED once per
attempt (idempotency key `capture:<pa_id>`), a void after capture posts the reversal of that
journal, a lost dispute posts CHARGEBACK_LOST once per intent (`chargeback:<pi_id>`): the scheme
has taken the funds whatever the merchant holds, so that journal is never refused for want of a
payable balance; what the payable does not cover is booked to the merchant's receivable.

Locks: a command locks the attempt first, then its intent (one order everywhere, so a webhook, an
inquiry and an operator acting at once queue instead of deadlocking), then the ledger's balance
rows while posting, and the audit chain last. Commands on the intent alone (disputes) lock the
intent, then (losing one) the merchant, as refund requests do.

Sending: the move to SENT_TO_PROVIDER commits before the provider is called, and the call runs
outside any transaction. That commit is the only way to the provider, so an attempt is sent at
most once: an answer that never came (timeout, unreadable answer) makes it UNKNOWN_OUTCOME, to be
settled by an inquiry, never by sending again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django_fsm import can_proceed

from backoffice.actors import Actor
from backoffice.clock import business_date
from backoffice.errors import (
    DomainError,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    PolicyDenied,
    ValidationFailed,
)
from backoffice.ids import new_public_id
from backoffice.masking import mask_card_numbers
from backoffice.money import Money
from ledger.errors import InsufficientFunds
from ledger.models import AccountRole, Direction, LedgerJournal
from ledger.selectors import account_balance
from ledger.services import (
    PostingLine,
    Source,
    account_find,
    journal_post,
    journal_post_rule,
    journal_reverse,
    posting_lines,
)
from payments.models import (
    AttemptStatus,
    Capability,
    EventSource,
    IntentStatus,
    Merchant,
    MerchantStatus,
    MethodType,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
    Refund,
)
from payments.providers.base import (
    ProviderAdapter,
    ProviderPaymentRequest,
    ProviderPaymentResult,
    ProviderProtocolError,
    ProviderRequestRejected,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
)
from payments.selectors import merchant_can
from payments.services.intents import require_no_card_numbers
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.recording import payment_command, refusal_record

A = AttemptStatus
I = IntentStatus  # noqa: E741 (short alias, as in the models)

# --- pricing ---------------------------------------------------------------------------------------

# The platform's price per method and currency: (basis points of the amount, fixed fee in the
# currency's minor units). 1 basis point = 0.01 %. IDR has two decimals, so 200_000 is Rp 2,000.
# A method without a price in a currency is refused, never charged at a guessed price.
PRICE_LIST: dict[str, dict[str, tuple[int, int]]] = {
    MethodType.CARD: {"IDR": (290, 200_000), "PHP": (350, 1_500), "USD": (290, 30)},
    MethodType.QRIS: {"IDR": (70, 0)},
    MethodType.EWALLET: {"IDR": (150, 0), "PHP": (200, 0)},
    MethodType.VIRTUAL_ACCOUNT: {"IDR": (0, 400_000)},
    MethodType.BANK_TRANSFER: {"IDR": (0, 400_000), "PHP": (0, 1_500), "USD": (0, 100)},
}


def platform_fee(*, method_type: str, amount_minor: int, currency: str) -> int:
    """The platform's fee on an attempt, in minor units: amount x basis points / 10,000 rounded
    half up to a whole minor unit (integer arithmetic only), plus the fixed fee, capped at the
    amount (a fee never exceeds what was paid; the database refuses it too)."""
    prices = PRICE_LIST.get(method_type, {})
    if currency not in prices:
        raise ValidationFailed(f"there is no platform price for {method_type} payments in {currency}")
    basis_points, fixed_minor = prices[currency]
    percentage = (amount_minor * basis_points + 5_000) // 10_000
    return min(percentage + fixed_minor, amount_minor)


# --- results and errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutcomeApplied:
    """What applying a provider's answer (or a capture) did: `changed` is False when the state was
    already what the answer says (a duplicate webhook, a replayed command) or the answer was not
    final; `journal_ref` is the capture journal when the attempt is captured."""

    attempt: PaymentAttempt
    changed: bool
    journal_ref: str = ""


class ProviderReferenceClash(OutcomeMismatch):
    """The provider's reference for this attempt is already recorded for another attempt of the same
    provider: one of the two is wrong; nothing moves and someone must look."""

    code = "PROVIDER_REFERENCE_CLASH"


# Where a provider's answer may still change the attempt (as in the models).
AWAITING = (A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME)
FINAL = (A.SUCCEEDED, A.DECLINED, A.FAILED, A.EXPIRED, A.CANCELED)

# The attempt status each outcome means, and the transition that reaches it.
_OUTCOME_TARGET = {
    OutcomeStatus.SUCCEEDED: (A.SUCCEEDED, "succeed"),
    OutcomeStatus.AUTHORIZED: (A.AUTHORIZED, "authorize"),
    OutcomeStatus.REQUIRES_ACTION: (A.REQUIRES_ACTION, "require_action"),
    OutcomeStatus.DECLINED: (A.DECLINED, "decline"),
    OutcomeStatus.FAILED: (A.FAILED, "fail"),
    OutcomeStatus.EXPIRED: (A.EXPIRED, "expire"),
    OutcomeStatus.CANCELED: (A.CANCELED, "cancel"),
}
# Outcomes naming a step the attempt has already passed on its way to its status: an older answer
# arriving late (webhooks are not ordered), not a contradiction. Applied as "nothing to change".
_ALREADY_PASSED = {
    OutcomeStatus.REQUIRES_ACTION: {A.AUTHORIZED, *FINAL},
    OutcomeStatus.AUTHORIZED: {A.SUCCEEDED, A.EXPIRED, A.CANCELED},
}

_CAPABILITY_FOR_METHOD = {MethodType.CARD: Capability.ACCEPT_CARD, MethodType.QRIS: Capability.ACCEPT_QR}
_LAST4 = re.compile(r"^[0-9]{4}$")
_CARD_BRAND = re.compile(r"^[A-Za-z0-9 _-]{2,16}$")
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")

# A sent attempt becomes due for an inquiry after this long unless an answer settles it first: it
# covers a worker that died between the commit and the provider's answer (longer than any call).
SEND_INQUIRY_AFTER = dt.timedelta(minutes=2)


# --- helpers ---------------------------------------------------------------------------------------


def _key(value: Any) -> str:
    key = "" if value is None else str(value).strip()
    if not key or len(key) > 128:
        raise ValidationFailed("a payment command needs an idempotency key of at most 128 characters")
    return key


def _lock(attempt_id: str) -> tuple[PaymentAttempt, PaymentIntent]:
    """The attempt, then its intent (with its merchant, unlocked), both locked for the command."""
    attempt = PaymentAttempt.objects.select_for_update().filter(public_id=attempt_id).first()
    if attempt is None:
        raise NotFound(f"no payment attempt {attempt_id}")
    intent = (
        PaymentIntent.objects.select_for_update(of=("self",))
        .select_related("merchant")
        .get(pk=attempt.payment_intent_id)
    )
    attempt.payment_intent = intent
    return attempt, intent


def _lock_intent(intent_id: str) -> PaymentIntent:
    intent = PaymentIntent.objects.select_for_update(of=("self",)).select_related("merchant").filter(
        public_id=intent_id
    ).first()  # fmt: skip
    if intent is None:
        raise NotFound(f"no payment intent {intent_id}")
    return intent


def _replayed(*, subject_type: str, subject_id: str, key: str, command: str, payload: dict[str, Any]) -> bool:
    """Whether this command already ran on this subject with this key (its transition's payment
    event carries the key): True for the same payload, IdempotencyConflict for another. Keys of
    these commands are scoped to their subject, as an intent's key is to its merchant, so the
    question is answered from the subject's few events (indexed), never by scanning every event.
    Asked under the subject's lock: a concurrent copy of the command sees the first one's event."""
    found = PaymentEvent.objects.filter(
        subject_id=subject_id, subject_type=subject_type, idempotency_key=key
    ).values_list("data", flat=True)  # fmt: skip
    replay = False
    for data in found:
        if data.get("command") != command or any(data.get(name) != value for name, value in payload.items()):
            raise IdempotencyConflict(f"this idempotency key was already used on {subject_id} for another request")
        replay = True
    return replay


def _require(obj, name: str, what: str) -> None:
    """Refuse, before anything is written, a transition the state machine would refuse."""
    if not can_proceed(getattr(obj, name)):
        kind = "payment attempt" if isinstance(obj, PaymentAttempt) else "payment intent"
        raise IllegalTransition(f"{kind} {obj.public_id} is {obj.status}; {what} is not possible from there")


def _reason(reason_code: Any, reason_text: Any) -> tuple[str, str]:
    code, text = str(reason_code or "").strip(), str(reason_text or "").strip()
    if not code or not text:
        raise ValidationFailed("this command needs a reason code and an explanation")
    require_no_card_numbers(reason_text=text)
    return code[:48], text


def _post_capture(attempt: PaymentAttempt, intent: PaymentIntent, *, actor: Actor, now: dt.datetime,
                  case_ref: str = "") -> LedgerJournal:  # fmt: skip
    """CAPTURE_SUCCEEDED for the attempt, once (the key makes a second posting return the first).
    Posted on the business day the capture is recorded: a late answer is not backdated."""
    gross, fee = attempt.amount_minor, attempt.fee_minor
    return journal_post_rule(
        rule_code="CAPTURE_SUCCEEDED", currency=attempt.currency, amounts={"GROSS": gross, "FEE": fee,
        "NET": gross - fee}, merchant_ref=intent.merchant.public_id,
        source=Source("payment_attempt", attempt.public_id), accounting_date=business_date(now),
        idempotency_key=f"capture:{attempt.public_id}", actor=actor, now=now,
        description=f"Capture of {attempt.public_id} for {intent.public_id}", case_ref=case_ref,
    )  # fmt: skip


def _evidence(body: bytes) -> dict[str, Any]:
    """What a provider answered, kept on the timeline: its digest and a masked excerpt."""
    if not body:
        return {}
    text = mask_card_numbers(body.decode("utf-8", errors="replace"))
    return {"body_sha256": hashlib.sha256(body).hexdigest(), "body": text[:2_000]}


# --- create ----------------------------------------------------------------------------------------


def attempt_create(
    *, intent: PaymentIntent, method_type: str, provider_code: str, provider_account: str, idempotency_key: str,
    actor: Actor, now: dt.datetime, card_brand: str = "", card_last4: str = "", card_fingerprint: str = "",
    source: str = EventSource.API,
) -> PaymentAttempt:  # fmt: skip
    """A new attempt (CREATED) of an intent awaiting a payment method, for the intent's amount, with
    the platform's fee (platform_fee) fixed now.

    Idempotent by key: the same key with the same request returns the first attempt; with another
    request it raises IdempotencyConflict. Refuses (audited, nothing written): a card number in any
    field, a card attempt whose last four are not four digits or without a brand, card details on
    another method (ValidationFailed); a merchant not active or whose ACCEPT_CARD / ACCEPT_QR is
    blocked (PolicyDenied); an intent not awaiting a payment method (IllegalTransition). A REVIEW
    restriction lets the attempt through and records the review on its timeline."""
    try:
        key = _key(idempotency_key)
        fields = {"method_type": method_type, "provider_code": provider_code, "provider_account": provider_account,
                  "card_brand": card_brand, "card_last4": card_last4, "card_fingerprint": card_fingerprint}  # fmt: skip
        require_no_card_numbers(idempotency_key=key, **{n: v for n, v in fields.items() if isinstance(v, str)})
        request = {name: str(value or "").strip() for name, value in fields.items()}
        request["method_type"] = request["method_type"].upper()
        if request["method_type"] not in MethodType.values:
            raise ValidationFailed(f"the method is one of {', '.join(MethodType.values)}")
        if not request["provider_code"] or len(request["provider_code"]) > 32:
            raise ValidationFailed("the provider code is required (at most 32 characters)")
        if not request["provider_account"] or len(request["provider_account"]) > 64:
            raise ValidationFailed("the provider account is required (at most 64 characters)")
        _check_card(request)
        with payment_command(actor=actor, now=now) as command:
            locked = PaymentIntent.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=intent.pk)
            existing = PaymentAttempt.objects.filter(idempotency_key=key).first()
            if existing is not None:
                return _attempt_replay(existing, locked, request)
            merchant = locked.merchant
            if merchant.status != MerchantStatus.ACTIVE:
                raise PolicyDenied(
                    f"merchant {merchant.public_id} is {merchant.status.lower()}; it cannot take payments"
                )
            review = ""
            capability = _CAPABILITY_FOR_METHOD.get(request["method_type"])
            if capability is not None:
                answer = merchant_can(merchant, capability, now)
                if not answer.allowed:
                    raise PolicyDenied(answer.reason)
                review = answer.reason if answer.needs_review else ""
            if locked.status != I.REQUIRES_PAYMENT_METHOD:
                raise IllegalTransition(
                    f"payment intent {locked.public_id} is {locked.status}; a new attempt needs it to await a "
                    "payment method"
                )
            fee = platform_fee(method_type=request["method_type"], amount_minor=locked.amount_minor,
                               currency=locked.currency)  # fmt: skip
            number = (locked.attempts.aggregate(n=Max("attempt_no"))["n"] or 0) + 1
            try:
                with transaction.atomic():
                    attempt = PaymentAttempt.objects.create(
                        public_id=new_public_id("pa"), payment_intent=locked, attempt_no=number,
                        amount_minor=locked.amount_minor, currency=locked.currency, fee_minor=fee,
                        idempotency_key=key, created_at=now, updated_at=now, **request,
                    )  # fmt: skip
            except IntegrityError as exc:
                existing = PaymentAttempt.objects.filter(idempotency_key=key).first()
                if existing is not None:
                    return _attempt_replay(existing, locked, request)
                if "payments_one_live_attempt_per_intent" in str(exc):
                    raise IllegalTransition(f"payment intent {locked.public_id} already has a live attempt") from exc
                raise
            data = {"attempt_no": number, "method_type": attempt.method_type, "provider_code": attempt.provider_code,
                    "amount_minor": attempt.amount_minor, "currency": attempt.currency, "fee_minor": fee,
                    "card_brand": attempt.card_brand, "card_last4": attempt.card_last4}  # fmt: skip
            if review:
                data["capability_review"] = review
            command.event(attempt, "payment_attempt.created", source=source, idempotency_key=key, data=data)
            command.audit(
                event_type="payments.payment_attempt_created", action_type="CREATE_PAYMENT_ATTEMPT",
                target_type="payment_attempt", target_id=attempt.public_id,
                after={**data, "payment_intent": locked.public_id, "status": attempt.status},
            )  # fmt: skip
        return attempt
    except DomainError as exc:
        refusal_record(event_type="payments.payment_attempt_create_refused", target_type="payment_intent",
                       target_id=intent.public_id, exc=exc, actor=actor, now=now)  # fmt: skip
        raise


def _check_card(request: dict[str, str]) -> None:
    if request["method_type"] != MethodType.CARD:
        if request["card_brand"] or request["card_last4"] or request["card_fingerprint"]:
            raise ValidationFailed("card details belong to card attempts only")
        return
    if not _CARD_BRAND.match(request["card_brand"]):
        raise ValidationFailed("a card attempt needs the card brand (2 to 16 letters or digits)")
    if not _LAST4.match(request["card_last4"]):
        raise ValidationFailed("the card's last four are exactly four digits")
    if request["card_fingerprint"] and not _FINGERPRINT.match(request["card_fingerprint"]):
        raise ValidationFailed("the card fingerprint is the provider's token hash (8 to 64 letters, digits, _ . : -)")


def _attempt_replay(existing: PaymentAttempt, intent: PaymentIntent, request: dict[str, str]) -> PaymentAttempt:
    differs = sorted(name for name, value in request.items() if getattr(existing, name) != value)
    if existing.payment_intent_id != intent.pk:
        differs.insert(0, "payment_intent")
    if differs:
        raise IdempotencyConflict(
            f"this idempotency key created {existing.public_id} with a different request ({', '.join(differs)})"
        )
    return existing


# --- send ------------------------------------------------------------------------------------------


def attempt_send(
    *, attempt_id: str, actor: Actor, now: dt.datetime, adapter: ProviderAdapter, card_token: str = "",
    source: str = EventSource.SYSTEM,
) -> OutcomeApplied:  # fmt: skip
    """Send a CREATED attempt to its provider, once, and apply the answer.

    1. One transaction moves the attempt to SENT_TO_PROVIDER and the intent to PROCESSING and
       commits (a durable block: called inside a caller's transaction it refuses to run).
    2. The provider is called outside any transaction.
    3. The answer is applied by attempt_apply_outcome (source PROVIDER_RESPONSE).

    No answer (ProviderTimeout), or one we cannot read (ProviderProtocolError, or any unexpected
    error, which is re-raised after recording): UNKNOWN_OUTCOME, due for an inquiry at once, never
    resent. ProviderUnavailable and ProviderRequestRejected mean the provider processed nothing:
    the attempt is FAILED and the intent awaits a payment method again, so the payer or merchant
    retries as a new attempt (a new row and key, its own evidence); an attempt left in
    SENT_TO_PROVIDER for a retry would be indistinguishable from one whose answer was lost, and the
    only way back to the provider would be the resubmission this service exists to prevent.
    A rejection saying the provider already holds this attempt (a reused key or reference) is not
    "nothing processed": it is UNKNOWN_OUTCOME too.

    `card_token` is the provider's token from the payer's card entry, needed for card attempts and
    never stored. Refusals before the send (audited): NotFound, ValidationFailed (adapter of
    another provider, missing card token), IllegalTransition (not CREATED: never sent twice)."""
    try:
        attempt = PaymentAttempt.objects.select_related("payment_intent__merchant").filter(public_id=attempt_id).first()
        if attempt is None:
            raise NotFound(f"no payment attempt {attempt_id}")
        if adapter.provider_code != attempt.provider_code:
            raise ValidationFailed(f"{attempt_id} is for provider {attempt.provider_code}, not {adapter.provider_code}")
        _require(attempt, "send", "sending it")  # said first: an attempt is never sent twice
        request = _payment_request(attempt, card_token)
        with transaction.atomic(durable=True), payment_command(actor=actor, now=now) as command:
            attempt, intent = _lock(attempt_id)
            attempt.sent_at = now
            attempt.next_inquiry_at = now + SEND_INQUIRY_AFTER
            command.transition(attempt, "send", source=source, update_fields=("sent_at", "next_inquiry_at"),
                               data={"provider_code": attempt.provider_code})  # fmt: skip
            command.transition(intent, "start_processing", source=source, data={"attempt": attempt.public_id})
    except DomainError as exc:
        refusal_record(event_type="payments.payment_attempt_send_refused", target_type="payment_attempt",
                       target_id=attempt_id, exc=exc, actor=actor, now=now)  # fmt: skip
        raise

    # Committed: from here the attempt can never be sent again, whatever happens to this process.
    try:
        result = adapter.create_payment(request)
    except (ProviderTimeout, ProviderProtocolError) as exc:
        return _after_no_answer(attempt_id, exc, actor=actor, now=now, source=source)
    except ProviderRequestRejected as exc:
        if _provider_holds_it(exc):
            return _after_no_answer(attempt_id, exc, actor=actor, now=now, source=source)
        return _after_not_processed(attempt_id, exc, actor=actor, now=now, source=source)
    except ProviderUnavailable as exc:
        return _after_not_processed(attempt_id, exc, actor=actor, now=now, source=source)
    except Exception as exc:
        _after_no_answer(attempt_id, exc, actor=actor, now=now, source=source)
        raise
    outcome = outcome_from_provider_result(result, provider_code=attempt.provider_code)
    return attempt_apply_outcome(
        attempt_id=attempt_id, outcome=outcome, source=EventSource.PROVIDER_RESPONSE, actor=actor, now=now
    )


def _payment_request(attempt: PaymentAttempt, card_token: str) -> ProviderPaymentRequest:
    intent = attempt.payment_intent
    if attempt.method_type == MethodType.CARD and not card_token:
        raise ValidationFailed("a card attempt is sent with the card token from the payer's card entry")
    try:
        return ProviderPaymentRequest(
            # Our attempt id is the provider's idempotency key: one attempt, one provider payment.
            idempotency_key=attempt.public_id, attempt_id=attempt.public_id, merchant_id=intent.merchant.public_id,
            amount_minor=attempt.amount_minor, currency=attempt.currency, method_type=attempt.method_type.lower(),
            card_token=card_token or None, card_fingerprint=attempt.card_fingerprint or None,
            description=f"{intent.business_type} {intent.business_id}"[:200],
        )  # fmt: skip
    except ValueError as exc:
        raise ValidationFailed(f"the provider request is not valid: {exc}") from exc


def _provider_holds_it(exc: ProviderRequestRejected) -> bool:
    code = exc.error_code.lower()
    return "duplicate" in code or "idempotency" in code


def _error_data(exc: Exception) -> dict[str, Any]:
    if not isinstance(exc, Exception) or not hasattr(exc, "code"):
        return {"error": type(exc).__name__}
    data = {"error": exc.code, "message": mask_card_numbers(str(exc))[:500], "http_status": exc.http_status,
            "elapsed_ms": exc.elapsed_ms}  # fmt: skip
    if isinstance(exc, ProviderTimeout):
        data["phase"] = exc.phase
    if isinstance(exc, ProviderRequestRejected):
        data["provider_error_code"] = exc.error_code
    return {**data, **_evidence(exc.raw_body)}


def _after_no_answer(attempt_id: str, exc: Exception, *, actor: Actor, now: dt.datetime, source: str) -> OutcomeApplied:
    """UNKNOWN_OUTCOME, due for an inquiry now; unless an answer (a webhook) already moved it."""
    with payment_command(actor=actor, now=now) as command:
        attempt, _ = _lock(attempt_id)
        if attempt.status != A.SENT_TO_PROVIDER:
            return OutcomeApplied(attempt=attempt, changed=False)
        attempt.next_inquiry_at = now
        command.transition(attempt, "lose_track", source=source, update_fields=("next_inquiry_at",),
                           data=_error_data(exc))  # fmt: skip
    return OutcomeApplied(attempt=attempt, changed=True)


def _after_not_processed(attempt_id: str, exc: Exception, *, actor: Actor, now: dt.datetime,
                         source: str) -> OutcomeApplied:  # fmt: skip
    """FAILED (the provider processed nothing) and the intent open for a new attempt."""
    with payment_command(actor=actor, now=now) as command:
        attempt, intent = _lock(attempt_id)
        if attempt.status != A.SENT_TO_PROVIDER:
            return OutcomeApplied(attempt=attempt, changed=False)
        attempt.decline_code = getattr(exc, "code", "PROVIDER_ERROR").lower()
        attempt.completed_at, attempt.next_inquiry_at = now, None
        data = _error_data(exc)
        command.transition(attempt, "fail", source=source, data=data,
                           update_fields=("decline_code", "completed_at", "next_inquiry_at"))  # fmt: skip
        command.transition(intent, "retry_with_new_method", source=source, data={"attempt": attempt.public_id})
    return OutcomeApplied(attempt=attempt, changed=True)


_STATUS_FROM_PROVIDER = {
    ProviderStatus.SUCCEEDED: OutcomeStatus.SUCCEEDED,
    ProviderStatus.DECLINED: OutcomeStatus.DECLINED,
    ProviderStatus.FAILED: OutcomeStatus.FAILED,
    ProviderStatus.PENDING: OutcomeStatus.PENDING,
    ProviderStatus.NOT_FOUND: OutcomeStatus.NOT_FOUND,
}


def outcome_from_provider_result(
    result: ProviderResult | ProviderPaymentResult, *, provider_code: str
) -> ProviderOutcome:
    """A provider adapter's result about a payment, in internal language (what the provider claims;
    attempt_apply_outcome compares it with our records)."""
    return ProviderOutcome(
        status=_STATUS_FROM_PROVIDER[result.status], provider_code=provider_code,
        provider_reference=result.provider_reference or "", our_reference=result.merchant_reference or "",
        merchant_ref=result.merchant_id or "", amount_minor=result.amount_minor, currency=result.currency or "",
        decline_code=result.decline_code or result.error_code or "", raw_status=result.provider_status,
        data={"http_status": result.http_status, "elapsed_ms": result.elapsed_ms, **_evidence(result.raw_body)},
    )  # fmt: skip


# --- apply an outcome --------------------------------------------------------------------------------


def attempt_apply_outcome(
    *, attempt_id: str, outcome: ProviderOutcome, source: str, actor: Actor, now: dt.datetime, provider_event=None,
    inquiry=None,
) -> OutcomeApplied:  # fmt: skip
    """Apply what a provider said about an attempt, however it arrived (the call's answer, a
    webhook, an inquiry, the sweeper): all paths meet here, under the attempt's lock, so any number
    of them arriving at once have one effect.

    - The provider's amount, currency, merchant, our reference and its reference (when we know one)
      must be ours, else OutcomeMismatch with `mismatch` and nothing changes; a SUCCEEDED must
      state amount and currency (money moves only on a confirmed amount).
    - The provider reference is recorded the first time it is learned; one already recorded for
      another attempt of the provider raises ProviderReferenceClash.
    - SUCCEEDED moves attempt and intent to SUCCEEDED, posts CAPTURE_SUCCEEDED (GROSS amount, FEE
      the platform fee, NET the rest; key capture:<pa_id>) and sets the intent's captured amount.
      DECLINED / FAILED / EXPIRED put the intent back to awaiting a payment method (an expired
      authorization cancels it: the state machine has no way back from AUTHORIZED).
    - An answer already applied, or naming a step the attempt has passed (a late webhook), changes
      nothing (changed=False); PENDING and NOT_FOUND while awaiting write a timeline event only.
    - An answer contradicting the attempt's state (DECLINED after capture, anything for an attempt
      never sent) raises OutcomeConflict and changes nothing.
    Every refusal is audited with the outcome and the mismatch."""
    try:
        try:
            with payment_command(actor=actor, now=now) as command:
                return _apply(command, attempt_id, outcome, source=source, provider_event=provider_event,
                              inquiry=inquiry)  # fmt: skip
        except IntegrityError as exc:
            if "payments_attempt_provider_reference_unique" not in str(exc):
                raise
            # Another attempt recorded the same reference at the same moment.
            raise ProviderReferenceClash(
                f"provider reference {outcome.provider_reference} of {outcome.provider_code} was just recorded "
                f"for another attempt; it cannot also be {attempt_id}",
                mismatch={"provider_reference": {"ours": "", "theirs": outcome.provider_reference}},
            ) from exc
    except DomainError as exc:
        refusal_record(
            event_type="payments.payment_attempt_outcome_refused", target_type="payment_attempt",
            target_id=attempt_id, exc=exc, actor=actor, now=now,
            after={"outcome": outcome.status, "source": str(source), "provider_code": outcome.provider_code,
                   "provider_reference": outcome.provider_reference, "mismatch": getattr(exc, "mismatch", None)},
        )  # fmt: skip
        raise


def _apply(
    command, attempt_id: str, outcome: ProviderOutcome, *, source: str, provider_event, inquiry
) -> OutcomeApplied:
    attempt, intent = _lock(attempt_id)
    _compare(attempt, intent, outcome)
    learned = _learn_reference(attempt, outcome)
    common = {"source": source, "occurred_at": outcome.occurred_at, "provider_event": provider_event,
              "inquiry": inquiry}  # fmt: skip
    data = {"outcome": outcome.status, "provider_status": outcome.raw_status, "decline_code": outcome.decline_code}
    step = _plan(attempt, intent, outcome)
    if step is None:
        _unchanged(command, attempt, outcome, learned=learned, data=data, **common)
        return OutcomeApplied(attempt=attempt, changed=False, journal_ref=attempt.capture_journal_ref)
    target, attempt_step, intent_step = step
    attempt.last_provider_status = (outcome.raw_status or outcome.status)[:64]
    fields = ["last_provider_status", *(["provider_reference"] if learned else [])]
    if target in (A.DECLINED, A.FAILED) and outcome.decline_code:
        attempt.decline_code = outcome.decline_code[:64]
        fields.append("decline_code")
    if target in FINAL:
        attempt.completed_at, attempt.next_inquiry_at = command.now, None
        fields += ["completed_at", "next_inquiry_at"]
    journal_ref = ""
    intent_fields: tuple[str, ...] = ()
    if target == A.SUCCEEDED:
        journal = _post_capture(attempt, intent, actor=command.actor, now=command.now)
        journal_ref = attempt.capture_journal_ref = journal.public_id
        fields.append("capture_journal_ref")
        intent.captured_minor = attempt.amount_minor
        intent_fields = ("captured_minor",)
    command.transition(attempt, attempt_step, update_fields=tuple(fields), journal_ref=journal_ref,
                       provider_reference=attempt.provider_reference, data=data, **common)  # fmt: skip
    if intent_step is not None:
        command.transition(intent, intent_step, update_fields=intent_fields, journal_ref=journal_ref,
                           provider_reference=attempt.provider_reference,
                           data={"attempt": attempt.public_id, "outcome": outcome.status}, **common)  # fmt: skip
    return OutcomeApplied(attempt=attempt, changed=True, journal_ref=journal_ref)


def _compare(attempt: PaymentAttempt, intent: PaymentIntent, outcome: ProviderOutcome) -> None:
    mismatch: dict[str, dict[str, Any]] = {}

    def differs(field: str, ours: Any, theirs: Any) -> None:
        mismatch[field] = {"ours": ours, "theirs": theirs}

    if outcome.provider_code != attempt.provider_code:
        differs("provider_code", attempt.provider_code, outcome.provider_code)
    amount = outcome.amount_minor
    if amount is not None and (type(amount) is not int or amount != attempt.amount_minor):
        differs("amount_minor", attempt.amount_minor, amount)
    elif amount is None and outcome.status == OutcomeStatus.SUCCEEDED:
        differs("amount_minor", attempt.amount_minor, None)
    if outcome.currency and outcome.currency != attempt.currency:
        differs("currency", attempt.currency, outcome.currency)
    elif not outcome.currency and outcome.status == OutcomeStatus.SUCCEEDED:
        differs("currency", attempt.currency, "")
    if outcome.merchant_ref and outcome.merchant_ref != intent.merchant.public_id:
        differs("merchant", intent.merchant.public_id, outcome.merchant_ref)
    if outcome.our_reference and outcome.our_reference != attempt.public_id:
        differs("our_reference", attempt.public_id, outcome.our_reference)
    if (
        outcome.provider_reference
        and attempt.provider_reference
        and (outcome.provider_reference != attempt.provider_reference)
    ):
        differs("provider_reference", attempt.provider_reference, outcome.provider_reference)
    if mismatch:
        raise OutcomeMismatch(
            f"the provider's {', '.join(mismatch)} for {attempt.public_id} differ from ours; nothing was applied",
            mismatch=mismatch,
        )


def _learn_reference(attempt: PaymentAttempt, outcome: ProviderOutcome) -> bool:
    reference = outcome.provider_reference
    if not reference or attempt.provider_reference:
        return False
    if len(reference) > 128:
        raise OutcomeMismatch(
            "the provider reference is longer than 128 characters",
            mismatch={"provider_reference": {"ours": "", "theirs": reference[:128]}},
        )
    other = (
        PaymentAttempt.objects.filter(provider_code=attempt.provider_code, provider_reference=reference)
        .exclude(pk=attempt.pk)
        .values_list("public_id", flat=True)
        .first()
    )
    if other is not None:
        raise ProviderReferenceClash(
            f"provider reference {reference} of {attempt.provider_code} is already recorded for {other}; it cannot "
            f"also be {attempt.public_id}",
            mismatch={"provider_reference": {"ours": f"recorded for {other}", "theirs": reference}},
        )
    attempt.provider_reference = reference
    return True


def _plan(attempt: PaymentAttempt, intent: PaymentIntent, outcome: ProviderOutcome):
    """(attempt target, attempt transition, intent transition or None) for an outcome that changes
    the state; None when it changes nothing; OutcomeConflict when it contradicts it."""
    status = outcome.status
    known = {*_OUTCOME_TARGET, OutcomeStatus.PENDING, OutcomeStatus.NOT_FOUND}
    if status not in known:
        raise ValidationFailed(f"{status!r} is not an outcome of a payment attempt")
    if attempt.status == A.CREATED:
        raise OutcomeConflict(f"{attempt.public_id} was never sent; the provider cannot have answered {status} for it")
    if status == OutcomeStatus.PENDING:
        return None
    if status == OutcomeStatus.NOT_FOUND:
        if attempt.status in (A.AUTHORIZED, A.SUCCEEDED):
            raise OutcomeConflict(f"the provider does not know {attempt.public_id}, which is {attempt.status} here")
        return None
    target, attempt_step = _OUTCOME_TARGET[status]
    if attempt.status == target or attempt.status in _ALREADY_PASSED.get(status, ()):
        return None
    if not can_proceed(getattr(attempt, attempt_step)):
        raise OutcomeConflict(f"{attempt.public_id} is {attempt.status}; the provider's {status} contradicts it")
    intent_step = _intent_step(target, intent)
    if intent_step is not None and not can_proceed(getattr(intent, intent_step)):
        raise OutcomeConflict(
            f"payment intent {intent.public_id} is {intent.status}; the provider's {status} for {attempt.public_id} "
            "cannot be applied to it"
        )
    return target, attempt_step, intent_step


def _intent_step(target: str, intent: PaymentIntent) -> str | None:
    if target == A.SUCCEEDED:
        return "succeed"
    if target == A.AUTHORIZED:
        return "authorize"
    if target == A.REQUIRES_ACTION:
        return None if intent.status == I.REQUIRES_ACTION else "require_action"
    if target == A.EXPIRED and intent.status == I.AUTHORIZED:
        return "cancel"
    if target in (A.DECLINED, A.FAILED, A.EXPIRED):
        return "retry_with_new_method"
    return "cancel"  # CANCELED by the provider: an authorization voided on its side


def _unchanged(command, attempt: PaymentAttempt, outcome: ProviderOutcome, *, learned: bool, data: dict,
               **common) -> None:  # fmt: skip
    """No status change: a provider reference learned is still recorded, a non-final answer for an
    attempt still awaiting one goes on the timeline, and the command is audited."""
    fields = {"provider_event", "inquiry", "occurred_at"}
    extra = {name: value for name, value in common.items() if name in fields}
    if learned:
        attempt.version += 1
        attempt.updated_at = command.now
        attempt.save(update_fields=["provider_reference", "version", "updated_at"])
    if outcome.status in (OutcomeStatus.PENDING, OutcomeStatus.NOT_FOUND) and attempt.status in (
        *AWAITING,
        A.AUTHORIZED,
    ):
        command.event(attempt, f"payment_attempt.provider_{outcome.status.lower()}", source=common["source"],
                      provider_reference=attempt.provider_reference, data=data, **extra)  # fmt: skip
    elif learned:
        command.event(attempt, "payment_attempt.provider_reference_recorded", source=common["source"],
                      provider_reference=attempt.provider_reference, data=data, **extra)  # fmt: skip
    command.audit(
        event_type="payments.payment_attempt_outcome_unchanged", action_type="APPLY_PROVIDER_OUTCOME",
        target_type="payment_attempt", target_id=attempt.public_id,
        after={**data, "source": str(common["source"]), "status": attempt.status,
               "provider_reference_recorded": learned},
    )  # fmt: skip


# --- capture, void ---------------------------------------------------------------------------------


def attempt_capture(
    *, attempt_id: str, actor: Actor, now: dt.datetime, idempotency_key: str, source: str = EventSource.OPERATOR,
    case_ref: str = "",
) -> OutcomeApplied:  # fmt: skip
    """Capture an AUTHORIZED attempt (manual capture): attempt and intent SUCCEEDED, CAPTURE_SUCCEEDED
    posted once (key capture:<pa_id>). The same key again returns the first result (changed=False).
    Refused (audited, nothing changed): an attempt not AUTHORIZED or an intent that cannot succeed
    (IllegalTransition), a key used for another attempt (IdempotencyConflict)."""
    try:
        key = _key(idempotency_key)
        with payment_command(actor=actor, now=now) as command:
            attempt, intent = _lock(attempt_id)
            if _replayed(subject_type="payment_attempt", subject_id=attempt_id, key=key, command="attempt_capture",
                         payload={}):  # fmt: skip
                return OutcomeApplied(attempt=attempt, changed=False, journal_ref=attempt.capture_journal_ref)
            if attempt.status != A.AUTHORIZED:
                raise IllegalTransition(
                    f"payment attempt {attempt_id} is {attempt.status}; only an AUTHORIZED attempt is captured"
                )
            _require(intent, "succeed", "a capture")
            journal = _post_capture(attempt, intent, actor=actor, now=now, case_ref=case_ref)
            attempt.capture_journal_ref, attempt.completed_at, attempt.next_inquiry_at = journal.public_id, now, None
            intent.captured_minor = attempt.amount_minor
            data = {"command": "attempt_capture"}
            common = {"source": source, "idempotency_key": key, "journal_ref": journal.public_id, "case_ref": case_ref,
                      "provider_reference": attempt.provider_reference}  # fmt: skip
            command.transition(attempt, "succeed", update_fields=("capture_journal_ref", "completed_at",
                               "next_inquiry_at"), data=data, **common)  # fmt: skip
            command.transition(intent, "succeed", update_fields=("captured_minor",), data=data, **common)
        return OutcomeApplied(attempt=attempt, changed=True, journal_ref=journal.public_id)
    except DomainError as exc:
        refusal_record(event_type="payments.payment_attempt_capture_refused", target_type="payment_attempt",
                       target_id=attempt_id, exc=exc, actor=actor, now=now, case_ref=case_ref)  # fmt: skip
        raise


def attempt_void(
    *, attempt_id: str, reason_code: str, reason_text: str, actor: Actor, now: dt.datetime, idempotency_key: str,
    source: str = EventSource.OPERATOR, case_ref: str = "", approval_ref: str = "",
) -> OutcomeApplied:  # fmt: skip
    """Void an attempt: an AUTHORIZED one is canceled (no money had moved); a SUCCEEDED one is
    canceled on the business day of its capture and the capture journal is reversed (journal_reverse,
    key void:<pa_id>); the intent is canceled with it and its captured amount returns to zero.
    After the capture's business day, or once any refund exists, a captured payment goes back to
    the payer only by a refund (PolicyDenied). The same key again returns the first result.
    Refused (audited, nothing changed): any other status (IllegalTransition), a missing reason
    (ValidationFailed), a reversal the ledger refuses (e.g. the merchant's balance was paid out)."""
    try:
        key = _key(idempotency_key)
        code, text = _reason(reason_code, reason_text)
        with payment_command(actor=actor, now=now) as command:
            attempt, intent = _lock(attempt_id)
            if _replayed(subject_type="payment_attempt", subject_id=attempt_id, key=key, command="attempt_void",
                         payload={"reason_code": code}):  # fmt: skip
                return OutcomeApplied(attempt=attempt, changed=False)
            if attempt.status not in (A.AUTHORIZED, A.SUCCEEDED):
                raise IllegalTransition(
                    f"payment attempt {attempt_id} is {attempt.status}; an AUTHORIZED or SUCCEEDED one is voided"
                )
            _require(intent, "cancel", "a void")
            if intent.refund_reserved_minor or Refund.objects.filter(payment_attempt=attempt).exists():
                raise PolicyDenied(f"{intent.public_id} has refunds; a payment with refunds is not voided")
            journal_ref, intent_fields = "", ()
            if attempt.status == A.SUCCEEDED:
                captured_on = business_date(attempt.completed_at or attempt.updated_at)
                if captured_on != business_date(now):
                    raise PolicyDenied(
                        f"{attempt_id} was captured on {captured_on:%Y-%m-%d}; after that business day a captured "
                        "payment is returned by a refund, not voided"
                    )
                capture = LedgerJournal.objects.get(public_id=attempt.capture_journal_ref)
                reversal = journal_reverse(
                    journal=capture, reason_code=code, reason_text=text, idempotency_key=f"void:{attempt.public_id}",
                    actor=actor, now=now, accounting_date=business_date(now),
                )  # fmt: skip
                journal_ref = reversal.public_id
                intent.captured_minor = 0
                intent_fields = ("captured_minor",)
            data = {"command": "attempt_void", "reason_code": code, "reason_text": text}
            common = {"source": source, "idempotency_key": key, "journal_ref": journal_ref, "case_ref": case_ref,
                      "approval_ref": approval_ref, "provider_reference": attempt.provider_reference}  # fmt: skip
            command.transition(attempt, "cancel", data=data, **common)
            command.transition(intent, "cancel", update_fields=intent_fields, data=data, **common)
        return OutcomeApplied(attempt=attempt, changed=True, journal_ref=journal_ref)
    except DomainError as exc:
        refusal_record(event_type="payments.payment_attempt_void_refused", target_type="payment_attempt",
                       target_id=attempt_id, exc=exc, actor=actor, now=now, reason_code=str(reason_code or "")[:48],
                       case_ref=case_ref, approval_ref=approval_ref)  # fmt: skip
        raise


# --- disputes --------------------------------------------------------------------------------------


def dispute_open(
    *, intent_id: str, reason_code: str, reason_text: str, actor: Actor, now: dt.datetime, idempotency_key: str,
    source: str = EventSource.OPERATOR, case_ref: str = "",
) -> PaymentIntent:  # fmt: skip
    """The payer disputed a captured payment: the intent becomes DISPUTED (no money moves until the
    dispute is lost). The same key again returns the intent. Refused (audited): an intent that is
    not captured (IllegalTransition), a missing reason (ValidationFailed)."""
    try:
        key = _key(idempotency_key)
        code, text = _reason(reason_code, reason_text)
        with payment_command(actor=actor, now=now) as command:
            intent = _lock_intent(intent_id)
            if _replayed(subject_type="payment_intent", subject_id=intent_id, key=key, command="dispute_open",
                         payload={"reason_code": code}):  # fmt: skip
                return intent
            _require(intent, "dispute", "a dispute")
            command.transition(intent, "dispute", source=source, idempotency_key=key, case_ref=case_ref,
                               data={"command": "dispute_open", "reason_code": code, "reason_text": text})  # fmt: skip
        return intent
    except DomainError as exc:
        refusal_record(event_type="payments.dispute_open_refused", target_type="payment_intent", target_id=intent_id,
                       exc=exc, actor=actor, now=now, case_ref=case_ref)  # fmt: skip
        raise


CHARGEBACK_ATTEMPTS = 3  # a payable lowered between reading it and posting is read again


def _post_chargeback(intent: PaymentIntent, amount: int, *, code: str, case_ref: str, actor: Actor,
                     now: dt.datetime) -> tuple[LedgerJournal, int]:  # fmt: skip
    """Post the lost chargeback as one balanced journal that the ledger cannot refuse for want of
    funds: CHARGEBACK_LOST for what the merchant's payable balance covers, CHARGEBACK_LOST_SHORTFALL
    (Dr merchant receivable) for the rest, the two credits to PSP receivable as one line. Returns
    the journal and the shortfall.

    The merchant row is locked first (after the intent), as refund requests and payout sending
    lock it, so those cannot lower the payable between the read and the posting; a posting that
    does not take that lock (a manual debit, a void) can, and then the split is read again."""
    merchant_ref, currency = intent.merchant.public_id, intent.currency
    Merchant.objects.select_for_update(no_key=True).filter(pk=intent.merchant_id).values_list("pk").get()
    for attempt in range(1, CHARGEBACK_ATTEMPTS + 1):
        payable = account_find(role=AccountRole.MERCHANT_PAYABLE, currency=currency, owner_ref=merchant_ref)
        balance = account_balance(account=payable).balance.amount_minor if payable is not None else 0
        covered = min(amount, max(balance, 0))
        parts = [("CHARGEBACK_LOST", covered), ("CHARGEBACK_LOST_SHORTFALL", amount - covered)]
        merged: dict[tuple[int, str], int] = {}
        for rule_code, part in parts:
            if part == 0:
                continue  # rules take positive amounts only
            for line in posting_lines(rule_code=rule_code, currency=currency, amounts={"AMOUNT": part},
                                      merchant_ref=merchant_ref, actor=actor, now=now):  # fmt: skip
                key = (line.account_id, line.direction)
                merged[key] = merged.get(key, 0) + line.amount_minor
        # Each account once, debits first: Dr payable, Dr receivable, Cr PSP receivable.
        ordered = sorted(merged.items(), key=lambda item: item[0][1] != Direction.DEBIT)  # stable: debits first
        lines = [PostingLine(account_id, direction, value, currency) for (account_id, direction), value in ordered]
        try:
            journal = journal_post(
                lines=lines, journal_type="CHARGEBACK_LOST", source=Source("payment_intent", intent.public_id),
                accounting_date=business_date(now), idempotency_key=f"chargeback:{intent.public_id}", actor=actor,
                now=now, case_ref=case_ref,
                description=f"Chargeback lost on {intent.public_id}: {code}"
                + (f"; {Money(amount - covered, currency)} owed by the merchant" if covered < amount else ""),
            )  # fmt: skip
        except InsufficientFunds:
            if attempt == CHARGEBACK_ATTEMPTS:
                raise
            continue
        return journal, amount - covered
    raise AssertionError("unreachable")


def dispute_resolve(
    *, intent_id: str, won: bool, reason_code: str, reason_text: str, actor: Actor, now: dt.datetime,
    idempotency_key: str, source: str = EventSource.OPERATOR, case_ref: str = "", amount_minor: int | None = None,
) -> PaymentIntent:  # fmt: skip
    """Close a dispute. Won: the intent is SUCCEEDED again, nothing posts. Lost: the intent is
    REFUNDED (the scheme returned the funds to the payer) and one CHARGEBACK_LOST journal posts once
    (key chargeback:<pi_id>) for `amount_minor`, by default all that was captured and not already
    promised back by refunds: Cr PSP receivable the amount, Dr the merchant's payable what its
    balance covers and Dr the merchant's receivable the rest (see _post_chargeback). The same key
    again returns the intent. Refused (audited, nothing changed): an intent not DISPUTED
    (IllegalTransition), an amount above what can be charged back (ValidationFailed)."""
    try:
        key = _key(idempotency_key)
        code, text = _reason(reason_code, reason_text)
        if type(won) is not bool:
            raise ValidationFailed("say whether the dispute was won (True) or lost (False)")
        with payment_command(actor=actor, now=now) as command:
            intent = _lock_intent(intent_id)
            if _replayed(subject_type="payment_intent", subject_id=intent_id, key=key, command="dispute_resolve",
                         payload={"won": won}):  # fmt: skip
                return intent
            data: dict[str, Any] = {"command": "dispute_resolve", "won": won, "reason_code": code, "reason_text": text}
            if won:
                _require(intent, "win_dispute", "winning a dispute")
                command.transition(intent, "win_dispute", source=source, idempotency_key=key, case_ref=case_ref,
                                   data=data)  # fmt: skip
                return intent
            _require(intent, "lose_dispute", "losing a dispute")
            chargeable = intent.refundable_minor
            amount = chargeable if amount_minor is None else amount_minor
            if amount_minor is not None and (type(amount_minor) is not int or not 0 < amount_minor <= chargeable):
                raise ValidationFailed(
                    f"the chargeback is a whole number of minor units up to {chargeable} (captured and not refunded)"
                )
            journal_ref = ""
            if amount:
                journal, shortfall = _post_chargeback(intent, amount, code=code, case_ref=case_ref, actor=actor,
                                                      now=now)  # fmt: skip
                journal_ref = journal.public_id
                data["merchant_receivable_minor"] = shortfall
            data["chargeback_minor"] = amount
            command.transition(intent, "lose_dispute", source=source, idempotency_key=key, case_ref=case_ref,
                               journal_ref=journal_ref, data=data)  # fmt: skip
        return intent
    except DomainError as exc:
        refusal_record(event_type="payments.dispute_resolve_refused", target_type="payment_intent",
                       target_id=intent_id, exc=exc, actor=actor, now=now, case_ref=case_ref)  # fmt: skip
        raise
