"""The chain in lanes (ADR 0001): every event names the lane it links into. Events written before
this migration form lane 0, so the chain they formed stays valid as it is."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_unique_without_pattern_indexes")]

    operations = [
        migrations.AddField(model_name="auditevent", name="lane", field=models.SmallIntegerField(db_default=0)),
    ]
