"""The match table's indexes follow what reads it.

- A match's run is not indexed: nothing looks matches up by their run (screens list them by source
  and time, and open a run's figures from the run row), and the index cost every run a B-tree insert
  per match, 0.5 s for the 950,000 matches of the 1M-line benchmark.
- The source's plain index becomes (source, id): the match history lists a source's matches newest
  first by id, walking it backwards; the unfiltered history walks the primary key. Sorting by time had
  read every match there is (3.8 s a page with 2.85M matches).

The references themselves stay checked (migration 0006).
"""

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
        migrations.AlterField(
            model_name="reconciliationmatch",
            name="source",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="matches",
                to="reconciliation.reconciliationsource",
            ),
        ),
        migrations.AddIndex(
            model_name="reconciliationmatch",
            index=models.Index(fields=["source", "id"], name="recon_match_source_recent"),
        ),
    ]
