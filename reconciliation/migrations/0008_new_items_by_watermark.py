"""New items are found by a watermark instead of an open-item row each.

Before, every imported line (and every expected internal movement) got an open-item row in the
same transaction, and the run that matched it deleted that row again: for a million-line statement,
1.25 s of inserts at import and 4.5 s of deletes in the run. Now each source has a watermark, the
greatest item id its runs have considered; the items above it are new, and the run finds them by the
index (source, id). Only what a run leaves unexplained gets an open-item row (a few percent).

A watermark is only sound if no item can be committed below it after a run has read past it. Item
writers therefore hold the source's matching lock in shared mode and a run holds it exclusively: a
run waits for the imports in progress, and an import waits for the run. A statement trigger refuses
items written without the lock, whoever writes them. An open-item row is never above the watermark
(it is an item a run has considered), and the watermark only moves forward.

A decision may match a new item before any run has considered it (an operator choosing a movement
recorded since the last run). Such an item is not open; the next run leaves it out, finding it
through the source's matches made by decisions since the watermark's decisions_through (index
recon_match_by_decision: few rows, people make them).

Existing data: every existing item is either an open item or matched, so each source's watermark
starts at its greatest item id.
"""

import django.db.models.deletion
from django.db import migrations, models

# reconciliation.services.common.LOCK_SOURCE_RUN: the two-integer advisory lock (classid, objid).
LOCK_SOURCE_RUN = 0x7263726E

FORWARD = f"""
INSERT INTO reconciliation_reconciliationwatermark (source_id, considered_through, decisions_through, run_id)
SELECT i.source_id, max(i.id),
       COALESCE((SELECT max(m.id) FROM reconciliation_reconciliationmatch m WHERE m.source_id = i.source_id), 0), NULL
  FROM reconciliation_reconciliationitem i GROUP BY i.source_id;

CREATE FUNCTION recon_items_written_under_lock() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unlocked bigint;
BEGIN
    SELECT n.source_id INTO unlocked
      FROM (SELECT DISTINCT source_id FROM recon_new_items) n
     WHERE NOT EXISTS (
           SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
              AND l.classid = {LOCK_SOURCE_RUN}::oid AND l.objid = n.source_id::oid AND l.objsubid = 2)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'items of source % written without the source''s matching lock: a run could read past them',
            unlocked USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER recon_reconciliationitem_under_lock AFTER INSERT ON reconciliation_reconciliationitem
    REFERENCING NEW TABLE AS recon_new_items FOR EACH STATEMENT EXECUTE FUNCTION recon_items_written_under_lock();

CREATE FUNCTION recon_open_items_considered() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    beyond bigint;
BEGIN
    SELECT n.item_id INTO beyond
      FROM recon_new_open n
      LEFT JOIN reconciliation_reconciliationwatermark w ON w.source_id = n.source_id
     WHERE n.item_id > COALESCE(w.considered_through, 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'item % is above its source''s watermark: no run has considered it, it is new, not open', beyond
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER recon_reconciliationopenitem_considered AFTER INSERT ON reconciliation_reconciliationopenitem
    REFERENCING NEW TABLE AS recon_new_open FOR EACH STATEMENT EXECUTE FUNCTION recon_open_items_considered();

CREATE FUNCTION recon_watermark_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source_id <> OLD.source_id OR NEW.considered_through < OLD.considered_through
       OR NEW.decisions_through < OLD.decisions_through THEN
        RAISE EXCEPTION 'a watermark only moves forward: source % from (%, %) to (%, %) refused', OLD.source_id,
            OLD.considered_through, OLD.decisions_through, NEW.considered_through, NEW.decisions_through
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER recon_reconciliationwatermark_forward BEFORE UPDATE ON reconciliation_reconciliationwatermark
    FOR EACH ROW EXECUTE FUNCTION recon_watermark_forward();
CREATE TRIGGER recon_reconciliationwatermark_kept BEFORE DELETE ON reconciliation_reconciliationwatermark
    FOR EACH ROW EXECUTE FUNCTION recon_refuse_delete();
"""  # noqa: S608 (constants only)

BACKWARD = """
DROP TRIGGER recon_reconciliationwatermark_kept ON reconciliation_reconciliationwatermark;
DROP TRIGGER recon_reconciliationwatermark_forward ON reconciliation_reconciliationwatermark;
DROP FUNCTION recon_watermark_forward();
DROP TRIGGER recon_reconciliationopenitem_considered ON reconciliation_reconciliationopenitem;
DROP FUNCTION recon_open_items_considered();
DROP TRIGGER recon_reconciliationitem_under_lock ON reconciliation_reconciliationitem;
DROP FUNCTION recon_items_written_under_lock();
-- Going back, the new items become open items again, as the earlier code kept them.
INSERT INTO reconciliation_reconciliationopenitem (source_id, item_id)
SELECT i.source_id, i.id FROM reconciliation_reconciliationitem i
  LEFT JOIN reconciliation_reconciliationwatermark w ON w.source_id = i.source_id
 WHERE i.id > COALESCE(w.considered_through, 0);
"""


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0007_file_content_lz4")]

    operations = [
        migrations.CreateModel(
            name="ReconciliationWatermark",
            fields=[
                (
                    "source",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="watermark",
                        serialize=False,
                        to="reconciliation.reconciliationsource",
                    ),
                ),
                ("considered_through", models.BigIntegerField()),
                ("decisions_through", models.BigIntegerField(default=0)),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="reconciliation.reconciliationrun",
                    ),
                ),
            ],
            options={"default_permissions": ()},
        ),
        migrations.AddIndex(
            model_name="reconciliationitem",
            index=models.Index(fields=["source", "id"], name="recon_item_source_new"),
        ),
        migrations.AddIndex(
            model_name="reconciliationmatch",
            index=models.Index(
                condition=models.Q(("decision__isnull", False)),
                fields=["source", "id"],
                name="recon_match_by_decision",
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
