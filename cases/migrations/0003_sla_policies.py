"""The SLA policy as data: CRITICAL 1 hour, HIGH 4 hours, MEDIUM 1 business day, LOW 3 days; an
incident is tighter (CRITICAL 30 minutes, HIGH 2 hours). See cases/sla.py."""

from django.db import migrations


def seed(apps, schema_editor):
    from cases.sla import ensure_sla_policies

    ensure_sla_policies(apps)


class Migration(migrations.Migration):
    dependencies = [("cases", "0002_append_only_and_case_numbers")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
