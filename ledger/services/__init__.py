"""The ledger's commands: the only writers of accounts, journals, entries and balances."""

from ledger.services.accounts import account_find, account_for
from ledger.services.posting import (
    JournalRequest,
    PostingLine,
    Source,
    journal_post,
    journal_post_many,
    journal_reverse,
)
from ledger.services.rules import journal_post_rule, posting_lines, posting_preview

__all__ = [
    "JournalRequest", "PostingLine", "Source", "account_find", "account_for", "journal_post", "journal_post_many",
    "journal_post_rule", "journal_reverse", "posting_lines", "posting_preview",
]  # fmt: skip
