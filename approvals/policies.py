"""Default approval policies, seeded once (a policy changed later is never overwritten here)."""

from __future__ import annotations

from django.utils import timezone

# action type -> policy fields. Amounts in minor units per currency.
DEFAULT_POLICIES = {
    "CREATE_LEDGER_ADJUSTMENT": {
        "mode": "ALWAYS",
        "approver_roles": ["finance_manager"],
        "case_required": True,
        "evidence_required": False,
        "allowed_reason_codes": ["FEE_CORRECTION", "SETTLEMENT_CORRECTION", "GOODWILL", "CHARGEBACK_FEE_CORRECTION",
                                 "RECONCILIATION_CORRECTION", "ROUNDING_CORRECTION", "OPERATIONAL_LOSS"],
        # A finance ops maker may propose up to 50,000,000.00 IDR or 50,000.00 USD.
        "maker_limits_minor": {"finance_ops": {"IDR": 5_000_000_000, "USD": 5_000_000}},
        "checker_limits_minor": {"finance_manager": {"IDR": 50_000_000_000, "USD": 50_000_000}},
        "risk_level": "HIGH",
    },
    "REVERSE_LEDGER_JOURNAL": {
        "mode": "ALWAYS",
        "approver_roles": ["finance_manager"],
        "case_required": True,
        "evidence_required": False,
        "allowed_reason_codes": ["DUPLICATE", "POSTED_IN_ERROR", "WRONG_AMOUNT", "WRONG_ACCOUNT"],
        "maker_limits_minor": {},
        "checker_limits_minor": {},
        "risk_level": "HIGH",
    },
}  # fmt: skip


def ensure_policies(apps) -> None:
    Policy = apps.get_model("approvals", "ApprovalPolicy")
    for action_type, fields in DEFAULT_POLICIES.items():
        Policy.objects.get_or_create(action_type=action_type, defaults={**fields, "updated_at": timezone.now()})
