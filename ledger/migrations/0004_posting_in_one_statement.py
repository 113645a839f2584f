"""Posting in one statement: the accounts check becomes a database function the posting statement
calls before it writes a row, and the balanced-at-commit check becomes one query per journal.

- `ledger_accounts_postable(ids, currencies)` raises, with its own SQLSTATE, for an unknown
  account (LG001), a line whose currency differs from its account's (LG002) and an account that is
  not open (LG003). It reads the accounts in the posting statement's own snapshot, so the check and
  the write see the same state.
- The entry currency check runs once per INSERT statement over its new rows (a transition
  table) instead of once per row, so a bulk posting pays for it once.
- `ledger_journal_check_balanced` counts and sums a journal's entries in one query. An entry whose
  journal was inserted by the same top-level transaction is left to that journal's own deferred
  check, which runs at the same commit and sees every entry; an entry added to a journal of an
  earlier transaction (only possible by raw SQL) is still checked.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION ledger_accounts_postable(account_ids bigint[], currencies text[]) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    line record;
BEGIN
    FOR line IN
        SELECT u.account_id, u.currency AS line_currency, a.code, a.currency, a.status
          FROM unnest(account_ids, currencies) AS u(account_id, currency)
          LEFT JOIN ledger_ledgeraccount a ON a.id = u.account_id
         ORDER BY u.account_id
    LOOP
        IF line.code IS NULL THEN
            RAISE EXCEPTION 'no ledger account with id %', line.account_id USING ERRCODE = 'LG001';
        END IF;
        IF line.currency <> line.line_currency THEN
            RAISE EXCEPTION 'a % line cannot post to %, which is in %', line.line_currency, line.code, line.currency
                USING ERRCODE = 'LG002';
        END IF;
        IF line.status <> 'OPEN' THEN
            RAISE EXCEPTION '% is %: nothing can be posted to it', line.code, lower(line.status)
                USING ERRCODE = 'LG003';
        END IF;
    END LOOP;
    RETURN true;
END;
$$;

DROP TRIGGER ledger_entry_currency ON ledger_ledgerentry;
DROP FUNCTION ledger_entry_currency_matches();
CREATE FUNCTION ledger_entries_currency_match() RETURNS trigger LANGUAGE plpgsql AS $$
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
CREATE TRIGGER ledger_entries_currency AFTER INSERT ON ledger_ledgerentry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_currency_match();

CREATE OR REPLACE FUNCTION ledger_journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    jid bigint;
    totals record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_ledgerjournal' THEN
        jid := NEW.id;
    ELSE
        jid := NEW.journal_id;
        -- The journal's own deferred check covers entries written in the transaction that wrote it.
        PERFORM 1 FROM ledger_ledgerjournal WHERE id = jid AND xmin = pg_current_xact_id()::xid;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT coalesce(sum(n), 0) AS entries, count(*) FILTER (WHERE debits <> credits) AS unbalanced
      INTO totals
      FROM (SELECT currency, count(*) AS n,
                   coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0) AS debits,
                   coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0) AS credits
              FROM ledger_ledgerentry WHERE journal_id = jid GROUP BY currency) AS per_currency;
    IF totals.entries < 2 THEN
        RAISE EXCEPTION 'ledger journal % has % entries; a journal needs at least two', jid, totals.entries
            USING ERRCODE = 'check_violation';
    END IF;
    IF totals.unbalanced > 0 THEN
        SELECT currency,
               coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0) AS debits,
               coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0) AS credits
          INTO totals
          FROM ledger_ledgerentry WHERE journal_id = jid
         GROUP BY currency
        HAVING coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0)
            <> coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0)
         ORDER BY currency LIMIT 1;
        RAISE EXCEPTION 'ledger journal % is unbalanced in %: debits % credits %',
            jid, totals.currency, totals.debits, totals.credits
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
"""

BACKWARD = r"""
DROP FUNCTION IF EXISTS ledger_accounts_postable(bigint[], text[]);
DROP TRIGGER IF EXISTS ledger_entries_currency ON ledger_ledgerentry;
DROP FUNCTION IF EXISTS ledger_entries_currency_match();
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
CREATE OR REPLACE FUNCTION ledger_journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_chart_of_accounts_and_posting_rules")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
