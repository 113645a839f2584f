"""Refunds: money back to the payer of a captured payment.

Two things bound a refund, and both are reserved when it is requested, in refund_create's
transaction:

- The payment's refundable amount, `captured_minor - refund_reserved_minor` on the intent. A refund
  reserves its amount with an F() update, releases it when it fails or is canceled, and adds it to
  `refunded_minor` when it succeeds. The database refuses a reservation beyond the captured amount
  (CheckConstraint), so concurrent refunds can never together exceed it, whatever order they commit
  in; the service turns that refusal into a typed error naming the refundable amount.
- The merchant's funds. The merchant bears the refund, and by the time the provider confirms it
  (the payer already has the money back) its payable balance may have been paid out. So the
  refund sets the funds aside at once: REFUND_RESERVED (Dr merchant payable / Cr merchant refund
  reserve, key refund:<rf_id>:reserved). The request is refused, naming the available amount,
  when the payable balance less payouts committed and not yet sent cannot cover it; the merchant
  row is locked for that check (as payout creation and sending lock it), and the ledger's floor
  on the payable account is the last guard. Success pays the payer from the reserve
  (REFUND_SUCCEEDED: Dr merchant refund reserve / Cr PSP receivable, key refund:<rf_id>), which
  the ledger never refuses for lack of funds; failure or cancellation reverses the reservation
  (key refund:<rf_id>:reserved:reversal). Each key is fixed per refund, so each posts once
  whichever path applies the provider's answer.

Lock order, for every refund command: the payment intent, then the refund or the merchant; the
ledger's balance rows after them and the audit chain last (payment_command appends audit events
when it ends).

Sending: refund_create queues refund_send_task after commit (the dispatch sweep queues it again if
that was lost). refund_send moves the refund REQUESTED -> PROCESSING and commits before the
provider is called (transaction.on_commit), so a refund is handed to the provider at most once: a
timeout or an answer we cannot read leaves it UNKNOWN_OUTCOME, never sent again; an inquiry or a
webhook settles it through refund_apply_outcome, the one path every provider answer takes.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.db.models import F

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
from backoffice.masking import find_card_numbers
from backoffice.money import Money
from ledger.errors import InsufficientFunds
from ledger.models import LedgerJournal
from ledger.services import Source, journal_post_rule, journal_reverse
from payments.models import (
    AttemptStatus,
    Capability,
    EventSource,
    IntentStatus,
    Merchant,
    PaymentIntent,
    Refund,
    RefundStatus,
)
from payments.providers import (
    ProviderAdapter,
    ProviderProtocolError,
    ProviderRefundRequest,
    ProviderRequestRejected,
    ProviderResult,
    ProviderStatus,
    ProviderTimeout,
    ProviderUnavailable,
)
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.recording import payment_command, refusal_record
from payments.services.restrictions import CapabilityRestricted, capability_require

logger = logging.getLogger(__name__)

CAPTURED = (IntentStatus.SUCCEEDED, IntentStatus.PARTIALLY_REFUNDED)
# Provider answers that end a refund without money moving.
_NOT_REFUNDED = (OutcomeStatus.DECLINED, OutcomeStatus.FAILED, OutcomeStatus.CANCELED, OutcomeStatus.EXPIRED)
_RESERVATION_CHECK = "payments_intent_refunds_within_captured"


class RefundExceedsRefundable(PolicyDenied):
    code = "REFUND_EXCEEDS_REFUNDABLE"
    default_message = "The refund is more than the payment's refundable amount."


class RefundExceedsAvailable(PolicyDenied):
    code = "REFUND_EXCEEDS_AVAILABLE"
    default_message = "The refund is more than the merchant's available balance."


def reserved_key(refund_id: str) -> str:
    """The idempotency key of the journal that sets a refund's funds aside (its reversal adds
    ':reversal'; the success journal is refund:<rf_id>)."""
    return f"refund:{refund_id}:reserved"


def source_for(actor: Actor, approval_ref: str = "") -> str:
    """Where a command without an explicit source came from, for the payment timeline."""
    if approval_ref:
        return EventSource.APPROVAL
    if actor.is_system:
        return EventSource.SYSTEM
    return EventSource.OPERATOR if actor.kind == "user" else EventSource.API


def _validate_create(
    *, amount_minor, reason_code: str, reason_text: str, idempotency_key: str, approval_ref: str, case_ref: str
) -> None:
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ValidationFailed("a refund amount is a positive whole number of minor units")
    if not reason_code or len(reason_code) > 48:
        raise ValidationFailed("a refund needs a reason code of at most 48 characters")
    if find_card_numbers(reason_text or ""):
        raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
    if not idempotency_key or len(idempotency_key) > 128:
        raise ValidationFailed("a refund needs an idempotency key of at most 128 characters")
    if len(approval_ref) > 32 or len(case_ref) > 20:
        raise ValidationFailed("the approval reference is at most 32 characters and the case number at most 20")


def _replay(earlier: Refund, *, intent: PaymentIntent, amount_minor: int, reason_code: str) -> Refund:
    """The refund this key already made, when this is a retry of the same request."""
    if (earlier.payment_intent_id, earlier.amount_minor, earlier.reason_code) != (intent.pk, amount_minor, reason_code):
        raise IdempotencyConflict(f"this idempotency key was used for {earlier.public_id} with other values")
    return earlier


def _available_minor(intent: PaymentIntent) -> tuple[int, int]:
    """(the merchant's payable balance, what payouts committed and not yet sent hold of it)."""
    from payments.services.payouts import payable_available_minor  # payouts imports this module

    return payable_available_minor(merchant=intent.merchant, currency=intent.currency)


def _exceeds_available(amount_minor: int, intent: PaymentIntent, balance: int, committed: int) -> DomainError:
    currency, available = intent.currency, balance - committed
    return RefundExceedsAvailable(
        f"{Money(amount_minor, currency)} is more than {intent.merchant.public_id} has available for refunds: "
        f"{Money(max(available, 0), currency)} (payable {Money(balance, currency)}, committed to payouts not yet "
        f"sent {Money(committed, currency)})",
        available_minor=available,
    )


def _reserve(command, intent: PaymentIntent, refund: Refund) -> LedgerJournal:
    """Set the refund's amount aside from the merchant's payable balance (REFUND_RESERVED, once)."""
    return journal_post_rule(
        rule_code="REFUND_RESERVED", currency=refund.currency, amounts={"AMOUNT": refund.amount_minor},
        merchant_ref=intent.merchant.public_id, source=Source("refund", refund.public_id),
        accounting_date=business_date(command.now), idempotency_key=reserved_key(refund.public_id),
        actor=command.actor, now=command.now,
        description=f"Refund {refund.public_id} of {intent.public_id} requested: funds set aside",
        case_ref=refund.case_ref, approval_ref=refund.approval_ref,
    )  # fmt: skip


def _enqueue_send(refund_id: str):
    """The after-commit hook that queues the refund's sending (a named function, as on_commit logs
    a robust hook's failure by its name)."""

    def enqueue_refund_send() -> None:
        from payments.tasks import refund_send_task

        refund_send_task.delay(refund_id=refund_id)

    return enqueue_refund_send


def refund_create(
    *, intent: PaymentIntent, amount_minor: int, reason_code: str, reason_text: str, idempotency_key: str,
    actor: Actor, now: dt.datetime, approval_ref: str = "", case_ref: str = "",
) -> Refund:  # fmt: skip
    """Request a refund of `amount_minor` of a captured payment (status REQUESTED): reserve it on
    the intent's refundable amount, set the merchant's funds aside (REFUND_RESERVED once, key
    refund:<rf_id>:reserved) and, after commit, queue refund_send_task.

    Refuses: CapabilityRestricted while CREATE_REFUND is blocked for the merchant, or under review
    and the refund carries no approval (the review is a CREATE_REFUND_CORRECTION request);
    IllegalTransition when the intent is not captured; RefundExceedsRefundable, naming the
    refundable amount, when the amount is more than it (the database decides, so concurrent
    refunds cannot overdraw it); RefundExceedsAvailable, naming the merchant's available amount
    (payable balance less payouts committed and not yet sent), when that cannot cover it (the
    merchant lock and the ledger's floor decide, so a refund and a payout cannot both spend the
    same balance); ValidationFailed for bad input. The same key with the same request returns the
    first refund; with another request IdempotencyConflict. Audited, refusals too; a refusal
    writes nothing else."""
    try:
        _validate_create(amount_minor=amount_minor, reason_code=reason_code, reason_text=reason_text,
                         idempotency_key=idempotency_key, approval_ref=approval_ref, case_ref=case_ref)  # fmt: skip
        with payment_command(actor=actor, now=now) as command:
            locked = PaymentIntent.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=intent.pk)
            # Under the intent's lock: a retry racing its original sees it committed.
            earlier = Refund.objects.filter(idempotency_key=idempotency_key).first()
            if earlier is not None:
                return _replay(earlier, intent=locked, amount_minor=amount_minor, reason_code=reason_code)
            if locked.status not in CAPTURED:
                raise IllegalTransition(
                    f"payment intent {locked.public_id} is {locked.status}; only a captured payment can be refunded"
                )
            answer = capability_require(merchant=locked.merchant, capability=Capability.CREATE_REFUND, now=now)
            if answer.needs_review and not approval_ref:
                raise CapabilityRestricted(
                    f"{answer.reason}; propose a refund correction for approval instead",
                    restriction_id=answer.restriction.pk,
                )
            attempt = locked.attempts.filter(status=AttemptStatus.SUCCEEDED).order_by("attempt_no").first()
            if attempt is None:
                raise IllegalTransition(f"payment intent {locked.public_id} has no captured attempt to refund")
            try:
                with transaction.atomic():
                    PaymentIntent.objects.filter(pk=locked.pk).update(
                        refund_reserved_minor=F("refund_reserved_minor") + amount_minor,
                        version=F("version") + 1,
                        updated_at=now,
                    )
            except IntegrityError as exc:
                if _RESERVATION_CHECK not in str(exc):
                    raise
                # The intent is locked: its refundable amount is exactly what the database compared.
                raise RefundExceedsRefundable(
                    f"{Money(amount_minor, locked.currency)} is more than the refundable amount of "
                    f"{locked.public_id}: {Money(locked.refundable_minor, locked.currency)} "
                    f"(captured {Money(locked.captured_minor, locked.currency)}, already refunded or in flight "
                    f"{Money(locked.refund_reserved_minor, locked.currency)})",
                    refundable_minor=locked.refundable_minor,
                ) from exc
            # The merchant's funds: one check at a time per merchant, as payouts are created and sent.
            Merchant.objects.select_for_update(no_key=True).filter(pk=locked.merchant_id).values_list("pk").get()
            balance, committed = _available_minor(locked)
            if amount_minor > balance - committed:
                raise _exceeds_available(amount_minor, locked, balance, committed)
            try:
                with transaction.atomic():
                    refund = Refund.objects.create(
                        public_id=new_public_id("rf"), payment_intent=locked, payment_attempt=attempt,
                        amount_minor=amount_minor, currency=locked.currency, reason_code=reason_code,
                        reason_text=(reason_text or "").strip(), provider_code=attempt.provider_code,
                        idempotency_key=idempotency_key, requested_by=actor.label, approval_ref=approval_ref,
                        case_ref=case_ref, created_at=now, updated_at=now,
                    )  # fmt: skip
            except IntegrityError as exc:
                if "payments_refund_idempotency_unique" not in str(exc):
                    raise
                # Committed meanwhile for another payment (the lock above covers only this one).
                raise IdempotencyConflict("this idempotency key was used for another refund") from exc
            try:
                reservation = _reserve(command, locked, refund)
            except InsufficientFunds as exc:
                # Taken down since the check by a posting that does not queue on the merchant (a
                # manual debit, a void): the ledger's floor decided.
                raise _exceeds_available(amount_minor, locked, *_available_minor(locked)) from exc
            source = source_for(actor, approval_ref)
            refundable_after = locked.refundable_minor - amount_minor
            data = {
                "amount_minor": amount_minor,
                "currency": locked.currency,
                "reason_code": reason_code,
                "refundable_before_minor": locked.refundable_minor,
                "refundable_after_minor": refundable_after,
                "available_before_minor": balance - committed,
                "available_after_minor": balance - committed - amount_minor,
            }
            command.event(refund, "refund.requested", source=source, idempotency_key=idempotency_key,
                          approval_ref=approval_ref, case_ref=case_ref, journal_ref=reservation.public_id,
                          data=data)  # fmt: skip
            command.event(locked, "payment_intent.refund_reserved", source=source, approval_ref=approval_ref,
                          case_ref=case_ref, data={"refund": refund.public_id, **data})  # fmt: skip
            command.audit(
                event_type="payments.refund_created", action_type="CREATE_REFUND", target_type="refund",
                target_id=refund.public_id, reason_code=reason_code, reason_text=reason_text, case_ref=case_ref,
                approval_ref=approval_ref, after={"status": refund.status, "payment_intent": locked.public_id,
                                                  "reservation_journal": reservation.public_id, **data},
            )  # fmt: skip
            # Hand it to the provider once this commits; a lost enqueue is found by the dispatch sweep.
            transaction.on_commit(_enqueue_send(refund.public_id), robust=True)
            return refund
    except DomainError as exc:
        refusal_record(
            event_type="payments.refund_create_refused", target_type="payment_intent", target_id=intent.public_id,
            exc=exc, actor=actor, now=now, action_type="CREATE_REFUND", reason_code=str(reason_code or "")[:48],
            case_ref=str(case_ref)[:64], approval_ref=str(approval_ref)[:64],
        )  # fmt: skip
        raise


