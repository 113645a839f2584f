"""The initial chart of accounts and posting rules, as data.

Seeded by migration 0003 and re-ensured after every migrate or test-database flush (create only
what is missing, never overwrite metadata someone edited).
"""

# role, code prefix, name, type, bucket, owner kind, allow negative, hot, description
CHART = [
    ("BANK_CASH", "1000", "Bank cash", "ASSET", "CURRENT", "PLATFORM", True, False, "Cash at settlement banks"),
    ("PSP_RECEIVABLE", "1100", "PSP receivable", "ASSET", "PENDING", "PLATFORM", True, True,
     "Owed to the platform by payment service providers for captured payments"),
    ("MERCHANT_PAYABLE", "2100", "Merchant payable", "LIABILITY", "AVAILABLE", "MERCHANT", False, False,
     "Owed to a merchant and available for payout"),
    ("MERCHANT_PENDING", "2110", "Merchant pending", "LIABILITY", "PENDING", "MERCHANT", False, False,
     "Owed to a merchant, not yet available"),
    ("MERCHANT_RESERVE", "2120", "Merchant reserve", "LIABILITY", "RESERVED", "MERCHANT", False, False,
     "Held back from a merchant by risk or dispute policy"),
    ("REFUND_LIABILITY", "2200", "Refund liability", "LIABILITY", "CURRENT", "PLATFORM", True, False,
     "Refunds owed to payers and not yet paid out"),
    ("SUSPENSE", "2900", "Suspense", "LIABILITY", "CURRENT", "PLATFORM", True, False,
     "Unexplained money awaiting classification"),
    ("PLATFORM_EQUITY", "3000", "Platform equity", "EQUITY", "CURRENT", "PLATFORM", True, False, "Owner funding"),
    ("PLATFORM_FEE_REVENUE", "4000", "Platform fee revenue", "REVENUE", "CURRENT", "PLATFORM", True, True,
     "Fees charged to merchants"),
    ("PLATFORM_OPS_RECOVERY", "4100", "Operational recovery", "REVENUE", "CURRENT", "PLATFORM", True, False,
     "Amounts recovered from merchants by manual debit"),
    ("PROVIDER_FEE_EXPENSE", "5000", "Provider fee expense", "EXPENSE", "CURRENT", "PLATFORM", True, False,
     "Fees charged to the platform by providers"),
    ("PLATFORM_OPS_LOSS", "5100", "Operational loss", "EXPENSE", "CURRENT", "PLATFORM", True, False,
     "Goodwill and error credits to merchants"),
    ("DISPUTE_LOSS", "5200", "Dispute loss", "EXPENSE", "CURRENT", "PLATFORM", True, False,
     "Chargebacks the platform absorbs"),
]  # fmt: skip

# code, description, is_adjustment, [(direction, role, component), ...]
RULES = [
    ("MERCHANT_CREDIT", "Credit a merchant at the platform's cost (goodwill, error correction)", True,
     [("DEBIT", "PLATFORM_OPS_LOSS", "AMOUNT"), ("CREDIT", "MERCHANT_PAYABLE", "AMOUNT")]),
    ("MERCHANT_DEBIT", "Recover an amount from a merchant's available balance", True,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "PLATFORM_OPS_RECOVERY", "AMOUNT")]),
    ("FEE_REFUND", "Give a merchant back a fee charged in error", True,
     [("DEBIT", "PLATFORM_FEE_REVENUE", "AMOUNT"), ("CREDIT", "MERCHANT_PAYABLE", "AMOUNT")]),
    ("RESERVE_RELEASE_CORRECTION", "Move an amount from a merchant's reserve to available", True,
     [("DEBIT", "MERCHANT_RESERVE", "AMOUNT"), ("CREDIT", "MERCHANT_PAYABLE", "AMOUNT")]),
    ("RESERVE_HOLD_CORRECTION", "Move an amount from a merchant's available balance to reserve", True,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "MERCHANT_RESERVE", "AMOUNT")]),
    ("CAPTURE_SUCCEEDED", "A captured payment: the PSP owes the gross, the merchant is owed the net", False,
     [("DEBIT", "PSP_RECEIVABLE", "GROSS"), ("CREDIT", "MERCHANT_PAYABLE", "NET"),
      ("CREDIT", "PLATFORM_FEE_REVENUE", "FEE")]),
    ("REFUND_SUCCEEDED", "A refund paid back to the payer through the PSP, borne by the merchant", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]),
    ("PAYOUT_SENT", "A payout sent to the merchant's bank account", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "BANK_CASH", "AMOUNT")]),
    ("PAYOUT_RETURNED", "A payout returned by the beneficiary bank", False,
     [("DEBIT", "BANK_CASH", "AMOUNT"), ("CREDIT", "MERCHANT_PAYABLE", "AMOUNT")]),
    ("CHARGEBACK_LOST", "A lost chargeback: the scheme takes the funds back, the merchant bears it", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]),
    ("SETTLEMENT_RECEIVED", "A PSP settlement received at the bank, net of the provider's fee", False,
     [("DEBIT", "BANK_CASH", "NET"), ("DEBIT", "PROVIDER_FEE_EXPENSE", "FEE"), ("CREDIT", "PSP_RECEIVABLE", "GROSS")]),
]  # fmt: skip


def ensure_chart(apps) -> None:
    """Create the specs and rules that do not exist yet. `apps` is a migration or the live registry."""
    Spec = apps.get_model("ledger", "ChartAccountSpec")
    Rule = apps.get_model("ledger", "PostingRule")
    Line = apps.get_model("ledger", "PostingRuleLine")
    for role, prefix, name, kind, bucket, owner, negative, hot, description in CHART:
        Spec.objects.get_or_create(
            role=role,
            defaults=dict(
                code_prefix=prefix,
                name=name,
                account_type=kind,
                balance_bucket=bucket,
                owner_kind=owner,
                allow_negative=negative,
                is_hot=hot,
                description=description,
            ),
        )
    for code, description, adjustment, lines in RULES:
        rule, created = Rule.objects.get_or_create(
            code=code, defaults=dict(description=description, is_adjustment=adjustment, version=1, active=True)
        )
        if created:
            for line_no, (direction, role, component) in enumerate(lines, start=1):
                Line.objects.create(
                    rule=rule, line_no=line_no, direction=direction, account_role=role, component=component
                )
