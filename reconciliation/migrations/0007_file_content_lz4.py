"""A statement file's bytes are compressed with lz4 where the server has it, instead of PostgreSQL's
default pglz: storing a 69 MB statement took 4.0 s with pglz and 1.25 s with lz4 on this machine, in
the path of every upload. Files stored before keep their compression (each value records its own);
a server built without lz4 keeps pglz."""

from django.db import migrations

FORWARD = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        ALTER TABLE reconciliation_statementfilecontent ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END $$;
"""
BACKWARD = "ALTER TABLE reconciliation_statementfilecontent ALTER COLUMN body SET COMPRESSION pglz;"


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0006_references_checked_per_statement")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
