"""Provider state inquiries: asking a provider what became of a payment attempt whose outcome we
do not know, and applying its answer through the same service every other answer goes through.

Three commands:

- `inquiry_request` records a QUEUED inquiry (the question, who asked and why) and enqueues its run
  after commit. An operator's "refresh from provider", the stale-attempt sweeper and the
  maintenance command all come here.
- `inquiry_run` asks the provider outside any transaction, then in one transaction completes the
  inquiry with the provider's answer kept as evidence (the body as received, its sha256, the HTTP
  status and the call's duration) and applies the answer with `attempt_apply_outcome` (source
  INQUIRY). It never re-submits anything: a question about state is the only call it makes.
- `attempts_inquire_stale` is the sweeper: attempts stuck in SENT_TO_PROVIDER or UNKNOWN_OUTCOME
  are inquired with exponential backoff and, after the last try, escalated once to a case.

Which attempts may be inquired: those the provider may still answer for, the states from which a
provider's answer is applied (SENT_TO_PROVIDER, REQUIRES_ACTION, UNKNOWN_OUTCOME). A CREATED attempt
was never sent, so the provider cannot know it; an AUTHORIZED one already has the provider's answer
and waits for our capture or void; a final one (SUCCEEDED, DECLINED, FAILED, EXPIRED, CANCELED) is
settled, and checking it against the provider is reconciliation's work, not a state repair.

Locks, in the order every payment command takes them: a case (when one is involved), the inquiry
row (inquiry_run only), the attempt, its intent, the ledger, the audit chain last. Exception
reports lock their case and append to the audit chain at once, so they run in their own
transaction, before the transaction that locks payment rows, never inside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce

from audit.context import current
from audit.models import AuditResult
from backoffice.actors import Actor
from backoffice.errors import DomainError, IdempotencyConflict, IllegalTransition, NotFound, ValidationFailed
from backoffice.ids import new_public_id
from backoffice.masking import find_card_numbers, mask_card_numbers
from cases.models import CaseType, OpsCase, Severity
from cases.services import case_link_record, exception_report
from payments.models import (
    AttemptStatus,
    EventSource,
    InquiryOutcome,
    InquiryStatus,
    InquiryTrigger,
    PaymentAttempt,
    ProviderInquiry,
)
from payments.providers.base import (
    ProviderAdapter,
    ProviderError,
    ProviderObjectKind,
    ProviderStatusResult,
    ProviderTimeout,
)
from payments.services.attempts import attempt_apply_outcome, outcome_from_provider_result
from payments.services.outcomes import OutcomeConflict, OutcomeMismatch, OutcomeStatus
from payments.services.recording import PaymentCommand, payment_command, refusal_record

logger = logging.getLogger(__name__)

A = AttemptStatus
ACTION_TYPE = "REFRESH_PROVIDER_STATE"
TARGET_TYPE = "payment_attempt"
# Where the provider may still answer from (the states attempt_apply_outcome applies answers in).
INQUIRABLE = (A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME)
# What the sweeper looks for (the partial index payments_attempt_stuck_idx covers exactly these).
STUCK = (A.SENT_TO_PROVIDER, A.UNKNOWN_OUTCOME)
SWEEPER_REASON = "STALE_ATTEMPT"
SOURCE_SYSTEM = "payments"
MISMATCH_EXCEPTION = "PROVIDER_INQUIRY_MISMATCH"
UNRESOLVED_EXCEPTION = "UNKNOWN_OUTCOME_UNRESOLVED"
_EVENT_SOURCE = {
    InquiryTrigger.OPERATOR: EventSource.OPERATOR,
    InquiryTrigger.SWEEPER: EventSource.SWEEPER,
    InquiryTrigger.COMMAND: EventSource.SYSTEM,
}


class InquiryNotAllowed(IllegalTransition):
    code = "INQUIRY_NOT_ALLOWED"
    default_message = "The provider cannot be asked about this payment attempt in its current state."


def inquiry_refusal(attempt: PaymentAttempt) -> InquiryNotAllowed | None:
    """Why `attempt` may not be inquired now, or None (also used by the action to refuse early)."""
    if attempt.status in INQUIRABLE:
        return None
    if attempt.status == A.CREATED:
        why = "it was never sent, so the provider cannot know it"
    elif attempt.status == A.AUTHORIZED:
        why = "the provider already answered (authorized); capture or void it"
    else:
        why = "its outcome is final; a disagreement with the provider is a reconciliation matter"
    return InquiryNotAllowed(f"payment attempt {attempt.public_id} is {attempt.status}: {why}")


# --- request -----------------------------------------------------------------------------------------


def _text(value: Any, label: str, *, max_length: int, required: bool = True) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ValidationFailed(f"{label} is required")
    if len(text) > max_length:
        raise ValidationFailed(f"{label} is longer than {max_length} characters")
    if find_card_numbers(text):
        raise ValidationFailed(f"{label} contains what looks like a card number; use the last four digits")
    return text


def _lock_case(case_ref: str) -> None:
    """The case row first, as the approvals engine and the case services take it."""
    if case_ref and not list(OpsCase.objects.select_for_update().filter(case_number=case_ref).values_list("pk")):
        raise ValidationFailed(f"no case {case_ref}")


def _lock_attempt(attempt_id: str) -> PaymentAttempt:
    # The attempt alone (attempts.py takes the attempt before its intent; nothing here locks the intent).
    attempt = (
        PaymentAttempt.objects.select_for_update(of=("self",))
        .select_related("payment_intent__merchant")
        .filter(public_id=attempt_id)
        .first()
    )
    if attempt is None:
        raise NotFound(f"no payment attempt {attempt_id}")
    return attempt


def _queue(
    command: PaymentCommand, attempt: PaymentAttempt, *, trigger: str, reason_code: str, reason_text: str,
    idempotency_key: str, case_ref: str, approval_ref: str, enqueue: bool,
) -> ProviderInquiry:  # fmt: skip
    """Record a QUEUED inquiry for `attempt` (locked by the caller), its timeline event and audit."""
    question = {"provider_reference": attempt.provider_reference, "merchant_reference": attempt.public_id,
                "kind": ProviderObjectKind.PAYMENT.value}  # fmt: skip
    inquiry = ProviderInquiry.objects.create(
        public_id=new_public_id("inq"), payment_attempt=attempt, provider_code=attempt.provider_code,
        trigger=trigger, requested_by=command.actor.label, reason_code=reason_code, reason_text=reason_text,
        idempotency_key=idempotency_key, case_ref=case_ref, request=question, created_at=command.now,
    )  # fmt: skip
    data = {"inquiry": inquiry.public_id, "trigger": trigger, "reason_code": reason_code}
    command.event(
        attempt, "payment_attempt.inquiry_requested", source=_EVENT_SOURCE[trigger], inquiry=inquiry,
        idempotency_key=idempotency_key, case_ref=case_ref, approval_ref=approval_ref,
        provider_reference=attempt.provider_reference, data=data,
    )  # fmt: skip
    command.audit(
        event_type="payments.provider_inquiry_requested", action_type=ACTION_TYPE, target_type=TARGET_TYPE,
        target_id=attempt.public_id, reason_code=reason_code, reason_text=reason_text, case_ref=case_ref,
        approval_ref=approval_ref, after={**data, "status": attempt.status, "provider_code": attempt.provider_code},
    )  # fmt: skip
    if enqueue:
        # After commit only: a run enqueued by a transaction that then rolled back would ask about
        # an inquiry that does not exist. Robust, so a broker outage never undoes the request (the
        # sweeper finds the attempt again).
        transaction.on_commit(partial(_enqueue_run, inquiry.public_id), robust=True)
    return inquiry


def _enqueue_run(inquiry_id: str) -> None:
    from payments.tasks import inquiry_run_task

    inquiry_run_task.delay(inquiry_id=inquiry_id)


def inquiry_request(
    *, attempt_id: str, trigger: str, reason_code: str, reason_text: str, idempotency_key: str, actor: Actor,
    now: dt.datetime, case_ref: str = "", approval_ref: str = "", enqueue: bool = True,
) -> ProviderInquiry:  # fmt: skip
    """Queue a question to the provider about `attempt_id` (pa_...) and enqueue its run after commit.

    Idempotent: the same key with the same request returns the first inquiry, whatever happened to
    the attempt since; the same key with another request raises IdempotencyConflict. Refuses
    (audited, nothing written): an attempt the provider cannot answer for (InquiryNotAllowed, see
    the module docstring), an unknown attempt (NotFound), an unknown trigger, a missing reason or
    key, a card number in the reason, an unknown case (ValidationFailed). `enqueue=False` leaves the
    run to the caller (the maintenance command runs it synchronously)."""
    try:
        if trigger not in InquiryTrigger.values:
            raise ValidationFailed(f"the trigger is one of {', '.join(InquiryTrigger.values)}")
        key = _text(idempotency_key, "the idempotency key", max_length=128)
        code = _text(reason_code, "the reason code", max_length=48)
        text = _text(reason_text, "the explanation", max_length=2_000)
        case_ref = _text(case_ref, "the case", max_length=20, required=False)
        with payment_command(actor=actor, now=now) as command:
            _lock_case(case_ref)
            attempt = _lock_attempt(attempt_id)
            earlier = ProviderInquiry.objects.filter(idempotency_key=key).first()
            if earlier is not None:
                return _replay(earlier, attempt=attempt, trigger=trigger, reason_code=code, reason_text=text,
                               case_ref=case_ref)  # fmt: skip
            refusal = inquiry_refusal(attempt)
            if refusal is not None:
                raise refusal
            try:
                with transaction.atomic():
                    return _queue(command, attempt, trigger=trigger, reason_code=code, reason_text=text,
                                  idempotency_key=key, case_ref=case_ref, approval_ref=approval_ref,
                                  enqueue=enqueue)  # fmt: skip
            except IntegrityError as exc:
                # The key was just used for another attempt (the same attempt's requests queue on its lock).
                if "payments_inquiry_idempotency_unique" not in str(exc):
                    raise
                raise IdempotencyConflict("this idempotency key was just used for another inquiry") from exc
    except DomainError as exc:
        refusal_record(
            event_type="payments.provider_inquiry_request_refused", target_type=TARGET_TYPE,
            target_id=str(attempt_id)[:128], exc=exc, actor=actor, now=now, action_type=ACTION_TYPE,
            reason_code=str(reason_code or "")[:48], case_ref=str(case_ref or "")[:20], approval_ref=approval_ref,
        )  # fmt: skip
        raise


def _replay(earlier: ProviderInquiry, *, attempt: PaymentAttempt, **request: str) -> ProviderInquiry:
    differs = [name for name, value in request.items() if getattr(earlier, name) != value]
    if earlier.payment_attempt_id != attempt.pk:
        differs.insert(0, "payment_attempt")
    if differs:
        raise IdempotencyConflict(
            f"this idempotency key was used for {earlier.public_id} with a different request ({', '.join(differs)})"
        )
    return earlier


# --- run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """What came back from one status query: a result, or the error in its place, plus evidence."""

    question: dict
    result: ProviderStatusResult | None = None
    error: ProviderError | None = None

    @property
    def raw(self) -> bytes:
        return self.result.raw_body if self.result is not None else (self.error.raw_body or b"")

    @property
    def http_status(self) -> int | None:
        return self.result.http_status if self.result is not None else self.error.http_status

    @property
    def elapsed_ms(self) -> int | None:
        return self.result.elapsed_ms if self.result is not None else self.error.elapsed_ms

    def evidence(self) -> dict[str, Any]:
        """The inquiry's evidence fields. The sha256 is of the bytes as received; the stored text is
        those bytes decoded, with anything resembling a card number masked (never stored)."""
        answered = self.http_status is not None
        text = self.raw.decode("utf-8", errors="replace")
        return {
            "response_status": self.http_status,
            "response_body": mask_card_numbers(text),
            "response_sha256": hashlib.sha256(self.raw).hexdigest() if answered else "",
            "duration_ms": max(0, self.elapsed_ms) if self.elapsed_ms is not None else None,
        }

    def summary(self) -> dict[str, Any]:
        data = {"http_status": self.http_status, "duration_ms": self.elapsed_ms}
        if self.result is not None:
            data["provider_status"] = self.result.provider_status
            data["provider_reference"] = self.result.provider_reference or ""
        if self.error is not None:
            data["error"] = self.error.code
            data["message"] = mask_card_numbers(self.error.message)[:500]
            if isinstance(self.error, ProviderTimeout):
                data["phase"] = self.error.phase
        return data


def _ask(adapter: ProviderAdapter, attempt: PaymentAttempt) -> _Answer:
    """One status query by the provider's reference when we know it, else by ours. A read: whatever
    the answer, nothing is ever sent to the provider again from here."""
    question = {"provider_reference": attempt.provider_reference, "merchant_reference": attempt.public_id,
                "kind": ProviderObjectKind.PAYMENT.value, "provider_account": attempt.provider_account,
                # The timeout policy the question was asked under, part of the evidence for a TIMEOUT.
                "connect_timeout_s": getattr(adapter, "connect_timeout", None),
                "read_timeout_s": getattr(adapter, "read_timeout", None)}  # fmt: skip
    try:
        result = adapter.query_status(
            provider_reference=attempt.provider_reference or None, merchant_reference=attempt.public_id,
            kind=ProviderObjectKind.PAYMENT,
        )  # fmt: skip
    except ProviderError as exc:
        return _Answer(question=question, error=exc)
    return _Answer(question=question, result=result)


def _lock_inquiry(inquiry_id: str) -> ProviderInquiry:
    inquiry = ProviderInquiry.objects.select_for_update().filter(public_id=inquiry_id).first()
    if inquiry is None:
        raise NotFound(f"no provider inquiry {inquiry_id}")
    return inquiry


def _complete(
    command: PaymentCommand, inquiry: ProviderInquiry, attempt: PaymentAttempt, answer: _Answer, *, outcome: str,
    mismatch: dict | None = None, case_ref: str = "", extra: dict | None = None, error_code: str = "",
) -> None:  # fmt: skip
    """QUEUED -> COMPLETED with the evidence, in one save (a completed inquiry is frozen by a trigger),
    then the timeline event and the audit event (appended when the command ends)."""
    inquiry.complete()
    inquiry.outcome, inquiry.mismatch, inquiry.completed_at = outcome, mismatch, command.now
    inquiry.request = answer.question
    if case_ref and not inquiry.case_ref:
        inquiry.case_ref = case_ref
    for name, value in answer.evidence().items():
        setattr(inquiry, name, value)
    inquiry.save(update_fields=[
        "status", "outcome", "mismatch", "completed_at", "request", "case_ref", "response_status", "response_body",
        "response_sha256", "duration_ms",
    ])  # fmt: skip
    data = {"inquiry": inquiry.public_id, "outcome": outcome, "trigger": inquiry.trigger,
            "response_sha256": inquiry.response_sha256, **answer.summary(), **(extra or {})}  # fmt: skip
    if mismatch:
        data["mismatch"] = mismatch
    command.event(
        attempt, "payment_attempt.inquiry_completed", source=EventSource.INQUIRY, inquiry=inquiry,
        case_ref=case_ref or inquiry.case_ref, provider_reference=attempt.provider_reference, data=data,
    )  # fmt: skip
    failed = outcome in (InquiryOutcome.TIMEOUT, InquiryOutcome.ERROR)
    if failed and not error_code and answer.error is not None:
        error_code = answer.error.code
    command.audit(
        event_type="payments.provider_inquiry_completed", action_type=ACTION_TYPE, target_type=TARGET_TYPE,
        target_id=attempt.public_id, reason_code=inquiry.reason_code, case_ref=case_ref or inquiry.case_ref,
        result=AuditResult.FAILED if failed else AuditResult.SUCCEEDED, error_code=error_code if failed else "",
        after={**data, "status": attempt.status},
    )  # fmt: skip


def inquiry_run(
    *, inquiry_id: str, actor: Actor, now: dt.datetime | None = None,
    now_fn: Callable[[], dt.datetime] | None = None, adapter: ProviderAdapter | None = None,
) -> ProviderInquiry:  # fmt: skip
    """Ask the provider about a QUEUED inquiry's attempt and apply the answer; return the inquiry.

    The time of the answer is `now`, or `now_fn()` read once the provider answered (the call takes
    up to its read timeout). The adapter defaults to the configured one (its connect and read
    timeouts bound the call). Outcomes:

    - SUCCEEDED / DECLINED / FAILED matching our records: applied (APPLIED), or already so
      (NO_CHANGE); a capture posts once, whichever of this, a webhook or the sweeper comes first.
    - PENDING / NOT_FOUND: recorded as such (a provider reference learned is kept); the attempt
      stays as it is for a later inquiry.
    - An answer differing in amount, currency, merchant or reference (OutcomeMismatch), or
      contradicting a final state (OutcomeConflict): MISMATCH with the field diff, nothing moved,
      and a case opened (one per attempt: the fingerprint is the attempt and MISMATCH) and linked.
    - No answer in time: TIMEOUT; any other provider error: ERROR. The attempt stays as it is and
      nothing is re-submitted.

    Safe to run twice: a COMPLETED inquiry is returned as it is, without asking again (two runs at
    the same moment may both ask, a harmless read; only the first to lock the inquiry records).
    Refused (audited, nothing asked): an unknown inquiry (NotFound), an adapter for another provider
    (ValidationFailed)."""
    if (now is None) == (now_fn is None):
        raise TypeError("inquiry_run takes exactly one of now and now_fn")
    clock = now_fn or (lambda: now)
    try:
        inquiry = ProviderInquiry.objects.select_related("payment_attempt").filter(public_id=inquiry_id).first()
        if inquiry is None:
            raise NotFound(f"no provider inquiry {inquiry_id}")
        if adapter is not None and adapter.provider_code != inquiry.provider_code:
            raise ValidationFailed(
                f"{inquiry_id} is a question for provider {inquiry.provider_code}, not {adapter.provider_code}"
            )
    except DomainError as exc:
        refusal_record(event_type="payments.provider_inquiry_run_refused", target_type="provider_inquiry",
                       target_id=str(inquiry_id)[:128], exc=exc, actor=actor, now=clock(),
                       action_type=ACTION_TYPE)  # fmt: skip
        raise
    if inquiry.status == InquiryStatus.COMPLETED:
        return inquiry
    if adapter is None:
        from payments.providers.http import provider_adapter_from_settings

        adapter = provider_adapter_from_settings(provider_code=inquiry.provider_code)
    answer = _ask(adapter, inquiry.payment_attempt)
    answered_at = clock()
    if answer.error is not None:
        outcome = InquiryOutcome.TIMEOUT if isinstance(answer.error, ProviderTimeout) else InquiryOutcome.ERROR
        return _record(inquiry_id, answer, outcome=outcome, actor=actor, now=answered_at)
    provider_outcome = outcome_from_provider_result(answer.result, provider_code=inquiry.provider_code)
    try:
        with payment_command(actor=actor, now=answered_at) as command:
            inquiry = _lock_inquiry(inquiry_id)
            if inquiry.status == InquiryStatus.COMPLETED:
                return inquiry
            applied = attempt_apply_outcome(
                attempt_id=inquiry.payment_attempt.public_id, outcome=provider_outcome, source=EventSource.INQUIRY,
                actor=actor, now=answered_at, inquiry=inquiry,
            )  # fmt: skip
            if provider_outcome.status == OutcomeStatus.PENDING:
                outcome = InquiryOutcome.PENDING
            elif provider_outcome.status == OutcomeStatus.NOT_FOUND:
                outcome = InquiryOutcome.NOT_FOUND
            else:
                outcome = InquiryOutcome.APPLIED if applied.changed else InquiryOutcome.NO_CHANGE
            _complete(command, inquiry, applied.attempt, answer, outcome=outcome,
                      extra={"journal_ref": applied.journal_ref} if applied.journal_ref else None)  # fmt: skip
            return inquiry
    except OutcomeMismatch as exc:
        return _record_mismatch(inquiry_id, answer, mismatch=exc.mismatch, error=exc, actor=actor, now=answered_at)
    except OutcomeConflict as exc:
        attempt = PaymentAttempt.objects.get(pk=inquiry.payment_attempt_id)
        diff = {"status": {"ours": attempt.status, "theirs": provider_outcome.status}}
        return _record_mismatch(inquiry_id, answer, mismatch=diff, error=exc, actor=actor, now=answered_at)
    except DomainError as exc:
        # The answer could not be applied (e.g. the ledger refused the capture): recorded with the
        # evidence and the reason; the attempt stays stuck, so the sweeper asks again and escalates.
        return _record(inquiry_id, answer, outcome=InquiryOutcome.ERROR, actor=actor, now=answered_at, error=exc)


def _record(
    inquiry_id: str, answer: _Answer, *, outcome: str, actor: Actor, now: dt.datetime, error: DomainError | None = None
) -> ProviderInquiry:
    """Complete an inquiry whose answer changes nothing (no answer, an error, an answer refused)."""
    if outcome == InquiryOutcome.TIMEOUT:
        logger.warning("provider inquiry %s: no answer in time (%s)", inquiry_id, answer.error)
    with payment_command(actor=actor, now=now) as command:
        inquiry = _lock_inquiry(inquiry_id)
        if inquiry.status != InquiryStatus.COMPLETED:
            attempt = PaymentAttempt.objects.select_related("payment_intent").get(pk=inquiry.payment_attempt_id)
            extra = {"error": error.code, "message": error.message[:500]} if error is not None else None
            _complete(command, inquiry, attempt, answer, outcome=outcome, extra=extra,
                      error_code=error.code if error is not None else "")  # fmt: skip
        return inquiry


def _record_mismatch(
    inquiry_id: str, answer: _Answer, *, mismatch: dict, error: DomainError, actor: Actor, now: dt.datetime
) -> ProviderInquiry:
    """MISMATCH: report the exception (its own transaction: it locks a case and appends to the audit
    chain), then, case first, complete the inquiry and link the attempt and the inquiry to the case."""
    inquiry = ProviderInquiry.objects.select_related("payment_attempt__payment_intent__merchant").get(
        public_id=inquiry_id
    )  # fmt: skip
    if inquiry.status == InquiryStatus.COMPLETED:
        return inquiry
    attempt = inquiry.payment_attempt
    fields = ", ".join(sorted(mismatch))
    case, _ = exception_report(
        source_system=SOURCE_SYSTEM, business_key=attempt.public_id, exception_type=MISMATCH_EXCEPTION,
        error_code="MISMATCH", severity=Severity.HIGH, case_type=CaseType.PAYMENT_INVESTIGATION,
        detail="the provider's answer to a state inquiry differs from the payment attempt; nothing was applied",
        title=f"Provider answer for {attempt.public_id} differs from ours ({fields})",
        merchant_ref=attempt.payment_intent.merchant.public_id, trace_id=current().correlation_id,
        raw_evidence_ref=inquiry.public_id, now=now, actor=actor,
    )  # fmt: skip
    with payment_command(actor=actor, now=now) as command:
        _lock_case(case.case_number)
        inquiry = _lock_inquiry(inquiry_id)
        if inquiry.status == InquiryStatus.COMPLETED:
            return inquiry
        attempt = PaymentAttempt.objects.select_related("payment_intent").get(pk=inquiry.payment_attempt_id)
        _complete(command, inquiry, attempt, answer, outcome=InquiryOutcome.MISMATCH, mismatch=mismatch,
                  case_ref=case.case_number, extra={"error": error.code, "message": error.message[:500]})  # fmt: skip
        case_link_record(case_number=case.case_number, object_type=TARGET_TYPE, object_id=attempt.public_id,
                         relation_type="AFFECTS", actor=actor, now=now)  # fmt: skip
        case_link_record(case_number=case.case_number, object_type="provider_inquiry", object_id=inquiry.public_id,
                         relation_type="EVIDENCE_FOR", actor=actor, now=now)  # fmt: skip
        return inquiry


# --- the sweeper -------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one sweep did: the inquiries it queued, the attempts it escalated (attempt -> case) and
    the candidates it skipped, claimed by another sweeper or a payment command or settled meanwhile
    (not lost: one still due is found again by the next sweep)."""

    inquiries: list[ProviderInquiry] = field(default_factory=list)
    escalated: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # attempt -> why its escalation was refused


