"""What providers told us and what we asked them.

A raw provider event is stored exactly as received, first, whatever its signature says: bytes,
headers, the signature verdict. Its content is immutable (a PostgreSQL trigger refuses changing
it or deleting the row); only its processing status and the notes about the last processing
change, through the transitions below. The normalized event is the raw one mapped to internal
language by a versioned mapper; it can be derived again from the raw one (one per mapper version).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import FSMField, transition

from .payments import PaymentAttempt


class SignatureVerdict(models.TextChoices):
    VALID = "VALID", "Valid"
    MISSING = "MISSING", "Missing"
    MALFORMED = "MALFORMED", "Malformed"
    BAD_SIGNATURE = "BAD_SIGNATURE", "Bad signature"
    EXPIRED = "EXPIRED", "Outside the replay window"
    UNKNOWN_PROVIDER = "UNKNOWN_PROVIDER", "Unknown provider"


class EventProcessing(models.TextChoices):
    RECEIVED = "RECEIVED", "Received"
    PROCESSED = "PROCESSED", "Processed"
    DUPLICATE = "DUPLICATE", "Duplicate"
    QUARANTINED = "QUARANTINED", "Quarantined"
    POISON = "POISON", "Poison"


E = EventProcessing


class ProviderEventRaw(models.Model):
    public_id = models.CharField(max_length=32)  # evt_...
    provider_code = models.CharField(max_length=32)
    provider_event_id = models.CharField(max_length=128, blank=True)  # as the body names it, when it parses
    # The objects the body names (the provider's id and the one we sent), read when it parses and
    # kept even when the event cannot be mapped: an operator holding only the provider's reference
    # finds every delivery about it, and a payment's timeline shows deliveries nobody could apply.
    provider_reference = models.CharField(max_length=128, blank=True, default="")
    our_reference = models.CharField(max_length=64, blank=True, default="")
    received_at = models.DateTimeField()
    headers = models.JSONField()  # as received, minus credentials (Authorization, Cookie)
    body = models.BinaryField()
    body_sha256 = models.CharField(max_length=64)
    signature_verdict = models.CharField(max_length=20, choices=SignatureVerdict.choices)
    # The first accepted delivery of a provider event; later deliveries point at it.
    duplicate_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    processing_status = FSMField(default=E.RECEIVED, choices=EventProcessing.choices, protected=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    processing_count = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("replay_webhook", "Can replay a stored provider event (REPLAY_WEBHOOK)"),
            ("release_webhook", "Can release a provider event from quarantine"),
            ("poison_webhook", "Can mark a provider event as poison"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_event_public_id_unique"),
            # One accepted delivery per provider event: a concurrent second one becomes a duplicate.
            models.UniqueConstraint(
                fields=["provider_code", "provider_event_id"],
                condition=Q(signature_verdict="VALID", duplicate_of__isnull=True) & ~Q(provider_event_id=""),
                name="payments_event_accepted_once",
            ),
        ]
        indexes = [
            models.Index(fields=["processing_status", "received_at"], name="payments_event_status_idx"),
            models.Index(fields=["provider_code", "provider_event_id"], name="payments_event_provider_idx"),
            models.Index(
                fields=["provider_reference"], condition=~Q(provider_reference=""), name="payments_event_provref_idx"
            ),
            models.Index(fields=["our_reference"], condition=~Q(our_reference=""), name="payments_event_ourref_idx"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @transition(field=processing_status, source=E.RECEIVED, target=E.PROCESSED)
    def mark_processed(self) -> None:
        pass

    @transition(field=processing_status, source=E.RECEIVED, target=E.DUPLICATE)
    def mark_duplicate(self) -> None:
        pass

    @transition(field=processing_status, source=E.RECEIVED, target=E.QUARANTINED)
    def quarantine(self) -> None:
        pass

    @transition(field=processing_status, source=E.QUARANTINED, target=E.RECEIVED)
    def release(self) -> None:
        """Back into the pipeline (RELEASE_WEBHOOK_FROM_QUARANTINE, or a replay)."""

    @transition(field=processing_status, source=[E.RECEIVED, E.QUARANTINED], target=E.POISON)
    def poison(self) -> None:
        """Never to be applied: a bad signature, or an operator's MARK_WEBHOOK_POISON."""


