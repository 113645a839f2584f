"""A match's run is not indexed: nothing looks matches up by their run (screens list them by source
and time, and open a run's figures from the run row), and the index cost every run a B-tree insert per
match, 0.5 s for the 950,000 matches of the 1M-line benchmark. The reference itself stays checked
(migration 0006)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0008_new_items_by_watermark")]

    operations = [
        migrations.AlterField(
            model_name="reconciliationmatch",
            name="run",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="matches",
                to="reconciliation.reconciliationrun",
            ),
        ),
    ]
