"""The posting statement applies its balance deltas through one database function.

The posting statement is planned once per connection (backoffice/prepared.py). Its generic plan
cannot know how many lines a posting has and assumes a hundred, so against an accounts or balance
table of a few thousand rows it chose to hash the whole table rather than look up the two or three
accounts a posting touches: every posting then read every account and every balance row (measured:
some 1,600 rows read per posting with 1,200 accounts, after ANALYZE too). The lock and update of the
balance projections, and the is-it-hot lookup, now run in this function with sequential scans off,
so they always walk the primary keys whatever the statistics say.

The function locks the projection rows of the given accounts in ascending account id (one order for
every poster, as before), adds the deltas, and refuses (LG004) when a non-hot account among them has
no projection row. Hot accounts have none (ADR 0003) and are skipped by the UPDATE itself.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION ledger_apply_deltas(account_ids bigint[], debits bigint[], credits bigint[]) RETURNS integer
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    expected integer;
    applied integer;
BEGIN
    PERFORM 1 FROM ledger_ledgerbalance b WHERE b.account_id = ANY(account_ids) ORDER BY b.account_id FOR UPDATE;
    UPDATE ledger_ledgerbalance AS b
       SET debit_total_minor = b.debit_total_minor + d.debit,
           credit_total_minor = b.credit_total_minor + d.credit,
           balance_minor = b.balance_minor + (d.debit - d.credit) * b.normal_sign,
           version = b.version + 1
      FROM unnest(account_ids, debits, credits) AS d(account_id, debit, credit)
     WHERE b.account_id = d.account_id;
    GET DIAGNOSTICS applied = ROW_COUNT;
    SELECT count(*) INTO expected FROM ledger_ledgeraccount a WHERE a.id = ANY(account_ids) AND NOT a.is_hot;
    IF applied <> expected THEN
        RAISE EXCEPTION 'a ledger account of this posting has no balance projection; run ledger_verify'
            USING ERRCODE = 'LG004';
    END IF;
    RETURN applied;
END;
$$;
"""

BACKWARD = "DROP FUNCTION IF EXISTS ledger_apply_deltas(bigint[], bigint[], bigint[]);"


class Migration(migrations.Migration):
    dependencies = [("ledger", "0011_integrity_checks_walk_indexes")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
