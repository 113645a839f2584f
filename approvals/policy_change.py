"""CHANGE_APPROVAL_POLICY: who must approve what is itself changed under four eyes.

A proposal states the whole new policy of one action type; the preview is a field-by-field diff
against the policy as it is. The target is the policy, its version the policy's version, so two
changes proposed against the same version cannot both execute (the second is STALE_TARGET).

Guards, because a policy can disarm the control it states: a policy that needs approval names at
least one approver role, and each named role must hold the action's decide permission (otherwise
nobody could ever decide it); the policy of policy changes can never stop needing approval.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from approvals.models import ApprovalMode, ApprovalPolicy, RiskLevel
from approvals.registry import ActionSpec, Target, action_spec, action_specs
from approvals.services.policies import POLICY_FIELDS, policy_apply, policy_snapshot
from backoffice.actors import Actor
from backoffice.errors import ValidationFailed
from backoffice.money import CurrencyError, Money, currency_exponent
from backoffice.roles import ROLE_PERMISSIONS, ROLES

ACTION = "CHANGE_APPROVAL_POLICY"
REASONS = ("POLICY_REVIEW", "REGULATORY_CHANGE", "RISK_APPETITE_CHANGE", "AUDIT_FINDING", "NEW_ACTION_TYPE")
LABELS = {
    "mode": "Approval", "threshold_minor": "Approval above", "approver_roles": "Approver roles",
    "case_required": "Case required", "evidence_required": "Evidence required",
    "allowed_reason_codes": "Allowed reason codes", "maker_limits_minor": "Maker limits",
    "checker_limits_minor": "Checker limits", "risk_level": "Risk level",
}  # fmt: skip
_MAX_MINOR = 2**63 - 1


def _amounts(value: Any, what: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValidationFailed(f"{what}: give amounts per currency")
    result = {}
    for currency, amount in value.items():
        try:
            currency_exponent(str(currency))
        except CurrencyError as exc:
            raise ValidationFailed(f"{what}: {exc}") from exc
        if type(amount) is not int or not 0 < amount <= _MAX_MINOR:
            raise ValidationFailed(f"{what}: the amount in {currency} must be a positive whole number of minor units")
        result[str(currency)] = amount
    return dict(sorted(result.items()))


def _limits(value: Any, what: str) -> dict[str, dict[str, int]]:
    if not isinstance(value, dict):
        raise ValidationFailed(f"{what}: give limits per role and currency")
    result = {}
    for role, amounts in value.items():
        if role not in ROLES:
            raise ValidationFailed(f"{what}: there is no role {role!r}")
        result[role] = _amounts(amounts, f"{what} for {role}")
    return dict(sorted(result.items()))


def _validate(payload: dict, actor: Actor) -> dict:
    action_type = str(payload.get("policy", "")).strip()
    spec = action_spec(action_type)  # refuses an unknown action type
    mode = str(payload.get("mode", ""))
    if mode not in ApprovalMode.values:
        raise ValidationFailed(f"approval must be one of {', '.join(ApprovalMode.values)}")
    if action_type == ACTION and mode != ApprovalMode.ALWAYS:
        raise ValidationFailed("changes to approval policies always need approval; that cannot be switched off")
    threshold = _amounts(payload.get("threshold_minor") or {}, "approval above")
    if mode == ApprovalMode.ABOVE_AMOUNT and not threshold:
        raise ValidationFailed("approval above an amount needs the amount for at least one currency")
    if mode != ApprovalMode.ABOVE_AMOUNT:
        threshold = {}
    roles = sorted({str(r) for r in payload.get("approver_roles") or []})
    for role in roles:
        if role not in ROLES:
            raise ValidationFailed(f"there is no role {role!r}")
        if spec.decide_permission not in ROLE_PERMISSIONS.get(role, ()):
            raise ValidationFailed(
                f"{ROLES[role].title} cannot decide {spec.title} (it lacks {spec.decide_permission}); "
                "an approver role nobody in it could use would leave requests undecidable"
            )
    if mode != ApprovalMode.NEVER and not roles:
        raise ValidationFailed("a policy that needs approval names at least one approver role")
    reasons = sorted({str(r) for r in payload.get("allowed_reason_codes") or []})
    if not reasons:
        raise ValidationFailed("allow at least one reason code")
    unknown = sorted(set(reasons) - set(spec.reason_codes)) if spec.reason_codes else []
    if unknown:
        raise ValidationFailed(f"{action_type} has no reason codes {', '.join(unknown)}")
    risk = str(payload.get("risk_level", ""))
    if risk not in RiskLevel.values:
        raise ValidationFailed(f"risk level must be one of {', '.join(RiskLevel.values)}")
    normalized = {
        "policy": action_type, "mode": mode, "threshold_minor": threshold, "approver_roles": roles,
        "case_required": _flag(payload, "case_required"), "evidence_required": _flag(payload, "evidence_required"),
        "allowed_reason_codes": reasons,
        "maker_limits_minor": _limits(payload.get("maker_limits_minor") or {}, "maker limits"),
        "checker_limits_minor": _limits(payload.get("checker_limits_minor") or {}, "checker limits"),
        "risk_level": risk,
    }  # fmt: skip
    current = policy_snapshot(ApprovalPolicy.objects.filter(action_type=action_type).first())
    if current is not None and all(_same(current[n], normalized[n]) for n in POLICY_FIELDS):
        raise ValidationFailed(f"this is the policy of {action_type} as it is; nothing would change")
    return normalized


def _flag(payload: dict, name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{LABELS[name].lower()}: give true or false")
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a) == sorted(b)
    return a == b


def _target(payload: dict) -> Target:
    action_type = payload["policy"]
    policy = ApprovalPolicy.objects.filter(action_type=action_type).first()
    return Target(
        target_type="approval_policy", target_id=action_type, label=f"Approval policy of {action_type}",
        version=str(policy.version) if policy else "NONE", subject_name=action_type,
    )  # fmt: skip


def describe_value(name: str, value: Any) -> str:
    """A policy field as people read it: amounts in major units with their currency."""
    if value is None:
        return "—"
    if name == "threshold_minor":
        return ", ".join(str(Money(v, c)) for c, v in value.items()) or "—"
    if name in ("maker_limits_minor", "checker_limits_minor"):
        return "; ".join(f"{role}: " + ", ".join(str(Money(v, c)) for c, v in amounts.items())
                         for role, amounts in value.items()) or "none"  # fmt: skip
    if name in ("approver_roles", "allowed_reason_codes"):
        return ", ".join(value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _preview(payload: dict, now: dt.datetime) -> dict:
    current = policy_snapshot(ApprovalPolicy.objects.filter(action_type=payload["policy"]).first())
    changes = [
        {"field": LABELS[name], "before": describe_value(name, current[name]) if current else "—",
         "after": describe_value(name, payload[name])}
        for name in POLICY_FIELDS
        if current is None or not _same(current[name], payload[name])
    ]  # fmt: skip
    return {
        "kind": "diff",
        "summary": f"{'Set' if current is None else 'Change'} the approval policy of {payload['policy']}",
        "changes": changes,
        "reversible": True,
        "reversal": "another CHANGE_APPROVAL_POLICY request (also maker-checker) can set it back",
    }


def _execute(request, actor: Actor, now: dt.datetime) -> dict:
    fields = {name: request.payload[name] for name in POLICY_FIELDS}
    policy = policy_apply(
        action_type=request.payload["policy"], fields=fields, actor=actor, now=now, approval_ref=request.public_id
    )
    return {"approval_policy": f"{policy.action_type} version {policy.version}"}


def policy_action_choices() -> dict[str, list[tuple[str, str]]]:
    return {"policy": [(s.action_type, s.title) for s in action_specs()]}


POLICY_CHANGE = ActionSpec(
    action_type=ACTION, title="an approval policy change",
    propose_permission="approvals.propose_policy_change", decide_permission="approvals.decide_policy_change",
    validate=_validate, target=_target, preview=_preview, execute=_execute, reason_codes=REASONS,
    field_choices=policy_action_choices,
    default_policy={
        "mode": "ALWAYS", "approver_roles": ["compliance_ops"], "case_required": False, "evidence_required": False,
        "allowed_reason_codes": list(REASONS), "maker_limits_minor": {}, "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
)  # fmt: skip
