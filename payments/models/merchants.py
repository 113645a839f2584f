"""Merchants, their payout beneficiaries, their customers, and capability restrictions.

Personal data: a customer's email and phone are kept only as a keyed hash (for exact search) and a
masked display form; the raw values are never stored. A beneficiary's account number is kept
because a payout must be sent to it, but screens show only its masked form.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django_fsm import FSMField, transition
from simple_history.models import HistoricalRecords

from backoffice.history import history_user


class MerchantStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    SUSPENDED = "SUSPENDED", "Suspended"
    CLOSED = "CLOSED", "Closed"


class RiskTier(models.TextChoices):
    LOW = "LOW", "Low"
    MEDIUM = "MEDIUM", "Medium"
    HIGH = "HIGH", "High"


class Merchant(models.Model):
    public_id = models.CharField(max_length=32)  # m_...
    name = models.CharField(max_length=200)
    legal_name = models.CharField(max_length=200, blank=True)
    status = FSMField(default=MerchantStatus.ACTIVE, choices=MerchantStatus.choices, protected=True)
    region = models.CharField(max_length=2)  # ISO 3166 country of the merchant's contract
    risk_tier = models.CharField(max_length=8, choices=RiskTier.choices, default=RiskTier.MEDIUM)
    default_currency = models.CharField(max_length=3)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.CharField(max_length=254, blank=True)  # business contact; shown masked
    contact_phone = models.CharField(max_length=32, blank=True)  # shown masked
    version = models.PositiveIntegerField(default=1)  # bumped by every change: approvals compare it
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    history = HistoricalRecords(get_user=history_user, no_db_index=["public_id"])

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("propose_merchant_change", "Can propose merchant profile and beneficiary changes"),
            ("decide_merchant_change", "Can decide merchant profile and beneficiary changes"),
            ("propose_restriction", "Can propose freezing or unfreezing a merchant capability"),
            ("decide_restriction", "Can decide freezing or unfreezing a merchant capability"),
            ("view_restriction_reason", "Can see why a merchant capability is restricted"),
            ("reveal_merchant_contact", "Can reveal a merchant's masked contact details (audited)"),
        ]
        constraints = [models.UniqueConstraint(fields=["public_id"], name="payments_merchant_public_id_unique")]
        indexes = [models.Index(fields=["name"], name="payments_merchant_name_idx")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.name}"

    @transition(field=status, source=MerchantStatus.ACTIVE, target=MerchantStatus.SUSPENDED)
    def suspend(self) -> None:
        pass

    @transition(field=status, source=MerchantStatus.SUSPENDED, target=MerchantStatus.ACTIVE)
    def reactivate(self) -> None:
        pass

    @transition(field=status, source=[MerchantStatus.ACTIVE, MerchantStatus.SUSPENDED], target=MerchantStatus.CLOSED)
    def close(self) -> None:
        pass


class BeneficiaryStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    RETIRED = "RETIRED", "Retired"


class MerchantBeneficiary(models.Model):
    """A bank account a merchant is paid out to. Changing it is a maker-checker action."""

    public_id = models.CharField(max_length=32)  # ben_...
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="beneficiaries")
    bank_code = models.CharField(max_length=16)
    bank_name = models.CharField(max_length=120)
    account_holder = models.CharField(max_length=200)
    account_number = models.CharField(max_length=34)  # needed to pay out; never shown unmasked
    account_last4 = models.CharField(max_length=4)
    currency = models.CharField(max_length=3)
    status = FSMField(default=BeneficiaryStatus.ACTIVE, choices=BeneficiaryStatus.choices, protected=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    history = HistoricalRecords(get_user=history_user, no_db_index=["public_id", "merchant"])

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_beneficiary_public_id_unique"),
            # One active account per merchant and currency: a change replaces it, never adds a second.
            models.UniqueConstraint(
                fields=["merchant", "currency"], condition=Q(status="ACTIVE"), name="payments_one_active_beneficiary"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bank_name} ****{self.account_last4}"

    @property
    def account_masked(self) -> str:
        return f"****{self.account_last4}"

    @transition(field=status, source=BeneficiaryStatus.ACTIVE, target=BeneficiaryStatus.RETIRED)
    def retire(self) -> None:
        pass


class Customer(models.Model):
    """A payer as the merchant knows them. Contact details: keyed hash + masked form only."""

    public_id = models.CharField(max_length=32)  # cus_...
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    reference = models.CharField(max_length=64)  # the merchant's own customer reference
    email_hash = models.CharField(max_length=64, blank=True)  # HMAC-SHA256 of the normalised email
    email_masked = models.CharField(max_length=254, blank=True)
    phone_hash = models.CharField(max_length=64, blank=True)  # HMAC-SHA256 of the E.164 phone
    phone_masked = models.CharField(max_length=32, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    history = HistoricalRecords(get_user=history_user, no_db_index=["public_id", "merchant"])

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("propose_contact_change", "Can propose a customer contact change"),
            ("decide_contact_change", "Can decide a customer contact change"),
            ("reveal_customer_contact", "Can reveal a customer's masked contact details (audited)"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="payments_customer_public_id_unique"),
            models.UniqueConstraint(fields=["merchant", "reference"], name="payments_customer_reference_unique"),
        ]
        indexes = [
            models.Index(fields=["email_hash"], condition=~Q(email_hash=""), name="payments_customer_email_idx"),
            models.Index(fields=["phone_hash"], condition=~Q(phone_hash=""), name="payments_customer_phone_idx"),
        ]

    def __str__(self) -> str:
        return self.public_id


class Capability(models.TextChoices):
    ACCEPT_CARD = "ACCEPT_CARD", "Accept card payments"
    ACCEPT_QR = "ACCEPT_QR", "Accept QR payments"
    CREATE_REFUND = "CREATE_REFUND", "Create refunds"
    CREATE_PAYOUT = "CREATE_PAYOUT", "Receive payouts"
    INSTANT_PAYOUT = "INSTANT_PAYOUT", "Instant payouts"
    HIGH_VALUE_PAYMENT = "HIGH_VALUE_PAYMENT", "High-value payments"


class RestrictionMode(models.TextChoices):
    BLOCK = "BLOCK", "Blocked"
    REVIEW = "REVIEW", "Needs review"


class RestrictionStatus(models.TextChoices):
    ACTIVE = "ACTIVE", "Active"
    EXPIRED = "EXPIRED", "Expired"
    LIFTED = "LIFTED", "Lifted"


class CapabilityRestriction(models.Model):
    """A capability taken from a merchant, with why, by whom and until when (never a boolean flag).

    ACTIVE until lifted (a recorded, approved action) or until expires_at passes; whether it is in
    force at an instant is answered by merchant_can(), which also treats a passed expires_at as
    not in force before the sweeper records EXPIRED."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="restrictions")
    capability = models.CharField(max_length=32, choices=Capability.choices)
    mode = models.CharField(max_length=8, choices=RestrictionMode.choices)
    reason_code = models.CharField(max_length=48)
    reason_text = models.TextField()
    source = models.CharField(max_length=64)  # who imposed it: RISK, COMPLIANCE, OPERATIONS, SYSTEM
    source_ref = models.CharField(max_length=64, blank=True)  # the approval (act_...) or case that made it
    case_ref = models.CharField(max_length=20, blank=True)
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    status = FSMField(default=RestrictionStatus.ACTIVE, choices=RestrictionStatus.choices, protected=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    end_reason = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)

    history = HistoricalRecords(get_user=history_user, no_db_index=["merchant"])

    class Meta:
        default_permissions = ("view",)
        constraints = [
            # One active restriction per merchant and capability: a second freeze is refused by name.
            models.UniqueConstraint(
                fields=["merchant", "capability"], condition=Q(status="ACTIVE"), name="payments_one_active_restriction"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("effective_at")),
                name="payments_restriction_expires_after_effective",
            ),
        ]
        indexes = [models.Index(fields=["merchant", "status"], name="payments_restriction_merch_idx")]

    def __str__(self) -> str:
        return f"{self.capability} {self.mode} for {self.merchant_id}"

    @transition(field=status, source=RestrictionStatus.ACTIVE, target=RestrictionStatus.LIFTED)
    def lift(self) -> None:
        pass

    @transition(field=status, source=RestrictionStatus.ACTIVE, target=RestrictionStatus.EXPIRED)
    def expire(self) -> None:
        pass
