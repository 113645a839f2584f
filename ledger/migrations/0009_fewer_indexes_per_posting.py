"""Fewer indexes for every posting to maintain: the journal's public id and idempotency key stay
unique (as constraints, without the pattern-ops twins `unique=True` also builds), and the entry's
single-column account index goes: the (account, id) index serves every lookup by account."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0008_refund_reserve_and_merchant_receivable"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgerentry",
            name="account",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="entries",
                to="ledger.ledgeraccount",
            ),
        ),
        migrations.AlterField(
            model_name="ledgerjournal",
            name="idempotency_key",
            field=models.CharField(max_length=160),
        ),
        migrations.AlterField(
            model_name="ledgerjournal",
            name="public_id",
            field=models.CharField(max_length=32),
        ),
        migrations.AddConstraint(
            model_name="ledgerjournal",
            constraint=models.UniqueConstraint(fields=("public_id",), name="ledger_journal_public_id_unique"),
        ),
        migrations.AddConstraint(
            model_name="ledgerjournal",
            constraint=models.UniqueConstraint(
                fields=("idempotency_key",), name="ledger_journal_idempotency_key_unique"
            ),
        ),
    ]
