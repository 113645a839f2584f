"""The audit table is append-only at the database: UPDATE and DELETE raise, whoever sends them.

TRUNCATE is left to the table owner (test database flushes use it); the application's runtime role
in production should not own the table (see docs/adr/0001-audit-trail.md).
"""

from django.db import migrations

FORWARD = """
CREATE SEQUENCE audit_event_seq AS bigint START 1;

CREATE FUNCTION audit_event_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused on audit_auditevent', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_event_immutable
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS audit_event_immutable ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_refuse_change();
DROP SEQUENCE IF EXISTS audit_event_seq;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
