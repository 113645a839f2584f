"""The ledger's integrity triggers look journals and entries up by key, and must keep doing so
however the tables' statistics stood when their plan was made.

A trigger function's queries are planned once per connection and the plan is kept. On a young
database (a fresh install, the first minute before autovacuum's first ANALYZE) the planner saw a
nearly empty journal table and chose to scan it whole: every posting then read every journal, and
posting slowed down as the table grew (3,000 postings on a fresh database read 4.5 million journal
rows). The accounts check did the same with the accounts table (two thousand accounts read per
posting on a database never analyzed). With sequential scans off inside these functions their
lookups always walk the primary key and journal indexes; what they scan on purpose (the
statement's own new entries, the posting's lines) are not tables and are unaffected."""

from django.db import migrations

FUNCTIONS = (
    "ledger_entries_currency_match()",
    "ledger_journal_check_balanced()",
    "ledger_accounts_postable(bigint[], text[])",
)

FORWARD = "".join(f"ALTER FUNCTION {name} SET enable_seqscan = off;\n" for name in FUNCTIONS)
BACKWARD = "".join(f"ALTER FUNCTION {name} RESET enable_seqscan;\n" for name in FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0010_balanced_check_in_one_query")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
