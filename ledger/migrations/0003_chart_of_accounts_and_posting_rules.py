"""Seed the chart of accounts (what an account of each role is) and the posting rules (ledger/chart.py)."""

from django.db import migrations


def seed(apps, schema_editor):
    from ledger.chart import ensure_chart

    ensure_chart(apps)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_database_integrity")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
