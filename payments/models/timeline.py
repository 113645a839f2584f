"""The payment event: one row for every transition of an intent, attempt, refund or payout, written
by the service that made the transition in the same transaction. It is the payment timeline's
backbone; append-only (PostgreSQL refuses UPDATE and DELETE)."""

from __future__ import annotations

from django.db import models


class EventSource(models.TextChoices):
    OPERATOR = "OPERATOR", "Operator"
    API = "API", "Merchant API"
    PROVIDER_RESPONSE = "PROVIDER_RESPONSE", "Provider response"
    WEBHOOK = "WEBHOOK", "Provider webhook"
    INQUIRY = "INQUIRY", "Provider inquiry"
    SWEEPER = "SWEEPER", "Sweeper"
    APPROVAL = "APPROVAL", "Approved change"
    SYSTEM = "SYSTEM", "System"


class PaymentEvent(models.Model):
    merchant = models.ForeignKey("payments.Merchant", on_delete=models.PROTECT, related_name="+")
    payment_intent = models.ForeignKey(
        "payments.PaymentIntent", null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    subject_type = models.CharField(max_length=32)  # payment_intent, payment_attempt, refund, payout
    subject_id = models.CharField(max_length=32)  # its public id
    event_type = models.CharField(max_length=64)  # e.g. payment_attempt.succeeded
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32, blank=True)
    occurred_at = models.DateTimeField()  # business time: when it happened, as the source says
    recorded_at = models.DateTimeField()  # when we wrote it
    source = models.CharField(max_length=24, choices=EventSource.choices)
    actor = models.CharField(max_length=150)
    correlation_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=128, blank=True)
    provider_reference = models.CharField(max_length=128, blank=True)
    provider_event = models.ForeignKey(
        "payments.ProviderEventRaw", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    inquiry = models.ForeignKey(
        "payments.ProviderInquiry", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    journal_ref = models.CharField(max_length=32, blank=True)
    approval_ref = models.CharField(max_length=32, blank=True)
    case_ref = models.CharField(max_length=20, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        default_permissions = ("view",)
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(fields=["payment_intent", "id"], name="payments_event_intent_idx"),
            models.Index(fields=["subject_id", "id"], name="payments_event_subject_idx"),
            models.Index(fields=["merchant", "id"], name="payments_event_merchant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.subject_id}"
