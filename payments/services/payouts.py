"""Payouts: money out of a merchant's payable balance to its bank account.

Life of a payout. payout_create checks the CREATE_PAYOUT capability, the beneficiary and the
balance and creates it; the system approves it at once (CREATED -> APPROVED), unless CREATE_PAYOUT
is under REVIEW for the merchant: then it waits as APPROVAL_REQUIRED until a RELEASE_PAYOUT_HOLD
request is approved (four eyes). Whenever a payout becomes APPROVED (at creation, or released),
payout_send_task is queued after commit (the dispatch sweep queues it again if that was lost).
payout_send posts PAYOUT_SENT (the payable is debited) as the payout goes APPROVED -> SENT and calls
the provider after commit. The provider's answers come back through payout_apply_outcome: paid ->
SUCCEEDED; failed after sending -> FAILED with the PAYOUT_SENT journal reversed; returned by the
beneficiary bank -> RETURNED with PAYOUT_RETURNED posted. Every journal has a fixed key
(payout:<po_id>:sent, :sent:reversal, :returned), so it posts once.

Balance. A payout may take what the merchant's payable (available) balance holds minus what other
payouts have committed and not yet posted (CREATED, APPROVAL_REQUIRED, APPROVED, HELD). Creation
locks the Merchant row (FOR NO KEY UPDATE) so payouts of one merchant are created one at a time:
two concurrent payouts cannot both count the same balance. A refund request takes the same lock and
counts committed payouts too before it sets its funds aside, so a refund and a payout cannot both
spend one balance. A lost chargeback takes the same lock but takes what the payable holds whatever
is committed (the scheme has the money already); other postings (a manual debit, a void) do not
take it. Either may lower the balance meanwhile; the ledger's floor on the payable account (it
never goes below zero) refuses PAYOUT_SENT then, and the payout stays APPROVED.

Lock order: the merchant (creation, sending), then the payout, then the ledger's balance rows, the
audit chain last. Holding, releasing and applying an answer lock only the payout.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum

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
from backoffice.money import CurrencyError, Money, currency_exponent
from ledger.models import AccountRole, LedgerJournal
from ledger.selectors import account_balance
from ledger.services import Source, account_find, journal_post_rule, journal_reverse
from payments.models import (
    Capability,
    EventSource,
    Merchant,
    MerchantBeneficiary,
    PaymentEvent,
    Payout,
    PayoutStatus,
)
from payments.models.merchants import BeneficiaryStatus
from payments.models.payments import PAYOUT_COMMITTED_UNPOSTED
from payments.providers import (
    ProviderAdapter,
    ProviderPayoutRequest,
    ProviderProtocolError,
    ProviderRequestRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from payments.selectors import merchant_can
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus, ProviderOutcome
from payments.services.recording import payment_command, refusal_record
from payments.services.refunds import outcome_from_result, source_for
from payments.services.restrictions import CapabilityRestricted, capability_require

logger = logging.getLogger(__name__)

P = PayoutStatus
# Handed to the provider: sending again is a no-op, never a second payout.
_HANDED_OVER = (P.SENT, P.PROCESSING, P.SUCCEEDED, P.FAILED, P.RETURNED, P.UNKNOWN_OUTCOME)
_IN_FLIGHT = (P.SENT, P.PROCESSING, P.UNKNOWN_OUTCOME)
_NOT_PAID = (OutcomeStatus.DECLINED, OutcomeStatus.FAILED, OutcomeStatus.CANCELED, OutcomeStatus.EXPIRED)


class PayoutExceedsAvailable(PolicyDenied):
    code = "PAYOUT_EXCEEDS_AVAILABLE"
    default_message = "The payout is more than the merchant's available balance."


def payable_available_minor(*, merchant: Merchant, currency: str) -> tuple[int, int]:
    """(the merchant's payable balance, what payouts committed and not yet posted hold of it)."""
    account = account_find(role=AccountRole.MERCHANT_PAYABLE, currency=currency, owner_ref=merchant.public_id)
    balance = account_balance(account=account).balance.amount_minor if account is not None else 0
    committed = Payout.objects.filter(
        merchant=merchant, currency=currency, status__in=PAYOUT_COMMITTED_UNPOSTED
    ).aggregate(total=Sum("amount_minor"))["total"]
    return balance, committed or 0


def _validate_create(*, amount_minor, currency: str, idempotency_key: str) -> None:
    if type(amount_minor) is not int or amount_minor <= 0:
        raise ValidationFailed("a payout amount is a positive whole number of minor units")
    try:
        currency_exponent(currency)
    except CurrencyError as exc:
        raise ValidationFailed(str(exc)) from exc
    if not idempotency_key or len(idempotency_key) > 128:
        raise ValidationFailed("a payout needs an idempotency key of at most 128 characters")


def _replay(earlier: Payout, *, merchant: Merchant, beneficiary: MerchantBeneficiary, amount_minor: int,
            currency: str) -> Payout:  # fmt: skip
    same = (earlier.merchant_id, earlier.beneficiary_id, earlier.amount_minor, earlier.currency) == (
        merchant.pk, beneficiary.pk, amount_minor, currency,
    )  # fmt: skip
    if not same:
        raise IdempotencyConflict(f"this idempotency key was used for {earlier.public_id} with other values")
    return earlier


def payout_create(
    *, merchant: Merchant, beneficiary: MerchantBeneficiary, amount_minor: int, currency: str, idempotency_key: str,
    actor: Actor, now: dt.datetime,
) -> Payout:  # fmt: skip
    """Create a payout and approve it at once (then queue payout_send_task after commit), or leave
    it APPROVAL_REQUIRED while the merchant's CREATE_PAYOUT is under review (see the module's
    docstring).

    Refuses: CapabilityRestricted while CREATE_PAYOUT is blocked (the message gives the
    restriction's reason); ValidationFailed when `beneficiary` is not the merchant's active account
    for `currency`, or for bad input; PayoutExceedsAvailable when the amount is more than the
    payable balance minus payouts committed and not yet posted. The same key with the same request
    returns the first payout; with another IdempotencyConflict. Audited; a refusal writes nothing
    else."""
    try:
        _validate_create(amount_minor=amount_minor, currency=currency, idempotency_key=idempotency_key)
        with payment_command(actor=actor, now=now) as command:
            # One payout creation per merchant at a time: the balance check below and the insert
            # must not interleave with another creation's, a refund request's (nor with a freeze
            # being imposed). FOR NO KEY UPDATE: it conflicts with those, but not with the key-share
            # lock another command's payment event takes on the merchant at its commit (foreign
            # keys are checked at commit, after that command took the audit chain lock this one
            # waits for last: FOR UPDATE here would deadlock with it).
            locked = Merchant.objects.select_for_update(no_key=True).get(pk=merchant.pk)
            earlier = Payout.objects.filter(idempotency_key=idempotency_key).first()
            if earlier is not None:
                return _replay(earlier, merchant=locked, beneficiary=beneficiary, amount_minor=amount_minor,
                               currency=currency)  # fmt: skip
            answer = capability_require(merchant=locked, capability=Capability.CREATE_PAYOUT, now=now)
            active = MerchantBeneficiary.objects.filter(
                merchant=locked, currency=currency, status=BeneficiaryStatus.ACTIVE
            ).first()
            if active is None or active.pk != beneficiary.pk:
                shown = f"{active.bank_name} {active.account_masked}" if active else "none"
                raise ValidationFailed(
                    f"{beneficiary.bank_name} {beneficiary.account_masked} is not the active {currency} payout "
                    f"account of {locked.public_id} (active: {shown})"
                )
            balance, committed = payable_available_minor(merchant=locked, currency=currency)
            if amount_minor > balance - committed:
                raise PayoutExceedsAvailable(
                    f"{Money(amount_minor, currency)} is more than {locked.public_id} may be paid out: "
                    f"{Money(max(balance - committed, 0), currency)} (payable {Money(balance, currency)}, "
                    f"committed to payouts not yet sent {Money(committed, currency)})",
                    available_minor=balance - committed,
                )
            payout = Payout.objects.create(
                public_id=new_public_id("po"), merchant=locked, beneficiary=active, amount_minor=amount_minor,
                currency=currency, provider_code=settings.PAYMENTS_PROVIDER_CODE, idempotency_key=idempotency_key,
                requested_by=actor.label, created_at=now, updated_at=now,
            )  # fmt: skip
            source = source_for(actor)
            data = {"amount_minor": amount_minor, "currency": currency, "beneficiary": active.public_id,
                    "account": active.account_masked, "available_before_minor": balance - committed}  # fmt: skip
            command.event(payout, "payout.created", source=source, idempotency_key=idempotency_key, data=data)
            if answer.needs_review:
                command.transition(payout, "require_approval", source=EventSource.SYSTEM,
                                   data={"restriction": answer.restriction.pk, "why": answer.reason})  # fmt: skip
            else:
                command.transition(payout, "approve", source=EventSource.SYSTEM,
                                   data={"why": "no review restriction on CREATE_PAYOUT"})  # fmt: skip
                _send_after_commit(payout)
            command.audit(
                event_type="payments.payout_created", action_type="CREATE_PAYOUT", target_type="payout",
                target_id=payout.public_id, after={"status": payout.status, "merchant": locked.public_id, **data},
            )  # fmt: skip
            return payout
    except DomainError as exc:
        refusal_record(
            event_type="payments.payout_create_refused", target_type="merchant", target_id=merchant.public_id,
            exc=exc, actor=actor, now=now, action_type="CREATE_PAYOUT",
            after={"amount_minor": amount_minor if type(amount_minor) is int else None, "currency": str(currency)[:3]},
        )  # fmt: skip
        raise


def _send_after_commit(payout: Payout) -> None:
    """Queue the sending of a payout that just became APPROVED, once the transaction commits.
    Robust: a broker outage is logged and the dispatch sweep finds the payout still APPROVED."""
    payout_id = payout.public_id

    def enqueue_payout_send() -> None:
        from payments.tasks import payout_send_task

        payout_send_task.delay(payout_id=payout_id)

    transaction.on_commit(enqueue_payout_send, robust=True)


def _payout_pk(payout_id: str) -> int:
    pk = Payout.objects.filter(public_id=payout_id).values_list("pk", flat=True).first()
    if pk is None:
        raise NotFound(f"no payout {payout_id}")
    return pk


def _lock(payout_id: str) -> Payout:
    return (
        Payout.objects.select_for_update(of=("self",))
        .select_related("merchant", "beneficiary")
        .get(pk=_payout_pk(payout_id))
    )


def _refuse(what: str, payout_id: str, exc: DomainError, *, actor: Actor, now: dt.datetime, **fields) -> None:
    refusal_record(event_type=f"payments.payout_{what}_refused", target_type="payout", target_id=payout_id,
                   exc=exc, actor=actor, now=now, **fields)  # fmt: skip


def _validate_reason(reason: str, what: str, approval_ref: str) -> None:
    if not (reason or "").strip():
        raise ValidationFailed(f"{what} needs a reason")
    if find_card_numbers(reason):
        raise ValidationFailed("the reason contains what looks like a full card number; use the last four digits")
    if len(approval_ref) > 32:
        raise ValidationFailed("the approval reference is at most 32 characters")


def payout_hold(*, payout_id: str, reason: str, actor: Actor, now: dt.datetime, approval_ref: str = "") -> Payout:
    """Stop a payout before it is sent (CREATED, APPROVAL_REQUIRED or APPROVED -> HELD), with why
    and, through an approved HOLD_PAYOUT, which request. Its amount stays committed against the
    balance. Refuses a payout already sent or held (IllegalTransition). Audited, refusals too."""
    try:
        _validate_reason(reason, "holding a payout", approval_ref)
        with payment_command(actor=actor, now=now) as command:
            payout = _lock(payout_id)
            payout.hold_reason, payout.hold_ref = reason.strip(), approval_ref
            command.transition(payout, "hold", source=source_for(actor, approval_ref),
                               update_fields=("hold_reason", "hold_ref"), approval_ref=approval_ref,
                               data={"reason": payout.hold_reason})  # fmt: skip
            return payout
    except DomainError as exc:
        _refuse("hold", payout_id, exc, actor=actor, now=now, action_type="HOLD_PAYOUT", approval_ref=approval_ref)
        raise


def payout_release_hold(
    *, payout_id: str, reason: str, actor: Actor, now: dt.datetime, approval_ref: str = ""
) -> Payout:
    """Let a stopped payout go: HELD -> APPROVED, or APPROVAL_REQUIRED -> APPROVED (the review a
    CREATE_PAYOUT REVIEW restriction asks for), and queue payout_send_task after commit;
    payout_send checks the restriction again. Refuses any other state (IllegalTransition).
    Audited, refusals too."""
    try:
        _validate_reason(reason, "releasing a payout", approval_ref)
        with payment_command(actor=actor, now=now) as command:
            payout = _lock(payout_id)
            name = {P.HELD: "release_hold", P.APPROVAL_REQUIRED: "approve"}.get(payout.status)
            if name is None:
                raise IllegalTransition(
                    f"payout {payout.public_id} is {payout.status}; only a held payout or one waiting for "
                    "approval can be released"
                )
            held = {"hold_reason": payout.hold_reason, "hold_ref": payout.hold_ref}
            payout.hold_reason, payout.hold_ref = "", ""
            command.transition(payout, name, source=source_for(actor, approval_ref),
                               update_fields=("hold_reason", "hold_ref"), approval_ref=approval_ref,
                               data={"reason": reason.strip()[:500], "released": held})  # fmt: skip
            _send_after_commit(payout)
            return payout
    except DomainError as exc:
        _refuse("release", payout_id, exc, actor=actor, now=now, action_type="RELEASE_PAYOUT_HOLD",
                approval_ref=approval_ref)  # fmt: skip
        raise


def _released_by_approval(payout: Payout) -> bool:
    """Whether the payout's way to APPROVED went through an approved request (a reviewed payout)."""
    return (
        PaymentEvent.objects.filter(subject_type="payout", subject_id=payout.public_id, to_status=P.APPROVED)
        .exclude(approval_ref="")
        .exists()
    )


def payout_send(*, payout_id: str, actor: Actor, now: dt.datetime, adapter: ProviderAdapter | None = None) -> Payout:
    """Send an APPROVED payout (payout_send_task calls this; `adapter` defaults to the configured
    provider of the payout): post PAYOUT_SENT once (key payout:<po_id>:sent), APPROVED -> SENT,
    then after commit ask the provider (the payout's id is the idempotency key) and apply its
    answer through payout_apply_outcome. A timeout, an unreadable answer or an unavailable provider
    leaves it UNKNOWN_OUTCOME (never sent again; an inquiry settles it); a rejected request fails it
    and reverses the posting.

    CREATE_PAYOUT is checked again: a BLOCK refuses (the payout stays APPROVED, sent once the block
    ends); a REVIEW holds a payout that no approval released (HELD, for RELEASE_PAYOUT_HOLD). Also
    refused: a retired beneficiary, a payout not approved (IllegalTransition), a payable balance
    too low (InsufficientFunds from the ledger). A payout already sent is returned as it is."""
    try:
        with payment_command(actor=actor, now=now) as command:
            merchant_pk = Payout.objects.filter(pk=_payout_pk(payout_id)).values_list("merchant_id", flat=True).get()
            Merchant.objects.select_for_update(no_key=True).filter(pk=merchant_pk).values_list("pk", flat=True).get()
            payout = _lock(payout_id)
            if payout.status in _HANDED_OVER:
                return payout
            if payout.status != P.APPROVED:
                raise IllegalTransition(
                    f"payout {payout.public_id} is {payout.status}; only an approved payout can be sent"
                )
            if adapter is None:
                from payments.providers.http import provider_adapter_from_settings

                adapter = provider_adapter_from_settings(provider_code=payout.provider_code)
            if adapter.provider_code != payout.provider_code:
                raise ValidationFailed(
                    f"payout {payout.public_id} goes through provider {payout.provider_code}, "
                    f"not {adapter.provider_code}"
                )
            answer = merchant_can(payout.merchant, Capability.CREATE_PAYOUT, now)
            if not answer.allowed:
                raise CapabilityRestricted(f"{answer.reason}; payout {payout.public_id} is not sent",
                                           restriction_id=answer.restriction.pk)  # fmt: skip
            if answer.needs_review and not _released_by_approval(payout):
                payout.hold_reason = answer.reason
                command.transition(payout, "hold", source=EventSource.SYSTEM, update_fields=("hold_reason",),
                                   data={"restriction": answer.restriction.pk, "why": answer.reason})  # fmt: skip
                return payout
            if payout.beneficiary.status != BeneficiaryStatus.ACTIVE:
                raise ValidationFailed(
                    f"the payout account {payout.beneficiary.account_masked} of {payout.public_id} was retired; "
                    "cancel the payout and create it again for the active account"
                )
            request = ProviderPayoutRequest(
                idempotency_key=payout.public_id, payout_id=payout.public_id, merchant_id=payout.merchant.public_id,
                amount_minor=payout.amount_minor, currency=payout.currency,
                beneficiary_token=payout.beneficiary.public_id, description=f"Payout {payout.public_id}",
            )  # fmt: skip
            journal = journal_post_rule(
                rule_code="PAYOUT_SENT", currency=payout.currency, amounts={"AMOUNT": payout.amount_minor},
                merchant_ref=payout.merchant.public_id, source=Source("payout", payout.public_id),
                accounting_date=business_date(now), idempotency_key=f"payout:{payout.public_id}:sent", actor=actor,
                now=now, description=f"Payout {payout.public_id} to {payout.beneficiary.account_masked}",
            )  # fmt: skip
            payout.sent_journal_ref, payout.executed_at = journal.public_id, now
            command.transition(payout, "send", source=source_for(actor), journal_ref=journal.public_id,
                               update_fields=("sent_journal_ref", "executed_at"),
                               data={"provider": adapter.provider_code})  # fmt: skip
            transaction.on_commit(lambda: _call_provider(request, adapter=adapter, actor=actor, now=now))
    except DomainError as exc:
        _refuse("send", payout_id, exc, actor=actor, now=now, action_type="SEND_PAYOUT")
        raise
    return Payout.objects.get(public_id=payout_id)


def _call_provider(request: ProviderPayoutRequest, *, adapter: ProviderAdapter, actor: Actor, now: dt.datetime):
    """After commit: one provider call, its answer applied in a transaction of its own."""
    payout_id = request.payout_id
    try:
        result = adapter.payout(request)
    except (ProviderTimeout, ProviderProtocolError, ProviderUnavailable) as exc:
        # Unavailable too: money may have left; an inquiry asks before anything is reversed.
        _lose_track(payout_id, error=exc.code, message=exc.message, actor=actor, now=now)
        return
    except ProviderRequestRejected as exc:
        outcome = ProviderOutcome(status=OutcomeStatus.FAILED, provider_code=adapter.provider_code,
                                  decline_code=exc.error_code or exc.code)  # fmt: skip
    else:
        outcome = outcome_from_result(result, provider_code=adapter.provider_code)
    try:
        payout_apply_outcome(payout_id=payout_id, outcome=outcome, source=EventSource.PROVIDER_RESPONSE,
                             actor=actor, now=now)  # fmt: skip
    except DomainError as exc:
        # Already audited by payout_apply_outcome; the payout stays SENT for the inquiry.
        logger.warning("payout %s: provider answer not applied: %s %s", payout_id, exc.code, exc.message)


def _lose_track(payout_id: str, *, error: str, message: str, actor: Actor, now: dt.datetime) -> None:
    with payment_command(actor=actor, now=now) as command:
        payout = _lock(payout_id)
        if payout.status in (P.SENT, P.PROCESSING):  # an answer that arrived meanwhile wins
            command.transition(payout, "lose_track", source=EventSource.PROVIDER_RESPONSE,
                               data={"error_code": error, "error": message[:200]})  # fmt: skip


def _mismatch(payout: Payout, outcome: ProviderOutcome) -> dict:
    """What the provider states differently from us (only what it states)."""
    checks = [
        ("provider_code", payout.provider_code, outcome.provider_code),
        ("our_reference", payout.public_id, outcome.our_reference),
        ("merchant_ref", payout.merchant.public_id, outcome.merchant_ref),
        ("amount_minor", payout.amount_minor, outcome.amount_minor),
        ("currency", payout.currency, outcome.currency),
    ]
    if payout.provider_payout_reference:
        checks.append(("provider_reference", payout.provider_payout_reference, outcome.provider_reference))
    found = {name: {"ours": ours, "theirs": theirs} for name, ours, theirs in checks if theirs not in (None, "")
             and theirs != ours}  # fmt: skip
    if outcome.status in (OutcomeStatus.SUCCEEDED, OutcomeStatus.RETURNED):
        # Money moves only on an answer that states what moved.
        for name, ours, theirs in checks[3:5]:
            if theirs in (None, ""):
                found[name] = {"ours": ours, "theirs": None}
    return found


def payout_apply_outcome(
    *, payout_id: str, outcome: ProviderOutcome, source: str, actor: Actor, now: dt.datetime, provider_event=None,
    inquiry=None,
) -> Payout:  # fmt: skip
    """Apply what the provider said about a sent payout (its answer, a webhook, an inquiry).

    SUCCEEDED: SUCCEEDED. DECLINED / FAILED / CANCELED / EXPIRED: FAILED and the PAYOUT_SENT
    journal reversed once (key payout:<po_id>:sent:reversal), the amount back in the payable
    balance. RETURNED: RETURNED with PAYOUT_RETURNED posted once (key payout:<po_id>:returned); a
    return of a payout not yet recorded paid records it paid first. PENDING: PROCESSING. NOT_FOUND:
    a payout whose sending was never confirmed (UNKNOWN_OUTCOME) FAILED and reversed; otherwise a
    conflict. An answer already applied is a no-op. Raises OutcomeMismatch (amount, currency,
    merchant or reference differ; a paid or returned answer must state amount and currency) and
    OutcomeConflict (e.g. failed after paid, or any answer for a payout never sent); both change
    nothing and are audited."""
    links = {"provider_event": provider_event, "inquiry": inquiry, "occurred_at": outcome.occurred_at}
    try:
        with payment_command(actor=actor, now=now) as command:
            payout = _lock(payout_id)
            mismatch = _mismatch(payout, outcome)
            if mismatch:
                raise OutcomeMismatch(
                    f"the provider's answer for {payout.public_id} differs from ours in {', '.join(sorted(mismatch))}",
                    mismatch=mismatch,
                )
            status, kind = payout.status, outcome.status
            if status not in _HANDED_OVER:
                raise OutcomeConflict(f"the provider answered {kind} for {payout.public_id}, which was never sent")
            if outcome.provider_reference and not payout.provider_payout_reference:
                payout.provider_payout_reference = outcome.provider_reference
            fields = ("provider_payout_reference",)
            extra = {**links, "provider_reference": outcome.provider_reference}
            if kind == OutcomeStatus.SUCCEEDED:
                if status in (P.SUCCEEDED, P.RETURNED):
                    return payout
                if status == P.FAILED:
                    raise OutcomeConflict(f"the provider says {payout.public_id} was paid; it failed and was reversed")
                command.transition(payout, "succeed", source=source, update_fields=fields, **extra)
            elif kind == OutcomeStatus.RETURNED:
                if status == P.RETURNED:
                    return payout
                if status == P.FAILED:
                    raise OutcomeConflict(f"the provider says {payout.public_id} was returned; it failed")
                if status != P.SUCCEEDED:
                    command.transition(payout, "succeed", source=source, update_fields=fields, **extra)
                _return(command, payout, source=source, outcome=outcome, extra=extra)
            elif kind in _NOT_PAID or kind == OutcomeStatus.NOT_FOUND:
                if status == P.FAILED:
                    return payout
                if status in (P.SUCCEEDED, P.RETURNED):
                    raise OutcomeConflict(f"the provider says {payout.public_id} is {kind}; it was paid")
                if kind == OutcomeStatus.NOT_FOUND and status != P.UNKNOWN_OUTCOME:
                    raise OutcomeConflict(f"the provider does not know {payout.public_id}, which is {status}")
                failure = "NOT_FOUND_AT_PROVIDER" if kind == OutcomeStatus.NOT_FOUND else outcome.decline_code
                _fail(command, payout, source=source, failure=(failure or outcome.raw_status or kind)[:64],
                      fields=fields, extra=extra)  # fmt: skip
            elif kind == OutcomeStatus.PENDING:
                if status in (P.SENT, P.UNKNOWN_OUTCOME):
                    command.transition(payout, "process", source=source, update_fields=fields, **extra)
            else:
                raise OutcomeConflict(f"{kind} is not an outcome a payout can have")
            return payout
    except IntegrityError as exc:
        if "payments_payout_provider_reference_unique" not in str(exc):
            raise
        conflict = OutcomeConflict(f"provider reference {outcome.provider_reference} belongs to another payout")
        _refuse_outcome(payout_id, outcome, conflict, actor=actor, now=now)
        raise conflict from exc
    except DomainError as exc:
        _refuse_outcome(payout_id, outcome, exc, actor=actor, now=now)
        raise


def _refuse_outcome(payout_id: str, outcome: ProviderOutcome, exc: DomainError, *, actor: Actor, now: dt.datetime):
    _refuse("outcome", payout_id, exc, actor=actor, now=now, action_type="APPLY_PAYOUT_OUTCOME",
            after={"outcome": outcome.status, "provider_reference": outcome.provider_reference,
                   "mismatch": getattr(exc, "mismatch", None)})  # fmt: skip


def _fail(command, payout: Payout, *, source: str, failure: str, fields, extra) -> None:
    """Failed after sending: the money never left, so the PAYOUT_SENT posting is reversed."""
    sent = LedgerJournal.objects.get(public_id=payout.sent_journal_ref)
    reversal = journal_reverse(
        journal=sent, reason_code="PAYOUT_FAILED", reason_text=f"payout {payout.public_id} failed: {failure}",
        idempotency_key=f"payout:{payout.public_id}:sent:reversal", actor=command.actor, now=command.now,
        accounting_date=business_date(command.now),
    )  # fmt: skip
    payout.failure_code = failure
    command.transition(payout, "fail", source=source, update_fields=(*fields, "failure_code"),
                       journal_ref=reversal.public_id, data={"failure_code": failure, "reversed": sent.public_id},
                       **extra)  # fmt: skip


def _return(command, payout: Payout, *, source: str, outcome: ProviderOutcome, extra) -> None:
    """Returned by the beneficiary bank: the money is back, the merchant is owed it again."""
    journal = journal_post_rule(
        rule_code="PAYOUT_RETURNED", currency=payout.currency, amounts={"AMOUNT": payout.amount_minor},
        merchant_ref=payout.merchant.public_id, source=Source("payout", payout.public_id),
        accounting_date=business_date(command.now), idempotency_key=f"payout:{payout.public_id}:returned",
        actor=command.actor, now=command.now, description=f"Payout {payout.public_id} returned",
    )  # fmt: skip
    payout.returned_journal_ref = journal.public_id
    payout.failure_code = (outcome.decline_code or outcome.raw_status or "RETURNED")[:64]
    command.transition(payout, "return_", source=source, journal_ref=journal.public_id,
                       update_fields=("returned_journal_ref", "failure_code", "provider_payout_reference"),
                       data={"return_code": payout.failure_code}, **extra)  # fmt: skip