def _lock(refund_id: str) -> tuple[PaymentIntent, Refund]:
    """Lock the refund's intent, then the refund (the one order every refund command takes)."""
    intent_pk = Refund.objects.filter(public_id=refund_id).values_list("payment_intent_id", flat=True).first()
    if intent_pk is None:
        raise NotFound(f"no refund {refund_id}")
    intent = PaymentIntent.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=intent_pk)
    refund = Refund.objects.select_for_update(of=("self",)).select_related("payment_attempt").get(public_id=refund_id)
    refund.payment_intent = intent
    return intent, refund


def _release_reservation(command, intent: PaymentIntent, refund: Refund, *, source: str, why: str) -> None:
    """Give a refund's amount back (it failed or was canceled): to the payment's refundable amount,
    and the funds set aside to the merchant's payable balance by reversing REFUND_RESERVED (key
    refund:<rf_id>:reserved:reversal). The refund's final state makes this happen once."""
    PaymentIntent.objects.filter(pk=intent.pk).update(
        refund_reserved_minor=F("refund_reserved_minor") - refund.amount_minor,
        version=F("version") + 1,
        updated_at=command.now,
    )
    journal_ref = ""
    reservation = LedgerJournal.objects.filter(idempotency_key=reserved_key(refund.public_id)).first()
    if reservation is not None:  # a refund requested before reservations existed set nothing aside
        reversal = journal_reverse(
            journal=reservation, reason_code="REFUND_RELEASED",
            reason_text=f"{why}: the funds set aside for {refund.public_id} go back to the payable balance",
            idempotency_key=f"{reserved_key(refund.public_id)}:reversal", actor=command.actor, now=command.now,
            accounting_date=business_date(command.now),
        )  # fmt: skip
        journal_ref = reversal.public_id
    command.event(intent, "payment_intent.refund_released", source=source, journal_ref=journal_ref,
                  data={"refund": refund.public_id, "amount_minor": refund.amount_minor, "why": why})  # fmt: skip


