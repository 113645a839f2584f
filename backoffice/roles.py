"""Roles and their per-action permissions (invariant 9: least privilege).

A role is a Django group. Its permissions are listed here, by action, and applied idempotently by
`roles_sync` after every migrate and by `manage.py roles_sync`. No role holds every permission;
superuser is engineering break-glass only and belongs to no role.

Later apps add their action permissions to the sets below in the same change that adds the
permission, so the map stays the single statement of who may do what.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    name: str
    title: str
    purpose: str
    # May sign in to the Django admin (is_staff); what they can do there is still only their
    # permissions. The finance manager decides requests there; everyone else works on the screens.
    admin_site: bool = False


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "support_ops",
            "Support operations",
            "Answers merchant and customer questions; masked data, no money actions.",
        ),
        Role(
            "payment_ops",
            "Payment operations",
            "Investigates and repairs payments, provider references and timelines.",
        ),
        Role(
            "finance_ops",
            "Finance operations",
            "Proposes adjustments and works reconciliation breaks (maker).",
        ),
        Role(
            "finance_manager",
            "Finance manager",
            "Approves or rejects money-moving changes (checker).",
            admin_site=True,
        ),
        Role("risk_ops", "Risk operations", "Reviews risk cases and merchant capability restrictions."),
        Role("compliance_ops", "Compliance operations", "Reviews compliance cases and restrictions."),
        Role(
            "sre",
            "Site reliability engineering",
            "Technical metadata, maintenance, audit chain; no personal data.",
        ),
        Role("auditor", "Auditor", "Reads the audit trail and exports it; changes nothing."),
    )
}

# "app_label.codename" per role.
_LEDGER_READ = {"ledger.view_ledgeraccount", "ledger.view_ledgerjournal"}
# Every team works its own queue: it may open the worklist and open cases; which cases it sees and
# changes is granted per case (cases/permissions.py), not here.
_CASE_TEAM = {"cases.open_worklist", "cases.add_opscase"}
# Reading every case: the auditor, and the finance manager who checks changes proposed on cases.
_CASE_READ_ALL = {"cases.open_worklist", "cases.view_opscase"}

# Reading action requests (the inbox, my requests, all requests with filters).
_APPROVALS_READ = {"approvals.view_actionrequest"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "support_ops": frozenset(_CASE_TEAM),
    "payment_ops": frozenset(_CASE_TEAM),
    "finance_ops": frozenset(_LEDGER_READ | _CASE_TEAM | _APPROVALS_READ | {"ledger.propose_adjustment"}),
    "finance_manager": frozenset(
        _LEDGER_READ | _CASE_READ_ALL | _APPROVALS_READ | {"ledger.decide_adjustment", "approvals.export_actionrequest"}
    ),
    "risk_ops": frozenset(_CASE_TEAM),
    "compliance_ops": frozenset(_CASE_TEAM),
    "sre": frozenset({"audit.view_auditevent"} | _CASE_TEAM),
    "auditor": frozenset(
        {"audit.view_auditevent", "audit.export_auditevent", "approvals.export_actionrequest"}
        | _LEDGER_READ
        | _CASE_READ_ALL
        | _APPROVALS_READ
    ),
}


def user_role_names(user) -> list[str]:
    """The back-office roles a user holds (group names that are roles), sorted."""
    if not getattr(user, "is_authenticated", False):
        return []
    cached = getattr(user, "_backoffice_roles", None)
    if cached is None:
        cached = sorted(name for name in user.groups.values_list("name", flat=True) if name in ROLES)
        user._backoffice_roles = cached
    return cached


def roles_holding(permission: str) -> list[str]:
    """Role names that grant `permission`: shown on a refusal so the user knows whom to ask."""
    return sorted(name for name, perms in ROLE_PERMISSIONS.items() if permission in perms)
