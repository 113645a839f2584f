"""Indexes for finding raw provider events by the references their bodies name; built CONCURRENTLY
(the migration is not atomic) so a deploy does not block webhooks being stored."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("payments", "0005_event_references")]

    operations = [
        AddIndexConcurrently(
            model_name="providereventraw",
            index=models.Index(
                condition=~Q(provider_reference=""), fields=["provider_reference"], name="payments_event_provref_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="providereventraw",
            index=models.Index(
                condition=~Q(our_reference=""), fields=["our_reference"], name="payments_event_ourref_idx"
            ),
        ),
    ]