def _configured_adapter(provider_code: str) -> ProviderAdapter:
    """The provider as configured (settings read at call time), as inquiries get theirs."""
    from payments.providers.http import provider_adapter_from_settings

    return provider_adapter_from_settings(provider_code=provider_code)


def refund_send(*, refund_id: str, actor: Actor, now: dt.datetime, adapter: ProviderAdapter | None = None) -> Refund:
    """Hand a REQUESTED refund to the provider, once (refund_send_task calls this; `adapter`
    defaults to the configured provider of the refund).

    In one transaction: re-check CREATE_REFUND (a block, or a review the refund was not approved
    through, refuses and leaves it REQUESTED), then REQUESTED -> PROCESSING. After commit the
    provider is called with the refund's id as the idempotency key and its answer is applied
    through refund_apply_outcome; a timeout, an unreadable answer or an unavailable provider makes
    it UNKNOWN_OUTCOME (an inquiry settles it; it is never sent again), a rejected request FAILED.
    A refund past REQUESTED is returned as it is: sending twice sends once. Refusals audited."""
    try:
        with payment_command(actor=actor, now=now) as command:
            intent, refund = _lock(refund_id)
            if refund.status != RefundStatus.REQUESTED:
                return refund
            if adapter is None:
                adapter = _configured_adapter(refund.provider_code)
            if adapter.provider_code != refund.provider_code:
                raise ValidationFailed(
                    f"refund {refund.public_id} goes through provider {refund.provider_code}, "
                    f"not {adapter.provider_code}"
                )
            answer = capability_require(merchant=intent.merchant, capability=Capability.CREATE_REFUND, now=now)
            if answer.needs_review and not refund.approval_ref:
                raise CapabilityRestricted(
                    f"{answer.reason}; the refund was not approved, so it is not sent",
                    restriction_id=answer.restriction.pk,
                )
            if not refund.payment_attempt.provider_reference:
                attempt_id = refund.payment_attempt.public_id
                raise ValidationFailed(f"attempt {attempt_id} has no provider reference to refund")
            request = ProviderRefundRequest(
                idempotency_key=refund.public_id, refund_id=refund.public_id,
                payment_provider_reference=refund.payment_attempt.provider_reference,
                merchant_id=intent.merchant.public_id, amount_minor=refund.amount_minor, currency=refund.currency,
                reason=refund.reason_code,
            )  # fmt: skip
            command.transition(refund, "process", source=source_for(actor), data={"provider": adapter.provider_code})
            transaction.on_commit(lambda: _call_provider(request, adapter=adapter, actor=actor, now=now))
    except DomainError as exc:
        refusal_record(
            event_type="payments.refund_send_refused", target_type="refund", target_id=refund_id, exc=exc,
            actor=actor, now=now, action_type="SEND_REFUND",
        )  # fmt: skip
        raise
    return Refund.objects.get(public_id=refund_id)


