"""Operational cases: the system of record for a problem, who owns it, what was found and how it
ended. `cases` imports no domain app: other apps link their objects by (object_type, object_id)
and register how those are described and what guards closing (cases/registry.py).

Status moves only through the transitions below, called from cases.services. Notes, evidence,
findings, links and occurrences are append-only (PostgreSQL refuses UPDATE and DELETE, migration
0002). Object-level rights are direct-foreign-key django-guardian rows: the owner team's group
may view a case, its assignee may change it (cases/permissions.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_fsm import FSMField, transition
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from backoffice.history import history_user


class CaseType(models.TextChoices):
    SUPPORT = "SUPPORT", "Support"
    PAYMENT_INVESTIGATION = "PAYMENT_INVESTIGATION", "Payment investigation"
    RECONCILIATION_BREAK = "RECONCILIATION_BREAK", "Reconciliation break"
    SETTLEMENT_EXCEPTION = "SETTLEMENT_EXCEPTION", "Settlement exception"
    RISK_REVIEW = "RISK_REVIEW", "Risk review"
    COMPLIANCE_REVIEW = "COMPLIANCE_REVIEW", "Compliance review"
    DISPUTE = "DISPUTE", "Dispute"
    INCIDENT = "INCIDENT", "Incident"


class Severity(models.TextChoices):
    """Objective impact (not the order of work: that is priority)."""

    LOW = "LOW", "Low"
    MEDIUM = "MEDIUM", "Medium"
    HIGH = "HIGH", "High"
    CRITICAL = "CRITICAL", "Critical"


SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class Priority(models.IntegerChoices):
    """Order of work: P1 first. Starts from severity; an SLA breach moves it up one step."""

    P1 = 1, "P1"
    P2 = 2, "P2"
    P3 = 3, "P3"
    P4 = 4, "P4"


PRIORITY_FOR_SEVERITY = {Severity.CRITICAL: 1, Severity.HIGH: 2, Severity.MEDIUM: 3, Severity.LOW: 4}


class CaseStatus(models.TextChoices):
    OPEN = "OPEN", "Open"
    TRIAGED = "TRIAGED", "Triaged"
    IN_PROGRESS = "IN_PROGRESS", "In progress"
    WAITING_EXTERNAL = "WAITING_EXTERNAL", "Waiting on external party"
    WAITING_APPROVAL = "WAITING_APPROVAL", "Waiting on approval"
    RESOLVED = "RESOLVED", "Resolved"
    CLOSED = "CLOSED", "Closed"
    REOPENED = "REOPENED", "Reopened"
    CANCELLED = "CANCELLED", "Cancelled"


# A case is "open" (in a queue, on an SLA clock, the one case for its fingerprint) until resolved.
DONE_STATUSES = (CaseStatus.RESOLVED, CaseStatus.CLOSED, CaseStatus.CANCELLED)
OPEN_STATUSES = tuple(s for s in CaseStatus if s not in DONE_STATUSES)
WORKABLE = [CaseStatus.OPEN, CaseStatus.TRIAGED, CaseStatus.IN_PROGRESS, CaseStatus.REOPENED]


class Team(models.TextChoices):
    """Owner teams are the operational roles: a team's members are the users holding that role."""

    SUPPORT_OPS = "support_ops", "Support operations"
    PAYMENT_OPS = "payment_ops", "Payment operations"
    FINANCE_OPS = "finance_ops", "Finance operations"
    RISK_OPS = "risk_ops", "Risk operations"
    COMPLIANCE_OPS = "compliance_ops", "Compliance operations"
    SRE = "sre", "Site reliability engineering"


class ResolutionCode(models.TextChoices):
    FIXED = "FIXED", "Fixed / repaired"
    NO_ACTION_NEEDED = "NO_ACTION_NEEDED", "No action needed"
    DUPLICATE = "DUPLICATE", "Duplicate of another case"
    EXTERNAL_RESOLVED = "EXTERNAL_RESOLVED", "Resolved by the external party"
    CUSTOMER_INFORMED = "CUSTOMER_INFORMED", "Customer or merchant informed"
    WONT_FIX = "WONT_FIX", "Accepted, will not fix"


