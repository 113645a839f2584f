"""Maker-checker: every change that moves money or changes customer or merchant data is an
ActionRequest proposed by a maker and decided by a different checker (invariant 6).

The request is the audit anchor: it exists even when policy lets the change run at once, and it
records who asked, why, what exactly would happen (the preview), who decided, and what happened.
Status moves only through the transitions below, from approvals.services. PostgreSQL keeps one
open request per target entity and refuses a checker who is the maker, whoever writes.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q
from django_fsm import FSMField, transition
from simple_history.models import HistoricalRecords

from backoffice.history import history_user


class RequestStatus(models.TextChoices):
    REQUESTED = "REQUESTED", "Pending"
    APPROVED = "APPROVED", "Approved"
    REJECTED = "REJECTED", "Rejected"
    EXECUTING = "EXECUTING", "Executing"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


# A request holds its target until it ends: no second change may be proposed meanwhile.
OPEN_STATUSES = (RequestStatus.REQUESTED, RequestStatus.APPROVED, RequestStatus.EXECUTING)
TERMINAL_STATUSES = (RequestStatus.REJECTED, RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED)


class RiskLevel(models.TextChoices):
    LOW = "LOW", "Low"
    MEDIUM = "MEDIUM", "Medium"
    HIGH = "HIGH", "High"


class ApprovalMode(models.TextChoices):
    ALWAYS = "ALWAYS", "Always needs approval"
    ABOVE_AMOUNT = "ABOVE_AMOUNT", "Needs approval above an amount"
    NEVER = "NEVER", "Runs at once (still recorded)"


class ActionRequest(models.Model):
    public_id = models.CharField(max_length=32)  # act_..., unique: approvals_public_id_unique
    action_type = models.CharField(max_length=48)
    target_type = models.CharField(max_length=48)
    target_id = models.CharField(max_length=128)
    target_label = models.CharField(max_length=200)  # the section/entity the change affects, for people
    target_version = models.CharField(max_length=64, blank=True)  # the target's version when requested
    merchant_ref = models.CharField(max_length=64, blank=True)
    customer_ref = models.CharField(max_length=64, blank=True)
    subject_name = models.CharField(max_length=200, blank=True)  # "for whom", as shown
    payload = models.JSONField()
    preview = models.JSONField()
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    reason_code = models.CharField(max_length=48)
    reason_text = models.TextField()
    ticket_id = models.CharField(max_length=64, blank=True)
    case_ref = models.CharField(max_length=20, blank=True)
    idempotency_key = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices)
    needs_approval = models.BooleanField()
    allowed_checker_roles = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    maker = models.CharField(max_length=150)
    # The user foreign keys are indexed by approvals_maker_idx / approvals_checker_idx (user first).
    maker_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    created_at = models.DateTimeField()
    checker = models.CharField(max_length=150, blank=True)
    checker_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    status = FSMField(default=RequestStatus.REQUESTED, choices=RequestStatus.choices, protected=True)
    version = models.PositiveIntegerField(default=1)

    # History is read per request (by id) and by date; indexes on its other columns would only be
    # upkeep, on the one write end of day does a hundred thousand times.
    history = HistoricalRecords(get_user=history_user, no_db_index=["public_id", "maker_user", "checker_user"])

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)
        permissions = [("export_actionrequest", "Can export action requests as CSV")]
        # Every index is upkeep for each decision and for end of day's set-based rejection: unique
        # public_id is a constraint (no pattern-ops index), the user keys live in composite indexes.
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="approvals_public_id_unique"),
            # At most one open request per target entity (a second proposal names the first).
            models.UniqueConstraint(
                fields=["target_type", "target_id"],
                condition=Q(status__in=[s.value for s in OPEN_STATUSES]),
                name="approvals_one_open_request_per_target",
            ),
            models.UniqueConstraint(
                fields=["action_type", "target_type", "target_id", "idempotency_key"],
                name="approvals_request_once_per_key",
            ),
            # A maker's key names one submission, whatever its target: two submissions with one key
            # arriving at once cannot both become requests.
            models.UniqueConstraint(
                fields=["maker", "action_type", "idempotency_key"], name="approvals_request_once_per_maker_key"
            ),
            # Four eyes, also against raw SQL: the checker is never the maker.
            models.CheckConstraint(
                condition=Q(checker_user__isnull=True) | Q(maker_user__isnull=True) | ~Q(checker_user=F("maker_user")),
                name="approvals_checker_is_not_maker",
            ),
            models.CheckConstraint(
                condition=Q(amount_minor__isnull=True) | Q(amount_minor__gt=0), name="approvals_amount_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="approvals_status_idx"),
            models.Index(fields=["maker_user", "created_at"], name="approvals_maker_idx"),
            models.Index(fields=["checker_user", "decided_at"], name="approvals_checker_idx"),
            models.Index(fields=["merchant_ref", "created_at"], name="approvals_merchant_idx"),
            models.Index(fields=["customer_ref", "created_at"], name="approvals_customer_idx"),
            models.Index(fields=["action_type", "status"], name="approvals_action_status_idx"),
            models.Index(fields=["case_ref"], condition=~Q(case_ref=""), name="approvals_case_idx"),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_pending(self) -> bool:
        return self.status == RequestStatus.REQUESTED

    @transition(field=status, source=RequestStatus.REQUESTED, target=RequestStatus.APPROVED)
    def approve(self) -> None:
        pass

    @transition(field=status, source=RequestStatus.REQUESTED, target=RequestStatus.REJECTED)
    def reject(self) -> None:
        pass

    @transition(field=status, source=RequestStatus.REQUESTED, target=RequestStatus.CANCELLED)
    def cancel(self) -> None:
        """Withdrawn by its maker."""

    @transition(field=status, source=RequestStatus.APPROVED, target=RequestStatus.EXECUTING)
    def start_execution(self) -> None:
        pass

    @transition(field=status, source=RequestStatus.EXECUTING, target=RequestStatus.SUCCEEDED)
    def succeed(self) -> None:
        pass

    @transition(field=status, source=[RequestStatus.APPROVED, RequestStatus.EXECUTING], target=RequestStatus.FAILED)
    def fail(self) -> None:
        """Execution refused by the domain, or the target changed since the request (STALE_TARGET)."""


class ApprovalPolicy(models.Model):
    """Per action type, as data. Amounts are minor units per currency, e.g. {"IDR": 50000000}."""

    action_type = models.CharField(max_length=48, unique=True)
    mode = models.CharField(max_length=16, choices=ApprovalMode.choices)
    threshold_minor = models.JSONField(default=dict, blank=True)  # ABOVE_AMOUNT: currency -> amount
    approver_roles = ArrayField(models.CharField(max_length=32), default=list)
    case_required = models.BooleanField(default=False)
    evidence_required = models.BooleanField(default=False)
    allowed_reason_codes = ArrayField(models.CharField(max_length=48), default=list)
    maker_limits_minor = models.JSONField(default=dict, blank=True)  # role -> {currency: max amount}
    checker_limits_minor = models.JSONField(default=dict, blank=True)  # role -> {currency: max amount}
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, default=RiskLevel.MEDIUM)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField()

    history = HistoricalRecords(get_user=history_user)

    class Meta:
        default_permissions = ("view",)
        permissions = [
            ("propose_policy_change", "Can propose an approval policy change"),
            ("decide_policy_change", "Can decide an approval policy change"),
        ]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return f"{self.action_type}: {self.get_mode_display()}"
