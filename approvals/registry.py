"""The actions the engine can run. Each domain app registers its own (in AppConfig.ready), so adding
an action type touches only that app: approvals imports no domain app but cases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backoffice.actors import Actor
from backoffice.errors import ValidationFailed


@dataclass(frozen=True)
class Target:
    """What a request changes, as the owning app sees it now."""

    target_type: str
    target_id: str
    label: str  # the section/entity, for people: "Merchant payable m_1 (IDR)"
    version: str  # compared at execution: a change since the request makes it STALE_TARGET
    merchant_ref: str = ""
    customer_ref: str = ""
    subject_name: str = ""  # for whom
    amount_minor: int | None = None
    currency: str = ""


@dataclass(frozen=True)
class ActionSpec:
    action_type: str
    title: str
    propose_permission: str
    decide_permission: str
    # validate(payload, actor) -> normalised payload; raises ValidationFailed with a clear message
    validate: Callable[[dict, Actor], dict]
    # target(payload) -> Target as of now; raises NotFound when it no longer exists
    target: Callable[[dict], Target]
    # preview(payload, now) -> the exact effect for people (ledger lines, before/after), JSON-safe
    preview: Callable[[dict, dt.datetime], dict]
    # execute(request, actor, now) -> result payload (ids of what was made); raises DomainError
    execute: Callable[[Any, Actor, dt.datetime], dict]
    reason_codes: tuple[str, ...] = ()
    # choices for the proposing form's fields, from the owning app: {field: [(value, label), ...]}
    field_choices: Callable[[], dict[str, list[tuple[str, str]]]] | None = None
    # object types this action's results can be linked to cases as: {type: (title, describe(ids))}
    linkable_types: dict[str, tuple[str, Callable]] = field(default_factory=dict)
    # The ApprovalPolicy fields seeded for this action type when it has no policy yet (mode,
    # approver_roles, case_required, evidence_required, allowed_reason_codes, maker_limits_minor,
    # checker_limits_minor, risk_level). Changing a policy later is itself an approved action.
    default_policy: dict[str, Any] | None = None


_ACTIONS: dict[str, ActionSpec] = {}


def register_action(spec: ActionSpec) -> None:
    existing = _ACTIONS.get(spec.action_type)
    if existing is not None and existing is not spec:
        raise ValueError(f"action type {spec.action_type} registered twice")
    _ACTIONS[spec.action_type] = spec
    from cases import registry as case_registry

    for object_type, (title, describe) in spec.linkable_types.items():
        case_registry.register_linkable_type(object_type, title=title, describe=describe)


def action_spec(action_type: str) -> ActionSpec:
    try:
        return _ACTIONS[action_type]
    except KeyError:
        raise ValidationFailed(f"unknown action type {action_type!r}") from None


def action_specs() -> list[ActionSpec]:
    return sorted(_ACTIONS.values(), key=lambda s: s.action_type)
