"""The index a writer reads its lane's head from, built without blocking writers of the audit trail
(which would block every command of the back-office while it builds)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("audit", "0007_chain_lanes")]

    operations = [
        AddIndexConcurrently(
            model_name="auditevent", index=models.Index(fields=["lane", "seq"], name="audit_lane_seq_idx")
        ),
    ]
