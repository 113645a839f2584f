"""The default approval policies of the registered action types (ActionSpec.default_policy), e.g.
ledger adjustments and journal reversals always need a finance manager and a case."""

from django.db import migrations


def seed(apps, schema_editor):
    from approvals.policies import ensure_policies

    ensure_policies(apps)


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
