"""Linking events into chain lanes instead of one chain.

One chain meant one lock: every audited transaction queued on it from its audit insert to the end
of its commit, disk flush included, so the whole back-office committed audited work one transaction
at a time. Now a writer takes the first free lane of 16 (starting from one derived from its backend,
so a connection tends to keep its lane), without waiting; only when all are taken does it wait for
its own. A transaction keeps the lane it took (a transaction-local setting remembers it): all its
events link into one lane, and it never holds one lane while waiting for another, so lanes cannot
deadlock each other. Within a lane the lock is held to the commit exactly as before, so each lane
is one strict chain in ascending seq.

Going back re-creates the single-chain functions; events written in lanes other than 0 would then
read as a broken chain to the old verifier.
"""

from django.db import migrations

# The lanes' locks are two-key advisory locks in the space 1635083369 (0x61756469, "audi").
FORWARD = r"""
CREATE FUNCTION audit_chain_lane() RETURNS smallint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held text := current_setting('audit.chain_lane', true);
    first int := pg_backend_pid() % 16;
    lane int;
BEGIN
    IF coalesce(held, '') <> '' THEN
        -- This transaction already links into a lane: keep it (the lock is ours, this returns at once).
        PERFORM pg_advisory_xact_lock(1635083369, held::int);
        RETURN held::smallint;
    END IF;
    FOR i IN 0 .. 15 LOOP
        lane := (first + i) % 16;
        IF pg_try_advisory_xact_lock(1635083369, lane) THEN
            PERFORM set_config('audit.chain_lane', lane::text, true);
            RETURN lane;
        END IF;
    END LOOP;
    PERFORM pg_advisory_xact_lock(1635083369, first);  -- every lane taken: wait for our own
    PERFORM set_config('audit.chain_lane', first::text, true);
    RETURN first;
END;
$$;

DROP FUNCTION audit_chain_link(text);
CREATE FUNCTION audit_chain_link(content_hash text, OUT link_seq bigint, OUT link_prev text, OUT link_hash text,
                                 OUT link_lane smallint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    link_lane := audit_chain_lane();
    -- A statement of its own after the lock: its fresh snapshot sees the lane's last commit.
    SELECT a.hash INTO link_prev FROM audit_auditevent a WHERE a.lane = link_lane ORDER BY a.seq DESC LIMIT 1;
    link_prev := coalesce(link_prev, repeat('0', 64));
    link_seq := nextval('audit_event_seq');
    link_hash := encode(sha256(convert_to(link_prev || content_hash, 'UTF8')), 'hex');
END;
$$;

DROP FUNCTION audit_chain_link_many(text[]);
CREATE FUNCTION audit_chain_link_many(content_hashes text[])
RETURNS TABLE (ord bigint, link_seq bigint, link_prev text, link_hash text, link_lane smallint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head text;
    i bigint;
BEGIN
    link_lane := audit_chain_lane();
    SELECT a.hash INTO head FROM audit_auditevent a WHERE a.lane = link_lane ORDER BY a.seq DESC LIMIT 1;
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

BACKWARD = r"""
DROP FUNCTION audit_chain_link(text);
CREATE FUNCTION audit_chain_link(content_hash text, OUT link_seq bigint, OUT link_prev text, OUT link_hash text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);
    SELECT a.hash INTO link_prev FROM audit_auditevent a ORDER BY a.seq DESC LIMIT 1;
    link_prev := coalesce(link_prev, repeat('0', 64));
    link_seq := nextval('audit_event_seq');
    link_hash := encode(sha256(convert_to(link_prev || content_hash, 'UTF8')), 'hex');
END;
$$;
DROP FUNCTION audit_chain_link_many(text[]);
CREATE FUNCTION audit_chain_link_many(content_hashes text[])
RETURNS TABLE (ord bigint, link_seq bigint, link_prev text, link_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head text;
    i bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(418581342580);
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
DROP FUNCTION audit_chain_lane();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0008_lane_head_index")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
