"""The chain link as one database function: take the chain lock, read the head with a fresh
snapshot (a VOLATILE function's queries see commits made while it waited), take the next sequence
value and compute the chain hash. The writer calls it inside its INSERT, so the lock is held for
one statement and the commit."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION audit_chain_link(content_hash text, OUT link_seq bigint, OUT link_prev text, OUT link_hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);  -- 0x6175646974, "audit"
    SELECT a.hash INTO link_prev FROM audit_auditevent a ORDER BY a.seq DESC LIMIT 1;
    link_prev := coalesce(link_prev, repeat('0', 64));
    link_seq := nextval('audit_event_seq');
    link_hash := encode(sha256(convert_to(link_prev || content_hash, 'UTF8')), 'hex');
END;
$$;
"""

BACKWARD = "DROP FUNCTION IF EXISTS audit_chain_link(text);"


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_and_chain_sequence")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
