"""The references of the tables written a million rows at a time (items, matches, breaks) are
checked once per statement instead of per row by foreign keys.

A foreign key checks every inserted row with a query of its own (at commit, the constraints being
deferred): on this machine a million rows with two references took 1.4 s to insert and 5.8 s more
to check at commit. A file's million items all name one source and one file, a run's matches one
source and one run. An AFTER ... FOR EACH STATEMENT trigger with the statement's rows as a transition
table looks up each distinct value once: 0.3 s for the same million rows. An UPDATE that changes a
reference (a break closed by a match) is checked row by row, only when the value changes.

What a foreign key also guaranteed, that the referenced row stays, holds because of triggers: the
referenced tables refuse DELETE (sources too, from now on: sources are deactivated, never deleted)
and refuse a change of id. The error raised is PostgreSQL's foreign_key_violation, as before.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, referenced table), all in the reconciliation_ namespace.
CHECKED = (
    ("reconciliationitem", "source_id", "reconciliationsource"),
    ("reconciliationitem", "statement_file_id", "statementfile"),
    ("reconciliationmatch", "source_id", "reconciliationsource"),
    ("reconciliationmatch", "run_id", "reconciliationrun"),
    ("reconciliationmatch", "decision_id", "reconciliationmanualdecision"),
    ("reconciliationbreak", "item_id", "reconciliationitem"),
    ("reconciliationbreak", "source_id", "reconciliationsource"),
    ("reconciliationbreak", "closed_by_match_id", "reconciliationmatch"),
)
REFERENCED = sorted({referenced for _, _, referenced in CHECKED})
TABLES = sorted({table for table, _, _ in CHECKED})

FUNCTIONS = r"""
-- Arguments: column, referenced table, column, referenced table, ... of the trigger's table.
CREATE FUNCTION recon_references_check_statement() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k int := 0;
    missing text;
BEGIN
    WHILE k < TG_NARGS LOOP
        EXECUTE format(
            'SELECT n.v::text FROM (SELECT DISTINCT %1$I AS v FROM recon_new_rows WHERE %1$I IS NOT NULL) n
              WHERE NOT EXISTS (SELECT 1 FROM %2$I r WHERE r.id = n.v) LIMIT 1',
            TG_ARGV[k], TG_ARGV[k + 1]) INTO missing;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'insert or update on table "%" violates its reference: %=% is not present in table "%"',
                TG_TABLE_NAME, TG_ARGV[k], missing, TG_ARGV[k + 1] USING ERRCODE = 'foreign_key_violation';
        END IF;
        k := k + 2;
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION recon_references_check_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k int := 0;
    value text;
    present boolean;
BEGIN
    WHILE k < TG_NARGS LOOP
        value := to_jsonb(NEW) ->> TG_ARGV[k];
        IF value IS NOT NULL AND value IS DISTINCT FROM to_jsonb(OLD) ->> TG_ARGV[k] THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE id = $1::bigint)', TG_ARGV[k + 1])
                INTO present USING value;
            IF NOT present THEN
                RAISE EXCEPTION 'update on table "%" violates its reference: %=% is not present in table "%"',
                    TG_TABLE_NAME, TG_ARGV[k], value, TG_ARGV[k + 1] USING ERRCODE = 'foreign_key_violation';
            END IF;
        END IF;
        k := k + 2;
    END LOOP;
    RETURN NEW;
END $$;

CREATE FUNCTION recon_id_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reconciliation rows are referenced by id: changing the id of % on % refused', OLD.id, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER recon_reconciliationsource_kept BEFORE DELETE ON reconciliation_reconciliationsource
    FOR EACH ROW EXECUTE FUNCTION recon_refuse_delete();
"""


def _triggers() -> str:
    sql = []
    for table in TABLES:
        arguments = ", ".join(f"'{column}', 'reconciliation_{referenced}'" for t, column, referenced in CHECKED
                              if t == table)  # fmt: skip
        columns = ", ".join(column for t, column, _ in CHECKED if t == table)
        sql.append(
            f"CREATE TRIGGER recon_{table}_references_insert AFTER INSERT ON reconciliation_{table} "
            f"REFERENCING NEW TABLE AS recon_new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION recon_references_check_statement({arguments});\n"
            f"CREATE TRIGGER recon_{table}_references_update BEFORE UPDATE OF {columns} ON reconciliation_{table} "
            f"FOR EACH ROW EXECUTE FUNCTION recon_references_check_row({arguments});\n"
        )
    for referenced in REFERENCED:
        sql.append(
            f"CREATE TRIGGER recon_{referenced}_id_fixed BEFORE UPDATE OF id ON reconciliation_{referenced} "
            f"FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id) EXECUTE FUNCTION recon_id_fixed();\n"
        )
    return "".join(sql)


BACKWARD = (
    "".join(
        f"DROP TRIGGER IF EXISTS recon_{table}_references_insert ON reconciliation_{table};\n"
        f"DROP TRIGGER IF EXISTS recon_{table}_references_update ON reconciliation_{table};\n"
        for table in TABLES
    )
    + "".join(f"DROP TRIGGER IF EXISTS recon_{r}_id_fixed ON reconciliation_{r};\n" for r in REFERENCED)
    + """
DROP TRIGGER IF EXISTS recon_reconciliationsource_kept ON reconciliation_reconciliationsource;
DROP FUNCTION IF EXISTS recon_id_fixed();
DROP FUNCTION IF EXISTS recon_references_check_row();
DROP FUNCTION IF EXISTS recon_references_check_statement();
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0005_item_match_state_apart"),
    ]

    operations = [
        migrations.AlterField(
            model_name="reconciliationbreak",
            name="closed_by_match",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="closed_breaks",
                to="reconciliation.reconciliationmatch",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationbreak",
            name="item",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="breaks",
                to="reconciliation.reconciliationitem",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationbreak",
            name="source",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="breaks",
                to="reconciliation.reconciliationsource",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationitem",
            name="source",
            field=models.ForeignKey(
                db_constraint=False,
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
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="items",
                to="reconciliation.statementfile",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationmatch",
            name="decision",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="matches",
                to="reconciliation.reconciliationmanualdecision",
            ),
        ),
        migrations.AlterField(
            model_name="reconciliationmatch",
            name="run",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
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
                on_delete=django.db.models.deletion.PROTECT,
                related_name="matches",
                to="reconciliation.reconciliationsource",
            ),
        ),
        migrations.RunSQL(FUNCTIONS + _triggers(), BACKWARD),
    ]
