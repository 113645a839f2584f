"""The chart of accounts and posting rules, as data.

Seeded by migration 0003, extended by later data migrations (0008: refund reservations and the
merchant receivable) and re-ensured after every migrate or test-database flush: create only what
is missing, never overwrite metadata someone edited. A rule whose meaning changed carries a higher
version in RULE_VERSIONS; a stored rule below it gets the new lines (journals already posted keep
the lines they were posted with).
"""

# role, code prefix, name, type, bucket, owner kind, allow negative, hot, description
CHART = [
    ("BANK_CASH", "1000", "Bank cash", "ASSET", "CURRENT", "PLATFORM", True, False, "Cash at settlement banks"),
    ("PSP_RECEIVABLE", "1100", "PSP receivable", "ASSET", "PENDING", "PLATFORM", True, True,
     "Owed to the platform by payment service providers for captured payments"),
    ("MERCHANT_RECEIVABLE", "1200", "Merchant receivable", "ASSET", "CURRENT", "MERCHANT", False, False,
     "Owed to the platform by a merchant: lost chargebacks its payable balance did not cover"),
    ("MERCHANT_PAYABLE", "2100", "Merchant payable", "LIABILITY", "AVAILABLE", "MERCHANT", False, False,
     "Owed to a merchant and available for payout"),
    ("MERCHANT_PENDING", "2110", "Merchant pending", "LIABILITY", "PENDING", "MERCHANT", False, False,
     "Owed to a merchant, not yet available"),
    ("MERCHANT_RESERVE", "2120", "Merchant reserve", "LIABILITY", "RESERVED", "MERCHANT", False, False,
     "Held back from a merchant by risk or dispute policy"),
    ("MERCHANT_REFUND_RESERVE", "2130", "Merchant refunds in flight", "LIABILITY", "RESERVED", "MERCHANT", False,
     False, "A merchant's funds set aside for refunds requested and not yet answered by the provider"),
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
    ("REFUND_RESERVED", "A refund requested: the merchant's funds set aside until the provider answers", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "MERCHANT_REFUND_RESERVE", "AMOUNT")]),
    ("REFUND_SUCCEEDED", "A refund paid back to the payer through the PSP, from the merchant's funds set aside "
     "when it was requested", False,
     [("DEBIT", "MERCHANT_REFUND_RESERVE", "AMOUNT"), ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]),
    ("PAYOUT_SENT", "A payout sent to the merchant's bank account", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "BANK_CASH", "AMOUNT")]),
    ("PAYOUT_RETURNED", "A payout returned by the beneficiary bank", False,
     [("DEBIT", "BANK_CASH", "AMOUNT"), ("CREDIT", "MERCHANT_PAYABLE", "AMOUNT")]),
    ("CHARGEBACK_LOST", "A lost chargeback: the scheme takes the funds back, the merchant bears it", False,
     [("DEBIT", "MERCHANT_PAYABLE", "AMOUNT"), ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]),
    ("CHARGEBACK_LOST_SHORTFALL", "The part of a lost chargeback the merchant's payable balance did not cover: "
     "owed by the merchant", False,
     [("DEBIT", "MERCHANT_RECEIVABLE", "AMOUNT"), ("CREDIT", "PSP_RECEIVABLE", "AMOUNT")]),
    ("SETTLEMENT_RECEIVED", "A PSP settlement received at the bank, net of the provider's fee", False,
     [("DEBIT", "BANK_CASH", "NET"), ("DEBIT", "PROVIDER_FEE_EXPENSE", "FEE"), ("CREDIT", "PSP_RECEIVABLE", "GROSS")]),
]  # fmt: skip

# Rules whose lines changed since they were first seeded (a rule not named here is version 1).
# 2: REFUND_SUCCEEDED takes the refund from the reserve REFUND_RESERVED set aside, no longer from
#    the payable balance, which may have been paid out by the time the provider confirms.
RULE_VERSIONS = {"REFUND_SUCCEEDED": 2}


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
        version = RULE_VERSIONS.get(code, 1)
        rule, created = Rule.objects.get_or_create(
            code=code, defaults=dict(description=description, is_adjustment=adjustment, version=version, active=True)
        )
        if not created and rule.version >= version:
            continue
        if not created:
            # An older version of a rule that changed meaning: its lines are replaced as a whole.
            Line.objects.filter(rule=rule).delete()
            rule.description, rule.version = description, version
            rule.save(update_fields=["description", "version"])
        for line_no, (direction, role, component) in enumerate(lines, start=1):
            Line.objects.create(rule=rule, line_no=line_no, direction=direction, account_role=role, component=component)