class NormalizedEventType(models.TextChoices):
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED", "Payment authorized"
    PAYMENT_SUCCEEDED = "PAYMENT_SUCCEEDED", "Payment succeeded"
    PAYMENT_DECLINED = "PAYMENT_DECLINED", "Payment declined"
    PAYMENT_FAILED = "PAYMENT_FAILED", "Payment failed"
    PAYMENT_EXPIRED = "PAYMENT_EXPIRED", "Payment expired"
    PAYMENT_CANCELED = "PAYMENT_CANCELED", "Payment canceled"
    REFUND_SUCCEEDED = "REFUND_SUCCEEDED", "Refund succeeded"
    REFUND_FAILED = "REFUND_FAILED", "Refund failed"
    PAYOUT_PAID = "PAYOUT_PAID", "Payout paid"
    PAYOUT_FAILED = "PAYOUT_FAILED", "Payout failed"
    PAYOUT_RETURNED = "PAYOUT_RETURNED", "Payout returned"
    DISPUTE_OPENED = "DISPUTE_OPENED", "Dispute opened"
    DISPUTE_WON = "DISPUTE_WON", "Dispute won"
    DISPUTE_LOST = "DISPUTE_LOST", "Dispute lost (chargeback)"


class ProviderEventNormalized(models.Model):
    raw_event = models.ForeignKey(ProviderEventRaw, on_delete=models.PROTECT, related_name="normalized")
    mapper_version = models.CharField(max_length=32)
    event_type = models.CharField(max_length=32, choices=NormalizedEventType.choices)
    provider_code = models.CharField(max_length=32)
    provider_reference = models.CharField(max_length=128, blank=True)  # the provider's id of the object
    our_reference = models.CharField(max_length=64, blank=True)  # pa_/rf_/po_ we sent
    merchant_ref = models.CharField(max_length=64, blank=True)
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    fee_minor = models.BigIntegerField(null=True, blank=True)
    reason_code = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)  # business time, as the provider states it
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["raw_event", "mapper_version"], name="payments_normalized_once_per_mapper"),
        ]
        indexes = [models.Index(fields=["our_reference"], name="payments_normalized_ref_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} from {self.raw_event_id} ({self.mapper_version})"


class InquiryTrigger(models.TextChoices):
    OPERATOR = "OPERATOR", "Operator (refresh from provider)"
    SWEEPER = "SWEEPER", "Stale-attempt sweeper"
    COMMAND = "COMMAND", "Maintenance command"


class InquiryStatus(models.TextChoices):
    QUEUED = "QUEUED", "Queued"
    COMPLETED = "COMPLETED", "Completed"


class InquiryOutcome(models.TextChoices):
    APPLIED = "APPLIED", "Matched; a transition was applied"
    NO_CHANGE = "NO_CHANGE", "Matched; nothing to change"
    MISMATCH = "MISMATCH", "Mismatch; a case was opened, nothing moved"
    NOT_FOUND = "NOT_FOUND", "The provider does not know it"
    PENDING = "PENDING", "The provider has no final answer yet"
    TIMEOUT = "TIMEOUT", "The provider did not answer in time"
    ERROR = "ERROR", "The provider answered with an error"


class ProviderInquiry(models.Model):
    """One question to a provider about an attempt's state, and its answer, kept as evidence."""

    public_id = models.CharField(max_length=32)  # inq_...
    payment_attempt = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, related_name="inquiries")
    provider_code = models.CharField(max_length=32)
    trigger = models.CharField(max_length=16, choices=InquiryTrigger.choices)
    requested_by = models.CharField(max_length=150)
    reason_code = models.CharField(max_length=48)
    reason_text = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=128)
    case_ref = models.CharField(max_length=20, blank=True)
    request = models.JSONField(default=dict)
    status = FSMField(default=InquiryStatus.QUEUED, choices=InquiryStatus.choices, protected=True)
    outcome = models.CharField(max_length=16, choices=InquiryOutcome.choices, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    response_sha256 = models.CharField(max_length=64, blank=True)
    mismatch = models.JSONField(null=True, blank=True)  # field -> {ours, theirs}
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_inquiry_public_id_unique"),
            models.UniqueConstraint(fields=["idempotency_key"], name="payments_inquiry_idempotency_unique"),
        ]
        indexes = [models.Index(fields=["payment_attempt", "created_at"], name="payments_inquiry_attempt_idx")]

    def __str__(self) -> str:
        return self.public_id

    @transition(field=status, source=InquiryStatus.QUEUED, target=InquiryStatus.COMPLETED)
    def complete(self) -> None:
        pass
