"""Where an item stands moves out of the item: ReconciliationOpenItem (not explained yet) and
ReconciliationMatchItem (the matches an item belongs or belonged to). The item becomes fixed at
creation, and loses the indexes only its match fields needed; matches and breaks lose the foreign-key
indexes their composite indexes cover, and index their rare references (decision, closing match) only
where set. Existing rows are carried over: a
matched item gets its membership, an unmatched one its open row."""

import django.db.models.deletion
from django.db import migrations, models

CARRY_OVER = """
INSERT INTO reconciliation_reconciliationmatchitem (match_id, item_id, external, active)
SELECT match_id, id, side = 'EXTERNAL', true FROM reconciliation_reconciliationitem WHERE match_id IS NOT NULL;
INSERT INTO reconciliation_reconciliationopenitem (source_id, item_id)
SELECT source_id, id FROM reconciliation_reconciliationitem WHERE match_id IS NULL;
"""

TRIGGERS = r"""
DROP TRIGGER IF EXISTS recon_item_content ON reconciliation_reconciliationitem;
DROP FUNCTION IF EXISTS recon_item_content_fixed();
CREATE FUNCTION recon_item_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a reconciliation item is fixed at creation: UPDATE refused on item %', OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER recon_item_fixed BEFORE UPDATE ON reconciliation_reconciliationitem
    FOR EACH ROW EXECUTE FUNCTION recon_item_fixed();

-- A membership only ever goes from active to undone; nothing else of it changes, and it is kept.
CREATE FUNCTION recon_membership_undo_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.match_id, NEW.item_id, NEW.external) IS DISTINCT FROM (OLD.match_id, OLD.item_id, OLD.external)
       OR NOT (OLD.active AND NOT NEW.active) THEN
        RAISE EXCEPTION 'a match membership can only be undone: UPDATE refused on item % of match %',
            OLD.item_id, OLD.match_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER recon_membership_undo_only BEFORE UPDATE ON reconciliation_reconciliationmatchitem
    FOR EACH ROW EXECUTE FUNCTION recon_membership_undo_only();
CREATE TRIGGER recon_reconciliationmatchitem_kept BEFORE DELETE ON reconciliation_reconciliationmatchitem
    FOR EACH ROW EXECUTE FUNCTION recon_refuse_delete();

-- An open row is added and removed, never changed.
CREATE FUNCTION recon_open_item_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an open item is added or removed, never changed: UPDATE refused on item %', OLD.item_id
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER recon_open_item_fixed BEFORE UPDATE ON reconciliation_reconciliationopenitem
    FOR EACH ROW EXECUTE FUNCTION recon_open_item_fixed();
"""

TRIGGERS_BACKWARD = r"""
DROP TRIGGER IF EXISTS recon_open_item_fixed ON reconciliation_reconciliationopenitem;
DROP FUNCTION IF EXISTS recon_open_item_fixed();
DROP TRIGGER IF EXISTS recon_reconciliationmatchitem_kept ON reconciliation_reconciliationmatchitem;
DROP TRIGGER IF EXISTS recon_membership_undo_only ON reconciliation_reconciliationmatchitem;
DROP FUNCTION IF EXISTS recon_membership_undo_only();
DROP TRIGGER IF EXISTS recon_item_fixed ON reconciliation_reconciliationitem;
DROP FUNCTION IF EXISTS recon_item_fixed();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0004_run_status_state_machine"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReconciliationMatchItem",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "match_id", "item_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "match",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="memberships",
                        to="reconciliation.reconciliationmatch",
                    ),
                ),
                (
                    "item",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="memberships",
                        to="reconciliation.reconciliationitem",
                    ),
                ),
                ("external", models.BooleanField()),
                ("active", models.BooleanField(default=True)),
            ],
            options={"default_permissions": ()},
        ),
        migrations.AddConstraint(
            model_name="reconciliationmatchitem",
            constraint=models.UniqueConstraint(
                condition=models.Q(("active", True)), fields=("item",), name="recon_item_one_active_match"
            ),
        ),
        migrations.CreateModel(
            name="ReconciliationOpenItem",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "source_id", "item_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "source",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="reconciliation.reconciliationsource",
                    ),
                ),
                (
                    "item",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="reconciliation.reconciliationitem",
                    ),
                ),
            ],
            options={"default_permissions": ()},
        ),
        migrations.RunSQL(CARRY_OVER, migrations.RunSQL.noop),
        migrations.RunSQL(TRIGGERS, TRIGGERS_BACKWARD),
        migrations.RemoveConstraint(model_name="reconciliationitem", name="recon_item_one_per_file_line"),
        migrations.RemoveConstraint(model_name="reconciliationitem", name="recon_item_match_consistent"),
        migrations.RemoveIndex(model_name="reconciliationitem", name="recon_item_source_status"),
        migrations.RemoveIndex(model_name="reconciliationitem", name="recon_item_match"),
        migrations.RemoveField(model_name="reconciliationitem", name="match"),
        migrations.RemoveField(model_name="reconciliationitem", name="match_status"),
        migrations.AlterField(
            model_name="reconciliationitem",
            name="source",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="items",
                to="reconciliation.reconciliationsource",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationitem",
            name="statement_file",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="items",
                to="reconciliation.statementfile",
            ),
        ),
        migrations.AddConstraint(
            model_name="reconciliationitem",
            constraint=models.UniqueConstraint(
                fields=("statement_file", "line_no"), name="recon_item_one_per_file_line"
            ),
        ),
        migrations.AddIndex(
            model_name="reconciliationmatch",
            index=models.Index(
                condition=models.Q(
                    ("result__in", ["AMOUNT_MISMATCH", "FEE_MISMATCH", "DUPLICATE"]), ("state", "ACTIVE")
                ),
                fields=["source", "result"],
                name="recon_match_open_differences",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationbreak",
            name="closed_by_match",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="closed_breaks",
                to="reconciliation.reconciliationmatch",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationbreak",
            name="source",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="breaks",
                to="reconciliation.reconciliationsource",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationmatch",
            name="decision",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="matches",
                to="reconciliation.reconciliationmanualdecision",
            ),
        ),
        migrations.AddIndex(
            model_name="reconciliationbreak",
            index=models.Index(
                condition=models.Q(("closed_by_match__isnull", False)),
                fields=["closed_by_match"],
                name="recon_break_closed_by_match",
            ),
        ),
        migrations.AddIndex(
            model_name="reconciliationmatch",
            index=models.Index(
                condition=models.Q(("decision__isnull", False)), fields=["decision"], name="recon_match_decision"
            ),
        ),
        migrations.AlterModelOptions(
            name="reconciliationbreak",
            options={
                "default_permissions": ("view",),
                "permissions": [
                    ("propose_recon_decision", "Can propose a reconciliation decision"),
                    ("decide_recon_decision", "Can decide a reconciliation decision"),
                    ("export_reconciliationbreak", "Can export the reconciliation break queue"),
                ],
            },
        ),
    ]