def outcome_from_result(result: ProviderResult, *, provider_code: str) -> ProviderOutcome:
    """A provider's synchronous answer in the words every answer is applied in."""
    status = {
        ProviderStatus.SUCCEEDED: OutcomeStatus.SUCCEEDED, ProviderStatus.DECLINED: OutcomeStatus.DECLINED,
        ProviderStatus.FAILED: OutcomeStatus.FAILED, ProviderStatus.PENDING: OutcomeStatus.PENDING,
        ProviderStatus.NOT_FOUND: OutcomeStatus.NOT_FOUND,
    }[result.status]  # fmt: skip
    if result.provider_status == "returned":
        status = OutcomeStatus.RETURNED
    return ProviderOutcome(
        status=status, provider_code=provider_code, provider_reference=result.provider_reference or "",
        our_reference=result.merchant_reference or "", merchant_ref=result.merchant_id or "",
        amount_minor=result.amount_minor, currency=result.currency or "",
        decline_code=result.decline_code or result.error_code, raw_status=result.provider_status,
    )  # fmt: skip


def _call_provider(request: ProviderRefundRequest, *, adapter: ProviderAdapter, actor: Actor, now: dt.datetime):
    """After commit: one provider call, its answer applied in a transaction of its own."""
    refund_id = request.refund_id
    try:
        result = adapter.refund(request)
    except (ProviderTimeout, ProviderProtocolError, ProviderUnavailable) as exc:
        # Unavailable too: the provider says it did not process it, but that is its word against a
        # possible double refund; an inquiry asks before anything is released.
        _lose_track(refund_id, error=exc.code, message=exc.message, actor=actor, now=now)
        return
    except ProviderRequestRejected as exc:
        outcome = ProviderOutcome(status=OutcomeStatus.FAILED, provider_code=adapter.provider_code,
                                  decline_code=exc.error_code or exc.code)  # fmt: skip
    else:
        outcome = outcome_from_result(result, provider_code=adapter.provider_code)
    try:
        refund_apply_outcome(refund_id=refund_id, outcome=outcome, source=EventSource.PROVIDER_RESPONSE,
                             actor=actor, now=now)  # fmt: skip
    except DomainError as exc:
        # Already audited by refund_apply_outcome; the refund stays PROCESSING for the inquiry.
        logger.warning("refund %s: provider answer not applied: %s %s", refund_id, exc.code, exc.message)


