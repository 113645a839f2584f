from django.db import migrations
from django.utils import timezone


def seed(apps, schema_editor):
    from reconciliation.rules import ensure_rules

    ensure_rules(apps, timezone.now())


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0002_database_integrity")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
