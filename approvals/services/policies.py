"""Changing an approval policy: executed only by an approved CHANGE_APPROVAL_POLICY request (the
policy of who must approve what is itself under four eyes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from approvals.models import ApprovalPolicy
from audit.services import audit_record
from backoffice.actors import Actor

# The fields a policy change may set, in the order screens show them.
POLICY_FIELDS = (
    "mode", "threshold_minor", "approver_roles", "case_required", "evidence_required", "allowed_reason_codes",
    "maker_limits_minor", "checker_limits_minor", "risk_level",
)  # fmt: skip


def policy_snapshot(policy: ApprovalPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {name: getattr(policy, name) for name in POLICY_FIELDS}


def policy_apply(
    *, action_type: str, fields: dict[str, Any], actor: Actor, now: dt.datetime, approval_ref: str
) -> ApprovalPolicy:
    """Set the policy of `action_type` to `fields` (all of POLICY_FIELDS, validated by the action),
    creating it when the action type has none; bump its version so a second request proposed
    against the old version fails as STALE_TARGET. Audited with the before and after."""
    with transaction.atomic():
        policy = ApprovalPolicy.objects.select_for_update().filter(action_type=action_type).first()
        before = policy_snapshot(policy)
        created = policy is None
        if created:
            policy = ApprovalPolicy(action_type=action_type, version=0)
        for name in POLICY_FIELDS:
            setattr(policy, name, fields[name])
        policy.version += 1
        policy.updated_at = now
        policy._change_reason = approval_ref  # the history row names the request that changed it
        policy.save(update_fields=None if created else [*POLICY_FIELDS, "version", "updated_at"])
        audit_record(
            event_type="approvals.policy_changed", actor=actor, now=now, action_type="CHANGE_APPROVAL_POLICY",
            target_type="approval_policy", target_id=action_type, approval_ref=approval_ref, before=before,
            after=policy_snapshot(policy),
        )  # fmt: skip
    return policy
