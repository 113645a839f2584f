"""Who may decide a request: one statement of the four-eyes rule, the approver role, the decide
permission and the checker's limit. The services raise what it returns; the screens show it, so
the inbox and the request page offer a decision exactly where the service would accept it."""

from __future__ import annotations

from backoffice.errors import DomainError, PermissionMissing, PolicyDenied, SelfApprovalRefused
from backoffice.roles import roles_holding


def limit_for(limits: dict, roles, currency: str) -> int | None:
    """The highest limit any of these roles has in this currency (None: no role has one)."""
    found = [int(limits[r][currency]) for r in roles if r in limits and currency in limits[r]]
    return max(found) if found else None


def checker_refusal(*, request, spec, policy, actor, user, check_limit: bool = True) -> DomainError | None:
    """Why `actor` (with `user`, None for a system actor) may not decide `request`, or None.
    The request's status is not judged here (the caller says it in its own words). The limit
    applies to approving; anyone who may decide may reject."""
    # The same person, or the same system actor (which has no user id to compare).
    if (request.maker_user_id is not None and actor.user_id == request.maker_user_id) or actor.label == request.maker:
        return SelfApprovalRefused(f"you proposed {request.public_id}; another person must decide it")
    if user is None:
        return None if actor.is_system else PermissionMissing("deciding a change needs a signed-in user")
    if not user.has_perm(spec.decide_permission):
        holders = ", ".join(roles_holding(spec.decide_permission)) or "no role"
        return PermissionMissing(
            f"deciding {spec.title} needs the permission {spec.decide_permission}, which these roles hold: {holders}"
        )
    if request.allowed_checker_roles and not set(actor.roles) & set(request.allowed_checker_roles):
        return PermissionMissing(
            f"it may be decided by {', '.join(request.allowed_checker_roles)}; you hold "
            f"{', '.join(actor.roles) or 'no role'}"
        )
    if policy is None:
        return PolicyDenied(f"no approval policy is set for {request.action_type}; nobody can decide it")
    if check_limit and request.amount_minor is not None and policy.checker_limits_minor:
        limit = limit_for(policy.checker_limits_minor, actor.roles, request.currency)
        if limit is None or request.amount_minor > limit:
            return PolicyDenied(f"{request.amount_minor} {request.currency} (minor units) is above your approval limit")
    return None