def _lose_track(refund_id: str, *, error: str, message: str, actor: Actor, now: dt.datetime) -> None:
    with payment_command(actor=actor, now=now) as command:
        _, refund = _lock(refund_id)
        if refund.status == RefundStatus.PROCESSING:  # an answer that arrived meanwhile wins
            command.transition(refund, "lose_track", source=EventSource.PROVIDER_RESPONSE,
                               data={"error_code": error, "error": message[:200]})  # fmt: skip


def _mismatch(refund: Refund, intent: PaymentIntent, outcome: ProviderOutcome) -> dict:
    """What the provider states differently from us (only what it states)."""
    checks = [
        ("provider_code", refund.provider_code, outcome.provider_code),
        ("our_reference", refund.public_id, outcome.our_reference),
        ("merchant_ref", intent.merchant.public_id, outcome.merchant_ref),
        ("amount_minor", refund.amount_minor, outcome.amount_minor),
        ("currency", refund.currency, outcome.currency),
    ]
    if refund.provider_refund_reference:
        checks.append(("provider_reference", refund.provider_refund_reference, outcome.provider_reference))
    found = {name: {"ours": ours, "theirs": theirs} for name, ours, theirs in checks if theirs not in (None, "")
             and theirs != ours}  # fmt: skip
    if outcome.status == OutcomeStatus.SUCCEEDED:
        # Money moves only on an answer that states what moved.
        for name, ours, theirs in checks[3:5]:
            if theirs in (None, ""):
                found[name] = {"ours": ours, "theirs": None}
    return found