def backoff_delay(*, tries: int, backoff: dt.timedelta, max_backoff: dt.timedelta) -> dt.timedelta:
    """The wait after the `tries`-th inquiry: backoff, 2 x backoff, 4 x backoff, ... up to max_backoff."""
    return min(backoff * (2 ** max(0, tries - 1)), max_backoff)


def _due(*, now: dt.datetime, stale_minutes: int):
    """Stuck attempts sent at least `stale_minutes` ago, due for an inquiry, not yet escalated."""
    cutoff = now - dt.timedelta(minutes=stale_minutes)
    return (
        PaymentAttempt.objects.filter(status__in=STUCK, escalated_case_ref="")
        .filter(Q(next_inquiry_at__isnull=True) | Q(next_inquiry_at__lte=now))
        .alias(stale_since=Coalesce("sent_at", "created_at"))
        .filter(stale_since__lte=cutoff)
    )


def attempts_inquire_stale(
    *, stale_minutes: int, actor: Actor, now: dt.datetime, limit: int, max_tries: int, backoff: dt.timedelta,
    max_backoff: dt.timedelta = dt.timedelta(hours=6), enqueue: bool = True,
) -> SweepResult:  # fmt: skip
    """Inquire stuck attempts (SENT_TO_PROVIDER or UNKNOWN_OUTCOME, sent at least `stale_minutes`
    ago, whose next_inquiry_at is due), at most `limit` of them, oldest due first.

    Each attempt is claimed in its own short transaction with SKIP LOCKED, so sweepers running at
    once share the work and never inquire one attempt twice: the claim queues an inquiry (trigger
    SWEEPER, key sweep:<pa_id>:<try>) and moves next_inquiry_at by exponential backoff
    (backoff_delay) while counting the try in inquiry_count. An attempt that had `max_tries`
    inquiries and is still stuck is escalated once: an exception report opens (or joins) the case
    for the attempt, whose number is stored in escalated_case_ref, and the sweeper stops inquiring
    it (an operator still can). The claim of an attempt to escalate moves its next_inquiry_at
    by `backoff` too, as a lease: a sweeper that dies before recording the case leaves it due again."""
    if stale_minutes < 0 or limit < 1 or max_tries < 1 or backoff <= dt.timedelta(0):
        raise ValueError("stale_minutes >= 0, limit >= 1, max_tries >= 1 and a positive backoff, please")
    result = SweepResult()
    candidates = list(
        _due(now=now, stale_minutes=stale_minutes)
        .order_by(Coalesce("next_inquiry_at", "sent_at", "created_at").asc(), "pk")
        .values_list("pk", "public_id")[:limit]
    )
    to_escalate: list[str] = []
    for pk, public_id in candidates:
        with payment_command(actor=actor, now=now) as command:
            attempt = (
                _due(now=now, stale_minutes=stale_minutes)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("payment_intent__merchant")
                .filter(pk=pk)
                .first()
            )
            if attempt is None:
                # Held by another sweeper or a payment command, or no longer due: theirs to finish.
                result.skipped.append(public_id)
                continue
            if attempt.inquiry_count >= max_tries:
                attempt.next_inquiry_at = now + backoff
                attempt.save(update_fields=["next_inquiry_at"])
                to_escalate.append(attempt.public_id)
                continue
            tries = attempt.inquiry_count + 1
            sent = attempt.sent_at or attempt.created_at
            minutes = int((now - sent).total_seconds() // 60)
            inquiry = _queue(
                command, attempt, trigger=InquiryTrigger.SWEEPER, reason_code=SWEEPER_REASON,
                reason_text=f"{attempt.status} for {minutes} minutes since it was sent; try {tries} of {max_tries}",
                idempotency_key=f"sweep:{attempt.public_id}:{tries}", case_ref="", approval_ref="", enqueue=enqueue,
            )  # fmt: skip
            attempt.inquiry_count = tries
            attempt.next_inquiry_at = now + backoff_delay(tries=tries, backoff=backoff, max_backoff=max_backoff)
            attempt.save(update_fields=["inquiry_count", "next_inquiry_at"])
            result.inquiries.append(inquiry)
    for attempt_id in to_escalate:
        try:
            case_number = _escalate(attempt_id, max_tries=max_tries, actor=actor, now=now)
        except DomainError as exc:
            # One attempt's refusal (audited where it happened) must not stop the others; the lease
            # runs out and the next sweep tries again.
            logger.warning("escalating %s was refused: %s (%s)", attempt_id, exc.code, exc.message)
            result.failed[attempt_id] = f"{exc.code}: {exc.message}"
            continue
        if case_number:
            result.escalated[attempt_id] = case_number
    return result


def _escalate(attempt_id: str, *, max_tries: int, actor: Actor, now: dt.datetime) -> str:
    """Open (or join) the case for a stuck attempt, then record it on the attempt; '' when the
    attempt settled or was escalated meanwhile (the case then keeps one more occurrence)."""
    attempt = PaymentAttempt.objects.select_related("payment_intent__merchant").get(public_id=attempt_id)
    if attempt.status not in STUCK or attempt.escalated_case_ref:
        return ""
    case, _ = exception_report(
        source_system=SOURCE_SYSTEM, business_key=attempt.public_id, exception_type=UNRESOLVED_EXCEPTION,
        error_code="INQUIRY_MAX_TRIES", severity=Severity.HIGH, case_type=CaseType.PAYMENT_INVESTIGATION,
        detail="the provider gave no final answer to the stale-attempt sweeper's inquiries",
        title=f"Outcome of {attempt.public_id} still unknown after {max_tries} provider inquiries",
        merchant_ref=attempt.payment_intent.merchant.public_id, trace_id=current().correlation_id, now=now,
        actor=actor,
    )  # fmt: skip
    with payment_command(actor=actor, now=now) as command:
        _lock_case(case.case_number)
        attempt = _lock_attempt(attempt_id)
        if attempt.status not in STUCK or attempt.escalated_case_ref:
            return ""
        attempt.escalated_case_ref = case.case_number
        attempt.save(update_fields=["escalated_case_ref"])
        data = {"case": case.case_number, "inquiry_count": attempt.inquiry_count, "max_tries": max_tries}
        command.event(attempt, "payment_attempt.inquiry_escalated", source=EventSource.SWEEPER,
                      case_ref=case.case_number, provider_reference=attempt.provider_reference, data=data)  # fmt: skip
        case_link_record(case_number=case.case_number, object_type=TARGET_TYPE, object_id=attempt.public_id,
                         relation_type="AFFECTS", actor=actor, now=now)  # fmt: skip
        command.audit(
            event_type="payments.provider_inquiry_escalated", action_type="ESCALATE_UNKNOWN_OUTCOME",
            target_type=TARGET_TYPE, target_id=attempt.public_id, case_ref=case.case_number,
            after={**data, "status": attempt.status},
        )  # fmt: skip
        return case.case_number
