"""Refund reservations and the merchant receivable (docs/adr/0006-payments-core.md).

Two merchant-owned, non-negative roles: MERCHANT_REFUND_RESERVE (funds set aside when a refund is
requested) and MERCHANT_RECEIVABLE (what a merchant owes the platform after a lost chargeback its
payable balance did not cover). New rules REFUND_RESERVED and CHARGEBACK_LOST_SHORTFALL, and
REFUND_SUCCEEDED version 2 (Dr MERCHANT_REFUND_RESERVE instead of Dr MERCHANT_PAYABLE). The data
comes from ledger/chart.py, which the post-migrate hook re-ensures as well; journals already posted
keep the lines they were posted with.
"""

from django.db import migrations, models

ROLE_CHOICES = [
    ("MERCHANT_PAYABLE", "Merchant payable (available)"),
    ("MERCHANT_PENDING", "Merchant payable (pending)"),
    ("MERCHANT_RESERVE", "Merchant reserve"),
    ("MERCHANT_REFUND_RESERVE", "Merchant refunds in flight"),
    ("MERCHANT_RECEIVABLE", "Merchant receivable"),
    ("PLATFORM_FEE_REVENUE", "Platform fee revenue"),
    ("PLATFORM_OPS_LOSS", "Platform operational loss"),
    ("PLATFORM_OPS_RECOVERY", "Platform operational recovery"),
    ("PSP_RECEIVABLE", "PSP receivable"),
    ("BANK_CASH", "Bank cash"),
    ("PROVIDER_FEE_EXPENSE", "Provider fee expense"),
    ("REFUND_LIABILITY", "Refund liability"),
    ("DISPUTE_LOSS", "Dispute loss"),
    ("SUSPENSE", "Suspense"),
    ("PLATFORM_EQUITY", "Platform equity"),
]


def ensure(apps, schema_editor):
    from ledger.chart import ensure_chart

    ensure_chart(apps)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0007_adjustment_permissions")]

    operations = [
        migrations.AlterField(
            model_name="chartaccountspec",
            name="role",
            field=models.CharField(choices=ROLE_CHOICES, max_length=40, unique=True),
        ),
        migrations.AlterField(
            model_name="ledgeraccount",
            name="role",
            field=models.CharField(choices=ROLE_CHOICES, max_length=40),
        ),
        migrations.AlterField(
            model_name="postingruleline",
            name="account_role",
            field=models.CharField(choices=ROLE_CHOICES, max_length=40),
        ),
        migrations.RunPython(ensure, migrations.RunPython.noop),
    ]
