"""What the database enforces for cases whoever writes: notes, evidence, findings, links and
occurrences are append-only, and case numbers come from a sequence (gap-tolerant: a rolled-back
case leaves a gap, never a duplicate)."""

from django.db import migrations

APPEND_ONLY = (
    "cases_casenote",
    "cases_caseevidence",
    "cases_casefinding",
    "cases_caselink",
    "cases_exceptionoccurrence",
)

FORWARD = (
    r"""
CREATE FUNCTION cases_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Add a new note, finding or evidence that corrects the earlier one.';
END;
$$;
"""
    + "".join(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION cases_refuse_change();\n"
        for table in APPEND_ONLY
    )
    + "CREATE SEQUENCE cases_case_number_seq;\n"
)

BACKWARD = (
    "DROP SEQUENCE IF EXISTS cases_case_number_seq;\n"
    + "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in APPEND_ONLY)
    + "DROP FUNCTION IF EXISTS cases_refuse_change();"
)


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
