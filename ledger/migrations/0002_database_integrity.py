"""Integrity the database enforces whoever writes: immutable journals and entries, entry currency
equal to its account's, and at commit every journal balanced per currency with two or more entries."""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are immutable: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Correct a posted journal with a reversal journal.';
END;
$$;

CREATE TRIGGER ledger_journal_immutable BEFORE UPDATE OR DELETE ON ledger_ledgerjournal
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entry_immutable BEFORE UPDATE OR DELETE ON ledger_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_entry_currency_matches() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account_currency text;
BEGIN
    SELECT currency INTO account_currency FROM ledger_ledgeraccount WHERE id = NEW.account_id;
    IF account_currency IS DISTINCT FROM NEW.currency THEN
        RAISE EXCEPTION 'ledger entry in % refused: account % is in %', NEW.currency, NEW.account_id, account_currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_entry_currency BEFORE INSERT ON ledger_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_currency_matches();

CREATE FUNCTION ledger_journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    jid bigint;
    entry_count integer;
    unbalanced record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_ledgerjournal' THEN
        jid := NEW.id;
    ELSE
        jid := NEW.journal_id;
    END IF;
    SELECT count(*) INTO entry_count FROM ledger_ledgerentry WHERE journal_id = jid;
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger journal % has % entries; a journal needs at least two', jid, entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT currency,
           sum(amount_minor) FILTER (WHERE direction = 'DEBIT') AS debits,
           sum(amount_minor) FILTER (WHERE direction = 'CREDIT') AS credits
      INTO unbalanced
      FROM ledger_ledgerentry
     WHERE journal_id = jid
     GROUP BY currency
    HAVING coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0)
        <> coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger journal % is unbalanced in %: debits % credits %',
            jid, unbalanced.currency, coalesce(unbalanced.debits, 0), coalesce(unbalanced.credits, 0)
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- Checked at commit, when all of a journal's entries are in.
CREATE CONSTRAINT TRIGGER ledger_journal_balanced AFTER INSERT ON ledger_ledgerjournal
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_journal_check_balanced();
-- Also for entries added to an existing journal by a later transaction.
CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_ledgerentry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_journal_check_balanced();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_ledgerentry;
DROP TRIGGER IF EXISTS ledger_journal_balanced ON ledger_ledgerjournal;
DROP FUNCTION IF EXISTS ledger_journal_check_balanced();
DROP TRIGGER IF EXISTS ledger_entry_currency ON ledger_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entry_currency_matches();
DROP TRIGGER IF EXISTS ledger_entry_immutable ON ledger_ledgerentry;
DROP TRIGGER IF EXISTS ledger_journal_immutable ON ledger_ledgerjournal;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
