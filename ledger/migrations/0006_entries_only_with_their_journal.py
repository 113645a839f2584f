"""Entries are written only by the transaction that posts their journal; the balanced-at-commit
check then runs once per journal instead of once per entry.

- `ledger_ledgerjournal.posting_xact` records the top-level transaction that inserted the journal
  (filled by its default; not a Django field: nothing reads it but the trigger below).
- The statement-level entry trigger (one query per INSERT statement) refuses entries whose account
  currency differs (as before) and entries for a journal another transaction posted, so a posted
  journal can never gain an entry later.
- The per-entry deferred trigger is dropped: the journal's own deferred trigger checks, at commit,
  every entry its transaction wrote.
"""

from django.db import migrations

FORWARD = r"""
ALTER TABLE ledger_ledgerjournal
    ADD COLUMN posting_xact bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);

CREATE OR REPLACE FUNCTION ledger_entries_currency_match() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mismatch record;
    earlier bigint;
BEGIN
    SELECT n.currency, n.account_id, a.currency AS account_currency INTO mismatch
      FROM new_entries n LEFT JOIN ledger_ledgeraccount a ON a.id = n.account_id
     WHERE a.currency IS DISTINCT FROM n.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry in % refused: account % is in %',
            mismatch.currency, mismatch.account_id, mismatch.account_currency
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT j.id INTO earlier
      FROM (SELECT DISTINCT journal_id FROM new_entries) n JOIN ledger_ledgerjournal j ON j.id = n.journal_id
     WHERE j.posting_xact <> pg_current_xact_id()::text::bigint
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry refused: journal % was posted by an earlier transaction; '
                        'a posted journal never gains entries', earlier
            USING ERRCODE = 'check_violation', HINT = 'Post a new journal (or a reversal) instead.';
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER ledger_entry_balanced ON ledger_ledgerentry;
"""

BACKWARD = r"""
CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_ledgerentry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_journal_check_balanced();
CREATE OR REPLACE FUNCTION ledger_entries_currency_match() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mismatch record;
BEGIN
    SELECT n.currency, n.account_id, a.currency AS account_currency INTO mismatch
      FROM new_entries n LEFT JOIN ledger_ledgeraccount a ON a.id = n.account_id
     WHERE a.currency IS DISTINCT FROM n.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry in % refused: account % is in %',
            mismatch.currency, mismatch.account_id, mismatch.account_currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
ALTER TABLE ledger_ledgerjournal DROP COLUMN posting_xact;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0005_journal_batch_ref")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
