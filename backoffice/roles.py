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

# Reading action requests (the inbox, my requests, all requests with filters) and the policies.
_APPROVALS_READ = {"approvals.view_actionrequest", "approvals.view_approvalpolicy"}

# Reading the payment domain. Masking of personal data is the screens' job, by role, not a permission.
_PAYMENTS_READ = {
    "payments.view_merchant", "payments.view_merchantbeneficiary", "payments.view_customer",
    "payments.view_paymentintent", "payments.view_paymentattempt", "payments.view_refund", "payments.view_payout",
    "payments.view_paymentevent", "payments.view_capabilityrestriction",
}  # fmt: skip
_PAYMENTS_TECHNICAL_READ = _PAYMENTS_READ - {"payments.view_customer", "payments.view_merchantbeneficiary"}
# The provider side: raw and normalized events and inquiries (technical, no personal data in them).
_PROVIDER_READ = {"payments.view_providereventraw", "payments.view_providereventnormalized",
                  "payments.view_providerinquiry"}  # fmt: skip
# Reading reconciliation: sources, files, items, matches, rules, runs, breaks and decisions; exporting
# the break queue.
_RECON_READ = {
    "reconciliation.view_reconciliationsource", "reconciliation.view_statementfile",
    "reconciliation.view_reconciliationitem", "reconciliation.view_reconciliationmatch",
    "reconciliation.view_reconciliationrule", "reconciliation.view_reconciliationrun",
    "reconciliation.view_reconciliationbreak", "reconciliation.view_reconciliationmanualdecision",
    "reconciliation.export_reconciliationbreak",
}  # fmt: skip
# Webhook operations: replay, release from quarantine, mark poison (recorded actions, no approval).
_WEBHOOK_OPS = {"payments.replay_webhook", "payments.release_webhook", "payments.poison_webhook"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "support_ops": frozenset(
        _CASE_TEAM
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | {"payments.propose_contact_change", "payments.propose_merchant_change"}
    ),
    "payment_ops": frozenset(
        _CASE_TEAM
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | _PROVIDER_READ
        | _WEBHOOK_OPS
        | {
            "payments.refresh_provider_state",
            "payments.propose_refund_correction",
            "payments.propose_payout_hold",
            "payments.propose_merchant_change",
        }
    ),
    "finance_ops": frozenset(
        _LEDGER_READ
        | _CASE_TEAM
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | _RECON_READ
        | {"ledger.propose_adjustment", "payments.propose_refund_correction", "payments.propose_payout_hold"}
        | {
            "reconciliation.import_statement",
            "reconciliation.run_reconciliation",
            "reconciliation.propose_recon_decision",
        }
    ),
    "finance_manager": frozenset(
        _LEDGER_READ
        | _CASE_READ_ALL
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | _RECON_READ
        | {
            "ledger.decide_adjustment",
            "reconciliation.decide_recon_decision",
            "approvals.export_actionrequest",
            "payments.decide_refund_correction",
            "payments.decide_payout_hold",
            "approvals.propose_policy_change",
        }
    ),
    "risk_ops": frozenset(
        _CASE_TEAM
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | {"payments.propose_restriction", "payments.propose_payout_hold", "approvals.propose_policy_change"}
        | {"payments.view_restriction_reason"}
    ),
    "compliance_ops": frozenset(
        _CASE_TEAM
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | {
            "payments.propose_restriction",
            "payments.decide_restriction",
            "payments.decide_merchant_change",
            "payments.decide_contact_change",
            "payments.reveal_customer_contact",
            "payments.reveal_merchant_contact",
            "payments.view_restriction_reason",
            "approvals.decide_policy_change",
        }
    ),
    # The payment timeline's technical side (states, references, correlation ids), never personal data:
    # no customer or beneficiary reads, and the screens hide contact details from a user without them.
    "sre": frozenset({"audit.view_auditevent"} | _CASE_TEAM | _PROVIDER_READ | _WEBHOOK_OPS | _PAYMENTS_TECHNICAL_READ),
    "auditor": frozenset(
        {"audit.view_auditevent", "audit.export_auditevent", "approvals.export_actionrequest"}
        | _LEDGER_READ
        | _CASE_READ_ALL
        | _APPROVALS_READ
        | _PAYMENTS_READ
        | _PROVIDER_READ
        | _RECON_READ
        | {"payments.view_restriction_reason"}
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