def refund_apply_outcome(
    *, refund_id: str, outcome: ProviderOutcome, source: str, actor: Actor, now: dt.datetime, provider_event=None,
    inquiry=None,
) -> Refund:  # fmt: skip
    """Apply what the provider said about a refund (its answer to our call, a webhook, an inquiry).

    SUCCEEDED: posts REFUND_SUCCEEDED once (key refund:<rf_id>) from the funds set aside at the
    request, so it is never refused for want of a payable balance; adds the amount to the intent's
    refunded_minor and moves the intent to PARTIALLY_REFUNDED or REFUNDED. DECLINED / FAILED /
    CANCELED / EXPIRED: FAILED, the reservation released (the refundable amount, and the funds by
    the reversal of REFUND_RESERVED). PENDING: PROCESSING. NOT_FOUND: a refund whose sending was
    never confirmed (UNKNOWN_OUTCOME) FAILED and released; otherwise a conflict.
    An answer already applied is a no-op, so a webhook, its replay and an inquiry racing move money
    once. Raises OutcomeMismatch (amount, currency, merchant or reference differ; a SUCCEEDED
    answer must state amount and currency) and OutcomeConflict (contradicts a final state); both
    change nothing and are audited, like every refusal."""
    occurred = outcome.occurred_at
    links = {"provider_event": provider_event, "inquiry": inquiry, "occurred_at": occurred}
    try:
        with payment_command(actor=actor, now=now) as command:
            intent, refund = _lock(refund_id)
            mismatch = _mismatch(refund, intent, outcome)
            if mismatch:
                raise OutcomeMismatch(
                    f"the provider's answer for {refund.public_id} differs from ours in {', '.join(sorted(mismatch))}",
                    mismatch=mismatch,
                )
            status, kind = refund.status, outcome.status
            if outcome.provider_reference and not refund.provider_refund_reference:
                refund.provider_refund_reference = outcome.provider_reference
            fields = ("provider_refund_reference",)
            ref = {"provider_reference": outcome.provider_reference}
            if kind == OutcomeStatus.SUCCEEDED:
                if status == RefundStatus.SUCCEEDED:
                    return refund
                if status in (RefundStatus.FAILED, RefundStatus.CANCELED):
                    raise OutcomeConflict(f"the provider says {refund.public_id} succeeded; it is {status}")
                _succeed(command, intent, refund, source=source, fields=fields, links=links, ref=ref)
            elif kind in _NOT_REFUNDED:
                if status in (RefundStatus.FAILED, RefundStatus.CANCELED):
                    return refund
                if status == RefundStatus.SUCCEEDED:
                    raise OutcomeConflict(f"the provider says {refund.public_id} is {kind}; it succeeded")
                refund.failure_code = (outcome.decline_code or outcome.raw_status or kind)[:64]
                command.transition(refund, "fail", source=source, update_fields=(*fields, "failure_code"),
                                   data={"failure_code": refund.failure_code}, **links, **ref)  # fmt: skip
                _release_reservation(command, intent, refund, source=source, why=f"refund {kind.lower()}")
            elif kind == OutcomeStatus.PENDING:
                if status not in (RefundStatus.REQUESTED, RefundStatus.UNKNOWN_OUTCOME):
                    return refund  # already processing, or a late answer after the final one
                command.transition(refund, "process", source=source, update_fields=fields, **links, **ref)
            elif kind == OutcomeStatus.NOT_FOUND:
                if status in (RefundStatus.FAILED, RefundStatus.CANCELED):
                    return refund
                if status != RefundStatus.UNKNOWN_OUTCOME:
                    raise OutcomeConflict(f"the provider does not know {refund.public_id}, which is {status}")
                refund.failure_code = "NOT_FOUND_AT_PROVIDER"
                command.transition(refund, "fail", source=source, update_fields=("failure_code",),
                                   data={"failure_code": refund.failure_code}, **links)  # fmt: skip
                _release_reservation(command, intent, refund, source=source, why="never reached the provider")
            else:
                raise OutcomeConflict(f"{kind} is not an outcome a refund can have")
            return refund
    except IntegrityError as exc:
        if "payments_refund_provider_reference_unique" not in str(exc):
            raise
        conflict = OutcomeConflict(f"provider reference {outcome.provider_reference} belongs to another refund")
        _refuse_outcome(refund_id, outcome, conflict, actor=actor, now=now)
        raise conflict from exc
    except DomainError as exc:
        _refuse_outcome(refund_id, outcome, exc, actor=actor, now=now)
        raise


