"""The audit trail: structured, append-only, hash-chained events (invariant 8).

Rows are written only by `audit.services.audit_record`. PostgreSQL refuses UPDATE and DELETE on
the table (see migration 0002), and every row carries the hash of the one before it in its chain
lane, so an altered or removed row is found by `manage.py audit_verify`.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class AuditResult(models.TextChoices):
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    REFUSED = "REFUSED", "Refused"
    FAILED = "FAILED", "Failed"


GENESIS_HASH = "0" * 64
# The chain is kept in this many lanes, each a hash chain of its own (ADR 0001): concurrent writers
# take different lanes instead of queuing on one head. Fixed in the database (audit_chain_lane).
CHAIN_LANES = 16


class AuditEvent(models.Model):
    # The position. Assigned under the lane's lock, so within a lane ascending seq is chain order.
    seq = models.BigIntegerField(primary_key=True)
    # Which chain lane the event links into (its prev_hash is the previous event of the same lane).
    lane = models.SmallIntegerField(db_default=0)
    event_id = models.CharField(max_length=32)  # unique: audit_event_id_unique
    occurred_at = models.DateTimeField()
    actor = models.CharField(max_length=150, help_text="username, system:<name> or anonymous")
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_roles = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    session_hash = models.CharField(max_length=64, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True)
    event_type = models.CharField(max_length=80)
    action_type = models.CharField(max_length=80, blank=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=128, blank=True)
    reason_code = models.CharField(max_length=64, blank=True)
    reason_text = models.TextField(blank=True)
    case_ref = models.CharField(max_length=64, blank=True)
    approval_ref = models.CharField(max_length=64, blank=True)
    result = models.CharField(max_length=16, choices=AuditResult.choices)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)  # unique: audit_hash_unique

    class Meta:
        ordering = ["-seq"]
        # Append-only: nobody may add, change or delete through Django; reading and exporting are
        # the only permissions there are.
        default_permissions = ("view",)
        permissions = [("export_auditevent", "Can export audit events as CSV")]
        indexes = [
            models.Index(fields=["occurred_at"], name="audit_occurred_at_idx"),
            # The head of a lane: its newest event (read under the lane's lock by every writer).
            models.Index(fields=["lane", "seq"], name="audit_lane_seq_idx"),
            models.Index(fields=["actor", "seq"], name="audit_actor_seq_idx"),
            models.Index(fields=["target_type", "target_id", "seq"], name="audit_target_seq_idx"),
            models.Index(fields=["event_type", "seq"], name="audit_event_type_seq_idx"),
            models.Index(fields=["result", "seq"], name="audit_result_seq_idx"),
            models.Index(fields=["correlation_id"], name="audit_correlation_idx"),
            # Events about a case's objects (journals, requests) carry its number: the case timeline.
            models.Index(fields=["case_ref", "seq"], condition=~models.Q(case_ref=""), name="audit_case_ref_seq_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(result__in=["SUCCEEDED", "REFUSED", "FAILED"]), name="audit_result_valid"
            ),
            # Unique as constraints, not `unique=True` fields: those would also build a pattern-ops
            # index each for LIKE searches nobody makes, two more indexes to update per event.
            models.UniqueConstraint(fields=["event_id"], name="audit_event_id_unique"),
            models.UniqueConstraint(fields=["hash"], name="audit_hash_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.event_type} {self.result}"
