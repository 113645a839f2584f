"""What the database enforces for payments whoever writes: payment events and normalized provider
events are append-only; a raw provider event's content never changes and the row is never deleted
(only its processing status and notes move); a completed provider inquiry is evidence and frozen."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION payments_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER payments_paymentevent_append_only BEFORE UPDATE OR DELETE ON payments_paymentevent
    FOR EACH ROW EXECUTE FUNCTION payments_refuse_change();
CREATE TRIGGER payments_providereventnormalized_append_only BEFORE UPDATE OR DELETE ON payments_providereventnormalized
    FOR EACH ROW EXECUTE FUNCTION payments_refuse_change();

CREATE FUNCTION payments_raw_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'a raw provider event is kept for ever: DELETE refused on %', OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.public_id, NEW.provider_code, NEW.provider_event_id, NEW.received_at, NEW.headers, NEW.body,
        NEW.body_sha256, NEW.signature_verdict, NEW.duplicate_of_id)
       IS DISTINCT FROM
       (OLD.public_id, OLD.provider_code, OLD.provider_event_id, OLD.received_at, OLD.headers, OLD.body,
        OLD.body_sha256, OLD.signature_verdict, OLD.duplicate_of_id) THEN
        RAISE EXCEPTION 'a raw provider event''s content is immutable: UPDATE refused on %', OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payments_providereventraw_immutable BEFORE UPDATE OR DELETE ON payments_providereventraw
    FOR EACH ROW EXECUTE FUNCTION payments_raw_event_immutable();

CREATE FUNCTION payments_inquiry_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status = 'COMPLETED' THEN
        RAISE EXCEPTION 'a provider inquiry is evidence: % refused on %', TG_OP, OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payments_providerinquiry_frozen BEFORE UPDATE OR DELETE ON payments_providerinquiry
    FOR EACH ROW EXECUTE FUNCTION payments_inquiry_frozen();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS payments_providerinquiry_frozen ON payments_providerinquiry;
DROP FUNCTION IF EXISTS payments_inquiry_frozen();
DROP TRIGGER IF EXISTS payments_providereventraw_immutable ON payments_providereventraw;
DROP FUNCTION IF EXISTS payments_raw_event_immutable();
DROP TRIGGER IF EXISTS payments_providereventnormalized_append_only ON payments_providereventnormalized;
DROP TRIGGER IF EXISTS payments_paymentevent_append_only ON payments_paymentevent;
DROP FUNCTION IF EXISTS payments_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