class OpsCase(models.Model):
    case_number = models.CharField(max_length=20, unique=True)  # CASE-YYYY-NNNNNN
    case_type = models.CharField(max_length=32, choices=CaseType.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    severity_rank = models.PositiveSmallIntegerField()  # for sorting: CRITICAL 4 ... LOW 1
    priority = models.PositiveSmallIntegerField(choices=Priority.choices)
    status = FSMField(default=CaseStatus.OPEN, choices=CaseStatus.choices, protected=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    merchant_ref = models.CharField(max_length=64, blank=True)
    customer_ref = models.CharField(max_length=64, blank=True)
    owner_team = models.CharField(max_length=32, choices=Team.choices)
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.CharField(max_length=150)  # actor label (a person or system:name)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    sla_due_at = models.DateTimeField()
    sla_warn_at = models.DateTimeField()  # "due soon" from here (the policy's warning window)
    sla_breached_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    resolution_code = models.CharField(max_length=32, blank=True, choices=ResolutionCode.choices)
    resolution_summary = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Exception intake: where it came from and the dedup identity of its root cause.
    source_system = models.CharField(max_length=64, blank=True)
    business_key = models.CharField(max_length=128, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    occurrence_count = models.PositiveIntegerField(default=0)
    last_occurred_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    # The opening form's idempotency key: a double submit opens one case.
    open_key = models.CharField(max_length=64, blank=True, default="", db_default="")

    history = HistoricalRecords(get_user=history_user, excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-created_at"]
        # view and change are also granted per case (cases/permissions.py); add is global.
        default_permissions = ("add", "view", "change")
        permissions = [("open_worklist", "Can open the case worklist (shows only the cases one may see)")]
        constraints = [
            # One open case per root cause, also when many reporters race (exception_report).
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~Q(fingerprint="") & ~Q(status__in=[s.value for s in DONE_STATUSES]),
                name="cases_one_open_case_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=[CaseStatus.RESOLVED, CaseStatus.CLOSED])
                | (~Q(resolution_code="") & ~Q(resolution_summary="")),
                name="cases_resolution_recorded",
            ),
            models.UniqueConstraint(fields=["open_key"], condition=~Q(open_key=""), name="cases_open_once_per_key"),
            models.CheckConstraint(condition=Q(severity_rank__gte=1, severity_rank__lte=4), name="cases_rank_valid"),
            models.CheckConstraint(condition=Q(priority__gte=1, priority__lte=4), name="cases_priority_valid"),
        ]
        indexes = [
            models.Index(fields=["owner_team", "status", "sla_due_at"], name="cases_team_queue_idx"),
            models.Index(fields=["owner_user", "status", "sla_due_at"], name="cases_owner_idx"),
            models.Index(fields=["status", "sla_due_at"], name="cases_sla_idx"),
            models.Index(fields=["created_at", "id"], name="cases_created_idx"),
        ]

    def __str__(self) -> str:
        return self.case_number

    @property
    def is_open(self) -> bool:
        return self.status not in DONE_STATUSES

    # --- transitions (called only from cases.services, which locks, checks, saves and audits) ---

    @transition(field=status, source=[CaseStatus.OPEN, CaseStatus.REOPENED], target=CaseStatus.TRIAGED)
    def triage(self) -> None:
        """Someone looked at it: severity and team are right."""

    @transition(field=status, source=[CaseStatus.OPEN, CaseStatus.TRIAGED, CaseStatus.REOPENED],
                target=CaseStatus.IN_PROGRESS)  # fmt: skip
    def start(self) -> None:
        pass

    @transition(field=status, source=CaseStatus.IN_PROGRESS, target=CaseStatus.WAITING_EXTERNAL)
    def wait_external(self) -> None:
        """Waiting on a provider, bank, merchant or customer."""

    @transition(field=status, source=[CaseStatus.WAITING_EXTERNAL, CaseStatus.WAITING_APPROVAL],
                target=CaseStatus.IN_PROGRESS)  # fmt: skip
    def resume(self) -> None:
        pass

    @transition(field=status, source=CaseStatus.IN_PROGRESS, target=CaseStatus.WAITING_APPROVAL)
    def wait_approval(self) -> None:
        """A change proposed for this case waits for a checker."""

    @transition(
        field=status,
        source=[CaseStatus.OPEN, CaseStatus.TRIAGED, CaseStatus.IN_PROGRESS, CaseStatus.WAITING_EXTERNAL,
                CaseStatus.REOPENED],
        target=CaseStatus.RESOLVED,
    )  # fmt: skip
    def resolve(self) -> None:
        pass

    @transition(field=status, source=CaseStatus.RESOLVED, target=CaseStatus.CLOSED)
    def close(self) -> None:
        pass

    @transition(field=status, source=[CaseStatus.RESOLVED, CaseStatus.CLOSED], target=CaseStatus.REOPENED)
    def reopen(self) -> None:
        """History is kept: the resolution stays on the record and in the timeline."""

    @transition(field=status, source=[CaseStatus.OPEN, CaseStatus.TRIAGED, CaseStatus.REOPENED],
                target=CaseStatus.CANCELLED)  # fmt: skip
    def cancel(self) -> None:
        """Opened by mistake (not a resolution: nothing was worked)."""


class OpsCaseUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(OpsCase, on_delete=models.CASCADE)


class OpsCaseGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(OpsCase, on_delete=models.CASCADE)


class SlaPolicy(models.Model):
    """How long a case may stay open, by severity and optionally case type (the type row wins).
    Held as data (seeded by migration 0003)."""

    severity = models.CharField(max_length=10, choices=Severity.choices)
    case_type = models.CharField(max_length=32, choices=CaseType.choices, blank=True)
    minutes = models.PositiveIntegerField(default=0)
    business_days = models.PositiveSmallIntegerField(default=0)
    due_soon_minutes = models.PositiveIntegerField(default=60)

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["severity", "case_type"], name="cases_one_sla_per_severity_type"),
            models.CheckConstraint(
                condition=(Q(minutes__gt=0) & Q(business_days=0)) | (Q(minutes=0) & Q(business_days__gt=0)),
                name="cases_sla_one_unit",
            ),
        ]

    def __str__(self) -> str:
        span = f"{self.minutes} min" if self.minutes else f"{self.business_days} business day(s)"
        return f"{self.severity} {self.case_type or 'any type'}: {span}"


class CaseLink(models.Model):
    case = models.ForeignKey(OpsCase, on_delete=models.PROTECT, related_name="links")
    object_type = models.CharField(max_length=48)
    object_id = models.CharField(max_length=128)
    relation_type = models.CharField(max_length=32)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(
                fields=["case", "object_type", "object_id", "relation_type"], name="cases_link_once"
            )
        ]
        indexes = [models.Index(fields=["object_type", "object_id"], name="cases_link_object_idx")]

    def __str__(self) -> str:
        return f"{self.relation_type} {self.object_type} {self.object_id}"