def _refuse_outcome(refund_id: str, outcome: ProviderOutcome, exc: DomainError, *, actor: Actor, now: dt.datetime):
    refusal_record(
        event_type="payments.refund_outcome_refused", target_type="refund", target_id=refund_id, exc=exc,
        actor=actor, now=now, action_type="APPLY_REFUND_OUTCOME",
        after={"outcome": outcome.status, "provider_reference": outcome.provider_reference,
               "mismatch": getattr(exc, "mismatch", None)},
    )  # fmt: skip


def _succeed(command, intent: PaymentIntent, refund: Refund, *, source: str, fields, links, ref) -> None:
    if not LedgerJournal.objects.filter(idempotency_key=reserved_key(refund.public_id)).exists():
        # Requested before refunds set funds aside: set them aside now and pay from them at once
        # (the payable balance must cover it here, as it had to before reservations existed).
        _reserve(command, intent, refund)
    journal = journal_post_rule(
        rule_code="REFUND_SUCCEEDED", currency=refund.currency, amounts={"AMOUNT": refund.amount_minor},
        merchant_ref=intent.merchant.public_id, source=Source("refund", refund.public_id),
        accounting_date=business_date(command.now), idempotency_key=f"refund:{refund.public_id}",
        actor=command.actor, now=command.now, description=f"Refund {refund.public_id} of {intent.public_id}",
        case_ref=refund.case_ref, approval_ref=refund.approval_ref,
    )  # fmt: skip
    refund.journal_ref = journal.public_id
    command.transition(refund, "succeed", source=source, update_fields=(*fields, "journal_ref"),
                       journal_ref=journal.public_id, **links, **ref)  # fmt: skip
    PaymentIntent.objects.filter(pk=intent.pk).update(
        refunded_minor=F("refunded_minor") + refund.amount_minor, version=F("version") + 1, updated_at=command.now
    )
    # The counters moved in the database; read them back (the row is locked) before the transition
    # saves the intent's status and version.
    fresh = PaymentIntent.objects.select_related("merchant").get(pk=intent.pk)
    data = {"refund": refund.public_id, "refunded_minor": fresh.refunded_minor, "captured_minor": fresh.captured_minor}
    if fresh.status not in CAPTURED:
        # Disputed meanwhile: the refund is recorded; the dispute decides the intent's state.
        command.event(fresh, "payment_intent.refund_applied", source=source, journal_ref=journal.public_id, data=data)
    elif fresh.refunded_minor == fresh.captured_minor:
        command.transition(fresh, "refund_fully", source=source, journal_ref=journal.public_id, data=data)
    elif fresh.status == IntentStatus.SUCCEEDED:
        command.transition(fresh, "refund_partially", source=source, journal_ref=journal.public_id, data=data)
    else:
        command.event(fresh, "payment_intent.refund_applied", source=source, journal_ref=journal.public_id, data=data)


def refund_cancel(*, refund_id: str, reason_text: str, actor: Actor, now: dt.datetime) -> Refund:
    """Cancel a refund not yet sent (REQUESTED -> CANCELED) and release its reservation (the
    refundable amount, and the funds set aside back to the payable balance), e.g. one a restriction
    stopped from being sent. Refuses any other state (IllegalTransition). Audited."""
    try:
        if not (reason_text or "").strip():
            raise ValidationFailed("canceling a refund needs an explanation")
        if find_card_numbers(reason_text):
            raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
        with payment_command(actor=actor, now=now) as command:
            intent, refund = _lock(refund_id)
            source = source_for(actor)
            command.transition(refund, "cancel", source=source, data={"reason": reason_text.strip()[:200]})
            _release_reservation(command, intent, refund, source=source, why="refund canceled")
            return refund
    except DomainError as exc:
        refusal_record(
            event_type="payments.refund_cancel_refused", target_type="refund", target_id=refund_id, exc=exc,
            actor=actor, now=now, action_type="CANCEL_REFUND",
        )  # fmt: skip
        raise
