"""What the database enforces for reconciliation whoever writes: a statement file's bytes and
identity never change and nothing imported is deleted; an item's content is fixed at creation
(only its match status and match move); matches, runs, breaks and decisions are never deleted."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION recon_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reconciliation records are kept: DELETE refused on %', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE FUNCTION recon_content_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a statement file''s bytes are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER recon_statementfilecontent_immutable BEFORE UPDATE OR DELETE ON reconciliation_statementfilecontent
    FOR EACH ROW EXECUTE FUNCTION recon_content_immutable();

CREATE FUNCTION recon_file_identity_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.public_id, NEW.source_id, NEW.filename, NEW.sha256, NEW.size_bytes, NEW.uploaded_by, NEW.uploaded_at)
       IS DISTINCT FROM
       (OLD.public_id, OLD.source_id, OLD.filename, OLD.sha256, OLD.size_bytes, OLD.uploaded_by, OLD.uploaded_at) THEN
        RAISE EXCEPTION 'a statement file''s identity is fixed: UPDATE refused on %', OLD.public_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER recon_statementfile_identity BEFORE UPDATE ON reconciliation_statementfile
    FOR EACH ROW EXECUTE FUNCTION recon_file_identity_fixed();

CREATE FUNCTION recon_item_content_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.side, NEW.source_id, NEW.statement_file_id, NEW.line_no, NEW.internal_type, NEW.internal_id, NEW.kind,
        NEW.amount_minor, NEW.currency, NEW.gross_minor, NEW.fee_minor, NEW.net_minor, NEW.value_date, NEW.reference,
        NEW.references, NEW.counterparty, NEW.description, NEW.batch_id, NEW.reversal, NEW.created_at)
       IS DISTINCT FROM
       (OLD.side, OLD.source_id, OLD.statement_file_id, OLD.line_no, OLD.internal_type, OLD.internal_id, OLD.kind,
        OLD.amount_minor, OLD.currency, OLD.gross_minor, OLD.fee_minor, OLD.net_minor, OLD.value_date, OLD.reference,
        OLD.references, OLD.counterparty, OLD.description, OLD.batch_id, OLD.reversal, OLD.created_at) THEN
        RAISE EXCEPTION 'a reconciliation item''s content is fixed: UPDATE refused on item %', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER recon_item_content BEFORE UPDATE ON reconciliation_reconciliationitem
    FOR EACH ROW EXECUTE FUNCTION recon_item_content_fixed();
"""

KEPT = (
    "statementfile", "reconciliationitem", "reconciliationmatch", "reconciliationrun", "reconciliationbreak",
    "reconciliationmanualdecision",
)  # fmt: skip
FORWARD += "".join(
    f"CREATE TRIGGER recon_{name}_kept BEFORE DELETE ON reconciliation_{name} "
    f"FOR EACH ROW EXECUTE FUNCTION recon_refuse_delete();\n"
    for name in KEPT
)

BACKWARD = (
    "".join(f"DROP TRIGGER IF EXISTS recon_{name}_kept ON reconciliation_{name};\n" for name in KEPT)
    + r"""
DROP TRIGGER IF EXISTS recon_item_content ON reconciliation_reconciliationitem;
DROP FUNCTION IF EXISTS recon_item_content_fixed();
DROP TRIGGER IF EXISTS recon_statementfile_identity ON reconciliation_statementfile;
DROP FUNCTION IF EXISTS recon_file_identity_fixed();
DROP TRIGGER IF EXISTS recon_statementfilecontent_immutable ON reconciliation_statementfilecontent;
DROP FUNCTION IF EXISTS recon_content_immutable();
DROP FUNCTION IF EXISTS recon_refuse_delete();
"""
)


class Migration(migrations.Migration):
    dependencies = [("reconciliation", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