class NoteType(models.TextChoices):
    COMMENT = "COMMENT", "Comment"
    CUSTOMER_CONTACT = "CUSTOMER_CONTACT", "Customer or merchant contact"
    PROVIDER_CONTACT = "PROVIDER_CONTACT", "Provider or bank contact"
    HANDOVER = "HANDOVER", "Handover"


class RedactionLevel(models.TextChoices):
    INTERNAL = "INTERNAL", "Internal"
    RESTRICTED = "RESTRICTED", "Restricted"


class CaseNote(models.Model):
    case = models.ForeignKey(OpsCase, on_delete=models.PROTECT, related_name="notes")
    note_type = models.CharField(max_length=20, choices=NoteType.choices)
    body = models.TextField()
    redaction_level = models.CharField(max_length=12, choices=RedactionLevel.choices, default=RedactionLevel.INTERNAL)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        default_permissions = ("view",)
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=~Q(idempotency_key=""), name="cases_note_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"note {self.pk} on case {self.case_id}"


class EvidenceType(models.TextChoices):
    PROVIDER_RESPONSE = "PROVIDER_RESPONSE", "Provider response"
    BANK_DOCUMENT = "BANK_DOCUMENT", "Bank statement or advice"
    SCREENSHOT = "SCREENSHOT", "Screenshot"
    CORRESPONDENCE = "CORRESPONDENCE", "Correspondence"
    REPORT = "REPORT", "Report or export"
    OTHER = "OTHER", "Other"


