"""Payment intents and attempts, refunds and payouts, each under its state machine.

An intent is the obligation to collect; an attempt is one execution of it at one provider and
holds the provider's reference. Money moves in the ledger, posted by the services when a
transition means money moved (capture, refund, payout sent or returned, chargeback), never here.

Amounts the services keep beside the ledger (captured, refund reserved) are projections the
database bounds: a refund can never reserve more than was captured (CheckConstraint), whatever
races the services lose.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django_fsm import FSMField, transition

from .merchants import Customer, Merchant, MerchantBeneficiary


class CaptureMode(models.TextChoices):
    AUTOMATIC = "AUTOMATIC", "Automatic"
    MANUAL = "MANUAL", "Manual"


class MethodType(models.TextChoices):
    CARD = "CARD", "Card"
    QRIS = "QRIS", "QRIS"
    EWALLET = "EWALLET", "E-wallet"
    VIRTUAL_ACCOUNT = "VIRTUAL_ACCOUNT", "Virtual account"
    BANK_TRANSFER = "BANK_TRANSFER", "Bank transfer"


class IntentStatus(models.TextChoices):
    REQUIRES_PAYMENT_METHOD = "REQUIRES_PAYMENT_METHOD", "Requires payment method"
    PROCESSING = "PROCESSING", "Processing"
    REQUIRES_ACTION = "REQUIRES_ACTION", "Requires action"
    AUTHORIZED = "AUTHORIZED", "Authorized"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    CANCELED = "CANCELED", "Canceled"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED", "Partially refunded"
    REFUNDED = "REFUNDED", "Refunded"
    DISPUTED = "DISPUTED", "Disputed"


I = IntentStatus  # noqa: E741 (short alias for the transition tables below)
_CAPTURED = [I.SUCCEEDED, I.PARTIALLY_REFUNDED]


class PaymentIntent(models.Model):
    public_id = models.CharField(max_length=32)  # pi_...
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payment_intents")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    business_type = models.CharField(max_length=48)  # ORDER, INVOICE, SUBSCRIPTION, ...
    business_id = models.CharField(max_length=128)  # the merchant's reference for the obligation
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    capture_mode = models.CharField(max_length=16, choices=CaptureMode.choices, default=CaptureMode.AUTOMATIC)
    description = models.CharField(max_length=200, blank=True)
    status = FSMField(default=I.REQUIRES_PAYMENT_METHOD, choices=IntentStatus.choices, protected=True)
    captured_minor = models.BigIntegerField(default=0)
    # Refunds requested, in flight or succeeded (released when a refund fails or is canceled).
    refund_reserved_minor = models.BigIntegerField(default=0)
    refunded_minor = models.BigIntegerField(default=0)  # refunds succeeded
    idempotency_key = models.CharField(max_length=128)
    expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("refresh_provider_state", "Can ask a provider for a payment's state (REFRESH_PROVIDER_STATE)"),
            ("propose_refund_correction", "Can propose a refund correction"),
            ("decide_refund_correction", "Can decide a refund correction"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_intent_public_id_unique"),
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="payments_intent_once_per_key"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payments_intent_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_minor__gte=0) & Q(captured_minor__lte=F("amount_minor")),
                name="payments_intent_captured_within_amount",
            ),
            # The refundable amount, enforced by the database whatever the services race.
            models.CheckConstraint(
                condition=Q(refund_reserved_minor__gte=0) & Q(refund_reserved_minor__lte=F("captured_minor")),
                name="payments_intent_refunds_within_captured",
            ),
            models.CheckConstraint(
                condition=Q(refunded_minor__gte=0) & Q(refunded_minor__lte=F("refund_reserved_minor")),
                name="payments_intent_refunded_within_reserved",
            ),
        ]
        indexes = [
            models.Index(fields=["merchant", "created_at"], name="payments_intent_merchant_idx"),
            models.Index(fields=["business_id"], name="payments_intent_business_idx"),
            models.Index(fields=["status", "created_at"], name="payments_intent_status_idx"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def refundable_minor(self) -> int:
        return self.captured_minor - self.refund_reserved_minor

    @transition(field=status, source=[I.REQUIRES_PAYMENT_METHOD, I.REQUIRES_ACTION], target=I.PROCESSING)
    def start_processing(self) -> None:
        """An attempt was sent to a provider."""

    @transition(field=status, source=I.PROCESSING, target=I.REQUIRES_ACTION)
    def require_action(self) -> None:
        """The payer must act (3-D Secure, QR scan, transfer to a virtual account)."""

    @transition(field=status, source=[I.PROCESSING, I.REQUIRES_ACTION], target=I.AUTHORIZED)
    def authorize(self) -> None:
        pass

    @transition(field=status, source=[I.PROCESSING, I.REQUIRES_ACTION, I.AUTHORIZED], target=I.SUCCEEDED)
    def succeed(self) -> None:
        """Captured (automatic capture on success, or a manual capture of an authorization)."""

    @transition(field=status, source=[I.PROCESSING, I.REQUIRES_ACTION], target=I.REQUIRES_PAYMENT_METHOD)
    def retry_with_new_method(self) -> None:
        """The attempt was declined or failed; the payer may try again."""

    @transition(field=status, source=[I.REQUIRES_PAYMENT_METHOD, I.PROCESSING, I.REQUIRES_ACTION], target=I.FAILED)
    def fail(self) -> None:
        """No attempt can succeed any more (expired, or failed for good)."""

    @transition(field=status, source=[I.REQUIRES_PAYMENT_METHOD, I.AUTHORIZED, I.SUCCEEDED], target=I.CANCELED)
    def cancel(self) -> None:
        """Canceled before payment, an authorization voided, or a capture reversed the same day."""

    @transition(field=status, source=_CAPTURED, target=I.PARTIALLY_REFUNDED)
    def refund_partially(self) -> None:
        pass

    @transition(field=status, source=_CAPTURED, target=I.REFUNDED)
    def refund_fully(self) -> None:
        pass

    @transition(field=status, source=_CAPTURED, target=I.DISPUTED)
    def dispute(self) -> None:
        pass

    @transition(field=status, source=I.DISPUTED, target=I.SUCCEEDED)
    def win_dispute(self) -> None:
        pass

    @transition(field=status, source=I.DISPUTED, target=I.REFUNDED)
    def lose_dispute(self) -> None:
        """The chargeback stands: the funds went back to the payer through the scheme."""


class AttemptStatus(models.TextChoices):
    CREATED = "CREATED", "Created"
    SENT_TO_PROVIDER = "SENT_TO_PROVIDER", "Sent to provider"
    REQUIRES_ACTION = "REQUIRES_ACTION", "Requires action"
    AUTHORIZED = "AUTHORIZED", "Authorized"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    DECLINED = "DECLINED", "Declined"
    FAILED = "FAILED", "Failed"
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME", "Unknown outcome"
    EXPIRED = "EXPIRED", "Expired"
    CANCELED = "CANCELED", "Canceled"


A = AttemptStatus
# Where the provider may still answer from: a result for an attempt in one of these is applied.
_AWAITING = [A.SENT_TO_PROVIDER, A.REQUIRES_ACTION, A.UNKNOWN_OUTCOME]


class PaymentAttempt(models.Model):
    public_id = models.CharField(max_length=32)  # pa_...
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="attempts")
    attempt_no = models.PositiveSmallIntegerField()
    method_type = models.CharField(max_length=24, choices=MethodType.choices)
    card_brand = models.CharField(max_length=16, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_fingerprint = models.CharField(max_length=64, blank=True)  # the provider's token hash, never a PAN
    provider_code = models.CharField(max_length=32)
    provider_account = models.CharField(max_length=64)
    provider_reference = models.CharField(max_length=128, blank=True)
    last_provider_status = models.CharField(max_length=64, blank=True)
    decline_code = models.CharField(max_length=64, blank=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    fee_minor = models.BigIntegerField(default=0)  # the platform's fee on capture
    status = FSMField(default=A.CREATED, choices=AttemptStatus.choices, protected=True)
    idempotency_key = models.CharField(max_length=128)
    capture_journal_ref = models.CharField(max_length=32, blank=True)  # lj_... once captured
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Inquiry bookkeeping for the stale-attempt sweeper: tries so far and when the next may run.
    inquiry_count = models.PositiveSmallIntegerField(default=0)
    next_inquiry_at = models.DateTimeField(null=True, blank=True)
    escalated_case_ref = models.CharField(max_length=20, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_attempt_public_id_unique"),
            models.UniqueConstraint(fields=["payment_intent", "attempt_no"], name="payments_attempt_number_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="payments_attempt_idempotency_unique"),
            models.UniqueConstraint(
                fields=["provider_code", "provider_reference"],
                condition=~Q(provider_reference=""),
                name="payments_attempt_provider_reference_unique",
            ),
            # At most one attempt of an intent in flight or captured: a second capture is impossible.
            models.UniqueConstraint(
                fields=["payment_intent"],
                condition=Q(
                    status__in=[
                        "CREATED",
                        "SENT_TO_PROVIDER",
                        "REQUIRES_ACTION",
                        "AUTHORIZED",
                        "UNKNOWN_OUTCOME",
                        "SUCCEEDED",
                    ]
                ),
                name="payments_one_live_attempt_per_intent",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payments_attempt_amount_positive"),
            models.CheckConstraint(
                condition=Q(fee_minor__gte=0) & Q(fee_minor__lte=F("amount_minor")), name="payments_attempt_fee_valid"
            ),
            models.CheckConstraint(
                condition=Q(card_last4="") | Q(card_last4__regex=r"^[0-9]{4}$"), name="payments_attempt_last4_digits"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_inquiry_at"], name="payments_attempt_stuck_idx",
                         condition=Q(status__in=["SENT_TO_PROVIDER", "UNKNOWN_OUTCOME"])),
            models.Index(fields=["provider_reference"], name="payments_attempt_provref_idx"),
        ]  # fmt: skip

    def __str__(self) -> str:
        return self.public_id

    @transition(field=status, source=A.CREATED, target=A.SENT_TO_PROVIDER)
    def send(self) -> None:
        pass

    @transition(field=status, source=[A.SENT_TO_PROVIDER, A.UNKNOWN_OUTCOME], target=A.REQUIRES_ACTION)
    def require_action(self) -> None:
        pass

    @transition(field=status, source=_AWAITING, target=A.AUTHORIZED)
    def authorize(self) -> None:
        pass

    @transition(field=status, source=[*_AWAITING, A.AUTHORIZED], target=A.SUCCEEDED)
    def succeed(self) -> None:
        """Captured: the service posts CAPTURE_SUCCEEDED once, keyed by this attempt."""

    @transition(field=status, source=_AWAITING, target=A.DECLINED)
    def decline(self) -> None:
        pass

    @transition(field=status, source=[A.CREATED, *_AWAITING], target=A.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=[A.SENT_TO_PROVIDER, A.REQUIRES_ACTION], target=A.UNKNOWN_OUTCOME)
    def lose_track(self) -> None:
        """The provider call timed out or answered nothing usable: the outcome is unknown and the
        attempt must never be resubmitted; an inquiry settles it."""

    @transition(field=status, source=[A.REQUIRES_ACTION, A.AUTHORIZED, A.UNKNOWN_OUTCOME], target=A.EXPIRED)
    def expire(self) -> None:
        pass

    @transition(field=status, source=[A.CREATED, A.AUTHORIZED, A.SUCCEEDED], target=A.CANCELED)
    def cancel(self) -> None:
        """Not sent, an authorization voided, or a capture reversed (the service posts the reversal)."""


class RefundStatus(models.TextChoices):
    REQUESTED = "REQUESTED", "Requested"
    PROCESSING = "PROCESSING", "Processing"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME", "Unknown outcome"
    CANCELED = "CANCELED", "Canceled"


R = RefundStatus


class Refund(models.Model):
    public_id = models.CharField(max_length=32)  # rf_...
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    payment_attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason_code = models.CharField(max_length=48)
    reason_text = models.TextField(blank=True)
    status = FSMField(default=R.REQUESTED, choices=RefundStatus.choices, protected=True)
    provider_code = models.CharField(max_length=32)
    provider_refund_reference = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=128)
    requested_by = models.CharField(max_length=150)
    approval_ref = models.CharField(max_length=32, blank=True)
    case_ref = models.CharField(max_length=20, blank=True)
    journal_ref = models.CharField(max_length=32, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_refund_public_id_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="payments_refund_idempotency_unique"),
            models.UniqueConstraint(
                fields=["provider_code", "provider_refund_reference"],
                condition=~Q(provider_refund_reference=""),
                name="payments_refund_provider_reference_unique",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payments_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @transition(field=status, source=[R.REQUESTED, R.UNKNOWN_OUTCOME], target=R.PROCESSING)
    def process(self) -> None:
        pass

    @transition(field=status, source=[R.REQUESTED, R.PROCESSING, R.UNKNOWN_OUTCOME], target=R.SUCCEEDED)
    def succeed(self) -> None:
        pass

    @transition(field=status, source=[R.REQUESTED, R.PROCESSING, R.UNKNOWN_OUTCOME], target=R.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=[R.REQUESTED, R.PROCESSING], target=R.UNKNOWN_OUTCOME)
    def lose_track(self) -> None:
        pass

    @transition(field=status, source=R.REQUESTED, target=R.CANCELED)
    def cancel(self) -> None:
        pass


class PayoutStatus(models.TextChoices):
    CREATED = "CREATED", "Created"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED", "Approval required"
    APPROVED = "APPROVED", "Approved"
    HELD = "HELD", "Held"
    SENT = "SENT", "Sent"
    PROCESSING = "PROCESSING", "Processing"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    RETURNED = "RETURNED", "Returned"
    CANCELED = "CANCELED", "Canceled"
    UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME", "Unknown outcome"


P = PayoutStatus
# Payouts whose amount is committed against the merchant's payable balance but not yet posted.
PAYOUT_COMMITTED_UNPOSTED = [P.CREATED, P.APPROVAL_REQUIRED, P.APPROVED, P.HELD]


class Payout(models.Model):
    public_id = models.CharField(max_length=32)  # po_...
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payouts")
    beneficiary = models.ForeignKey(MerchantBeneficiary, on_delete=models.PROTECT, related_name="payouts")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = FSMField(default=P.CREATED, choices=PayoutStatus.choices, protected=True)
    provider_code = models.CharField(max_length=32)
    provider_payout_reference = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=128)
    requested_by = models.CharField(max_length=150)
    hold_reason = models.TextField(blank=True)
    hold_ref = models.CharField(max_length=32, blank=True)  # the approval (act_...) that held it
    sent_journal_ref = models.CharField(max_length=32, blank=True)
    returned_journal_ref = models.CharField(max_length=32, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("propose_payout_hold", "Can propose holding or releasing a payout"),
            ("decide_payout_hold", "Can decide holding or releasing a payout"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_payout_public_id_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="payments_payout_idempotency_unique"),
            models.UniqueConstraint(
                fields=["provider_code", "provider_payout_reference"],
                condition=~Q(provider_payout_reference=""),
                name="payments_payout_provider_reference_unique",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payments_payout_amount_positive"),
        ]
        indexes = [models.Index(fields=["merchant", "status"], name="payments_payout_merchant_idx")]

    def __str__(self) -> str:
        return self.public_id

    @transition(field=status, source=P.CREATED, target=P.APPROVAL_REQUIRED)
    def require_approval(self) -> None:
        pass

    @transition(field=status, source=[P.CREATED, P.APPROVAL_REQUIRED], target=P.APPROVED)
    def approve(self) -> None:
        pass

    @transition(field=status, source=[P.CREATED, P.APPROVAL_REQUIRED, P.APPROVED], target=P.HELD)
    def hold(self) -> None:
        pass

    @transition(field=status, source=P.HELD, target=P.APPROVED)
    def release_hold(self) -> None:
        pass

    @transition(field=status, source=P.APPROVED, target=P.SENT)
    def send(self) -> None:
        """Handed to the provider: PAYOUT_SENT posts (the merchant's payable is debited)."""

    @transition(field=status, source=[P.SENT, P.UNKNOWN_OUTCOME], target=P.PROCESSING)
    def process(self) -> None:
        pass

    @transition(field=status, source=[P.SENT, P.PROCESSING, P.UNKNOWN_OUTCOME], target=P.SUCCEEDED)
    def succeed(self) -> None:
        pass

    @transition(field=status, source=[P.SENT, P.PROCESSING, P.UNKNOWN_OUTCOME], target=P.FAILED)
    def fail(self) -> None:
        """Refused by the provider after sending: the PAYOUT_SENT journal is reversed."""

    @transition(field=status, source=[P.SENT, P.PROCESSING], target=P.UNKNOWN_OUTCOME)
    def lose_track(self) -> None:
        pass

    @transition(field=status, source=P.SUCCEEDED, target=P.RETURNED)
    def return_(self) -> None:
        """The beneficiary bank sent it back: PAYOUT_RETURNED posts."""

    @transition(field=status, source=[P.CREATED, P.APPROVAL_REQUIRED, P.APPROVED, P.HELD], target=P.CANCELED)
    def cancel(self) -> None:
        pass
