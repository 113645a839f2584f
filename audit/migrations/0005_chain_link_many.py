"""Linking many events in one statement (set-based commands such as the end-of-day rejection):
the chain lock is taken once, the head read once, and each event linked to the one before it in
the order given."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION audit_chain_link_many(content_hashes text[])
RETURNS TABLE (ord bigint, link_seq bigint, link_prev text, link_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head text;
    i bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);  -- the same chain lock as audit_chain_link
    SELECT a.hash INTO head FROM audit_auditevent a ORDER BY a.seq DESC LIMIT 1;
    head := coalesce(head, repeat('0', 64));
    FOR i IN 1 .. coalesce(array_length(content_hashes, 1), 0) LOOP
        ord := i;
        link_prev := head;
        link_seq := nextval('audit_event_seq');
        link_hash := encode(sha256(convert_to(head || content_hashes[i], 'UTF8')), 'hex');
        head := link_hash;
        RETURN NEXT;
    END LOOP;
END;
$$;
"""

BACKWARD = "DROP FUNCTION IF EXISTS audit_chain_link_many(text[]);"


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_case_ref_index")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