class Classification(models.TextChoices):
    INTERNAL = "INTERNAL", "Internal"
    CONFIDENTIAL = "CONFIDENTIAL", "Confidential"
    RESTRICTED = "RESTRICTED", "Restricted"


class RetentionClass(models.TextChoices):
    OPERATIONAL_2Y = "OPERATIONAL_2Y", "Operational, 2 years"
    FINANCIAL_10Y = "FINANCIAL_10Y", "Financial record, 10 years"
    REGULATORY_7Y = "REGULATORY_7Y", "Regulatory, 7 years"


class CaseEvidence(models.Model):
    case = models.ForeignKey(OpsCase, on_delete=models.PROTECT, related_name="evidence")
    evidence_type = models.CharField(max_length=24, choices=EvidenceType.choices)
    storage_key = models.CharField(max_length=200, unique=True)  # server-generated, never a client path
    original_name = models.CharField(max_length=120)  # shown only; sanitised
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=64)  # as detected from the content
    classification = models.CharField(max_length=16, choices=Classification.choices)
    retention_class = models.CharField(max_length=16, choices=RetentionClass.choices)
    description = models.CharField(max_length=300, blank=True)
    uploaded_by = models.CharField(max_length=150)
    uploaded_at = models.DateTimeField()

    class Meta:
        default_permissions = ("view",)
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["case", "sha256"], name="cases_evidence_once_per_case")]

    def __str__(self) -> str:
        return f"evidence {self.pk} ({self.sha256[:12]}) on case {self.case_id}"


class FindingType(models.TextChoices):
    ROOT_CAUSE = "ROOT_CAUSE", "Root cause"
    VERIFICATION = "VERIFICATION", "Verification of the fix or outcome"
    PROVIDER_CONFIRMATION = "PROVIDER_CONFIRMATION", "Provider or bank confirmation"
    CUSTOMER_IMPACT = "CUSTOMER_IMPACT", "Customer impact"
    NO_ISSUE_FOUND = "NO_ISSUE_FOUND", "No issue found"


class CaseFinding(models.Model):
    case = models.ForeignKey(OpsCase, on_delete=models.PROTECT, related_name="findings")
    finding_type = models.CharField(max_length=24, choices=FindingType.choices)
    source = models.CharField(max_length=64)  # e.g. PROVIDER_API, BANK_STATEMENT, LEDGER, OPERATOR
    external_reference = models.CharField(max_length=128, blank=True)
    conclusion = models.TextField()
    evidence = models.ForeignKey(CaseEvidence, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        default_permissions = ("view",)
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=~Q(idempotency_key=""), name="cases_finding_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.finding_type} on case {self.case_id}"


class ExceptionOccurrence(models.Model):
    case = models.ForeignKey(OpsCase, on_delete=models.PROTECT, related_name="occurrences")
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    source_system = models.CharField(max_length=64)
    business_key = models.CharField(max_length=128)
    exception_type = models.CharField(max_length=48)
    error_code = models.CharField(max_length=64)
    normalized_message = models.TextField()
    reported_severity = models.CharField(max_length=10, choices=Severity.choices)
    raw_evidence_ref = models.CharField(max_length=200, blank=True)
    trace_id = models.CharField(max_length=64, blank=True)

    class Meta:
        default_permissions = ("view",)
        ordering = ["id"]
        indexes = [models.Index(fields=["case", "occurred_at"], name="cases_occurrence_case_idx")]

    def __str__(self) -> str:
        return f"{self.error_code} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"
